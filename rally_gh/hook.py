"""The pre-commit hook: the same ownership rules as ``check``, on the staged index.

The pre-commit framework hands hooks only added and modified files and hides
deletions and the old side of renames, so the hook reads the index itself.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rally_gh.errors import GitError
from rally_gh.fasthook import MAP_FILES, compile_table, table_file

if TYPE_CHECKING:  # pygit2 and pydantic are imported only when needed
    from rally_gh import git
    from rally_gh.config import LoadedConfig, Problem
    from rally_gh.ownership.enforce import CheckResult

HOOK_MARKER = "rally-gh-hook"


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


def pre_commit(repo: git.Repository, config_path: str | None, environ: Mapping[str, str], *,
               pull_head: str | None = None) -> HookOutcome:
    """The staged change against the map at HEAD. ``pull_head``: the pull request's head
    branch in CI, whose checkout is detached (see ``enforce.who_is_writing``)."""
    from rally_gh import git
    from rally_gh.ownership.enforce import check_staged, map_at, who_is_writing

    operation = git.in_progress_operation(repo)
    # `git commit -a`, `--only`, `--include` and `git commit PATH` commit a temporary index.
    index_file = environ.get("GIT_INDEX_FILE") or None
    loaded = None if git.head_sha(repo) is None else map_at(repo, "HEAD", config_path)
    if loaded is not None and config_path is None:
        _remember_map(repo, loaded)
    if loaded is None:
        note = "no ownership map committed at HEAD yet: nothing to enforce"
        return HookOutcome(None, "nobody", None, _staged_map_problems(repo, config_path, index_file), note)
    teammate, source = who_is_writing(repo, loaded, None, environ, pull_head=pull_head)
    if teammate is None:
        return HookOutcome(None, source, None, _staged_map_problems(repo, config_path, index_file))
    result = check_staged(repo, loaded, teammate, index_file)
    if operation == "merge":
        result = _without_merged_in(repo, result, index_file)
    return HookOutcome(teammate, source, result)


def _without_merged_in(repo: git.Repository, result: CheckResult, index_file: str | None) -> CheckResult:
    """During a merge, a staged path identical to the merged-in side was written by
    that side's commits (checked on their own), not by this commit."""
    from rally_gh import git
    from rally_gh.ownership.enforce import CheckResult

    theirs = git.merge_head_shas(repo)
    staged = git.StagedIndex.of(repo, index_file).entries()

    def taken_from_them(path: str) -> bool:
        return any(git.entry_at(repo, sha, path) == staged.get(path) for sha in theirs)

    kept = tuple(v for v in result.violations if not taken_from_them(v.path))
    return CheckResult(result.teammate, result.commits_checked, kept)


def _staged_map_problems(repo: git.Repository, config_path: str | None,
                         index_file: str | None) -> tuple[Problem, ...]:
    """With no teammate writing, the hook only validates a staged ownership map."""
    from rally_gh import git
    from rally_gh.config import Problem, load_config_text
    from rally_gh.errors import ConfigError
    from rally_gh.ownership.validation import validate_map

    staged = {c.path for c in git.staged_changes(repo, index_file) if c.status != "deleted"}
    for name in (config_path,) if config_path else MAP_FILES:
        if name not in staged:
            continue
        data = git.read_index_blob(repo, name, index_file)
        if data is None:
            continue
        try:
            loaded = load_config_text(data, name)
        except ConfigError as err:
            return tuple(getattr(err, "problems", [])) or (Problem("error", "schema", str(err)),)
        return tuple(p for p in validate_map(loaded) if p.severity == "error")
    return ()


# --- The map table for the fast path (rally_gh.fasthook) ----------------


def _remember_map(repo: git.Repository, loaded: LoadedConfig) -> None:
    """Cache the compiled patterns of the map at HEAD for the fast path (best effort)."""
    from rally_gh import git
    from rally_gh.errors import PatternError

    head = git.head_sha(repo)
    for name in MAP_FILES:
        entry = None if head is None else git.entry_at(repo, head, name)
        if entry is None:
            continue
        target = Path(table_file(str(git.common_dir(repo)), entry[0]))
        if target.exists():
            return
        teammates = [(t.name, list(t.exclusive_write)) for t in loaded.config.teammates]
        try:
            table = compile_table(loaded.config.branch_prefix, teammates)
        except PatternError:
            return  # the full path reports the pattern; nothing to cache
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(table)
            os.replace(tmp, target)
        except OSError:
            pass  # a read-only repository: the full path still works
        return


# --- Installing a plain git hook ------------------------------------------


