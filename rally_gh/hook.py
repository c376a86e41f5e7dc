"""The pre-commit hook: the same ownership rules as ``check``, on the staged index.

The pre-commit framework hands hooks only added and modified files and hides
deletions and the old side of renames, so the hook reads the index itself.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rally_gh.errors import GitError
from rally_gh.paths import hostile_reason

if TYPE_CHECKING:  # the fast path below must not pay for pygit2 or pydantic
    from rally_gh import git
    from rally_gh.config import LoadedConfig, Problem
    from rally_gh.enforce import CheckResult

HOOK_MARKER = "rally-gh-hook"
MAP_FILES = ("rally.yml", ".github/rally.yml")  # config.CONFIG_CANDIDATES, without importing config


@dataclass(frozen=True)
class HookOutcome:
    teammate: str | None
    source: str  # how the teammate was found
    result: CheckResult | None  # None when no teammate is writing
    map_problems: tuple[Problem, ...] = ()  # from validating a staged rally.yml
    note: str = ""

    @property
    def ok(self) -> bool:
        return (self.result is None or self.result.ok) and not any(
            p.severity == "error" for p in self.map_problems)


def pre_commit(repo: git.Repository, config_path: str | None, environ: Mapping[str, str]) -> HookOutcome:
    from rally_gh import git
    from rally_gh.enforce import check_staged, map_at, who_is_writing

    operation = git.in_progress_operation(repo)
    loaded = None if git.head_sha(repo) is None else map_at(repo, "HEAD", config_path)
    if loaded is not None and config_path is None:
        _remember_map(repo, loaded)
    if loaded is None:
        note = "no ownership map committed at HEAD yet: nothing to enforce"
        return HookOutcome(None, "nobody", None, _staged_map_problems(repo, config_path), note)
    teammate, source = who_is_writing(repo, loaded, None, environ)
    if teammate is None:
        return HookOutcome(None, source, None, _staged_map_problems(repo, config_path))
    result = check_staged(repo, loaded, teammate)
    if operation == "merge":
        result = _without_merged_in(repo, result)
    return HookOutcome(teammate, source, result)


def _without_merged_in(repo: git.Repository, result: CheckResult) -> CheckResult:
    """During a merge, a staged path identical to the merged-in side was written by
    that side's commits (checked on their own), not by this commit."""
    from rally_gh import git
    from rally_gh.enforce import CheckResult

    theirs = git.merge_head_shas(repo)
    index = repo.index

    def taken_from_them(path: str) -> bool:
        try:
            staged = (str(index[path].id), int(index[path].mode))
        except KeyError:
            staged = None
        return any(git.entry_at(repo, sha, path) == staged for sha in theirs)

    kept = tuple(v for v in result.violations if not taken_from_them(v.path))
    return CheckResult(result.teammate, result.commits_checked, kept)


def _staged_map_problems(repo: git.Repository, config_path: str | None) -> tuple[Problem, ...]:
    """With no teammate writing, the hook only validates a staged ownership map."""
    from rally_gh import git
    from rally_gh.config import Problem, load_config_text
    from rally_gh.errors import ConfigError
    from rally_gh.validation import validate_map

    staged = {c.path for c in git.staged_changes(repo) if c.status != "deleted"}
    for name in (config_path,) if config_path else MAP_FILES:
        if name not in staged:
            continue
        data = git.read_index_blob(repo, name)
        if data is None:
            continue
        try:
            loaded = load_config_text(data, name)
        except ConfigError as err:
            return tuple(getattr(err, "problems", [])) or (Problem("error", "schema", str(err)),)
        return tuple(p for p in validate_map(loaded) if p.severity == "error")
    return ()


# --- The fast path ----------------------------------------------------------
#
# A hook runs on every commit, so the common case must cost little more than
# `git diff --cached`. Measured on a 100,000-file index: importing pygit2
# costs 70 ms, libgit2's index read 92 ms and its index-to-tree diff 34 ms,
# where `git diff-index --cached` does the whole job in 19 ms using git's
# cache-tree extension (which libgit2 does not use for diffs). So the fast path
# asks the git CLI, reads the map from a cache keyed by its blob id (written by
# the full path; no pydantic), and only ever answers "clean". Anything else
# (a violation, a symlink, a gitlink, a merge, no cache, a root-level addition)
# goes to the full path, which alone words the messages.


