#!/usr/bin/env python3
"""The victim: a teammate that does its own work and nothing else.

argv: ``--after-peer TAG`` waits first until an attacker signals TAG (or 20 s
pass: an attacker that cannot reach it must not hold it forever); ``--git``
commits with its own git, as real agents do, after a ``git status``.
"""
import sys

from hostile import git, own_work, wait_for_peer

args = sys.argv[1:]
if "--after-peer" in args:
    wait_for_peer(args[args.index("--after-peer") + 1])
own_work()
if "--git" in args:
    git("status", "--porcelain")
    git("add", "-A")
    git("commit", "-q", "-m", "own work")
print("done")
