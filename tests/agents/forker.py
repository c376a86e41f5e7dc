#!/usr/bin/env python3
"""A teammate that leaves a grandchild behind: the grandchild ignores SIGTERM and sleeps forever.

argv: PIDFILE MODE, with MODE ``exit`` (the teammate exits at once, leaving
the grandchild) or ``hang`` (the teammate sleeps forever too). Both pids go to
PIDFILE, grandchild first, before the teammate goes on.
"""
import os
import signal
import sys
import time

pidfile, mode = sys.argv[1], sys.argv[2]
read_end, write_end = os.pipe()
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(pidfile, "a") as f:
        f.write(f"{os.getpid()}\n")
    os.write(write_end, b"x")
    # It keeps the teammate's stdout and stderr open: the runner must not wait on them forever.
    while True:
        time.sleep(3600)
os.read(read_end, 1)  # the grandchild's pid is written
with open(pidfile, "a") as f:
    f.write(f"{os.getpid()}\n")
print("forked", flush=True)
if mode == "hang":
    while True:
        time.sleep(3600)
