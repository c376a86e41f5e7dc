"""``rally-gh check``: ownership violations in every commit of a range."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rally_gh import git
from rally_gh.ownership.enforce import check_commits, default_base, render, require_map_at, teammate_start, who_is_writing
from rally_gh.errors import EXIT_FAILED, EXIT_OK, GitError, UsageError
from rally_gh.github.actions import ActionsContext


@dataclass(frozen=True)
class CheckOptions:
    config_path: Path | None = None
    base: str | None = None
    """Commits after this one are checked (default: the merge base with the base branch)."""
    head: str = "HEAD"
    teammate: str | None = None
    """Who wrote the commits (default: from the branch name)."""
    fmt: str = "text"
    """text, json or github."""


def run(cwd: Path, actions: ActionsContext, stdout: TextIO, *, options: CheckOptions = CheckOptions()) -> int:
    head, config_path = options.head, options.config_path
    repo = git.open_repo(cwd, allow_bare=True)
    head_sha = _revision(repo, "--head", head)
    base_sha = (_revision(repo, "--base", options.base) if options.base
                else default_base(repo, head_sha, actions.base_ref))
    loaded = require_map_at(repo, base_sha, None if config_path is None else config_path.as_posix())
    # A head given as a branch name says who wrote it, as the checked-out branch would.
    branch = head if head != "HEAD" and git.ref_exists(repo, f"refs/heads/{head}") else None
    name, _source = who_is_writing(repo, loaded, options.teammate, actions.environ, branch, pull_head=actions.head_ref)
    if name is None:
        stdout.write("rally-gh: these commits are not a teammate's (no --teammate, RALLY_TEAMMATE, "
                     f"{loaded.config.branch_prefix}/<run>/<teammate> branch or rally.teammate config): "
                     "nothing to check\n")
        return EXIT_OK
    # A blocked_by teammate started from its blockers' work: only what follows is its own.
    writing = branch or (git.head_branch(repo) if head == "HEAD" else None) or actions.head_ref
    start = teammate_start(repo, loaded, name, writing, base_sha, head_sha)
    result = check_commits(repo, loaded, name, base_sha, head_sha, start)
    stdout.write(render(result, options.fmt))
    return EXIT_OK if result.ok else EXIT_FAILED


def _revision(repo: git.Repository, option: str, rev: str) -> git.Sha:
    """A revision the user named: one that does not exist is a usage error (exit 2)."""
    try:
        return git.resolve(repo, rev)
    except GitError as err:
        raise UsageError(f"{option} {rev}: {err.message}", hint=err.hint) from None
