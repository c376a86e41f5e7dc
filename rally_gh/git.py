"""All git access: the only module that imports pygit2.

Small typed functions over a ``pygit2.Repository``. Errors are ``GitError``
with what went wrong and what to do. The git CLI is used only where libgit2
cannot do the job, and each such place says why.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NewType

import pygit2
from pygit2 import Commit, Oid, Repository, Tree
from pygit2.enums import DeltaStatus, FileMode, RepositoryOpenFlag, RepositoryState, SortMode

from rally_gh.errors import GitError

__all__ = ["Repository", "Sha"]

Sha = NewType("Sha", str)

MODE_BLOB = int(FileMode.BLOB)
MODE_EXEC = int(FileMode.BLOB_EXECUTABLE)
MODE_LINK = int(FileMode.LINK)
MODE_GITLINK = int(FileMode.COMMIT)
MODE_TREE = int(FileMode.TREE)

EMPTY_TREE_SHA = Sha("4b825dc642cb6eb9a060e54bf8d69288fbee4904")


# --- Opening and reading ---------------------------------------------------


def open_repo(path: Path | str, *, allow_bare: bool = False) -> Repository:
    """The repository containing ``path``."""
    try:
        repo = Repository(str(path), RepositoryOpenFlag.CROSS_FS)
    except pygit2.GitError:
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise GitError(
                f"{path}: not inside a git repository",
                hint="run rally-gh from a clone of the repository (or `git init` first)",
            ) from None
        repo = Repository(found)
    if repo.is_bare and not allow_bare:
        raise GitError(
            f"{repo.path}: is a bare repository; this command needs a work tree",
            hint="run it in a clone with a checkout, or use `rally-gh check --base A --head B`, which works on bare repositories",
        )
    return repo


def workdir(repo: Repository) -> Path:
    if repo.workdir is None:
        raise GitError(f"{repo.path}: has no work tree")
    return Path(repo.workdir)


def common_dir(repo: Repository) -> Path:
    """The git directory shared by every worktree of the repository."""
    # pygit2 exposes the common dir only indirectly: a linked worktree's
    # gitdir holds a `commondir` file pointing at it.
    gitdir = Path(repo.path)
    marker = gitdir / "commondir"
    if marker.is_file():
        return (gitdir / marker.read_text().strip()).resolve()
    return gitdir.resolve()


def resolve(repo: Repository, rev: str) -> Sha:
    """The commit ``rev`` names."""
    try:
        obj = repo.revparse_single(rev)
        commit = obj.peel(Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        raise GitError(
            f"{rev!r}: no such commit in {repo.path}",
            hint="check the name with `git rev-parse`; in CI, fetch enough history (actions/checkout with fetch-depth: 0)",
        ) from None
    return Sha(str(commit.id))


def commit_of(repo: Repository, sha: str) -> Commit:
    return repo[sha].peel(Commit)


def head_sha(repo: Repository) -> Sha | None:
    """The commit HEAD points at, or None for an unborn branch."""
    if repo.head_is_unborn:
        return None
    return Sha(str(repo.head.target))


def head_branch(repo: Repository) -> str | None:
    """The short name of the checked-out branch, or None when HEAD is detached."""
    if repo.head_is_detached:
        return None
    ref = repo.references.get("HEAD")
    target = ref.target if ref is not None else None
    if isinstance(target, str) and target.startswith("refs/heads/"):
        return target[len("refs/heads/"):]
    return None


def config_value(repo: Repository, key: str) -> str | None:
    try:
        return str(repo.config[key])
    except KeyError:
        return None


def in_progress_operation(repo: Repository) -> str | None:
    """'merge', 'rebase', 'cherry-pick', ... when one is under way, else None."""
    state = repo.state()
    if state == RepositoryState.NONE:
        return None
    return RepositoryState(state).name.lower().replace("_", "-")


def is_shallow(repo: Repository) -> bool:
    return bool(repo.is_shallow)


def read_blob(repo: Repository, rev: str, path: str) -> bytes | None:
    """The bytes of ``path`` at commit ``rev``, or None when it is not a file there."""
    tree = commit_of(repo, resolve(repo, rev)).tree
    try:
        entry = tree[path]
    except KeyError:
        return None
    if entry.filemode not in (MODE_BLOB, MODE_EXEC):
        return None
    return bytes(repo[entry.id].read_raw())


def tracked_paths(repo: Repository, rev: str = "HEAD") -> list[str]:
    """Every file path at ``rev`` (blobs, links and gitlinks), in git's order."""
    if rev == "HEAD" and repo.head_is_unborn:
        return []
    tree = commit_of(repo, resolve(repo, rev)).tree
    out: list[str] = []
    _walk(repo, tree, "", out)
    return out


def _walk(repo: Repository, tree: Tree, prefix: str, out: list[str]) -> None:
    for entry in tree:
        name = prefix + entry.name
        if entry.filemode == MODE_TREE:
            _walk(repo, repo[entry.id], name + "/", out)
        else:
            out.append(name)


def tree_entry_names(repo: Repository, tree: Tree, directory: str) -> list[str]:
    """Names directly inside ``directory`` of ``tree`` ('' is the root); [] if absent."""
    if directory:
        try:
            entry = tree[directory]
        except KeyError:
            return []
        if entry.filemode != MODE_TREE:
            return []
        tree = repo[entry.id]
    return [e.name for e in tree]


