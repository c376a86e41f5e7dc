#!/usr/bin/env python3
"""Attack 7: move the base branch, in the user's repository, to a forged commit, which integration then
builds on."""
import os

from hostile import commit_tree, fail, git, own_work, user_git

base = os.environ["RALLY_BASE_SHA"]
branches = [b for b in user_git("for-each-ref", "--format=%(refname)", "--points-at", base, "refs/heads/").split()
            if not b.startswith("refs/heads/rally/")]
if not branches:
    fail("no branch points at the base commit")
forged = commit_tree(base, {".github/workflows/pwn.yml": "on: push\njobs: {}\n", "README.md": "# pwned\n"},
                     git("log", "-1", "--format=%B", base))
for branch in branches:
    user_git("update-ref", branch, forged, base)
own_work()
