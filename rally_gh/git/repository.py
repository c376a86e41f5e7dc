"""All git access: the only module that imports pygit2.

Small typed functions over a ``pygit2.Repository``. Errors are ``GitError``
with what went wrong and what to do. The git CLI is used only where libgit2
cannot do the job, and each such place says why.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NewType

import pygit2
from pygit2 import Commit, Oid, Repository, Tree
from pygit2.enums import FileMode, RepositoryOpenFlag, RepositoryState, SortMode

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
        name = prefix + (entry.name or "")
        if entry.filemode == MODE_TREE:
            _walk(repo, repo[entry.id].peel(Tree), name + "/", out)
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
        tree = repo[entry.id].peel(Tree)
    return [e.name or "" for e in tree]


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
        return _git_bytes(self.workdir, args, env)

    def entries(self) -> dict[str, tuple[str, int]]:
        """Every staged path with its (blob id, mode)."""
        out: dict[str, tuple[str, int]] = {}
        for record in self.git("ls-files", "--stage", "-z").split(b"\0"):
            meta, tab, path = record.partition(b"\t")
            if tab:
                mode, blob, _stage = meta.split()
                out[_text(path)] = (blob.decode(), int(mode, 8))
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
        path = _text(raw_path)
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


def commit_changes(repo: Repository, commit: Commit, cache: TreeCache | None = None) -> list[Change]:
    """The paths a commit writes, in path order.

    For a merge commit, only paths whose result differs from every parent: a
    path taken unchanged from one parent was written by that parent's commits
    (which a range check sees on their own), not by the merge. ``cache`` (from
    ``new_tree_cache``) shares parsed trees across the commits of a range.
    """
    cache = {} if cache is None else cache
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
    found: dict[bytes, list[_Leaf | None]] = {}
    _diff(repo, old, new, b"", found, cache)
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
            path=_text(raw_path),
            status=status,
            old_mode=0 if before is None else before[0],
            new_mode=0 if after is None else after[0],
            old_id=None if before is None else before[1].hex(),
            new_id=None if after is None else after[1].hex(),
        ))
    return out


def new_tree_cache() -> TreeCache:
    return {}


def commits_between(repo: Repository, base: str | None, head: str, *, also_hide: Sequence[str] = ()) -> list[Commit]:
    """Commits reachable from ``head`` and not from ``base`` (nor from any of ``also_hide``), oldest first."""
    walker = repo.walk(resolve(repo, head), SortMode.TOPOLOGICAL | SortMode.REVERSE)
    for hidden in (base, *also_hide):
        if hidden is not None:
            walker.hide(resolve(repo, hidden))
    return list(walker)


def merge_base(repo: Repository, a: str, b: str) -> Sha | None:
    found = repo.merge_base(resolve(repo, a), resolve(repo, b))
    return None if found is None else Sha(str(found))


def blob_text(repo: Repository, blob_id: str, limit: int = 4096) -> bytes:
    """The first ``limit`` bytes of a blob (a symlink's target, say)."""
    return bytes(repo[blob_id].read_raw()[:limit])


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


def entry_at(repo: Repository, sha: str, path: str) -> tuple[str, int] | None:
    """(blob id, mode) of ``path`` at commit ``sha``, or None."""
    try:
        entry = commit_of(repo, sha).tree[path]
    except KeyError:
        return None
    return str(entry.id), int(entry.filemode)


def hooks_dir(repo: Repository) -> Path:
    """Where git looks for hooks: core.hooksPath if set, else <common dir>/hooks."""
    configured = config_value(repo, "core.hooksPath")
    if configured:
        base = Path(repo.workdir) if repo.workdir else common_dir(repo)
        return (base / os.path.expanduser(configured)).resolve()
    return common_dir(repo) / "hooks"


def dirty_paths(repo: Repository) -> dict[str, int]:
    """Paths of the work tree that differ from the index or HEAD, with their status
    flags (untracked included, ignored files not)."""
    return {path: int(flags) for path, flags in repo.status(untracked_files="all").items()
            if not flags & pygit2.enums.FileStatus.IGNORED}


# --- The git CLI, where libgit2 falls short --------------------------------


def run_git(cwd: Path | str, *args: str, env: dict[str, str] | None = None,
            input: bytes | None = None, check: bool = True) -> str:
    """Run the git CLI (only for what libgit2 lacks: sparse checkout, hooks-free
    worktree plumbing, http pushes through credential helpers). Hooks are
    disabled so a hook planted by a teammate never runs in our git commands."""
    return _git_bytes(cwd, args, env, input, check).decode(errors="replace")


def _clean_env() -> dict[str, str]:
    """This process's environment without the variables that point git at another
    repository, index or work tree than the one in ``cwd`` (git sets them for hooks)."""
    return {k: v for k, v in os.environ.items() if k not in _LOCATION_VARIABLES}


_LOCATION_VARIABLES = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR",
                                 "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_PREFIX"})


