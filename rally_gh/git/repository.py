"""Opening a repository and reading it: commits, trees, blobs, HEAD, config.

Small typed functions over a ``pygit2.Repository``, which callers outside this
package hold as an opaque handle. Errors are ``GitError`` with what went wrong
and what to do. ``run_git`` runs the git CLI where libgit2 cannot do the job
(each caller says why), with hooks and file-system monitors off.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NewType

import pygit2
from pygit2 import Commit, Oid, Repository, Tree
from pygit2.enums import FileMode, RepositoryOpenFlag, RepositoryState

from rally_gh import process
from rally_gh.errors import GitError

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


def is_bare(repo: Repository) -> bool:
    return bool(repo.is_bare)


def git_dir(repo: Repository) -> Path:
    """The repository's git directory (a linked worktree's own, below the common one)."""
    return Path(repo.path)


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


def user_identity(repo: Repository, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``user.name`` and ``user.email`` as git finds them for a commit in ``repo``, read from the
    files of each configuration level, as ``environ`` (not this process's start) names them: the
    worktree's and the repository's config, the global one (``GIT_CONFIG_GLOBAL``, else
    ``$XDG_CONFIG_HOME/git/config`` and ``~/.gitconfig``), then the system's (unless
    ``GIT_CONFIG_NOSYSTEM``). Agents get it: their own home is empty."""
    home = environ.get("HOME")
    files = [Path(repo.path) / "config.worktree", common_dir(repo) / "config"]
    if environ.get("GIT_CONFIG_GLOBAL"):
        files.append(Path(environ["GIT_CONFIG_GLOBAL"]))
    elif home:
        files.append(Path(home) / ".gitconfig")
        xdg = environ.get("XDG_CONFIG_HOME") or str(Path(home) / ".config")
        files.append(Path(xdg) / "git" / "config")
    if not environ.get("GIT_CONFIG_NOSYSTEM"):
        files.append(Path(environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig"))
    found: dict[str, str] = {}
    for path in files:  # the most specific level first: the first value found wins
        if not path.is_file():
            continue
        try:
            config = pygit2.Config(str(path))
            for key in ("user.name", "user.email"):
                if key not in found and key in config:
                    found[key] = str(config[key])
        except (pygit2.GitError, ValueError, OSError):
            continue  # a file git could not read either gives it no identity
    return found.get("user.name") or None, found.get("user.email") or None


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
    """The short name of the checked-out branch, or None when HEAD is detached.
    During a rebase (HEAD detached on purpose), the branch being rebased."""
    if repo.head_is_detached:
        for marker in ("rebase-merge/head-name", "rebase-apply/head-name"):
            path = Path(repo.path) / marker
            if path.is_file():
                name = path.read_text().strip()
                return name[len("refs/heads/"):] if name.startswith("refs/heads/") else None
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
        name = prefix + (entry.name or "")
        if entry.filemode == MODE_TREE:
            _walk(repo, repo[entry.id].peel(Tree), name + "/", out)
        else:
            out.append(name)


def entry_names_at(repo: Repository, sha: str | None) -> Callable[[str], list[str]]:
    """A function naming what is directly inside a directory at commit ``sha`` ('' is
    the root; [] when it is absent or not a directory). ``sha`` None: an unborn
    HEAD, where nothing is. The commit's tree is looked up once for every call."""
    root = None if sha is None else commit_of(repo, sha).tree

    def names(directory: str) -> list[str]:
        if root is None:
            return []
        tree = root
        if directory:
            try:
                entry = root[directory]
            except KeyError:
                return []
            if entry.filemode != MODE_TREE:
                return []
            tree = repo[entry.id].peel(Tree)
        return [e.name or "" for e in tree]

    return names


def entry_at(repo: Repository, sha: str, path: str) -> tuple[str, int] | None:
    """(blob id, mode) of ``path`` at commit ``sha``, or None."""
    try:
        entry = commit_of(repo, sha).tree[path]
    except KeyError:
        return None
    return str(entry.id), int(entry.filemode)


def blob_text(repo: Repository, blob_id: str, limit: int = 4096) -> bytes:
    """The first ``limit`` bytes of a blob (a symlink's target, say)."""
    return bytes(repo[blob_id].read_raw()[:limit])


def merge_base(repo: Repository, a: str, b: str) -> Sha | None:
    found = repo.merge_base(resolve(repo, a), resolve(repo, b))
    return None if found is None else Sha(str(found))


def object_exists(repo: Repository, sha: str) -> bool:
    try:
        return oid(sha) in repo.odb
    except ValueError:
        return False


def is_commit(repo: Repository, sha: str) -> bool:
    """True when ``sha`` names a commit here (not a tree, blob or tag: a record read from an artifact may)."""
    try:
        return isinstance(repo[oid(sha)], Commit)
    except (KeyError, ValueError):
        return False


def is_ancestor(repo: Repository, ancestor: str, descendant: str) -> bool:
    """True when ``ancestor`` is ``descendant`` or one of its ancestors."""
    return ancestor == descendant or bool(repo.descendant_of(oid(descendant), oid(ancestor)))


def hooks_dir(repo: Repository) -> Path:
    """Where git looks for hooks: core.hooksPath if set, else <common dir>/hooks."""
    configured = config_value(repo, "core.hooksPath")
    if configured:
        base = Path(repo.workdir) if repo.workdir else common_dir(repo)
        return (base / os.path.expanduser(configured)).resolve()
    return common_dir(repo) / "hooks"


def short(sha: str) -> str:
    return sha[:10]


def oid(sha: str) -> Oid:
    return Oid(hex=sha)


# --- Who writes a commit ------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who writes a commit (a replay, a record). A fixed ``time`` makes its id reproducible."""

    name: str
    email: str
    time: int | None = None  # seconds since the epoch; None: when the commit is written
    offset: int = 0  # minutes east of UTC


RALLY_COMMITTER = Identity("rally-gh", "rally-gh@users.noreply.github.com")


def signature(who: Identity) -> pygit2.Signature:
    if who.time is None:
        return pygit2.Signature(who.name, who.email)
    return pygit2.Signature(who.name, who.email, who.time, who.offset)


# --- The git CLI, where libgit2 falls short --------------------------------


def run_git(cwd: Path | str, *args: str, env: dict[str, str] | None = None,
            input: bytes | None = None, check: bool = True) -> str:
    """Run the git CLI (only for what libgit2 lacks: sparse checkout, hooks-free
    worktree plumbing, http pushes through credential helpers). No hook, no
    file-system monitor and no replace object: nothing a teammate planted
    runs in, or changes what is read by, our git commands."""
    return git_bytes(cwd, args, env, input, check).decode(errors="replace")


def clean_env() -> dict[str, str]:
    """This process's environment without the variables that point git at another
    repository, index or work tree than the one in ``cwd`` (git sets them for hooks)."""
    return {k: v for k, v in os.environ.items() if k not in _LOCATION_VARIABLES}


_LOCATION_VARIABLES = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR",
                                 "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_PREFIX"})


def git_bytes(cwd: Path | str, args: Sequence[str], env: dict[str, str] | None = None,
              input: bytes | None = None, check: bool = True) -> bytes:
    full_env = clean_env() if env is None else dict(env)
    full_env.setdefault("GIT_TERMINAL_PROMPT", "0")
    # No replace object (a refs/replace/* ref would change what every object id reads as), no
    # hook and no file-system monitor: nothing a teammate planted or configured runs or counts.
    full_env["GIT_NO_REPLACE_OBJECTS"] = "1"
    cmd = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", *args]
    proc = process.run(cmd, cwd=cwd, env=full_env, input=input)
    if check and proc.returncode != 0:
        raise GitError(
            f"`git {' '.join(args)}` failed in {cwd} (exit {proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout
