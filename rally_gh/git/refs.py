"""References: reading them, and moving one only if it is still where we left it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pygit2
from pygit2 import Commit, Oid, Repository

from rally_gh import process
from rally_gh.errors import GitError
from rally_gh.git.repository import Sha, common_dir, run_git

_ZERO_SHA = "0" * 40


def ref_sha(repo: Repository, ref_name: str) -> Sha | None:
    """The commit a full ref name (``refs/heads/x``) points at, or None when it does not exist."""
    ref = repo.references.get(ref_name)
    if ref is None:
        return None
    try:
        return Sha(str(ref.peel(Commit).id))
    except (pygit2.GitError, KeyError, ValueError):
        return None  # points at something missing or not a commit: as good as absent


@dataclass(frozen=True)
class RefTarget:
    """What a ref points at, unpeeled: a history written by someone else may point anywhere."""

    sha: Sha
    kind: str  # commit | tree | blob | tag | missing


def ref_target(repo: Repository, ref_name: str) -> RefTarget | None:
    """The object ``ref_name`` points at and its kind, or None when the ref does not exist."""
    ref = repo.references.get(ref_name)
    if ref is None:
        return None
    try:
        target = ref.resolve().target
    except (pygit2.GitError, KeyError):
        return RefTarget(Sha(_ZERO_SHA), "missing")  # a symbolic ref to nothing
    if not isinstance(target, Oid):
        return RefTarget(Sha(_ZERO_SHA), "missing")
    try:
        kind: str = repo[target].type_str
    except (KeyError, ValueError):
        kind = "missing"
    return RefTarget(Sha(str(target)), kind)


def ref_exists(repo: Repository, ref_name: str) -> bool:
    """Whether the ref ``ref_name`` (``refs/heads/x``) exists, whatever it points at."""
    return ref_name in repo.references


def ref_names(repo: Repository, *namespaces: str) -> list[str]:
    """The full names of the refs under ``namespaces`` (``refs/heads``, ...), in git's
    order, without the ones ending in ``/HEAD`` (a remote's symbolic default branch)."""
    out = run_git(common_dir(repo), "for-each-ref", "--format=%(refname)", *namespaces)
    return [ref for ref in out.splitlines() if ref and not ref.endswith("/HEAD")]


def branch_names(repo: Repository) -> list[str]:
    """Every branch, local (``main``) and remote-tracking (``remotes/origin/main``)."""
    return [name.removeprefix("refs/").removeprefix("heads/") for name in repo.references
            if name.startswith(("refs/heads/", "refs/remotes/")) and not name.endswith("/HEAD")]


def branch_tip(repo: Repository, branch: str) -> Sha | None:
    """A branch's tip, local or else remote-tracking (CI checkouts fetch only those)."""
    found = ref_sha(repo, f"refs/heads/{branch}")
    if found is not None:
        return found
    remote = next((name for name in branch_names(repo)
                   if name.startswith("remotes/") and name.split("/", 2)[2:] == [branch]), None)
    return None if remote is None else ref_sha(repo, f"refs/{remote}")


def branches_with_times(repo: Repository, prefixes: Sequence[str]) -> list[tuple[str, float | None]]:
    """The local branches ``<prefix>/...`` of each of ``prefixes``: the short name of
    each, with its tip's commit time (seconds since the epoch; None when unknown)."""
    out = run_git(common_dir(repo), "for-each-ref", "--format=%(committerdate:unix) %(refname:short)",
                  *(f"refs/heads/{p}/" for p in prefixes))
    found: list[tuple[str, float | None]] = []
    for line in out.splitlines():
        stamp, _, branch = line.partition(" ")
        found.append((branch, float(stamp) if stamp.isdigit() else None))
    return found


def delete_branches(repo: Repository, branches: Sequence[str]) -> None:
    """Delete the local ``branches`` (short names), merged or not (`git branch -D`)."""
    run_git(common_dir(repo), "branch", "-D", "--quiet", *branches)


def delete_refs(repo: Repository, refs: Sequence[str]) -> None:
    """Delete ``refs`` (full names), whatever they point at."""
    for ref in refs:
        run_git(common_dir(repo), "update-ref", "-d", ref)


def update_ref_if(repo: Repository, ref_name: str, new_sha: str, expected_old: str | None) -> bool:
    """Move ``ref_name`` to ``new_sha`` only if it still points at ``expected_old``
    (None: only if it does not exist). False when it moved meanwhile.

    The git CLI: `git update-ref REF NEW OLD` compares and swaps under the ref's
    lock; pygit2 has no compare-and-swap for references, and reading then writing
    would race with another process."""
    proc = process.run(["git", "-c", "core.hooksPath=/dev/null", "update-ref", "-m", "rally-gh: integrate",
                        ref_name, new_sha, expected_old or _ZERO_SHA], cwd=repo.path)
    if proc.returncode == 0:
        return True
    if ref_sha(repo, ref_name) != expected_old:
        return False
    raise GitError(f"`git update-ref {ref_name}` failed: {proc.stderr.decode(errors='replace').strip()}")