def _git_bytes(cwd: Path | str, args: Sequence[str], env: dict[str, str] | None = None,
               input: bytes | None = None, check: bool = True) -> bytes:
    full_env = _clean_env() if env is None else dict(env)
    full_env.setdefault("GIT_TERMINAL_PROMPT", "0")
    # No hook and no file-system monitor: nothing a teammate planted or configured runs.
    cmd = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, input=input,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if check and proc.returncode != 0:
        raise GitError(
            f"`git {' '.join(args)}` failed in {cwd} (exit {proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout


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


# --- The git directory's controls (orchestrator) ---------------------------
#
# Agents commit, so the common git directory stays writable for them. Some of
# its files make git run programs: config (filter drivers, core.fsmonitor,
# core.sshCommand, credential helpers, aliases), info/attributes (which files a
# filter applies to) and hooks/. A run keeps a copy taken before the agents
# start and puts it back before any git command of its own, so nothing an agent
# plants there runs outside its sandbox, or later in the user's own git.

GitDirControls = dict[str, tuple[int, bytes]]  # path in the common dir -> (mode, content)


def git_dir_controls(repo: Repository) -> GitDirControls:
    """The files of the common git directory that can make git run programs."""
    common = common_dir(repo)
    found = [common / "config", common / "config.worktree", common / "info" / "attributes",
             *common.glob("worktrees/*/config.worktree")]
    hooks = common / "hooks"
    if hooks.is_dir():
        found += [p for p in hooks.rglob("*") if not p.is_dir()]
    out: GitDirControls = {}
    for path in found:
        try:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                data = os.readlink(path).encode()
            else:
                data = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        except FileNotFoundError:
            continue
        out[path.relative_to(common).as_posix()] = (info.st_mode, data)
    return out


def restore_git_dir_controls(repo: Repository, kept: GitDirControls) -> list[str]:
    """Put the controls back as ``kept`` has them; the paths that had changed."""
    common = common_dir(repo)
    now = git_dir_controls(repo)
    changed = sorted(p for p in set(now) | set(kept) if now.get(p) != kept.get(p))
    for rel in changed:
        path = common / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # a directory put where git reads a file
        elif path.is_symlink() or path.exists():
            path.unlink()
        if rel in kept:
            mode, data = kept[rel]
            if stat.S_ISLNK(mode):
                os.symlink(data.decode(), path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                path.chmod(stat.S_IMODE(mode))
    return changed


# --- Worktrees and branches (orchestrator) ---------------------------------


def rally_worktrees_root(repo: Repository) -> Path:
    """Where a run's worktrees live, one folder per repository: outside the tracked
    tree (no teammate sees another's checkout, `git status` stays clean) and
    outside the git directory (Claude Code refuses to write anywhere below a
    ``.git`` folder). ``$RALLY_WORKTREES``, else the runner's temporary folder in
    GitHub Actions, else ``$XDG_CACHE_HOME`` (``~/.cache``) ``/rally-gh/worktrees``."""
    common = common_dir(repo).resolve()
    base = os.environ.get("RALLY_WORKTREES")
    if not base and os.environ.get("RUNNER_TEMP"):
        base = os.path.join(os.environ["RUNNER_TEMP"], "rally-gh", "worktrees")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(cache, "rally-gh", "worktrees")
    name = common.parent.name if common.name == ".git" else common.name.removesuffix(".git")
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40].lstrip(".") or "repo"
    return Path(base) / f"{readable}-{hashlib.sha256(os.fsencode(common)).hexdigest()[:12]}"


def add_worktree(repo: Repository, path: Path, branch: str | None, start_sha: str,
                 sparse_dirs: Sequence[str] | None = None) -> Path:
    """A worktree at ``path`` on ``branch`` (created at ``start_sha`` unless it
    exists: a resumed teammate keeps what it committed), or detached when
    ``branch`` is None. ``sparse_dirs`` limits the checkout to those directories
    (cone mode; the root's own files are always there)."""
    register_worktree(repo, path, branch, start_sha)
    populate_worktree(path, sparse_dirs)
    return path


def register_worktree(repo: Repository, path: Path, branch: str | None, start_sha: str) -> None:
    """The first half of ``add_worktree``: git's records and the branch, no files.
    Safe to call from several threads at once.

    Written here, as libgit2's git_worktree_add writes them, rather than by `git
    worktree add --no-checkout`, which starts three gits (15 ms alone, 70 ms on
    a busy machine) and fails when another runs at once ("failed to read
    worktrees/x/commondir"): so 8 worktrees were registered one after another.
    The records are gitrepository-layout(5)'s: ``worktrees/<id>/`` in the common
    directory holding ``gitdir`` (the checkout's ``.git`` file), ``commondir`` and
    ``HEAD``, ``locked`` while they are being written (so that no `git worktree
    prune` takes them half made), and the checkout's ``.git`` file pointing back.
    The checkout itself (``populate_worktree``) is git's: libgit2 has no sparse
    checkout (libgit2 issue 2263) and is twice as slow on a full one.
    """
    if path.exists():
        remove_worktree(repo, path)
    if branch is not None and ref_sha(repo, f"refs/heads/{branch}") is None:
        repo.references.create(f"refs/heads/{branch}", oid(start_sha))
    path.mkdir(parents=True)
    admin = _new_worktree_record(common_dir(repo) / "worktrees", path.name)
    try:
        (admin / "gitdir").write_text(f"{path.resolve() / '.git'}\n")
        (admin / "commondir").write_text("../..\n")
        (admin / "HEAD").write_text(f"ref: refs/heads/{branch}\n" if branch is not None else f"{start_sha}\n")
        (path / ".git").write_text(f"gitdir: {admin.resolve()}\n")
    finally:
        (admin / "locked").unlink()


def _new_worktree_record(records: Path, name: str) -> Path:
    """A new, locked ``worktrees/<id>`` directory, named after the checkout as git names it."""
    base = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).lstrip(".") or "worktree"
    records.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        admin = records / (base if n == 0 else f"{base}{n}")
        try:
            admin.mkdir()
        except FileExistsError:
            continue
        (admin / "locked").write_text("initializing\n")
        return admin
    raise AssertionError("unreachable")