def _git_out(*args: str) -> str | None:
    proc = subprocess.run(["git", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
    return proc.stdout.decode("utf-8", "surrogateescape") if proc.returncode == 0 else None


def _cache_file(common_dir: Path, blob_id: str) -> Path:
    return common_dir / "rally" / "cache" / f"map-{blob_id}.json"


def _remember_map(repo: git.Repository, loaded: LoadedConfig) -> None:
    """Cache the patterns of the map at HEAD for the fast path (best effort)."""
    from rally_gh import git

    head = git.head_sha(repo)
    for name in MAP_FILES:
        entry = None if head is None else git.entry_at(repo, head, name)
        if entry is None:
            continue
        target = _cache_file(git.common_dir(repo), entry[0])
        if target.exists():
            return
        data = {
            "branch_prefix": loaded.config.branch_prefix,
            "teammates": [[t.name, list(t.exclusive_write)] for t in loaded.config.teammates],
        }
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, target)
        except OSError:
            pass  # a read-only repository: the full path still works
        return


def fast_pre_commit(environ: Mapping[str, str]) -> bool:
    """True when the staged changes are certainly clean; False: ask the full path."""
    from rally_gh.globs import compile_glob
    from rally_gh.ownership import Grant, Ownership

    found = _git_out("rev-parse", "--git-common-dir", "--absolute-git-dir", "--symbolic-full-name", "HEAD")
    if found is None:
        return False  # unborn HEAD, not a repository, ...
    common, gitdir, head_ref = found.splitlines()[:3]
    gitdir_path = Path(gitdir)
    if any((gitdir_path / m).exists() for m in ("MERGE_HEAD", "rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD")):
        return False  # the full path knows whose branch is being merged, rebased or picked
    listed = _git_out("ls-tree", "-z", "HEAD", "--", *MAP_FILES)
    if not listed:
        return False
    entries = {e.split("\t", 1)[1]: e.split()[2] for e in listed.split("\0") if "\t" in e}
    name = next((n for n in MAP_FILES if n in entries), None)
    if name is None:
        return False
    try:
        cached = json.loads(_cache_file((Path.cwd() / common).resolve(), entries[name]).read_text())
    except (OSError, ValueError):
        return False
    names = [t[0] for t in cached["teammates"]]
    teammate = environ.get("RALLY_TEAMMATE") or None
    if teammate is None:
        prefix = cached["branch_prefix"] + "/"
        branch = head_ref.removeprefix("refs/heads/")
        parts = branch[len(prefix):].split("/") if branch.startswith(prefix) else []
        teammate = parts[1] if len(parts) == 2 and all(parts) else None
    if teammate is None:
        teammate = (_git_out("config", "--get", "rally.teammate") or "").strip() or None
    if teammate is None:
        staged_maps = _git_out("diff-index", "--cached", "--name-only", "HEAD", "--", *MAP_FILES)
        return staged_maps == ""
    if teammate not in names:
        return False
    raw = _git_out("diff-index", "--cached", "-z", "--no-renames", "--raw", "HEAD")
    if raw is None:
        return False
    fields = raw.split("\0")
    changes = [(fields[i], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]
    grants = [Grant(t, j, compile_glob(p)) for t, (_, patterns) in enumerate(cached["teammates"])
              for j, p in enumerate(patterns)]
    ownership = Ownership(names, grants)
    added: list[str] = []
    for meta, path in changes:
        old_mode, new_mode, _old, _new, status = meta.lstrip(":").split()
        if status not in ("A", "M", "D") or hostile_reason(path) is not None:
            return False
        if {old_mode, new_mode} & {"120000", "160000"}:
            return False  # symlink targets and gitlinks: the full path decides
        if ownership.owner_of(path) != teammate:
            return False
        if status == "A":
            added.append(path)
    return not added or _no_collisions(added)


def _no_collisions(added: list[str]) -> bool:
    """True when no added path, nor any directory above it, equals a sibling in
    HEAD's tree (or another added path) by case or Unicode normalization."""
    dirs = sorted({"/".join(p.split("/")[:i]) for p in added for i in range(1, p.count("/") + 1)})
    root = _git_out("ls-tree", "-z", "--name-only", "HEAD")
    inner = _git_out("ls-tree", "-z", "--name-only", "HEAD", "--", *(d + "/" for d in dirs)) if dirs else ""
    if root is None or inner is None:
        return False
    present = {*root.split("\0"), *inner.split("\0"), *dirs, *added}
    present.discard("")
    folded: dict[str, str] = {}
    for path in present:
        if folded.setdefault(unicodedata.normalize("NFC", path).casefold(), path) != path:
            return False
    return True


# --- Installing a plain git hook ------------------------------------------


def hook_script(python: str | None) -> str:
    """The plain git hook. ``python``: the interpreter that has rally_gh installed
    (None: find ``rally-gh`` on PATH at commit time)."""
    pinned = f"RALLY_GH_PYTHON={shlex.quote(python)}\n" if python else "RALLY_GH_PYTHON=\n"
    return f"""#!/bin/sh
# {HOOK_MARKER}: refuses a commit in which a teammate writes a path it does not own.
# Installed by `rally-gh hook install`; see https://github.com/rally-gh/rally-gh#hooks
{pinned}if [ -n "$RALLY_GH_PYTHON" ] && [ -x "$RALLY_GH_PYTHON" ]; then
    "$RALLY_GH_PYTHON" -m rally_gh hook pre-commit || exit $?
elif command -v rally-gh >/dev/null 2>&1; then
    rally-gh hook pre-commit || exit $?
else
    echo "rally-gh hook: rally-gh is not installed here; ownership not checked (pip install rally-gh)" >&2
fi
orig="$(dirname "$0")/pre-commit.orig"
if [ -x "$orig" ]; then
    exec "$orig" "$@"
fi
"""


def install_hook(repo: git.Repository, force: bool, python: str | None) -> tuple[Path, str]:
    """Write the pre-commit hook; returns its path and what was done."""
    from rally_gh import git

    directory = git.hooks_dir(repo)
    target = directory / "pre-commit"
    note = "installed"
    if target.exists() or target.is_symlink():
        current = target.read_text(errors="replace") if target.is_file() else ""
        if HOOK_MARKER in current:
            note = "updated"
        elif not force:
            raise GitError(
                f"{target}: a pre-commit hook that rally-gh did not write is already there",
                hint="`rally-gh hook install --force` keeps it as pre-commit.orig and runs it after the "
                "ownership check; with the pre-commit framework, add the `rally-ownership` hook to "
                ".pre-commit-config.yaml instead",
            )
        else:
            kept = directory / "pre-commit.orig"
            if kept.exists():
                raise GitError(f"{kept}: already exists, so {target} cannot be moved there",
                               hint="remove or rename one of them, then run the command again")
            os.replace(target, kept)
            note = f"installed; the previous hook is kept as {kept.name} and runs after it"
    directory.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".rally-tmp")
    tmp.write_text(hook_script(python))
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, target)
    return target, note
