"""What a commit, a range of commits, the index or the work tree writes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2 import Repository
from pygit2.enums import SortMode

from rally_gh.errors import GitError
from rally_gh.git.repository import EMPTY_TREE_SHA, Sha, commit_of, common_dir, git_bytes, resolve, run_git, workdir
from rally_gh.git.trees import Leaf, TreeCache, diff_trees, new_tree_cache, path_text


@dataclass(frozen=True)
class Change:
    """One path written by a commit or by the staged index (renames are two changes)."""

    path: str
    status: str  # added | modified | deleted | typechange
    old_mode: int  # 0 when absent
    new_mode: int  # 0 when absent
    old_id: str | None
    new_id: str | None

    @property
    def mode_changed(self) -> bool:
        return self.status == "modified" and self.old_mode != self.new_mode

    @property
    def modes(self) -> tuple[int, ...]:
        return tuple(m for m in (self.old_mode, self.new_mode) if m)


@dataclass(frozen=True)
class StagedIndex:
    """The index a commit is being made from, read with the git CLI.

    ``index_file`` is what git names to a hook in ``GIT_INDEX_FILE``: `git commit
    -a`, `--include`, `--only` and `git commit PATH` build the commit in a
    temporary index, and the real one may hold something else entirely (None:
    the repository's own index). A relative name is relative to the top of the
    work tree, as for git itself.

    The git CLI rather than libgit2: libgit2 refuses to read an index that holds
    a name NTFS reads as '.git' ('git~1', '.git '), which is exactly what must be
    reported; and `git diff-index --cached` uses the cache-tree extension, which
    libgit2's diff does not (17 ms against 126 ms on 100,000 files)."""

    workdir: Path
    index_file: Path | None = None

    @classmethod
    def of(cls, repo: Repository, index_file: str | None = None) -> StagedIndex:
        top = workdir(repo)
        if index_file is None:
            return cls(top)
        path = Path(index_file)
        if not path.is_absolute():
            path = top / path
        if not path.is_file():
            raise GitError(
                f"GIT_INDEX_FILE names {index_file}, which is not a file",
                hint="run the check from `git commit` (which sets it), or unset GIT_INDEX_FILE to check the index itself",
            )
        return cls(top, path)

    def git(self, *args: str) -> bytes:
        env = {k: v for k, v in os.environ.items() if k != "GIT_INDEX_FILE"}
        if self.index_file is not None:
            env["GIT_INDEX_FILE"] = str(self.index_file)
        env["GIT_LITERAL_PATHSPECS"] = "1"  # a path named ':(glob)*' is just a name
        return git_bytes(self.workdir, args, env)

    def entries(self) -> dict[str, tuple[str, int]]:
        """Every staged path with its (blob id, mode)."""
        out: dict[str, tuple[str, int]] = {}
        for record in self.git("ls-files", "--stage", "-z").split(b"\0"):
            meta, tab, path = record.partition(b"\t")
            if tab:
                mode, blob, _stage = meta.split()
                out[path_text(path)] = (blob.decode(), int(mode, 8))
        return out


def staged_changes(repo: Repository, index_file: str | None = None) -> list[Change]:
    """What committing the index now would write, against HEAD (renames as delete +
    add), in path order. ``index_file``: see StagedIndex."""
    staged = StagedIndex.of(repo, index_file)
    against = EMPTY_TREE_SHA if repo.head_is_unborn else str(repo.head.target)
    fields = staged.git("diff-index", "--cached", "-z", "--raw", "--no-renames", against).split(b"\0")
    out: list[Change] = []
    unmerged: list[str] = []
    for meta, raw_path in zip(fields[0:-1:2], fields[1::2]):
        old_mode, new_mode, old_id, new_id, letter = meta.lstrip(b":").decode().split()
        path = path_text(raw_path)
        if letter == "U":
            unmerged.append(path)
            continue
        status = {"A": "added", "D": "deleted", "M": "modified", "T": "typechange"}[letter]
        out.append(Change(
            path=path, status=status,
            old_mode=int(old_mode, 8), new_mode=int(new_mode, 8),
            old_id=None if status == "added" else old_id,
            new_id=None if status == "deleted" else new_id,
        ))
    if unmerged:
        paths = sorted(set(unmerged))
        raise GitError(
            "the index has unresolved conflicts: " + ", ".join(paths[:10]),
            hint="resolve them and `git add` the files before committing",
        )
    return out


def read_index_blob(repo: Repository, path: str, index_file: str | None = None) -> bytes | None:
    """The staged bytes of ``path``, or None when the index has no such file."""
    record = StagedIndex.of(repo, index_file).git("ls-files", "--stage", "-z", "--", path).split(b"\0")[0]
    if not record:
        return None
    return bytes(repo[record.split()[1].decode()].read_raw())


def merge_head_shas(repo: Repository) -> list[Sha]:
    """The commits being merged in during a merge (empty otherwise)."""
    marker = Path(repo.path) / "MERGE_HEAD"
    if not marker.is_file():
        return []
    return [Sha(line.strip()) for line in marker.read_text().splitlines() if line.strip()]


def dirty_paths(repo: Repository) -> dict[str, int]:
    """Paths of the work tree that differ from the index or HEAD, with their status
    flags (untracked included, ignored files not)."""
    return {path: int(flags) for path, flags in repo.status(untracked_files="all").items()
            if not flags & pygit2.enums.FileStatus.IGNORED}


def commit_changes(repo: Repository, sha: str, cache: TreeCache | None = None) -> list[Change]:
    """The paths a commit writes, in path order.

    For a merge commit, only paths whose result differs from every parent: a
    path taken unchanged from one parent was written by that parent's commits
    (which a range check sees on their own), not by the merge. ``cache`` (from
    ``new_tree_cache``) shares parsed trees across the commits of a range.
    """
    cache = {} if cache is None else cache
    commit = commit_of(repo, sha)
    new = commit.tree_id.raw
    parents = commit.parents
    if not parents:
        return tree_changes(repo, None, new, cache)
    first = tree_changes(repo, parents[0].tree_id.raw, new, cache)
    if len(parents) == 1:
        return first
    keep = {c.path for c in first}
    for parent in parents[1:]:
        keep &= {c.path for c in tree_changes(repo, parent.tree_id.raw, new, cache)}
    return [c for c in first if c.path in keep]


def tree_changes(repo: Repository, old: bytes | None, new: bytes | None, cache: TreeCache) -> list[Change]:
    """Every path that differs between two trees (raw ids; None: empty), renames as
    delete + add. libgit2's tree diff reads every entry of both trees (18 ms a
    commit on a 100k-file tree); this one skips equal subtrees by id."""
    found: dict[bytes, list[Leaf | None]] = {}
    diff_trees(repo, old, new, b"", found, cache)
    out = []
    for raw_path in sorted(found):
        before, after = found[raw_path]
        if before == after:
            continue
        if before is None:
            status = "added"
        elif after is None:
            status = "deleted"
        elif (before[0] & 0o170000) != (after[0] & 0o170000):
            status = "typechange"
        else:
            status = "modified"
        out.append(Change(
            path=path_text(raw_path),
            status=status,
            old_mode=0 if before is None else before[0],
            new_mode=0 if after is None else after[0],
            old_id=None if before is None else before[1].hex(),
            new_id=None if after is None else after[1].hex(),
        ))
    return out


def changed_files(repo: Repository, start_sha: str, head_sha_: str) -> list[str]:
    """Paths that differ between two commits (both sides of a rename), sorted."""
    if start_sha == head_sha_:
        return []
    old, new = commit_of(repo, start_sha).tree_id.raw, commit_of(repo, head_sha_).tree_id.raw
    return sorted({c.path for c in tree_changes(repo, old, new, new_tree_cache())})


def commits_between(repo: Repository, base: str | None, head: str, *, also_hide: Sequence[str] = ()) -> list[Sha]:
    """Commits reachable from ``head`` and not from ``base`` (nor from any of ``also_hide``), oldest first."""
    walker = repo.walk(resolve(repo, head), SortMode.TOPOLOGICAL | SortMode.REVERSE)
    for hidden in (base, *also_hide):
        if hidden is not None:
            walker.hide(resolve(repo, hidden))
    return [Sha(str(commit.id)) for commit in walker]


def index_paths(repo: Repository) -> list[str]:
    """Every path in the index (tracked, or staged for the first commit), in git's order."""
    return [path for path in run_git(workdir(repo), "ls-files", "-z").split("\0") if path]


def non_merge_commits(repo: Repository, include: Sequence[str], exclude: Sequence[str]) -> list[Sha]:
    """The commits, merges left out, reachable from one of ``include`` and from none of
    ``exclude`` (revisions git names), newest first. The git CLI: the revisions go to
    `git rev-list --stdin`, however many refs a repository has."""
    revisions = "".join(f"{rev}\n" for rev in include) + "".join(f"^{rev}\n" for rev in exclude)
    return [Sha(sha) for sha in
            run_git(common_dir(repo), "rev-list", "--no-merges", "--stdin", input=revisions.encode()).split()]


def patch_ids(repo: Repository, shas: Sequence[str]) -> dict[Sha, str]:
    """commit -> its patch id, for the commits that change something: two commits with
    the same id make the same change (`git patch-id --stable`, which libgit2 lacks)."""
    diffs = run_git(common_dir(repo), "diff-tree", "--stdin", "--root", "-p", "--no-color", "--no-ext-diff",
                    "--no-textconv", input="".join(f"{sha}\n" for sha in shas).encode())
    out = run_git(common_dir(repo), "patch-id", "--stable", input=diffs.encode())
    ids = {}
    for line in out.splitlines():
        patch_id, _, sha = line.partition(" ")
        ids[Sha(sha)] = patch_id
    return ids
