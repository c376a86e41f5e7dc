"""Trees as raw bytes, parsed once and cached by id: the fast path of diffs and replays.

libgit2's own tree-to-tree diff took 27 ms a commit on the integration benchmark
(it reads every entry of both trees), and pygit2 objects cost microseconds an
entry; the parsing here is all in C (one regex, dict and zip), and the
comparison of two parsed trees skips equal subtrees. ``changes`` diffs with it,
``replay`` merges and writes with it.
"""

from __future__ import annotations

import operator
import re

import pygit2
from pygit2 import Oid, Repository


# Trees are parsed once into dicts of raw entries and cached by id for a whole
# integration or range check.
Entry = tuple[bytes, bytes, bytes, bytes]  # (raw entry, mode in octal digits, name, raw 20-byte id)
Entries = dict[bytes, Entry]  # by name, in the tree's order
Leaf = tuple[int, bytes]  # (mode, raw id) of a non-tree entry
TreeCache = dict[bytes, Entries]  # raw tree id -> its entries
TREE_DIGITS = b"40000"  # a directory's mode, as a tree entry writes it
_ENTRY = re.compile(rb"((\d+) ([^\0]*)\0(.{20}))", re.S)
_NAME_OF = operator.itemgetter(2)
_RAW_OF = operator.itemgetter(0)
_CACHE_LIMIT = 20_000  # trees; emptied when full, which bounds it to a few hundred MB


def new_tree_cache() -> TreeCache:
    return {}


def entries_of(repo: Repository, tree_id: bytes, cache: TreeCache) -> Entries:
    found = cache.get(tree_id)
    if found is None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        _, raw = repo.odb.read(Oid(raw=tree_id))
        parsed = _ENTRY.findall(raw)
        found = dict(zip(map(_NAME_OF, parsed), parsed))
        cache[tree_id] = found
    return found


def new_entry(name: bytes, mode: int, id_: bytes) -> Entry:
    digits = b"%o" % mode
    return (digits + b" " + name + b"\0" + id_, digits, name, id_)


def leaf_of(entry: Entry | None) -> Leaf | None:
    """A non-tree entry as (mode, id); None for a directory or nothing."""
    if entry is None or entry[1] == TREE_DIGITS:
        return None
    return (int(entry[1], 8), entry[3])


def write_tree(repo: Repository, entries: Entries, reorder: bool, cache: TreeCache) -> bytes:
    """Write ``entries`` as a tree; ``reorder`` when names were added (git sorts a
    directory's name as if it ended with '/')."""
    if reorder:
        entries = dict(sorted(entries.items(), key=lambda kv: kv[0] + b"/" if kv[1][1] == TREE_DIGITS else kv[0]))
    new_id = repo.odb.write(pygit2.enums.ObjectType.TREE, b"".join(map(_RAW_OF, entries.values()))).raw
    cache[new_id] = entries
    return new_id


def path_text(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def diff_trees(repo: Repository, a: bytes | None, b: bytes | None, prefix: bytes,
               out: dict[bytes, list[Leaf | None]], cache: TreeCache) -> None:
    """Every non-tree path that differs between trees ``a`` and ``b`` (None: empty),
    as out[path] = [entry in a, entry in b]. A path that is a file on one side and
    a directory on the other is a deletion of the one and additions of the other."""
    ea = entries_of(repo, a, cache) if a is not None else {}
    eb = entries_of(repo, b, cache) if b is not None else {}
    for name in {name for name, _ in ea.items() ^ eb.items()}:
        x, y = ea.get(name), eb.get(name)
        x_tree = x[3] if x is not None and x[1] == TREE_DIGITS else None
        y_tree = y[3] if y is not None and y[1] == TREE_DIGITS else None
        if x_tree is not None or y_tree is not None:
            diff_trees(repo, x_tree, y_tree, prefix + name + b"/", out, cache)
        if leaf_of(x) is not None:
            out.setdefault(prefix + name, [None, None])[0] = leaf_of(x)
        if leaf_of(y) is not None:
            out.setdefault(prefix + name, [None, None])[1] = leaf_of(y)
