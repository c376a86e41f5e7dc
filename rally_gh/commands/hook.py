"""``rally-gh hook pre-commit`` and ``rally-gh hook install``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from rally_gh import git
from rally_gh.ownership.enforce import render
from rally_gh.errors import EXIT_FAILED, EXIT_OK
from rally_gh.github.actions import ActionsContext
from rally_gh.hook import install_hook, pre_commit as staged_check


def pre_commit(cwd: Path, actions: ActionsContext, stdout: TextIO, *, config_path: Path | None = None) -> int:
    repo = git.open_repo(cwd)
    outcome = staged_check(repo, None if config_path is None else config_path.as_posix(), actions.environ,
                           pull_head=actions.head_ref)
    for problem in outcome.map_problems:
        stdout.write(f"{problem}\n")
    if outcome.result is not None and not outcome.result.ok:
        stdout.write(render(outcome.result, "text"))
        owners = sorted({v.owner for v in outcome.result.violations if v.owner})
        stdout.write(
            "The commit was refused. Unstage those paths (`git restore --staged PATH`) or move the change "
            "into files you own" + (f"; ask {', '.join(owners)} for the rest" if owners else "") + ".\n"
        )
    return EXIT_OK if outcome.ok else EXIT_FAILED


def install(cwd: Path, force: bool, stdout: TextIO) -> int:
    repo = git.open_repo(cwd)
    path, note = install_hook(repo, force, sys.executable)
    stdout.write(f"rally-gh: pre-commit hook {note}: {path}\n")
    return EXIT_OK
