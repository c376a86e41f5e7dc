"""Finding and cleaning up runs: ``rally-gh runs``, ``clean``, and the latest run for ``report``.

A run leaves three things in the repository: its branches (``<prefix>/<run>/...``),
its state (``<git common dir>/rally/runs/<run>/``) and, when it was killed, worktrees
under ``rally_worktrees_root``; a CI run re-run in a kept workspace also leaves its
earlier attempts (their state under ``rally/attempts/<run>-<n>/``, their branches under
``refs/rally/superseded/<prefix>/<run>/``), which go with the run, judged as its branches
are. A run is found by any of these: one whose earlier attempts are all that is left (the
re-run never wrote its state, or it was removed) is listed and cleaned too. ``plan_clean`` decides what may go, as a value; ``execute_clean`` removes it. A
branch goes only when every commit of it that no other ref holds has an equal change (the
same patch id) in a ref that stays: the integration branch holds its teammates' work as
replayed commits, the base branch holds it once the pull request is merged, a
remote-tracking ref once it was pushed. Otherwise the branch is kept, and its run's state
with it, unless ``force``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rally_gh import git
from rally_gh.errors import RallyError, UsageError
from rally_gh.state import (
    INTEGRATION_NAME,
    STATE_FILE,
    RunState,
    list_runs,
    load_state,
    pid_alive,
    runs_dir,
)

DEFAULT_PREFIX = "rally"


@dataclass(frozen=True)
class RunInfo:
    """One run as ``rally-gh runs`` shows it: from its state, or from its branches alone."""

    run_id: str
    state: RunState | None  # None: only branches are left (the state was removed, or came from elsewhere)
    status: str  # done | partial | failed | running | interrupted | planned | dry run | branches only
    started_at: float | None
    branches: tuple[str, ...]  # short names of the branches that exist, sorted
    attempts: tuple[Path, ...] = ()
    """The states of its earlier attempts that a re-run in a kept workspace set aside, oldest first."""
    superseded: tuple[str, ...] = ()
    """Its earlier attempts' branches (full ref names under ``refs/rally/superseded/``)."""

    @property
    def alive(self) -> bool:
        """Its orchestrator is still running: nothing of it may be removed."""
        return self.state is not None and self.state.status == "running" and pid_alive(self.state.pid)


def find_runs(repo: git.Repository) -> list[RunInfo]:
    """Every run of the repository, newest first."""
    common = git.common_dir(repo)
    states: dict[str, RunState] = {}
    for run_id in list_runs(common):
        try:
            states[run_id] = load_state(common, run_id)
        except RallyError:
            continue  # unreadable (another version's): its branches still show it
    attempts = _earlier_attempts(common)
    earlier = [s for aside in attempts.values() for s in aside.values() if s is not None]
    prefixes = sorted({DEFAULT_PREFIX, *(s.branch_prefix for s in (*states.values(), *earlier))})
    branches = _run_branches(repo, prefixes)
    superseded = _superseded_refs(repo, prefixes)
    found = []
    for run_id in sorted(set(states) | set(branches) | set(attempts) | set(superseded)):
        state, names = states.get(run_id), branches.get(run_id, ([], None))[0]
        aside = attempts.get(run_id, {})
        found.append(RunInfo(run_id, state, _status(state, bool(names)), _started(state, branches, aside, run_id),
                             tuple(sorted(names)), tuple(aside), tuple(superseded.get(run_id, ()))))
    return sorted(found, key=lambda r: (-(r.started_at or 0), r.run_id))


def _started(state: RunState | None, branches: dict[str, tuple[list[str], float | None]],
             aside: dict[Path, RunState | None], run_id: str) -> float | None:
    """When a run started: its state says; else its branches' newest commit, else its last earlier attempt."""
    if state is not None:
        return state.started_at
    if run_id in branches:
        return branches[run_id][1]
    return next((s.started_at for s in reversed(aside.values()) if s is not None), None)


def latest_run(repo: git.Repository) -> str:
    """The id of the run started last that has a state (what ``report`` shows without ``--run``)."""
    with_state = [r for r in find_runs(repo) if r.state is not None]
    if not with_state:
        raise RallyError(f"no run in this repository yet ({runs_dir(git.common_dir(repo))} holds none)",
                         hint="start one with `rally-gh run` (or `rally-gh run --dry-run`)")
    return with_state[0].run_id


