#!/usr/bin/env python3
"""A teammate that prints megabytes (argv[1], default 8) on stdout and some on stderr, then succeeds."""
import sys

megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 8
line = b"x" * 1023 + b"\n"
for _ in range(megabytes * 1024):
    sys.stdout.buffer.write(line)
sys.stderr.write("warning: noisy\n" * 10000)
sys.stdout.buffer.write(b"LAST LINE\n")