def populate_worktree(path: Path, sparse_dirs: Sequence[str] | None = None) -> None:
    """Check out a registered worktree's files: all of them, or only ``sparse_dirs``
    (cone mode: those directories whole, and the files directly in the root and
    in every directory above them).

    A sparse checkout is git's (`read-tree` honours the patterns and marks every
    path outside them skip-worktree, which `git add --all` and `git commit -a`
    then leave alone), but its patterns are written here and its switch given on
    the command line: `git sparse-checkout set` writes the repository's config
    (extensions.worktreeConfig) and the worktree's config.worktree, which a run
    guards against agents and puts back while other teammates are being spawned,
    and it costs one more git."""
    if sparse_dirs is None:
        # A --no-checkout worktree shows every file as deleted until read-tree fills it in.
        run_git(path, "read-tree", "-mu", "HEAD")
        return
    patterns = _worktree_git_dir(path) / "info" / "sparse-checkout"
    patterns.parent.mkdir(exist_ok=True)
    patterns.write_text(cone_patterns(sparse_dirs))
    run_git(path, "-c", "core.sparseCheckout=true", "-c", "core.sparseCheckoutCone=true", "read-tree", "-mu", "HEAD")


def cone_patterns(dirs: Sequence[str]) -> str:
    """The sparse-checkout file of cone mode for ``dirs``, as `git sparse-checkout set
    --cone` writes it: every directory above them with its own files only, then
    each of them whole (one inside another is covered by it)."""
    wanted = sorted(set(dirs))
    whole = [d for d in wanted if not any(d.startswith(other + "/") for other in wanted)]
    above = sorted({"/".join(d.split("/")[:i]) for d in whole for i in range(1, d.count("/") + 1)} - set(whole))
    lines = ["/*", "!/*/"]
    for d in above:
        lines += [f"/{_cone_escape(d)}/", f"!/{_cone_escape(d)}/*/"]
    lines += [f"/{_cone_escape(d)}/" for d in whole]
    return "\n".join(lines) + "\n"


def _cone_escape(directory: str) -> str:
    return "".join("\\" + c if c in "*?[\\" else c for c in directory)