def _status(state: RunState | None, has_branches: bool) -> str:
    if state is None:
        return "branches only" if has_branches else "earlier attempts only"
    if state.dry_run:
        return "dry run"
    if state.status == "running":
        return "running" if pid_alive(state.pid) else "interrupted"
    if state.status != "finished":
        return state.status
    from rally_gh.report import run_status

    return run_status(state)


def _run_branches(repo: git.Repository, prefixes: Sequence[str]) -> dict[str, tuple[list[str], float | None]]:
    """Run id -> (its branches, the newest tip's commit time), for branches ``<prefix>/<run>/<name>``."""
    found: dict[str, tuple[list[str], float | None]] = {}
    for branch, when in git.branches_with_times(repo, prefixes):
        for prefix in prefixes:
            rest = branch.removeprefix(prefix + "/")
            run_id, slash, name = rest.partition("/")
            if rest != branch and slash and name and "/" not in name:
                names, newest = found.get(run_id, ([], None))
                names.append(branch)
                found[run_id] = (names, max(filter(None, (newest, when)), default=None))
                break
    return found


# --- Cleaning -----------------------------------------------------------------


@dataclass(frozen=True)
class KeptBranch:
    branch: str
    commits: tuple[str, ...]  # the commits whose work is nowhere else, newest first
    checked_out: Path | None = None
    """The work tree it is checked out in: git will not delete it, and someone works there."""


@dataclass(frozen=True)
class RunCleanup:
    """What cleaning one run removes, and what it keeps and why."""

    run_id: str
    branches: tuple[str, ...]  # to delete
    kept: tuple[KeptBranch, ...]  # work that exists nowhere else (without --force)
    state_dir: Path | None  # to delete (None: none, or kept with a kept branch)
    worktrees: tuple[Path, ...]  # leftover checkouts to remove
    attempts: tuple[Path, ...] = ()  # earlier attempts' states to delete (kept with a kept branch)
    superseded: tuple[str, ...] = ()  # earlier attempts' branches (full ref names) to delete
    has_state: bool = True  # False: only its earlier attempts' states are left


@dataclass(frozen=True)
class CleanPlan:
    runs: tuple[RunCleanup, ...]
    skipped: tuple[str, ...]  # runs still running


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``2w``, ``1d12h``, ``90m``, ``45s`` -> seconds."""
    units = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([wdhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"--older-than {text!r}: not an age",
                         hint="write a number and a unit, largest first: 30d, 12h, 2w, 1d12h, 90m")
    return float(sum(int(n) * units[u] for n, u in parts))


def plan_clean(repo: git.Repository, runs: Sequence[RunInfo], *, force: bool) -> CleanPlan:
    """What removing ``runs`` would remove. Integration branches are judged before teammate
    branches, so that a teammate's work held by a kept integration branch lets its branch go."""
    skipped = tuple(r.run_id for r in runs if r.alive)
    chosen = [r for r in runs if not r.alive]
    candidates = {b for r in chosen for b in r.branches}
    every_ref = git.ref_names(repo, "refs/heads", "refs/remotes", "refs/tags")
    keep_refs = [ref for ref in every_ref if ref.removeprefix("refs/heads/") not in candidates]
    kept: dict[str, KeptBranch] = {}
    for branch, tree in git.checked_out_branches(repo).items():
        if branch in candidates:  # even with --force: it is someone's checkout
            kept[branch] = KeptBranch(branch, (), checked_out=tree)
            keep_refs.append(f"refs/heads/{branch}")
    if not force:
        ordered = sorted(candidates, key=lambda b: (not b.endswith("/" + INTEGRATION_NAME), b))
        for branch in ordered:
            if branch in kept:
                continue
            lost = _work_nowhere_else(repo, f"refs/heads/{branch}", keep_refs)
            if lost:
                kept[branch] = KeptBranch(branch, lost)
                keep_refs.append(f"refs/heads/{branch}")
        # An earlier attempt's branches go only when what stays holds their work, as for branches.
        for ref in (ref for r in chosen for ref in r.superseded):
            lost = _work_nowhere_else(repo, ref, keep_refs)
            if lost:
                kept[ref] = KeptBranch(ref, lost)
    worktree_root = git.rally_worktrees_root(repo)
    common = git.common_dir(repo)
    plans = []
    for r in chosen:
        kept_here = tuple(kept[b] for b in (*r.branches, *r.superseded) if b in kept)
        state_dir = runs_dir(common) / r.run_id
        plans.append(RunCleanup(
            r.run_id,
            tuple(b for b in r.branches if b not in kept),
            kept_here,
            state_dir if state_dir.is_dir() and not kept_here else None,
            tuple(sorted((worktree_root / r.run_id).iterdir())) if (worktree_root / r.run_id).is_dir() else (),
            () if kept_here else r.attempts,
            tuple(ref for ref in r.superseded if ref not in kept),
            state_dir.is_dir(),
        ))
    return CleanPlan(tuple(plans), skipped)


