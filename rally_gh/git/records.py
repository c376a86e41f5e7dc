"""Records kept as commits: the run history (refs/rally/history) and a published run's state
(refs/rally/published/<run>).

rally_gh/history.py keeps one small file per run in the tree of a commit chain
under one ref. Everything here writes to the object database only (never the
work tree or the index); the ref moves with ``refs.update_ref_if``, a
compare-and-swap, so that two runs finishing at once both land.
"""

from __future__ import annotations

from collections.abc import Iterator

import pygit2
from pygit2 import Oid, Repository, Tree

from rally_gh.git.repository import (
    MODE_BLOB,
    MODE_EXEC,
    MODE_TREE,
    RALLY_COMMITTER,
    Identity,
    Sha,
    commit_of,
    oid,
    signature,
)


def blobs_under(repo: Repository, commit_sha: str, directory: str) -> Iterator[tuple[str, bytes]]:
    """Every file under ``directory`` at a commit, with its path, in tree order.
    Entries that are not blobs (links, gitlinks) are skipped."""
    tree = commit_of(repo, commit_sha).tree
    try:
        entry = tree[directory]
    except KeyError:
        return
    if entry.filemode != MODE_TREE:
        return
    stack: list[tuple[str, Tree]] = [(directory + "/", repo[entry.id].peel(Tree))]
    while stack:
        prefix, here = stack.pop()
        for item in here:
            if item.filemode == MODE_TREE:
                stack.append((f"{prefix}{item.name}/", repo[item.id].peel(Tree)))
            elif item.filemode in (MODE_BLOB, MODE_EXEC):
                yield f"{prefix}{item.name}", bytes(repo[item.id].read_raw())


def commit_with_files(repo: Repository, parent: str | None, files: dict[str, bytes], message: str,
                      who: Identity = RALLY_COMMITTER) -> Sha:
    """A commit on top of ``parent`` (None: a first commit) whose tree is the
    parent's with ``files`` written, each created or replaced. Only the
    directories above those files are rewritten. No ref moves."""
    base = commit_of(repo, parent).tree if parent is not None else None
    tree_id = _tree_with_files(repo, base, {tuple(path.split("/")): data for path, data in files.items()})
    sig = signature(who)
    return Sha(str(repo.create_commit(None, sig, sig, message, tree_id, [oid(parent)] if parent else [])))


def _tree_with_files(repo: Repository, tree: Tree | None, files: dict[tuple[str, ...], bytes]) -> Oid:
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    below: dict[str, dict[tuple[str, ...], bytes]] = {}
    for parts, data in files.items():
        if len(parts) == 1:
            builder.insert(parts[0], repo.create_blob(data), MODE_BLOB)
        else:
            below.setdefault(parts[0], {})[parts[1:]] = data
    for name, nested in below.items():
        existing = tree[name] if tree is not None and name in tree else None
        subtree = repo[existing.id].peel(Tree) if existing is not None and existing.filemode == MODE_TREE else None
        builder.insert(name, _tree_with_files(repo, subtree, nested), MODE_TREE)
    return builder.write()


def write_record_commit(repo: Repository, filename: str, data: bytes, message: str) -> Sha:
    """A parentless commit holding one file: how a job hands a record to a later job through a
    ref on the remote."""
    builder = repo.TreeBuilder()
    builder.insert(filename, repo.create_blob(data), MODE_BLOB)
    who = pygit2.Signature("rally-gh", "rally-gh@users.noreply.github.com")
    return Sha(str(repo.create_commit(None, who, who, message, builder.write(), [])))