def _worktree_git_dir(path: Path) -> Path:
    """The git directory of the linked worktree at ``path`` (its ``.git`` file's target)."""
    line = (path / ".git").read_text().strip()
    if not line.startswith("gitdir: "):
        raise GitError(f"{path / '.git'}: not a linked worktree's .git file")
    return (path / line[len("gitdir: "):]).resolve()


def remove_worktree(repo: Repository, path: Path) -> None:
    """Remove the worktree at ``path`` whatever state it is in (dirty, locked, half made)."""
    run_git(common_dir(repo), "worktree", "remove", "--force", "--force", str(path), check=False)
    if path.exists():  # not registered (a crash between mkdir and add): just files
        shutil.rmtree(path, ignore_errors=True)
    run_git(common_dir(repo), "worktree", "prune")


def prune_worktrees(repo: Repository, keep_runs: Sequence[str] = ()) -> list[Path]:
    """Remove the rally worktrees of every run not in ``keep_runs`` (leftovers of a
    crashed run), and git's records of worktrees whose folder is gone."""
    removed: list[Path] = []
    root = rally_worktrees_root(repo)
    if root.is_dir():
        for run_dir in sorted(root.iterdir()):
            if run_dir.name in keep_runs:
                continue
            for tree in sorted(run_dir.iterdir()) if run_dir.is_dir() else []:
                remove_worktree(repo, tree)
                removed.append(tree)
            if run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()
        if not any(root.iterdir()):
            root.rmdir()
    scratch = common_dir(repo) / "rally" / "verify"  # integrate.verify_commit's, if it was killed
    if not keep_runs and scratch.is_dir():
        for holder in sorted(scratch.iterdir()):
            remove_worktree(repo, holder / "tree")
            shutil.rmtree(holder, ignore_errors=True)
            removed.append(holder / "tree")
    run_git(common_dir(repo), "worktree", "prune")
    return removed


def commit_all(worktree_path: Path, message: str, author: tuple[str, str],
               scratch: Sequence[str] = ()) -> Sha | None:
    """Commit everything the agent left in ``worktree_path`` (staged, modified,
    deleted, untracked but not ignored) on its HEAD; the new HEAD, or None when
    there was nothing to commit. ``scratch``: name prefixes of top-level files
    the agent's CLI keeps for itself, left out unless HEAD already tracks them.

    Staged by the git CLI (`git add --all --sparse`), not libgit2's add_all,
    which knows nothing of sparse checkouts: it takes every path a sparse
    checkout leaves out (git's skip-worktree bit) for deleted, and the commit
    would remove the rest of the repository. git leaves those paths as they
    are, and ``--sparse`` still takes what the agent wrote outside the
    checkout's directories, so nothing it produced is lost. The commit itself
    is written by pygit2: no hook, no signing program, no editor."""
    run_git(worktree_path, "add", "--all", "--sparse")
    wt = Repository(str(worktree_path))
    if scratch:
        tracked = set() if wt.head_is_unborn else {e.name for e in wt[wt.head.target].peel(Commit).tree}
        staged = _git_bytes(worktree_path, ["ls-files", "-z"]).split(b"\0")
        tops = {_text(path.split(b"/", 1)[0]) for path in staged if path}
        drop = sorted(top for top in tops if top not in tracked and top.startswith(tuple(scratch)))
        if drop:
            run_git(worktree_path, "rm", "-r", "-q", "--cached", "--sparse", "--ignore-unmatch", "--", *drop,
                    env={**_clean_env(), "GIT_LITERAL_PATHSPECS": "1"})
    tree_id = Oid(hex=run_git(worktree_path, "write-tree").strip())
    parents = [] if wt.head_is_unborn else [wt.head.target]
    if parents and wt[parents[0]].peel(Commit).tree_id == tree_id:
        return None
    who = pygit2.Signature(author[0], author[1])
    return Sha(str(wt.create_commit("HEAD", who, who, message, tree_id, parents)))


def worktree_head(worktree_path: Path) -> Sha | None:
    return head_sha(Repository(str(worktree_path)))


def changed_files(repo: Repository, start_sha: str, head_sha_: str) -> list[str]:
    """Paths that differ between two commits (both sides of a rename), sorted."""
    if start_sha == head_sha_:
        return []
    old, new = commit_of(repo, start_sha).tree_id.raw, commit_of(repo, head_sha_).tree_id.raw
    return sorted({c.path for c in tree_changes(repo, old, new, new_tree_cache())})


