"""The hook's fast path: answer "clean" for an ordinary commit at about the cost
of ``git diff --cached`` itself.

A hook runs on every commit. Measured on a 100,000-file index: ``git diff-index
--cached`` does the whole job in about 17 ms using git's cache-tree extension;
importing pygit2 costs 70 ms, libgit2's index read 92 ms and its index-to-tree
diff 34 ms (libgit2 does not use cache-tree for diffs); importing
``subprocess`` costs 28 ms (it pulls in ``re``, ``locale``, ``enum``,
``threading``), and Python's ``site`` 30 ms more. So this module imports only
``os``, ``sys``, ``marshal`` and ``rally_gh.ownership.paths`` (``unicodedata``), starts
git with ``os.posix_spawnp`` (three processes at once), and reads the map from
a table the full path compiled and cached in ``<common git dir>/rally/cache/``,
keyed by the map's blob id.

It only ever answers "clean". Anything else (a violation, a symlink, a gitlink,
a merge or rebase under way, no cached table, a wildcard it would need RE2 for
on many paths) goes to the full path in ``rally_gh.hook``, which alone words the
messages. The plain hook that ``rally-gh hook install`` writes runs this module
under ``python -I -S`` (no ``site``) and replaces itself with the full path
(``os.execv``) when the answer is not "clean".
"""

from __future__ import annotations

import marshal
import os
import sys

from rally_gh.ownership.paths import hostile_reason, is_control_file

TYPE_CHECKING = False  # importing typing costs milliseconds here
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

MAP_FILES = ("rally.yml", ".github/rally.yml")  # config.CONFIG_CANDIDATES, without importing config
TABLE_FORMAT = 1

# Kinds of compiled pattern in a table (see compile_table).
_EXACT = 0  # an anchored literal: the path itself, or (dir_only) only what is inside it
_ANYWHERE = 1  # an unanchored literal: a segment of that name, or (dir_only) a directory of it
_INSIDE = 2  # 'dir/**': anything strictly inside the directory
_WILDCARD = 3  # anything else: RE2 source, guarded by its literal directory prefix

_IN_PROGRESS = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "BISECT_LOG", "rebase-merge", "rebase-apply")
Row = tuple[int, bool, int, str, bool | str]  # (teammate, negated, kind, text, extra)
_MAX_WORK = 2_000_000  # changed paths x patterns beyond which the full path's GlobSet is faster


def table_file(common_dir: str, blob_id: str) -> str:
    """Where the compiled table of the map blob ``blob_id`` is cached."""
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"  # marshal's format follows the interpreter
    return os.path.join(common_dir, "rally", "cache", f"map-{blob_id}.{tag}.v{TABLE_FORMAT}")


def compile_table(branch_prefix: str, teammates: list[tuple[str, list[str]]]) -> bytes:
    """The marshalled table of a loaded map: (format, branch prefix, names, patterns).

    Every pattern becomes (teammate, negated, kind, text, extra). Only the forms
    whose meaning plain string tests reproduce exactly are given a kind of their
    own; the test is that RE2 source the glob compiles to is the one that form
    always has. Raises PatternError like Ownership.from_config.
    """
    import re

    from rally_gh.ownership.globs import compile_glob, literal_prefix

    rows: list[Row] = []
    for position, (_name, patterns) in enumerate(teammates):
        for pattern in patterns:
            glob = compile_glob(pattern)
            prefix = literal_prefix(glob)
            inside = "/".join(re.escape(s) for s in prefix[:-1].split("/")) + "/.+"
            if glob.literal is not None:
                kind = _EXACT if glob.anchored else _ANYWHERE
                rows.append((position, glob.negated, kind, glob.literal, glob.dir_only))
            elif glob.anchored and prefix and glob.regex == inside:
                rows.append((position, glob.negated, _INSIDE, prefix, False))
            else:
                rows.append((position, glob.negated, _WILDCARD, prefix, glob.regex))
    names = tuple(name for name, _ in teammates)
    return marshal.dumps((TABLE_FORMAT, branch_prefix, names, tuple(rows)))


def load_table(data: bytes) -> tuple[str, tuple[str, ...], tuple[Row, ...]]:
    """(branch prefix, names, patterns); ValueError for a table of another format."""
    try:
        fmt, prefix, names, rows = marshal.loads(data)
    except (EOFError, TypeError) as err:
        raise ValueError("not a map table") from err
    if fmt != TABLE_FORMAT:
        raise ValueError("a map table of another format")
    return prefix, names, rows


