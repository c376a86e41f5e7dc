"""A teammate's own repository: made for its agent, read back without trusting anything in it.

Each teammate works in a standalone repository of its own (SPEC sections 3 and
4.3), outside the user's: its own git directory (``<checkout>/.git``) with its
own refs, config, hooks and index, and the user's objects borrowed through
``objects/info/alternates``, which the sandbox shows read-only. Its agent can
do anything there; nothing there reaches the user's repository but what
rally-gh copies out of it:

- ``create_private_repo``: the git directory, written file by file as
  gitrepository-layout(5) has it (no git process: a spawn costs what its
  checkout costs, ``populate_worktree``).
- ``neutralise_private_repo``: before rally-gh touches the repository again,
  the files that make git run programs or look elsewhere (config, hooks,
  ``info/attributes``, ``commondir``, alternates, grafts) are put back to what
  rally-gh wrote, without following a link the agent left in their place.
  Then the git CLI runs there with nothing of the agent's configured.
- ``export_result``: the exact commit its HEAD names, with every object
  reachable from it that the user's object database lacks copied there (read
  from the teammate's object files alone, each one's id checked against its
  content), then the teammate's branch set in the user's repository by
  rally-gh itself. What a run records and integrates is that commit.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

import pygit2
from pygit2 import Oid, Repository
from pygit2.enums import ObjectType, RepositoryOpenFlag

from rally_gh.errors import GitError
from rally_gh.git.refs import ref_sha, update_ref_if
from rally_gh.git.repository import Sha, clean_env, common_dir, git_bytes, oid, run_git
from rally_gh.git.trees import path_text

# The config of every teammate repository, and all of it: nothing of the user's repository
# config (an actions/checkout token in http.extraheader, credential helpers, remotes) reaches it.
CONFIG = ("[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
          "\tlogallrefupdates = true\n")

# What git reads in a git directory that makes it run a program, or read another repository's refs
# or objects as its own: removed before rally-gh runs git there (config and alternates are rewritten).
# And the index's lock, which an agent killed while it ran git leaves behind.
_NEUTRALISED = ("hooks", "commondir", "config.worktree", "info/attributes", "info/grafts", "shallow",
                "objects/info/http-alternates", "index.lock")


def objects_dir(repo: Repository) -> Path:
    """The user's object database, which every teammate repository borrows."""
    return common_dir(repo) / "objects"


def private_git_dir(checkout: Path) -> Path:
    return checkout / ".git"


def create_private_repo(repo: Repository, checkout: Path, branch: str, tip: str) -> None:
    """A teammate repository at ``checkout`` on ``branch`` at ``tip`` (no files checked out yet:
    ``populate_worktree``). ``branch`` is also created in the user's repository at ``tip`` unless it
    exists, so that the run's branches are there from the start, as ``export_result`` keeps them."""
    if checkout.exists() or checkout.is_symlink():
        remove_private_repo(checkout)
    checkout.mkdir(parents=True)
    gitdir = private_git_dir(checkout)
    _write_git_dir(gitdir, objects_dir(repo), branch, tip)
    _copy_shallow(repo, gitdir)
    ref = f"refs/heads/{branch}"
    if ref_sha(repo, ref) is None:
        repo.references.create(ref, oid(tip))