def write_record_commit(repo: Repository, filename: str, data: bytes, message: str) -> Sha:
    """A parentless commit holding one file: how split CI jobs hand a result to
    each other through a ref on the remote (the only channel they share)."""
    builder = repo.TreeBuilder()
    builder.insert(filename, repo.create_blob(data), MODE_BLOB)
    who = pygit2.Signature("rally-gh", "rally-gh@users.noreply.github.com")
    return Sha(str(repo.create_commit(None, who, who, message, builder.write(), [])))


# --- Replaying commits in memory (integration) ---
#
# rally_gh/integrate.py replays teammates' commits onto the integration tip by
# writing blobs, trees and commits to the object database only: no work tree,
# no index. PERF-NOTES: libgit2's merge_trees and in-memory rebase cost 6-9 ms
# a commit on a 20k-file tree however small the change, so the three-way merge
# here is ours. It looks only at the paths the commit touched (its diff against
# its parent) and rewrites only the directories above them, reusing every other
# subtree by id. Imports are local to this section so that it stays one block.

import base64 as _base64
import operator as _operator
import re as _re
import unicodedata as _unicodedata
from contextlib import contextmanager as _contextmanager

from rally_gh.ownership.paths import hostile_reason as _hostile_reason

_ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class Identity:
    """Who writes the replayed commits. A fixed ``time`` makes their ids reproducible."""

    name: str
    email: str
    time: int | None = None  # seconds since the epoch; None: when the commit is written
    offset: int = 0  # minutes east of UTC


RALLY_COMMITTER = Identity("rally-gh", "rally-gh@users.noreply.github.com")


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


def object_exists(repo: Repository, sha: str) -> bool:
    try:
        return oid(sha) in repo.odb
    except ValueError:
        return False


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


def is_ancestor(repo: Repository, ancestor: str, descendant: str) -> bool:
    """True when ``ancestor`` is ``descendant`` or one of its ancestors."""
    return ancestor == descendant or bool(repo.descendant_of(oid(descendant), oid(ancestor)))


def ref_sha(repo: Repository, ref_name: str) -> Sha | None:
    """The commit a full ref name (``refs/heads/x``) points at, or None when it does not exist."""
    ref = repo.references.get(ref_name)
    if ref is None:
        return None
    try:
        return Sha(str(ref.peel(Commit).id))
    except (pygit2.GitError, KeyError, ValueError):
        return None  # points at something missing or not a commit: as good as absent


def commit_summaries(repo: Repository, start: str, head: str) -> list[CommitSummary]:
    """Commits reachable from ``head`` and not from ``start``, oldest first (parents before children)."""
    return [
        CommitSummary(Sha(str(c.id)), tuple(Sha(str(p)) for p in c.parent_ids),
                      c.message.split("\n", 1)[0])
        for c in commits_between(repo, start, head)
    ]


def signature(who: Identity) -> pygit2.Signature:
    if who.time is None:
        return pygit2.Signature(who.name, who.email)
    return pygit2.Signature(who.name, who.email, who.time, who.offset)


# Trees are read and written as raw bytes, parsed once into dicts and cached by
# id for the whole integration. libgit2's own tree-to-tree diff took 27 ms a
# commit on the benchmark (it reads every entry of both trees), and pygit2
# objects cost microseconds an entry; the parsing here is all in C (one regex,
# dict and zip), and the comparison of two parsed trees skips equal subtrees.
_Entry = tuple[bytes, bytes, bytes, bytes]  # (raw entry, mode in octal digits, name, raw 20-byte id)
_Entries = dict[bytes, _Entry]  # by name, in the tree's order
_Leaf = tuple[int, bytes]  # (mode, raw id) of a non-tree entry
TreeCache = dict[bytes, _Entries]  # raw tree id -> its entries
_ENTRY = _re.compile(rb"((\d+) ([^\0]*)\0(.{20}))", _re.S)
_NAME_OF = _operator.itemgetter(2)
_RAW_OF = _operator.itemgetter(0)
_TREE = b"40000"
_CACHE_LIMIT = 20_000  # trees; emptied when full, which bounds it to a few hundred MB


@_contextmanager
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


def _entries(repo: Repository, tree_id: bytes, cache: TreeCache) -> _Entries:
    found = cache.get(tree_id)
    if found is None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        _, raw = repo.odb.read(Oid(raw=tree_id))
        parsed = _ENTRY.findall(raw)
        found = dict(zip(map(_NAME_OF, parsed), parsed))
        cache[tree_id] = found
    return found