def owner_of(names: tuple[str, ...], rows: tuple[Row, ...], path: str) -> str | None:
    """Ownership.owner_of over a compiled table: for each teammate the last of its
    patterns matching ``path`` decides, and the path is owned when exactly one
    teammate's decision grants it. A control file is granted only by a pattern
    naming it literally."""
    control = is_control_file(path)
    parts = path.split("/")
    decided: dict[int, bool] = {}
    regexes: dict[object, Any] | None = None
    for position, negated, kind, text, extra in rows:
        if kind == _EXACT:
            hit = path.startswith(text + "/") or (not extra and path == text)
        elif kind == _ANYWHERE:
            hit = text in (parts[:-1] if extra else parts)
        elif kind == _INSIDE:
            hit = len(path) > len(text) and path.startswith(text)
        else:
            hit = path.startswith(text)
            if hit:
                if regexes is None:
                    import re2  # type: ignore[import-untyped]  # linear time, like the full path

                    regexes = {}
                regex = regexes.get(extra)
                if regex is None:
                    regex = regexes[extra] = re2.compile(extra)
                hit = regex.fullmatch(path) is not None
        if not hit:
            continue
        if control and not negated and (kind > _ANYWHERE or text != path):
            continue  # a wildcard (or a directory) never grants a control file
        decided[position] = negated
    owners = [position for position, negated in decided.items() if not negated]
    return names[owners[0]] if len(owners) == 1 else None


# --- Git, without subprocess -----------------------------------------------
#
# The one place outside rally_gh.process that starts a child: importing it (it imports
# subprocess) would cost the hook more than git's own work.


def _git_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of the gits started here: this process's, with the index
    that ``environ`` (the hook's environment) names. `git commit -a`, `--only`,
    `--include` and `git commit PATH` build the commit in a temporary index and
    name it in GIT_INDEX_FILE; without it, the repository's own index."""
    env = {k: v for k, v in os.environ.items() if k != "GIT_INDEX_FILE"}
    if environ.get("GIT_INDEX_FILE"):
        env["GIT_INDEX_FILE"] = environ["GIT_INDEX_FILE"]
    env["GIT_LITERAL_PATHSPECS"] = "1"  # a directory named ':(glob)*' is just a name
    return env


def _spawn(args: list[str], env: dict[str, str]) -> tuple[int, int]:
    """Start ``git args`` with stdout to a pipe and stderr to /dev/null; (pid, read end)."""
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawnp("git", ["git", *args], env, file_actions=[
            (os.POSIX_SPAWN_DUP2, write_end, 1),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_CLOSE, read_end),
        ])
    finally:
        os.close(write_end)
    return pid, read_end