def hook_script(python: str | None, import_paths: Sequence[str] = ()) -> str:
    """The plain git hook. ``python``: the interpreter that has rally_gh installed
    (None: find ``rally-gh`` on PATH at commit time). ``import_paths``: the
    directories holding rally_gh and re2, for the fast path, which runs without
    Python's ``site`` (see rally_gh.fasthook)."""
    if python is None:
        missing = "rally-gh is not on PATH"
        run = """if command -v rally-gh >/dev/null 2>&1; then
    rally-gh hook pre-commit || exit $?
"""
    else:
        paths = " ".join(shlex.quote(p) for p in import_paths)
        missing = "neither $RALLY_GH_PYTHON (the Python it was installed with) nor rally-gh on PATH is there"
        run = f"""RALLY_GH_PYTHON={shlex.quote(python)}
if [ -x "$RALLY_GH_PYTHON" ]; then
    # -I -S: no site, no environment, no working directory on sys.path (about 30 ms less).
    "$RALLY_GH_PYTHON" -I -S -c '{_FAST_BOOTSTRAP}' {paths} || exit $?
elif command -v rally-gh >/dev/null 2>&1; then
    rally-gh hook pre-commit || exit $?
"""
    return f"""#!/bin/sh
# {HOOK_MARKER}: refuses a commit in which a teammate writes a path it does not own.
# Installed by `rally-gh hook install`; see https://github.com/rally-gh/rally-gh#hooks
orig="$(dirname "$0")/pre-commit.orig"
# Kept as pre-commit.legacy by the pre-commit framework, whose config runs rally-ownership
# right after: one check, one message.
if [ -n "$PRE_COMMIT_RUNNING_LEGACY" ] && {_FRAMEWORK_RUNS_IT}; then
    if [ -x "$orig" ]; then exec "$orig" "$@"; fi
    exit 0
fi
{run}elif [ "$(git config --bool rally.hookOptional 2>/dev/null)" = true ]; then
    echo "rally-gh hook: {missing}; ownership not checked (rally.hookOptional is true)" >&2
else
    # A hook that cannot run must not pass what it exists to refuse.
    echo "rally-gh hook: cannot check ownership: {missing}" >&2
    echo "  fix: install rally-gh, then run \\`rally-gh hook install\\` again from where it is installed" >&2
    echo "  or let commits through unchecked in this repository: git config rally.hookOptional true" >&2
    exit 1
fi
if [ -x "$orig" ]; then
    exec "$orig" "$@"
fi
"""


# Whether the repository's .pre-commit-config.yaml names the rally-ownership hook (a line `- id: rally-ownership`).
_FRAMEWORK_RUNS_IT = ("grep -Eqs '^[[:space:]]*(-[[:space:]]*)?id:[[:space:]]*[\"'\\'']?rally-ownership([\"'\\''[:space:]]|$)' "
                      '"$(git rev-parse --show-toplevel)/.pre-commit-config.yaml"')
FRAMEWORK_MARKER = "File generated by pre-commit"


# Runs rally_gh.fasthook, which becomes the full hook when it is not sure (or
# when rally_gh moved since the hook was installed).
_FAST_BOOTSTRAP = """import os, sys
sys.path += sys.argv[1:]
try:
    from rally_gh.fasthook import main
except ImportError:
    os.execv(sys.executable, [sys.executable, "-P", "-m", "rally_gh", "hook", "pre-commit"])
main()"""


def _import_paths() -> list[str]:
    """The directories the fast path imports rally_gh and re2 from."""
    import re2  # type: ignore[import-untyped]

    import rally_gh

    found = (Path(module.__file__).resolve().parent.parent for module in (rally_gh, re2) if module.__file__)
    return list(dict.fromkeys(str(p) for p in found))


def _framework_runs_it(root: Path) -> bool:
    """Whether the pre-commit framework's config at ``root`` names the rally-ownership hook."""
    import re

    try:
        text = (root / ".pre-commit-config.yaml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(r"""^\s*(-\s*)?id:\s*["']?rally-ownership(["'\s]|$)""", text, re.M) is not None


def install_hook(repo: git.Repository, force: bool, python: str | None) -> tuple[Path, str]:
    """Write the pre-commit hook; returns its path and what was done."""
    from rally_gh import git

    directory = git.hooks_dir(repo)
    target = directory / "pre-commit"
    note = "installed"
    if target.exists() or target.is_symlink():
        current = target.read_text(errors="replace") if target.is_file() else ""
        if FRAMEWORK_MARKER in current and _framework_runs_it(git.workdir(repo)):
            # Both would check every commit and print every refusal twice.
            return target, ("not installed: the pre-commit framework's hook is there and its "
                            ".pre-commit-config.yaml runs rally-ownership already")
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
    tmp.write_text(hook_script(python, _import_paths() if python else ()))
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, target)
    return target, note
