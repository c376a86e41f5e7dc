#!/usr/bin/env python3
"""Attack 8: leave a process behind that outlives the run: its own session, an empty environment.

argv: MARKER, a word in the orphan's command line for the test to find it by.
"""
import subprocess
import sys

from hostile import own_work

subprocess.Popen(["setsid", "env", "-i", "sh", "-c", "sleep 60; :", sys.argv[1]], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
own_work()