# --- Changes: what a commit or the index writes ---------------------------


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


_STATUS = {
    DeltaStatus.ADDED: "added",
    DeltaStatus.DELETED: "deleted",
    DeltaStatus.MODIFIED: "modified",
    DeltaStatus.TYPECHANGE: "typechange",
}


def _changes_of(diff: pygit2.Diff) -> list[Change]:
    out = []
    for delta in diff.deltas:
        status = _STATUS.get(delta.status)
        if status is None:  # unmodified, ignored, untracked: not a write
            continue
        old, new = delta.old_file, delta.new_file
        absent_old = delta.status == DeltaStatus.ADDED
        absent_new = delta.status == DeltaStatus.DELETED
        out.append(
            Change(
                path=new.path if not absent_new else old.path,
                status=status,
                old_mode=0 if absent_old else int(old.mode),
                new_mode=0 if absent_new else int(new.mode),
                old_id=None if absent_old else str(old.id),
                new_id=None if absent_new else str(new.id),
            )
        )
    return out


def _tree_or_empty(repo: Repository, commit: Commit | None) -> Tree:
    if commit is None:
        return repo[repo.TreeBuilder().write()]
    return commit.tree


def staged_changes(repo: Repository) -> list[Change]:
    """What committing the index now would write, against HEAD (renames as delete + add)."""
    index = repo.index
    index.read(False)
    if index.conflicts is not None:
        paths = sorted({(c[0] or c[1] or c[2]).path for c in index.conflicts if any(c)})
        raise GitError(
            "the index has unresolved conflicts: " + ", ".join(paths[:10]),
            hint="resolve them and `git add` the files before committing",
        )
    head = None if repo.head_is_unborn else repo.head.peel(Commit)
    diff = index.diff_to_tree(_tree_or_empty(repo, head))
    # diff_to_tree diffs the tree (old) to the index (new), as `git diff --cached`.
    return _changes_of(diff)




def commit_changes(repo: Repository, commit: Commit) -> list[Change]:
    """The paths a commit writes.

    For a merge commit, only paths whose result differs from every parent: a
    path taken unchanged from one parent was written by that parent's commits
    (which a range check sees on their own), not by the merge.
    """
    parents = commit.parents
    if not parents:
        return _changes_of(_tree_or_empty(repo, None).diff_to_tree(commit.tree))
    first = _changes_of(parents[0].tree.diff_to_tree(commit.tree))
    if len(parents) == 1:
        return first
    keep = {c.path for c in first}
    for parent in parents[1:]:
        keep &= {c.path for c in _changes_of(parent.tree.diff_to_tree(commit.tree))}
    return [c for c in first if c.path in keep]


def commits_between(repo: Repository, base: str | None, head: str) -> list[Commit]:
    """Commits reachable from ``head`` and not from ``base``, oldest first."""
    walker = repo.walk(resolve(repo, head), SortMode.TOPOLOGICAL | SortMode.REVERSE)
    if base is not None:
        walker.hide(resolve(repo, base))
    return list(walker)


def merge_base(repo: Repository, a: str, b: str) -> Sha | None:
    found = repo.merge_base(resolve(repo, a), resolve(repo, b))
    return None if found is None else Sha(str(found))


def blob_text(repo: Repository, blob_id: str, limit: int = 4096) -> bytes:
    """The first ``limit`` bytes of a blob (a symlink's target, say)."""
    return bytes(repo[blob_id].read_raw()[:limit])


# --- The git CLI, where libgit2 falls short --------------------------------


def run_git(cwd: Path | str, *args: str, env: dict[str, str] | None = None,
            input: bytes | None = None, check: bool = True) -> str:
    """Run the git CLI (only for what libgit2 lacks: sparse checkout, hooks-free
    worktree plumbing, http pushes through credential helpers). Hooks are
    disabled so a hook planted by a teammate never runs in our git commands."""
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("GIT_TERMINAL_PROMPT", "0")
    cmd = ["git", "-c", "core.hooksPath=/dev/null", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, input=input,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if check and proc.returncode != 0:
        raise GitError(
            f"`git {' '.join(args)}` failed in {cwd} (exit {proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout.decode(errors="replace")


def iter_paths_in(repo: Repository, commit: Commit, prefix: str) -> Iterator[str]:
    """Every file path under directory ``prefix`` at ``commit``."""
    try:
        entry = commit.tree[prefix] if prefix else None
    except KeyError:
        return
    tree = commit.tree if entry is None else repo[entry.id]
    if not isinstance(tree, Tree):
        return
    out: list[str] = []
    _walk(repo, tree, prefix + "/" if prefix else "", out)
    yield from out


def short(sha: str) -> str:
    return sha[:10]


def oid(sha: str) -> Oid:
    return Oid(hex=sha)


def parent_dirs(path: str) -> Sequence[str]:
    """'' and every directory above ``path``: 'a/b/c' -> ['', 'a', 'a/b']."""
    parts = path.split("/")[:-1]
    return [""] + ["/".join(parts[: i + 1]) for i in range(len(parts))]
