"""Replaying commits in memory (integration).

rally_gh/integrate.py replays teammates' commits onto the integration tip by
writing blobs, trees and commits to the object database only: no work tree,
no index. PERF-NOTES: libgit2's merge_trees and in-memory rebase cost 6-9 ms
a commit on a 20k-file tree however small the change, so the three-way merge
here is ours. It looks only at the paths the commit touched (its diff against
its parent) and rewrites only the directories above them, reusing every other
subtree by id.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pygit2
from pygit2 import Oid, Repository
from pygit2.enums import FileMode

from rally_gh.errors import GitError
from rally_gh.git.changes import commit_changes, commits_between
from rally_gh.git.repository import MODE_GITLINK, MODE_LINK, MODE_TREE, Identity, Sha, commit_of, short, signature
from rally_gh.git.trees import (
    TREE_DIGITS,
    Leaf,
    TreeCache,
    diff_trees,
    entries_of,
    leaf_of,
    new_entry,
    path_text,
    write_tree,
)
from rally_gh.ownership.paths import hostile_reason


@dataclass(frozen=True)
class CommitSummary:
    sha: Sha
    parents: tuple[Sha, ...]
    title: str  # the message's first line


@dataclass(frozen=True)
class PathConflict:
    """One path both sides wrote differently."""

    path: str
    kind: str  # content | binary | add/add | modify/delete | symlink/file | submodule | mode | directory/file


@dataclass(frozen=True)
class ReplayedCommit:
    """Replaying one commit: the new commit, or nothing because its change is
    already on the tip (``became_empty``), or the conflicts or hostile paths
    that stopped it (then nothing was written that anything points at)."""

    new_sha: Sha | None
    became_empty: bool = False
    conflicts: tuple[PathConflict, ...] = ()
    hostile: tuple[tuple[str, str], ...] = ()  # (path, why)


def commit_summaries(repo: Repository, start: str, head: str) -> list[CommitSummary]:
    """Commits reachable from ``head`` and not from ``start``, oldest first (parents before children)."""
    out = []
    for sha in commits_between(repo, start, head):
        c = commit_of(repo, sha)
        out.append(CommitSummary(sha, tuple(Sha(str(p)) for p in c.parent_ids), c.message.split("\n", 1)[0]))
    return out


def replay_key(repo: Repository, sha: str, cache: TreeCache) -> tuple[object, ...]:
    """What a replay keeps of a commit: its author, author date, message and change.
    A commit and its replays have the same key; ``cache``: from ``new_tree_cache``."""
    commit = commit_of(repo, sha)
    author = commit.author
    changes = tuple((c.path, c.new_id, c.new_mode) for c in commit_changes(repo, sha, cache))
    return (author.name, author.email, author.time, author.offset, commit.raw_message, changes)


@contextmanager
def replay_session() -> Iterator[TreeCache]:
    """What one integration's replays share: a cache of parsed trees, and strict
    object creation off (PERF-NOTES: libgit2 otherwise checks every entry of
    every tree and commit it writes). The replay checks every path it writes
    itself (``_path_problem``), so nothing hostile gets through. The option is
    process-wide and libgit2 cannot report its value, so it goes back to
    libgit2's default, on."""
    pygit2.option(pygit2.enums.Option.ENABLE_STRICT_OBJECT_CREATION, 0)
    try:
        yield {}
    finally:
        pygit2.option(pygit2.enums.Option.ENABLE_STRICT_OBJECT_CREATION, 1)


