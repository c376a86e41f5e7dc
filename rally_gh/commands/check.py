"""``rally-gh check``: ownership violations in every commit of a range."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from rally_gh import git
from rally_gh.ownership.enforce import check_commits, default_base, render, require_map_at, teammate_start, who_is_writing
from rally_gh.errors import EXIT_FAILED, EXIT_OK, GitError, UsageError


def run(cwd: Path, config_path: Path | None, base: str | None, head: str, teammate: str | None,
        fmt: str, environ: Mapping[str, str], stdout: TextIO) -> int:
    repo = git.open_repo(cwd, allow_bare=True)
    head_sha = _revision(repo, "--head", head)
    base_sha = _revision(repo, "--base", base) if base else default_base(repo, environ, head_sha)
    loaded = require_map_at(repo, base_sha, None if config_path is None else config_path.as_posix())
    # A head given as a branch name says who wrote it, as the checked-out branch would.
    branch = head if head != "HEAD" and git.ref_exists(repo, f"refs/heads/{head}") else None
    name, _source = who_is_writing(repo, loaded, teammate, environ, branch)
    if name is None:
        stdout.write("rally-gh: these commits are not a teammate's (no --teammate, RALLY_TEAMMATE, "
                     f"{loaded.config.branch_prefix}/<run>/<teammate> branch or rally.teammate config): "
                     "nothing to check\n")
        return EXIT_OK
    # A blocked_by teammate started from its blockers' work: only what follows is its own.
    writing = branch or (git.head_branch(repo) if head == "HEAD" else None) or environ.get("GITHUB_HEAD_REF")
    start = teammate_start(repo, loaded, name, writing, base_sha, head_sha)
    result = check_commits(repo, loaded, name, base_sha, head_sha, start)
    stdout.write(render(result, fmt))
    return EXIT_OK if result.ok else EXIT_FAILED


def _revision(repo: git.Repository, option: str, rev: str) -> git.Sha:
    """A revision the user named: one that does not exist is a usage error (exit 2)."""
    try:
        return git.resolve(repo, rev)
    except GitError as err:
        raise UsageError(f"{option} {rev}: {err.message}", hint=err.hint) from None
