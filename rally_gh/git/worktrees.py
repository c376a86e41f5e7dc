"""Checkouts: filling a teammate's (git.private) or a linked worktree's, sparse or full; a
scratch worktree of the user's repository to verify a commit in; and the guard of the user's git
directory's controls.

A teammate's agent works in a repository of its own, and its sandbox hides the user's git
directory. One run with --no-sandbox can still write there, and some of its files make git run
programs: config (filter drivers, core.fsmonitor, core.sshCommand, credential helpers, aliases),
info/attributes (which files a filter applies to) and hooks/. A run keeps a copy taken before the
agents start and puts it back before any git command of its own, so nothing an agent plants there
runs in rally-gh's git, or later in the user's own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from pygit2 import Repository

from rally_gh.errors import GitError
from rally_gh.git.refs import ref_sha
from rally_gh.git.repository import common_dir, oid, run_git
from rally_gh.git.private import create_scratch_repo, is_private_repo, remove_private_repo


# --- The git directory's controls ------------------------------------------


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


# --- A teammate's worktree -------------------------------------------------


def rally_worktrees_root(repo: Repository) -> Path:
    """Where a run's teammate repositories and checkouts live, one folder per user's
    repository: outside the tracked tree (no teammate sees another's checkout, `git
    status` stays clean) and
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


def populate_worktree(path: Path, sparse_dirs: Sequence[str] | None = None) -> None:
    """Check out the files of a repository made without them (a teammate's, ``create_private_repo``;
    a scratch one, ``create_scratch_repo``): all of them, or only ``sparse_dirs``
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
    """The git directory of the checkout at ``path``: its own ``.git`` folder (a teammate's
    repository), or a linked worktree's (its ``.git`` file's target)."""
    if (path / ".git").is_dir() and not (path / ".git").is_symlink():
        return path / ".git"
    line = (path / ".git").read_text().strip()
    if not line.startswith("gitdir: "):
        raise GitError(f"{path / '.git'}: not a linked worktree's .git file")
    return (path / line[len("gitdir: "):]).resolve()


def checked_out_branches(repo: Repository) -> dict[str, Path]:
    """The branches (short names) checked out in a work tree of ``repo``, main or linked, and where:
    git refuses to delete them, and a person is working there."""
    common = common_dir(repo)
    heads: list[tuple[Path, Path]] = []  # (HEAD file, work tree)
    if (common / "HEAD").is_file() and not repo.is_bare:
        heads.append((common / "HEAD", common.parent))
    for record in sorted((common / "worktrees").glob("*")) if (common / "worktrees").is_dir() else ():
        try:
            tree = Path((record / "gitdir").read_text(encoding="utf-8").strip()).parent
        except OSError:
            continue
        heads.append((record / "HEAD", tree))
    found: dict[str, Path] = {}
    for head, tree in heads:
        try:
            text = head.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if text.startswith("ref: refs/heads/"):
            found.setdefault(text[len("ref: refs/heads/"):], tree)
    return found


def remove_worktree(repo: Repository, path: Path) -> None:
    """Remove the worktree at ``path`` whatever state it is in (dirty, locked, half made), or the
    teammate repository there (``private``)."""
    if is_private_repo(path):
        remove_private_repo(path)
        return
    run_git(common_dir(repo), "worktree", "remove", "--force", "--force", str(path), check=False)
    if path.exists():  # not registered (a crash between mkdir and add): just files
        shutil.rmtree(path, ignore_errors=True)
    prune_worktree_records(repo)


def prune_worktree_records(repo: Repository) -> None:
    """Drop git's records of the worktrees whose folder is gone (`git worktree prune`)."""
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
    prune_worktree_records(repo)
    return removed


# --- A scratch checkout (integration) ---------------------------------------


def materialize(repo: Repository, sha: str, path: Path) -> Path:
    """A checkout of ``sha`` at ``path``, to run verify commands in.

    A repository rather than a bare folder: the commands (a test suite, a build)
    may expect to run inside one. One of its own (``create_scratch_repo``: the
    user's objects borrowed), not a worktree of the user's: the code under test
    comes from agents, and must find none of the user's git directory in reach
    (its config may hold a token ``actions/checkout`` left there). Checked out
    with the git CLI (about twice as fast as libgit2 on 20k files), hooks off.
    Remove it with ``dematerialize``."""
    create_scratch_repo(repo, path, sha)
    populate_worktree(path)
    return path


def dematerialize(repo: Repository, path: Path) -> None:
    remove_private_repo(path)