def execute_clean(repo: git.Repository, plan: CleanPlan) -> None:
    for run in plan.runs:
        for tree in run.worktrees:
            git.remove_worktree(repo, tree)
        if run.worktrees and run.worktrees[0].parent.is_dir() and not any(run.worktrees[0].parent.iterdir()):
            run.worktrees[0].parent.rmdir()
        if run.branches:
            # Whatever is checked out, a run's branch is never the user's checkout: merged or not, it goes.
            git.delete_branches(repo, run.branches)
        if run.superseded:
            git.delete_refs(repo, run.superseded)
        if run.state_dir is not None:
            shutil.rmtree(run.state_dir)
        for attempt in run.attempts:
            shutil.rmtree(attempt)
    git.prune_worktree_records(repo)


def _earlier_attempts(common: Path) -> dict[str, dict[Path, RunState | None]]:
    """Run id -> the states of its earlier attempts that a re-run in a kept workspace set aside
    (``ledger.set_aside_earlier_attempt``: ``rally/attempts/<run>-<n>``), in the order they ran,
    each read when this version can (None when not)."""
    folder = runs_dir(common).parent / "attempts"
    found: dict[str, dict[Path, RunState | None]] = {}
    named = ((p, re.fullmatch(r"(.+)-(\d+)", p.name)) for p in (folder.iterdir() if folder.is_dir() else ()))
    for path, match in sorted(((p, m) for p, m in named if m and p.is_dir()), key=lambda pm: int(pm[1].group(2))):
        try:
            state: RunState | None = RunState.model_validate_json((path / STATE_FILE).read_bytes())
        except (OSError, ValueError):
            state = None  # unreadable (another version's, or cut short): still the run's, to list and clean
        found.setdefault(match.group(1), {})[path] = state
    return found


def _superseded_refs(repo: git.Repository, prefixes: Sequence[str]) -> dict[str, list[str]]:
    """Run id -> the branches of its earlier attempts, ``refs/rally/superseded/<prefix>/<run>/<name>/<sha>``."""
    found: dict[str, list[str]] = {}
    for ref in git.ref_names(repo, *(f"refs/rally/superseded/{p}/" for p in prefixes)):
        for prefix in prefixes:
            rest = ref.removeprefix(f"refs/rally/superseded/{prefix}/")
            parts = rest.split("/")
            if rest != ref and len(parts) == 3 and all(parts):
                found.setdefault(parts[0], []).append(ref)
                break
    return found


def _work_nowhere_else(repo: git.Repository, ref: str, refs: Sequence[str]) -> tuple[str, ...]:
    """The commits of ``ref`` that no ref of ``refs`` holds, nor an equal change of theirs."""
    own = git.non_merge_commits(repo, [ref], refs)
    if not own:
        return ()
    theirs = git.non_merge_commits(repo, refs, [ref])
    held = set(git.patch_ids(repo, theirs).values()) if theirs else set()
    own_ids = git.patch_ids(repo, own)
    # A commit with no patch id changes nothing (an empty commit): it carries no work.
    return tuple(sha for sha in own if sha in own_ids and own_ids[sha] not in held)
