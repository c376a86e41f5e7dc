#!/usr/bin/env python3
"""A teammate that never ends and ignores SIGTERM: only SIGKILL stops it.

Writes its pid to the file named by its first argument once its handler is set.
"""
import os
import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()}\n")
print("waiting forever", flush=True)
while True:
    time.sleep(3600)