def _entry(name: bytes, mode: int, id_: bytes) -> _Entry:
    digits = b"%o" % mode
    return (digits + b" " + name + b"\0" + id_, digits, name, id_)


def _leaf(entry: _Entry | None) -> _Leaf | None:
    """A non-tree entry as (mode, id); None for a directory or nothing."""
    if entry is None or entry[1] == _TREE:
        return None
    return (int(entry[1], 8), entry[3])


def _write_tree(repo: Repository, entries: _Entries, reorder: bool, cache: TreeCache) -> bytes:
    """Write ``entries`` as a tree; ``reorder`` when names were added (git sorts a
    directory's name as if it ended with '/')."""
    if reorder:
        entries = dict(sorted(entries.items(), key=lambda kv: kv[0] + b"/" if kv[1][1] == _TREE else kv[0]))
    new_id = repo.odb.write(pygit2.enums.ObjectType.TREE, b"".join(map(_RAW_OF, entries.values()))).raw
    cache[new_id] = entries
    return new_id


def _path_problem(path: bytes) -> str | None:
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    reason = _hostile_reason(text)
    if reason is None and any(seg in ("", ".") for seg in text.split("/")):
        reason = "has an empty or '.' segment"
    return reason


def _text(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def _folded(names: Sequence[bytes]) -> list[str]:
    """Each name as macOS and Windows compare them (Unicode NFC, case folded), in
    two C calls for the whole directory rather than two per name."""
    joined = _unicodedata.normalize("NFC", b"\0".join(names).decode("utf-8", "surrogateescape")).casefold()
    return joined.split("\0")


def _leaf_at(repo: Repository, root: bytes, path: bytes, cache: TreeCache) -> _Leaf | None:
    """The non-tree entry at ``path``; None when absent, a directory, or below a file."""
    *dirs, name = path.split(b"/")
    tree = root
    for d in dirs:
        entry = _entries(repo, tree, cache).get(d)
        if entry is None or entry[1] != _TREE:
            return None
        tree = entry[3]
    return _leaf(_entries(repo, tree, cache).get(name))


def _diff(repo: Repository, a: bytes | None, b: bytes | None, prefix: bytes,
          out: dict[bytes, list[_Leaf | None]], cache: TreeCache) -> None:
    """Every non-tree path that differs between trees ``a`` and ``b`` (None: empty),
    as out[path] = [entry in a, entry in b]. A path that is a file on one side and
    a directory on the other is a deletion of the one and additions of the other."""
    ea = _entries(repo, a, cache) if a is not None else {}
    eb = _entries(repo, b, cache) if b is not None else {}
    for name in {name for name, _ in ea.items() ^ eb.items()}:
        x, y = ea.get(name), eb.get(name)
        x_tree = x[3] if x is not None and x[1] == _TREE else None
        y_tree = y[3] if y is not None and y[1] == _TREE else None
        if x_tree is not None or y_tree is not None:
            _diff(repo, x_tree, y_tree, prefix + name + b"/", out, cache)
        if _leaf(x) is not None:
            out.setdefault(prefix + name, [None, None])[0] = _leaf(x)
        if _leaf(y) is not None:
            out.setdefault(prefix + name, [None, None])[1] = _leaf(y)


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
    touched: dict[bytes, list[_Leaf | None]] = {}  # path -> [base, theirs]
    _diff(repo, base_root, theirs_root, b"", touched, cache)
    hostile = tuple((_text(p), why) for p, (_, theirs) in touched.items()
                    if theirs is not None and (why := _path_problem(p)) is not None)
    if hostile:
        return ReplayedCommit(None, hostile=hostile)
    if not touched:
        tree_id = onto.tree_id.raw  # empty from the start: kept
    else:
        edits: dict[bytes, _Leaf | None] = {}
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
        tree_id = new_root if new_root is not None else _write_tree(repo, {}, False, cache)
        if tree_id == onto.tree_id.raw:
            return ReplayedCommit(None, became_empty=True)
    kwargs = {} if commit.message_encoding is None else {"encoding": commit.message_encoding}
    new_id = repo.create_commit(None, commit.author, signature(committer), commit.raw_message,
                                Oid(raw=tree_id), [onto.id], **kwargs)
    return ReplayedCommit(Sha(str(new_id)))


_UNCHANGED = object()  # the merge keeps what the tip has at this path


def _merge_leaf(repo: Repository, path: bytes, base: _Leaf | None, ours: _Leaf | None,
                theirs: _Leaf | None, conflicts: list[PathConflict]) -> object:
    """The merged entry at ``path`` (None: deleted), ``_UNCHANGED``, or a conflict appended."""
    if ours == theirs:
        return _UNCHANGED
    if ours == base:
        return theirs
    kind = _conflict_kind(repo, base, ours, theirs)
    if kind is not None:
        merged: _Leaf | str = kind
    else:
        assert ours is not None and theirs is not None
        merged = _merge_regular(repo, path, base, ours, theirs)
    if isinstance(merged, str):
        conflicts.append(PathConflict(_text(path), merged))
        return _UNCHANGED
    return merged


def _conflict_kind(repo: Repository, base: _Leaf | None, ours: _Leaf | None,
                   theirs: _Leaf | None) -> str | None:
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


def _merge_regular(repo: Repository, path: bytes, base: _Leaf | None, ours: _Leaf,
                   theirs: _Leaf) -> _Leaf | str:
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
    name = _text(path)
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


def _apply_edits(repo: Repository, tree: bytes | None, edits: dict[bytes, _Leaf | None], prefix: bytes,
                 conflicts: list[PathConflict], hostile: list[tuple[str, str]], cache: TreeCache) -> bytes | None:
    """``tree`` with ``edits`` (paths relative to it) applied, written bottom-up;
    untouched entries keep their ids. None when the result is empty (git stores no
    empty directories)."""
    here: dict[bytes, _Leaf | None] = {}
    below: dict[bytes, dict[bytes, _Leaf | None]] = {}
    for path, leaf in edits.items():
        head, slash, rest = path.partition(b"/")
        if slash:
            below.setdefault(head, {})[rest] = leaf
        else:
            here[head] = leaf
    old = _entries(repo, tree, cache) if tree is not None else {}
    new = dict(old)
    added: list[bytes] = []
    for name in here.keys() | below.keys():
        current = old.get(name)
        current_tree = current[3] if current is not None and current[1] == _TREE else None
        current_leaf = _leaf(current)
        if name in below:
            if current_leaf is not None and name not in here:
                # The tip has a file where this commit writes inside a directory.
                conflicts.extend(PathConflict(_text(prefix + name + b"/" + p), "directory/file") for p in below[name])
                continue
            sub = _apply_edits(repo, current_tree, below[name], prefix + name + b"/", conflicts, hostile, cache)
        else:
            sub = current_tree
        leaf = here[name] if name in here else current_leaf
        if leaf is not None and sub is not None:
            # A file where the tip keeps a directory with other content in it.
            conflicts.append(PathConflict(_text(prefix + name), "directory/file"))
            continue
        if leaf is not None:
            if leaf != current_leaf:
                new[name] = _entry(name, leaf[0], leaf[1])
        elif sub is not None:
            if sub != current_tree:
                new[name] = _entry(name, MODE_TREE, sub)
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
                hostile.append((_text(prefix + name), f"differs only by case or Unicode normalization "
                                                      f"from {_text(prefix + other)!r}"))
    if not new:
        return None
    if new == old and tree is not None:
        return tree
    return _write_tree(repo, new, bool(added), cache)


# --- Scratch checkouts, ref moves and pushes (integration) ------------------


def materialize(repo: Repository, sha: str, path: Path) -> Path:
    """A detached worktree of ``sha`` at ``path``, to run verify commands in.

    A linked worktree rather than a checkout into a bare folder: the commands
    (a test suite, a build) may expect to run inside a git repository. Made with
    the git CLI (add_worktree): about twice as fast as libgit2 on 20k files, and
    hooks are off. Remove it with ``dematerialize``."""
    return add_worktree(repo, path, None, sha)


def dematerialize(repo: Repository, path: Path) -> None:
    remove_worktree(repo, path)


def update_ref_if(repo: Repository, ref_name: str, new_sha: str, expected_old: str | None) -> bool:
    """Move ``ref_name`` to ``new_sha`` only if it still points at ``expected_old``
    (None: only if it does not exist). False when it moved meanwhile.

    The git CLI: `git update-ref REF NEW OLD` compares and swaps under the ref's
    lock; pygit2 has no compare-and-swap for references, and reading then writing
    would race with another process."""
    proc = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "update-ref", "-m", "rally-gh: integrate",
         ref_name, new_sha, expected_old or _ZERO_SHA],
        cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
    )
    if proc.returncode == 0:
        return True
    if ref_sha(repo, ref_name) != expected_old:
        return False
    raise GitError(f"`git update-ref {ref_name}` failed: {proc.stderr.decode(errors='replace').strip()}")