def _collect(started: tuple[int, int]) -> bytes | None:
    """The output of a started git, or None when it failed."""
    pid, read_end = started
    chunks = []
    try:
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks) if os.waitstatus_to_exitcode(status) == 0 else None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _git_dirs(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(git dir, common git dir) of the repository at the working directory, or
    None for anything unusual (a bare repository, GIT_WORK_TREE, ...)."""
    if environ.get("GIT_WORK_TREE") or environ.get("GIT_COMMON_DIR"):
        return None
    gitdir = environ.get("GIT_DIR")  # git sets it for hooks run in a linked worktree
    if gitdir:
        gitdir = os.path.abspath(gitdir)
    else:
        here = os.getcwd()
        while True:
            dotgit = os.path.join(here, ".git")
            if os.path.isdir(dotgit):
                gitdir = dotgit
                break
            if os.path.isfile(dotgit):
                with open(dotgit, encoding="utf-8", errors="surrogateescape") as f:
                    line = f.readline().rstrip("\n")
                if not line.startswith("gitdir: "):
                    return None
                gitdir = os.path.join(here, line[len("gitdir: "):])
                break
            parent = os.path.dirname(here)
            if parent == here:
                return None
            here = parent
    common = gitdir
    try:
        with open(os.path.join(gitdir, "commondir"), encoding="utf-8", errors="surrogateescape") as f:
            common = os.path.join(gitdir, f.readline().rstrip("\n"))
    except FileNotFoundError:
        pass
    return gitdir, os.path.normpath(common)


def _head_branch(gitdir: str) -> str | None:
    with open(os.path.join(gitdir, "HEAD"), encoding="utf-8", errors="surrogateescape") as f:
        head = f.readline().rstrip("\n")
    return head[len("ref: refs/heads/"):] if head.startswith("ref: refs/heads/") else None


def branch_teammate(branch: str | None, prefix: str) -> str | None:
    """``<prefix>/<run>/<name>`` -> ``<name>``, whether or not it is a valid
    teammate name (enforce.teammate_from_branch checks that)."""
    if not branch:
        return None
    branch = branch.removeprefix("refs/heads/")
    if not branch.startswith(prefix + "/"):
        return None
    parts = branch[len(prefix) + 1:].split("/")
    return parts[1] if len(parts) == 2 and all(parts) else None


def is_clean(environ: Mapping[str, str]) -> bool:
    """True when committing the index now certainly writes only what the
    teammate owns (or, with no teammate, leaves the map alone); False: ask the
    full path, which decides and explains."""
    dirs = _git_dirs(environ)
    if dirs is None:
        return False
    gitdir, common = dirs
    if any(os.path.exists(os.path.join(gitdir, name)) for name in _IN_PROGRESS):
        return False  # the full path knows whose branch is being merged, rebased or picked
    teammate = environ.get("RALLY_TEAMMATE") or None
    branch = _head_branch(gitdir)
    if branch is None and teammate is None:
        # A detached HEAD (CI's checkout of a pull request): whose commit it is comes from the job's
        # environment, which only the full path reads (rally_gh/github/actions.py).
        return False
    env = _git_env(environ)
    # The slow one first; the others finish on another core meanwhile.
    diff = _spawn(["diff-index", "--cached", "-z", "--no-renames", "--raw", "HEAD"], env)
    listed = _spawn(["ls-tree", "--full-tree", "-z", "HEAD", "--", *MAP_FILES], env)
    # `git config` only when the branch cannot name the teammate (<prefix>/<run>/<teammate>).
    maybe_named = branch is not None and branch.removeprefix("refs/heads/").count("/") >= 2
    configured = None if teammate or maybe_named else _spawn(["config", "--get", "rally.teammate"], env)
    listing, raw = _collect(listed), _collect(diff)
    configured_name = None if configured is None else _collect(configured)
    if not listing or raw is None:
        return False  # an unborn HEAD, no map at HEAD, or git refused
    entries = {}
    for entry in _text(listing).split("\0"):
        meta, _, path = entry.partition("\t")
        if path:
            entries[path] = meta.split()
    map_name = next((n for n in MAP_FILES if n in entries), None)
    if map_name is None or entries[map_name][1] != "blob":
        return False
    with open(table_file(common, entries[map_name][2]), "rb") as f:
        prefix, names, rows = load_table(f.read())
    fields = _text(raw).split("\0")
    changes = [(fields[i], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]
    if teammate is None:
        teammate = branch_teammate(branch, prefix)
    if teammate is None and configured is None:
        configured_name = _collect(_spawn(["config", "--get", "rally.teammate"], env))
    if teammate is None and configured_name:
        teammate = _text(configured_name).strip() or None
    if teammate is None:
        return not any(path in MAP_FILES for _, path in changes)  # a staged map: the full path validates it
    if teammate not in names or len(changes) * len(rows) > _MAX_WORK:
        return False
    added = []
    for meta, path in changes:
        old_mode, new_mode, _old, _new, status = meta.lstrip(":").split()
        if status not in ("A", "M", "D") or hostile_reason(path) is not None:
            return False
        if {old_mode, new_mode} & {"120000", "160000"}:
            return False  # symlink targets and gitlinks: the full path decides
        if owner_of(names, rows, path) != teammate:
            return False
        if status == "A":
            added.append(path)
    return not added or _no_collisions(added, env)


def _fold(name: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFC", name).casefold()


def _no_collisions(added: list[str], env: dict[str, str]) -> bool:
    """True when no added path, nor any directory above it, equals a sibling in
    HEAD's tree (or another added path) by case or Unicode normalization."""
    dirs = sorted({"/".join(p.split("/")[:i]) for p in added for i in range(1, p.count("/") + 1)})
    root = _spawn(["ls-tree", "--full-tree", "-z", "--name-only", "HEAD"], env)
    inner = _spawn(["ls-tree", "--full-tree", "-z", "--name-only", "HEAD", "--", *(d + "/" for d in dirs)],
                   env) if dirs else None
    root_names, inner_names = _collect(root), b"" if inner is None else _collect(inner)
    if root_names is None or inner_names is None:
        return False
    present = {*_text(root_names).split("\0"), *_text(inner_names).split("\0"), *dirs, *added}
    present.discard("")
    folded: dict[str, str] = {}
    for path in present:
        if folded.setdefault(_fold(path), path) != path:
            return False
    return True


def main() -> None:
    """The plain hook's entry: exit 0 when clean, else become the full hook."""
    try:
        clean = is_clean(os.environ)
    except (OSError, ValueError, KeyError, IndexError, ImportError):
        clean = False  # anything odd: the full path decides and explains
    if clean:
        raise SystemExit(0)
    sys.stdout.flush()
    # -P: the working directory (a teammate's checkout) must not shadow rally_gh.
    os.execv(sys.executable, [sys.executable, "-P", "-m", "rally_gh", "hook", "pre-commit"])
