"""Git bundles: how a run's commits leave a job that may not push, and enter the one that may.

The agents' job writes its branches to a bundle (``write_bundle``); the publish job reads
one as untrusted input: ``bundle_heads`` verifies it against this repository (its
prerequisites, the base, must be here) and lists its refs; ``import_bundle`` takes its
objects in with every one checked (``index-pack --strict``: no malformed object, no ``.git``
path in a tree; git's own fetch from a bundle checks nothing before git 2.41) and sets only
the refs the caller accepted, under names the caller chose; no hook runs. A bundle
carries objects and ref names only: no config and no hook comes with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from rally_gh.errors import GitError
from rally_gh.git.repository import Sha, git_bytes

_HEAD_LINE = re.compile(r"([0-9a-f]{40}) (refs/[^\s]+)")


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
        raise GitError(f"{path}: not a git bundle this repository can read: {_git_says(err)}") from None
    heads: list[tuple[Sha, str]] = []
    for line in git_bytes(repo_path, ["bundle", "list-heads", str(path)]).decode(errors="replace").splitlines():
        found = _HEAD_LINE.fullmatch(line.strip())
        if found is None:
            raise GitError(f"{path}: the bundle lists a head git would not write: {line[:200]!r}")
        heads.append((Sha(found.group(1)), found.group(2)))
    return heads


def import_bundle(repo_path: Path, path: Path, refs: Mapping[str, Sha]) -> None:
    """The bundle's objects, each checked as strictly as a server checks a push (``index-pack
    --strict``: no malformed object, no ``.git`` in a tree, nothing pointing at what is not
    here), then ``refs`` (a ref to write here: the commit the bundle lists for it) set."""
    if not refs:
        return
    data = path.read_bytes()
    end = data.find(b"\n\n")  # the header (signature, prerequisites, refs) ends with an empty line
    if end < 0:
        raise GitError(f"{path}: not a git bundle: no end to its header")
    try:
        git_bytes(repo_path, ["index-pack", "--strict", "--fix-thin", "--stdin"], input=data[end + 2:])
    except GitError as err:
        raise GitError(f"{path}: its objects were refused: {_git_says(err)}") from None
    for ours, sha in refs.items():
        git_bytes(repo_path, ["update-ref", ours, sha])


def _git_says(err: GitError) -> str:
    """What git said went wrong: its first ``error:`` line (which names the object and the
    problem), else its last line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    found = next((line[line.index("error:"):] for line in lines if "error:" in line), lines[-1] if lines else "")
    return found[:500] or "no message"