def _write_git_dir(gitdir: Path, borrowed: Path, branch: str, tip: str) -> None:
    ref = gitdir / "refs" / "heads" / branch
    for folder in (gitdir / "objects" / "info", gitdir / "objects" / "pack", gitdir / "refs" / "tags", ref.parent):
        folder.mkdir(parents=True, exist_ok=True)
    (gitdir / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    ref.write_text(f"{tip}\n")
    (gitdir / "config").write_text(CONFIG)
    (gitdir / "objects" / "info" / "alternates").write_text(f"{borrowed.resolve()}\n")


def _users_shallow(repo: Repository) -> bytes | None:
    """The commits whose parents a shallow clone lacks (its ``shallow`` file): a teammate repository
    borrowing its objects needs the same list, or its git stops at the first missing parent."""
    try:
        return (common_dir(repo) / "shallow").read_bytes()
    except FileNotFoundError:
        return None


def _copy_shallow(repo: Repository, gitdir: Path) -> None:
    shallow = _users_shallow(repo)
    if shallow is not None:
        (gitdir / "shallow").write_bytes(shallow)


def create_scratch_repo(repo: Repository, checkout: Path, tip: str) -> None:
    """A throwaway repository at ``checkout``, its HEAD detached at ``tip`` (no files checked out
    yet: ``populate_worktree``): the user's objects borrowed and nothing else of the user's
    repository, no branch made anywhere. Where ``merge.verify`` runs."""
    checkout.mkdir(parents=True)
    gitdir = private_git_dir(checkout)
    _write_git_dir(gitdir, objects_dir(repo), "verify", tip)
    (gitdir / "refs" / "heads" / "verify").unlink()
    (gitdir / "HEAD").write_text(f"{tip}\n")
    _copy_shallow(repo, gitdir)


def remove_private_repo(checkout: Path) -> None:
    """The teammate repository and checkout at ``checkout``, gone (rmtree follows no link)."""
    if checkout.is_symlink() or checkout.is_file():
        checkout.unlink()
    elif checkout.exists():
        shutil.rmtree(checkout, ignore_errors=True)


def is_private_repo(checkout: Path) -> bool:
    """Whether ``checkout`` holds a git directory of its own (not a linked worktree's ``.git`` file)."""
    try:
        return stat.S_ISDIR(private_git_dir(checkout).lstat().st_mode)
    except OSError:
        return False


def neutralise_private_repo(repo: Repository, checkout: Path) -> Path:
    """Put back what rally-gh wrote in the teammate repository at ``checkout`` (its config and
    alternates, the user's list of shallow commits; no hooks, no attributes, no other repository
    named), so that a git command there
    runs nothing its agent planted; its git directory. Whatever the agent left in place of a file
    or folder (a link into the user's repository, say) is removed, never followed. GitError when
    its ``.git`` is no folder any more (gone, or a link or file naming another repository)."""
    gitdir = private_git_dir(checkout)
    if not is_private_repo(checkout):
        raise GitError(f"{gitdir}: is not the git directory rally-gh made for this teammate any more",
                       hint="its agent removed or replaced it; what it committed there is lost, its "
                            "branch holds what rally-gh exported before; look at the agent's log")
    for rel in _NEUTRALISED:
        _remove(gitdir, rel)
    if (gitdir / "index").is_symlink():  # git would read another repository's index as its own
        _remove(gitdir, "index")
    _put(gitdir, "config", CONFIG.encode())
    _put(gitdir, "objects/info/alternates", f"{objects_dir(repo).resolve()}\n".encode())
    shallow = _users_shallow(repo)
    if shallow is not None:
        _put(gitdir, "shallow", shallow)
    return gitdir


def _real_folder(gitdir: Path, rel: str) -> Path:
    """``gitdir/rel`` as a real folder, each folder on the way too: a link or a file there is removed."""
    path = gitdir
    for part in Path(rel).parts:
        path = path / part
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            path.mkdir()
            continue
        if not stat.S_ISDIR(mode):
            path.unlink()
            path.mkdir()
    return path


def _remove(gitdir: Path, rel: str) -> None:
    parent = _real_folder(gitdir, str(Path(rel).parent)) if Path(rel).parent != Path(".") else gitdir
    path = parent / Path(rel).name
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _put(gitdir: Path, rel: str, data: bytes) -> None:
    _remove(gitdir, rel)
    parent = _real_folder(gitdir, str(Path(rel).parent)) if Path(rel).parent != Path(".") else gitdir
    fd = os.open(parent / Path(rel).name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def commit_all(repo: Repository, checkout: Path, message: str, author: tuple[str, str],
               scratch: Sequence[str] = ()) -> Sha | None:
    """Commit everything the agent left in the teammate repository at ``checkout`` (staged,
    modified, deleted, untracked but not ignored) on its HEAD, once neutralised (see
    ``neutralise_private_repo``); the new commit, which HEAD then names (detached: no ref of the agent's is written through), or
    None when there was nothing to commit. ``scratch``: name prefixes of top-level files the
    agent's CLI keeps for itself, left out unless HEAD already tracks them.

    Staged by the git CLI (`git add --all --sparse`), not libgit2's add_all, which knows nothing of
    sparse checkouts: it takes every path a sparse checkout leaves out (git's skip-worktree bit)
    for deleted, and the commit would remove the rest of the repository. git leaves those paths as
    they are, and ``--sparse`` still takes what the agent wrote outside the checkout's directories,
    so nothing it produced is lost. git is told the git directory and work tree (a ``.git`` the
    agent turned into a file naming another is never read), and runs with rally-gh's config, no
    hook and no file-system monitor. The commit itself is written by pygit2: no hook, no signing
    program, no editor."""
    gitdir = neutralise_private_repo(repo, checkout)
    env = {**clean_env(), "GIT_DIR": str(gitdir), "GIT_WORK_TREE": str(checkout)}
    run_git(checkout, "add", "--all", "--sparse", env=env)
    own = Repository(str(gitdir), RepositoryOpenFlag.NO_SEARCH)
    head = private_head(gitdir)
    if scratch:
        tracked = set() if head is None else {e.name for e in own[head].peel(pygit2.Commit).tree}
        staged = git_bytes(checkout, ["ls-files", "-z"], env=env).split(b"\0")
        tops = {path_text(path.split(b"/", 1)[0]) for path in staged if path}
        drop = sorted(top for top in tops if top not in tracked and top.startswith(tuple(scratch)))
        if drop:
            run_git(checkout, "rm", "-r", "-q", "--cached", "--sparse", "--ignore-unmatch", "--", *drop,
                    env={**env, "GIT_LITERAL_PATHSPECS": "1"})
    tree_id = Oid(hex=run_git(checkout, "write-tree", env=env).strip())
    parents = [] if head is None else [oid(head)]
    if head is not None and own[head].peel(pygit2.Commit).tree_id == tree_id:
        return None
    who = pygit2.Signature(author[0], author[1])
    made = Sha(str(own.create_commit(None, who, who, message, tree_id, parents)))
    _put(gitdir, "HEAD", f"{made}\n".encode())
    return made


def private_head(gitdir: Path) -> Sha | None:
    """The commit HEAD names in a neutralised teammate repository, or None (unborn, or not a commit)."""
    try:
        found = Repository(str(gitdir), RepositoryOpenFlag.NO_SEARCH)
        if found.head_is_unborn:
            return None
        return Sha(str(found.head.peel(pygit2.Commit).id))
    except (pygit2.GitError, KeyError, ValueError, pygit2.InvalidSpecError):
        return None


def export_result(repo: Repository, checkout: Path, head: str, branch: str) -> int:
    """``head`` of the teammate repository at ``checkout`` into the user's repository: every object
    reachable from it that the user's object database lacks, copied there; then ``branch`` set to
    it by rally-gh. The number of objects copied."""
    copied = copy_objects(repo, private_git_dir(checkout) / "objects", head)
    ref = f"refs/heads/{branch}"
    current = ref_sha(repo, ref)
    if current != head and not update_ref_if(repo, ref, head, current):
        raise GitError(f"{ref}: moved while rally-gh set it to {head[:10]}",
                       hint="run `rally-gh runs` to see which run uses that branch, then try again")
    return copied


_PARENT_OR_TREE = re.compile(rb"^(tree|parent) ([0-9a-f]{40})$", re.M)
_TAG_OBJECT = re.compile(rb"^object ([0-9a-f]{40})$", re.M)
_TREE_ENTRY = re.compile(rb"(\d+) [^\0]*\0(.{20})", re.S)
_GITLINK = b"160000"


def copy_objects(repo: Repository, source: Path, head: str) -> int:
    """Copy into ``repo``'s object database every object reachable from ``head`` that it lacks,
    read from the object files in ``source`` alone (loose and packed: its alternates and whatever
    else its repository names are not read); how many. Each object is written by content, so its
    id is checked; the objects it names are written first, so that an interrupted copy never leaves
    an object whose descendants are missing (a present object stops the walk)."""
    odb = pygit2.Odb()
    odb.add_backend(pygit2.OdbBackendPack(str(source)), 1)
    odb.add_backend(pygit2.OdbBackendLoose(str(source), 0, False), 2)
    target = repo.odb
    seen: set[Oid] = set()
    copied = 0
    # Depth first, each object written once everything it names is (post-order).
    stack: list[tuple[Oid, tuple[int, bytes] | None]] = [(oid(head), None)]
    while stack:
        wanted, read = stack.pop()
        if read is not None:
            written = target.write(*read)
            if written != wanted:
                raise GitError(f"{source}: object {wanted} holds the content of {written}",
                               hint="the teammate's repository was tampered with; its work is not taken")
            copied += 1
            continue
        if wanted in seen or wanted in target:
            continue
        seen.add(wanted)
        try:
            kind, data = odb.read(wanted)
        except (KeyError, pygit2.GitError, ValueError):
            raise GitError(f"{source}: object {wanted} is missing, though {head[:10]} needs it",
                           hint="the teammate's repository is incomplete: its branch keeps what rally-gh "
                                "could read; look at its agent's log") from None
        stack.append((wanted, (int(kind), data)))
        stack += [(child, None) for child in _named_by(int(kind), data) if child not in seen]
    return copied


def _named_by(kind: int, data: bytes) -> list[Oid]:
    """The objects an object names: a commit's tree and parents, a tree's entries but submodules'
    commits, a tag's object."""
    if kind == ObjectType.COMMIT:
        return [Oid(hex=m.group(2).decode()) for m in _PARENT_OR_TREE.finditer(data.split(b"\n\n", 1)[0])]
    if kind == ObjectType.TREE:
        return [Oid(raw=m.group(2)) for m in _TREE_ENTRY.finditer(data) if m.group(1) != _GITLINK]
    if kind == ObjectType.TAG:
        return [Oid(hex=m.group(1).decode()) for m in _TAG_OBJECT.finditer(data.split(b"\n\n", 1)[0])]
    return []