@dataclass(frozen=True)
class HttpCredentials:
    """A token for an HTTPS remote (GitHub: username ``x-access-token``)."""

    token: str
    username: str = "x-access-token"

    def __repr__(self) -> str:  # never print the token
        return f"HttpCredentials(username={self.username!r}, token=***)"


@dataclass(frozen=True)
class RefPush:
    """Push ``new_sha`` to ``ref``. With ``lease``, only if the remote ref is at
    ``expected_old`` (None: only if it does not exist yet); without, only as a
    fast-forward. Never a blind force."""

    ref: str
    new_sha: Sha
    expected_old: Sha | None = None
    lease: bool = True


@dataclass(frozen=True)
class PushedRef:
    ref: str
    ok: bool
    message: str  # git's summary: "[new branch]", "[rejected] (stale info)", ...


def _credential_env(credentials: HttpCredentials | None) -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    if credentials is not None:
        # As actions/checkout does: an extra header, passed through the
        # environment so the token never shows in a process list or a URL.
        pair = _base64.b64encode(f"{credentials.username}:{credentials.token}".encode()).decode()
        count = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
        env["GIT_CONFIG_COUNT"] = str(count + 1)
        env[f"GIT_CONFIG_KEY_{count}"] = "http.extraHeader"
        env[f"GIT_CONFIG_VALUE_{count}"] = f"Authorization: Basic {pair}"
    return env