def replay_commit(repo: Repository, commit_sha: str, onto_sha: str, committer: Identity,
                  cache: TreeCache | None = None) -> ReplayedCommit:
    """Write ``commit_sha``'s change on top of ``onto_sha``: the three-way merge of
    its parent (base), the tip (ours) and the commit (theirs), keeping its message,
    author and author date. Run it inside ``replay_session()``, passing its cache.

    A commit that was empty to begin with is kept (someone made it on purpose); one
    whose change is already on the tip is dropped, as ``git rebase`` does.
    """
    cache = {} if cache is None else cache
    commit = commit_of(repo, commit_sha)
    onto = commit_of(repo, onto_sha)
    if len(commit.parents) != 1:
        raise GitError(f"{short(commit_sha)}: only commits with one parent can be replayed")
    base_root, theirs_root, ours_root = commit.parents[0].tree_id.raw, commit.tree_id.raw, onto.tree_id.raw
    touched: dict[bytes, list[Leaf | None]] = {}  # path -> [base, theirs]
    diff_trees(repo, base_root, theirs_root, b"", touched, cache)
    hostile = tuple((path_text(p), why) for p, (_, theirs) in touched.items()
                    if theirs is not None and (why := _path_problem(p)) is not None)
    if hostile:
        return ReplayedCommit(None, hostile=hostile)
    if not touched:
        tree_id = onto.tree_id.raw  # empty from the start: kept
    else:
        edits: dict[bytes, Leaf | None] = {}
        conflicts: list[PathConflict] = []
        for path, (base, theirs) in touched.items():
            ours = _leaf_at(repo, ours_root, path, cache)
            merged = _merge_leaf(repo, path, base, ours, theirs, conflicts)
            if merged is not _UNCHANGED:
                edits[path] = merged  # type: ignore[assignment]
        if conflicts:
            return ReplayedCommit(None, conflicts=tuple(conflicts))
        bad: list[tuple[str, str]] = []
        new_root = _apply_edits(repo, ours_root, edits, b"", conflicts, bad, cache)
        if conflicts or bad:
            return ReplayedCommit(None, conflicts=tuple(conflicts), hostile=tuple(bad))
        tree_id = new_root if new_root is not None else write_tree(repo, {}, False, cache)
        if tree_id == onto.tree_id.raw:
            return ReplayedCommit(None, became_empty=True)
    # The encoding goes positionally: pygit2's create_commit takes no keyword arguments.
    encoding = () if commit.message_encoding is None else (commit.message_encoding,)
    new_id = repo.create_commit(None, commit.author, signature(committer), commit.raw_message,
                                Oid(raw=tree_id), [onto.id], *encoding)
    return ReplayedCommit(Sha(str(new_id)))


_UNCHANGED = object()  # the merge keeps what the tip has at this path


def _merge_leaf(repo: Repository, path: bytes, base: Leaf | None, ours: Leaf | None,
                theirs: Leaf | None, conflicts: list[PathConflict]) -> object:
    """The merged entry at ``path`` (None: deleted), ``_UNCHANGED``, or a conflict appended."""
    if ours == theirs:
        return _UNCHANGED
    if ours == base:
        return theirs
    kind = _conflict_kind(repo, base, ours, theirs)
    if kind is not None:
        merged: Leaf | str = kind
    else:
        assert ours is not None and theirs is not None
        merged = _merge_regular(repo, path, base, ours, theirs)
    if isinstance(merged, str):
        conflicts.append(PathConflict(path_text(path), merged))
        return _UNCHANGED
    return merged


def _conflict_kind(repo: Repository, base: Leaf | None, ours: Leaf | None,
                   theirs: Leaf | None) -> str | None:
    """Why both sides' versions cannot be merged textually, or None when they may be."""
    if ours is None or theirs is None:
        return "modify/delete"
    sides = [s for s in (base, ours, theirs) if s is not None]
    if any(m == MODE_GITLINK for m, _ in sides):
        return "submodule"
    if any(m == MODE_LINK for m, _ in sides):
        return "symlink/file" if any(m != MODE_LINK for m, _ in sides) else "symlink"
    if any(repo[Oid(raw=i)].peel(pygit2.Blob).is_binary for _, i in sides):
        return "binary"
    return None


def _merge_regular(repo: Repository, path: bytes, base: Leaf | None, ours: Leaf,
                   theirs: Leaf) -> Leaf | str:
    """Both sides changed a regular file: take each side's change of content and of
    mode, merging the text the way `git merge-file` does; the kind of conflict when
    that fails."""
    base_mode = base[0] if base is not None else None
    if ours[0] == theirs[0] or theirs[0] == base_mode:
        mode = ours[0]
    elif ours[0] == base_mode:
        mode = theirs[0]
    else:
        return "mode"
    base_id = base[1] if base is not None else None
    if ours[1] == theirs[1] or theirs[1] == base_id:
        return (mode, ours[1])
    if ours[1] == base_id:
        return (mode, theirs[1])
    name = path_text(path)
    try:
        result = repo.merge_file_from_index(
            None if base is None else pygit2.IndexEntry(name, Oid(raw=base[1]), FileMode(base[0])),
            pygit2.IndexEntry(name, Oid(raw=ours[1]), FileMode(ours[0])),
            pygit2.IndexEntry(name, Oid(raw=theirs[1]), FileMode(theirs[0])),
        )
    except UnicodeDecodeError:
        return "content"  # pygit2 hands the result back as UTF-8 text; other encodings conflict
    if not result.automergeable:
        return "content" if base is not None else "add/add"
    return (mode, repo.create_blob(result.contents.encode("utf-8")).raw)


