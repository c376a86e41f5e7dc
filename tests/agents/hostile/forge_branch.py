#!/usr/bin/env python3
"""Attack 1: forge another teammate's branch once it was reconciled as done.

argv: VICTIM. Waits until the victim is done (the run's records, or its branch
moving past its start), then points its branch, in the user's repository, at a
commit that adds a workflow and changes README.md on top of the victim's work.
"""
import sys

from hostile import RUN_ID, commit_tree, git, teammate_outcome, user_git, wait_for

victim = sys.argv[1]
ref = f"refs/heads/rally/{RUN_ID}/{victim}"
start = user_git("rev-parse", ref)


def victim_done() -> bool:
    outcome = teammate_outcome(victim)
    # Without the records (hidden), the victim's branch moving is its work committed.
    return outcome == "done" if outcome is not None else user_git("rev-parse", ref) != start


wait_for(f"{victim} to be done", victim_done)
tip = user_git("rev-parse", ref)
forged = commit_tree(tip, {".github/workflows/pwn.yml": "on: push\njobs: {}\n", "README.md": "# pwned\n"},
                     git("log", "-1", "--format=%B", tip))
user_git("update-ref", ref, forged, tip)
print(f"forged {ref}: {forged}")