def push_refs(cwd: Path | str, remote: str, pushes: Sequence[RefPush], *,
              credentials: HttpCredentials | None = None, atomic: bool = False) -> list[PushedRef]:
    """One `git push` of ``pushes``; the status of every ref. ``atomic``: all or
    none (a reader never sees one ref of the set without the others).

    The git CLI, not pygit2's Remote.push: libgit2 cannot express a lease (push
    only if the remote ref is still at a given value) and reports a server-side
    rejection only through a callback (PERF-NOTES). `--force-with-lease=REF:OLD`
    with an explicit OLD is a compare-and-swap on the remote, and `--porcelain`
    gives every ref's status."""
    args = ["push", "--porcelain"] + (["--atomic"] if atomic else [])
    specs = []
    for p in pushes:
        if p.lease:
            args.append(f"--force-with-lease={p.ref}:{p.expected_old or ''}")
        specs.append(f"{p.new_sha}:{p.ref}")
    proc = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", *args, remote, *specs],
        cwd=cwd, env=_credential_env(credentials), stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
    )
    seen: dict[str, PushedRef] = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
        flag, tab, rest = line.partition("\t")
        if not tab or len(flag) != 1:
            continue
        refspec, _, summary = rest.partition("\t")
        ref = refspec.rsplit(":", 1)[-1]
        seen[ref] = PushedRef(ref, flag in " +*=-", summary.strip())
    error = proc.stderr.decode(errors="replace").strip().splitlines()
    return [seen.get(p.ref, PushedRef(p.ref, False, error[-1] if error else f"git push exited {proc.returncode}"))
            for p in pushes]


def remote_ref_shas(cwd: Path | str, remote: str, refs: Sequence[str], *,
                    credentials: HttpCredentials | None = None) -> dict[str, Sha | None]:
    """What ``remote`` has at each of ``refs`` now (None: absent), and their
    commits fetched so that they can be compared with ours."""
    proc = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "ls-remote", remote, *refs],
        cwd=cwd, env=_credential_env(credentials), stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
    )
    if proc.returncode != 0:
        raise GitError(f"`git ls-remote {remote}` failed: {proc.stderr.decode(errors='replace').strip()}")
    found: dict[str, Sha | None] = dict.fromkeys(refs)
    for line in proc.stdout.decode().splitlines():
        sha, _, ref = line.partition("\t")
        if ref in found:
            found[ref] = Sha(sha)
    present = [ref for ref, sha in found.items() if sha is not None]
    if present:
        # By name, not by id: a server need not allow fetching a bare commit id.
        subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "fetch", "--quiet", "--no-tags", remote, *present],
                       cwd=cwd, env=_credential_env(credentials), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    return found


# --- Run history (refs/rally/history) ---
#
# rally_gh/history.py keeps one small file per run in the tree of a commit chain
# under one ref. Everything here writes to the object database only (never the
# work tree or the index); the ref moves with update_ref_if, a compare-and-swap,
# so that two runs finishing at once both land.


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