def _apply_edits(repo: Repository, tree: bytes | None, edits: dict[bytes, Leaf | None], prefix: bytes,
                 conflicts: list[PathConflict], hostile: list[tuple[str, str]], cache: TreeCache) -> bytes | None:
    """``tree`` with ``edits`` (paths relative to it) applied, written bottom-up;
    untouched entries keep their ids. None when the result is empty (git stores no
    empty directories)."""
    here: dict[bytes, Leaf | None] = {}
    below: dict[bytes, dict[bytes, Leaf | None]] = {}
    for path, leaf in edits.items():
        head, slash, rest = path.partition(b"/")
        if slash:
            below.setdefault(head, {})[rest] = leaf
        else:
            here[head] = leaf
    old = entries_of(repo, tree, cache) if tree is not None else {}
    new = dict(old)
    added: list[bytes] = []
    for name in here.keys() | below.keys():
        current = old.get(name)
        current_tree = current[3] if current is not None and current[1] == TREE_DIGITS else None
        current_leaf = leaf_of(current)
        if name in below:
            if current_leaf is not None and name not in here:
                # The tip has a file where this commit writes inside a directory.
                conflicts.extend(PathConflict(path_text(prefix + name + b"/" + p), "directory/file") for p in below[name])
                continue
            sub = _apply_edits(repo, current_tree, below[name], prefix + name + b"/", conflicts, hostile, cache)
        else:
            sub = current_tree
        leaf = here[name] if name in here else current_leaf
        if leaf is not None and sub is not None:
            # A file where the tip keeps a directory with other content in it.
            conflicts.append(PathConflict(path_text(prefix + name), "directory/file"))
            continue
        if leaf is not None:
            if leaf != current_leaf:
                new[name] = new_entry(name, leaf[0], leaf[1])
        elif sub is not None:
            if sub != current_tree:
                new[name] = new_entry(name, MODE_TREE, sub)
        else:
            new.pop(name, None)
        if current is None and name in new:
            added.append(name)
    if added:
        # A new name must not be the same file as a sibling on a case-insensitive
        # or normalizing filesystem (macOS, Windows).
        names = list(new)
        seen: dict[str, bytes] = {}
        for name, key in zip(names, _folded(names)):
            other = seen.setdefault(key, name)
            if other != name and (name in added or other in added):
                hostile.append((path_text(prefix + name), f"differs only by case or Unicode normalization "
                                                      f"from {path_text(prefix + other)!r}"))
    if not new:
        return None
    if new == old and tree is not None:
        return tree
    return write_tree(repo, new, bool(added), cache)


def _path_problem(path: bytes) -> str | None:
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    reason = hostile_reason(text)
    if reason is None and any(seg in ("", ".") for seg in text.split("/")):
        reason = "has an empty or '.' segment"
    return reason


def _folded(names: Sequence[bytes]) -> list[str]:
    """Each name as macOS and Windows compare them (Unicode NFC, case folded), in
    two C calls for the whole directory rather than two per name."""
    joined = unicodedata.normalize("NFC", b"\0".join(names).decode("utf-8", "surrogateescape")).casefold()
    return joined.split("\0")


def _leaf_at(repo: Repository, root: bytes, path: bytes, cache: TreeCache) -> Leaf | None:
    """The non-tree entry at ``path``; None when absent, a directory, or below a file."""
    *dirs, name = path.split(b"/")
    tree = root
    for d in dirs:
        entry = entries_of(repo, tree, cache).get(d)
        if entry is None or entry[1] != TREE_DIGITS:
            return None
        tree = entry[3]
    return leaf_of(entries_of(repo, tree, cache).get(name))
