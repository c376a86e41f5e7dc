"""Git bundles: how a run's commits leave a job that may not push, and enter the one that may.

The agents' job writes its branches to a bundle (``write_bundle``); the publish job reads
one as untrusted input: ``bundle_heads`` verifies it against this repository (its
prerequisites, the base, must be here) and lists its refs; ``fetch_from_bundle`` imports
only the refs the caller accepted, into refs the caller names, with every object checked
(``fsckObjects``: no malformed object, no ``.git`` path in a tree) and no hook run. A bundle
carries objects and ref names only: no config and no hook comes with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from rally_gh.errors import GitError
from rally_gh.git.repository import Sha, git_bytes

_HEAD_LINE = re.compile(r"([0-9a-f]{40}) (refs/[^\s]+)")
# Every object read from a bundle is checked as a server checks a push.
_CHECKED = ("-c", "fetch.fsckObjects=true", "-c", "transfer.fsckObjects=true", "-c", "protocol.file.allow=always")


def write_bundle(repo_path: Path, path: Path, refs: Sequence[str], base: Sha) -> bool:
    """``refs`` and what they hold beyond ``base`` (the bundle's one prerequisite), written to
    ``path``; False, and no file, when none of them holds anything beyond it."""
    try:
        git_bytes(repo_path, ["bundle", "create", "--quiet", str(path), *refs, f"^{base}"])
    except GitError as err:
        if "empty bundle" in str(err):
            return False
        raise
    return True


def bundle_heads(repo_path: Path, path: Path) -> list[tuple[Sha, str]]:
    """The refs of the bundle at ``path``, each with its commit, once the bundle is verified
    against this repository (its format, and its prerequisites present here)."""
    try:
        git_bytes(repo_path, ["bundle", "verify", "--quiet", str(path)])
    except GitError as err:
        raise GitError(f"{path}: not a git bundle this repository can read: {_last_line(err)}") from None
    heads: list[tuple[Sha, str]] = []
    for line in git_bytes(repo_path, ["bundle", "list-heads", str(path)]).decode(errors="replace").splitlines():
        found = _HEAD_LINE.fullmatch(line.strip())
        if found is None:
            raise GitError(f"{path}: the bundle lists a head git would not write: {line[:200]!r}")
        heads.append((Sha(found.group(1)), found.group(2)))
    return heads


def fetch_from_bundle(repo_path: Path, path: Path, refs: Mapping[str, str]) -> None:
    """The bundle's refs ``refs`` (its ref: the ref to write here), with their objects checked."""
    if not refs:
        return
    specs = [f"+{theirs}:{ours}" for theirs, ours in refs.items()]
    try:
        git_bytes(repo_path, [*_CHECKED, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                              "--no-recurse-submodules", str(path), *specs])
    except GitError as err:
        raise GitError(f"{path}: its objects were refused: {_last_line(err)}") from None


def _last_line(err: GitError) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1].strip()[:500] if lines else "no message"
