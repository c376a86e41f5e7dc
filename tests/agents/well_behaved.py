#!/usr/bin/env python3
"""A teammate that does its job: reads the prompt on stdin, writes a file, reports.

Also records what it was given (stdin, argv, environment) in the working
directory, for the tests to inspect.
"""
import json
import os
import sys

prompt = sys.stdin.buffer.read()
with open("prompt-received.bin", "wb") as f:
    f.write(prompt)
with open("env.json", "w") as f:
    json.dump(dict(os.environ), f)
with open("argv.json", "w") as f:
    json.dump(sys.argv[1:], f)
with open("work.txt", "w") as f:
    f.write(f"done by {os.environ.get('RALLY_TEAMMATE', '?')}\n")
cost = float(sys.argv[1]) if len(sys.argv) > 1 else 0.25
report = {"status": "done", "summary": "wrote work.txt", "cost_usd": cost, "tokens": 1234}
with open(os.environ["RALLY_REPORT_FILE"], "w") as f:
    json.dump(report, f)
print("all done")
