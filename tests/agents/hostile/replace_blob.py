#!/usr/bin/env python3
"""Attack 6: `git replace` the blob of another teammate's file; the next wave's checkout writes
the payload into it, and it is integrated as that teammate's work.

argv: PATH, a file another teammate owns, at the base commit.
"""
import sys

from hostile import git, own_work

path = sys.argv[1]
original = git("rev-parse", f"HEAD:{path}")
payload = git("hash-object", "-w", "--stdin", stdin="payload of an attacker\n")
git("replace", "-f", original, payload)
own_work()
