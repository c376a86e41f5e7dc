"""``rally-gh clean``: remove runs' branches, state and leftover worktrees, never work that is nowhere else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rally_gh import git
from rally_gh.errors import EXIT_OK, UsageError
from rally_gh.housekeeping import CleanPlan, execute_clean, find_runs, parse_age, plan_clean
from rally_gh.state import Clock, check_ref_component


@dataclass(frozen=True)
class CleanOptions:
    run_id: str | None = None
    """Only this run (default: every run that is not running)."""
    older_than: str | None = None
    """Only runs started more than this long ago (30d, 12h, 2w)."""
    dry_run: bool = False
    force: bool = False
    """Also delete branches whose work exists nowhere else."""


def run(cwd: Path, clock: Clock, stdout: TextIO, *, options: CleanOptions = CleanOptions()) -> int:
    run_id, older_than, dry_run = options.run_id, options.older_than, options.dry_run
    repo = git.open_repo(cwd, allow_bare=True)
    runs = find_runs(repo)
    if run_id is not None:
        check_ref_component(run_id, "run id")
        runs = [r for r in runs if r.run_id == run_id]
        if not runs:
            raise UsageError(f"--run {run_id}: no such run in this repository",
                             hint="`rally-gh runs` lists them")
    if older_than is not None:
        cutoff = clock() - parse_age(older_than)
        runs = [r for r in runs if r.started_at is not None and r.started_at < cutoff]
    if not runs:
        stdout.write("nothing to clean\n")
        return EXIT_OK
    plan = plan_clean(repo, runs, force=options.force)
    _describe(plan, dry_run, stdout)
    if not dry_run:
        execute_clean(repo, plan)
    return EXIT_OK


def _describe(plan: CleanPlan, dry_run: bool, stdout: TextIO) -> None:
    verb = "would delete" if dry_run else "deleted"
    for run_id in plan.skipped:
        stdout.write(f"{run_id}: still running, left alone\n")
    branches = worktrees = states = 0
    for run in plan.runs:
        for branch in run.branches:
            stdout.write(f"{run.run_id}: {verb} branch {branch}\n")
        for keep in run.kept:
            if keep.checked_out is not None:
                stdout.write(f"{run.run_id}: kept branch {keep.branch}: it is checked out in {keep.checked_out}; "
                             "check out another branch there, or remove that worktree, then clean again\n")
                continue
            n = len(keep.commits)
            what = "an earlier attempt's branch" if keep.branch.startswith("refs/") else "branch"
            stdout.write(f"{run.run_id}: kept {what} {keep.branch}: {n} commit{'s' * (n != 1)} "
                         f"({', '.join(git.short(c) for c in keep.commits[:3])}{', ...' if n > 3 else ''}) "
                         f"hold{'s' * (n == 1)} work that no other branch or remote-tracking ref has; merge or push it, "
                         "or delete it anyway with --force\n")
        for tree in run.worktrees:
            stdout.write(f"{run.run_id}: {verb} leftover worktree {tree}\n")
        for ref in run.superseded:
            stdout.write(f"{run.run_id}: {verb} an earlier attempt's branch {ref}\n")
        for attempt in run.attempts:
            stdout.write(f"{run.run_id}: {verb} an earlier attempt's state {attempt}\n")
        if run.state_dir is not None:
            stdout.write(f"{run.run_id}: {verb} state {run.state_dir}\n")
        elif run.kept and run.has_state:
            stdout.write(f"{run.run_id}: kept its state (`rally-gh report --run {run.run_id}`) with its kept branches\n")
        elif run.kept:
            stdout.write(f"{run.run_id}: kept its earlier attempts' states with its kept branches\n")
        branches += len(run.branches)
        worktrees += len(run.worktrees)
        states += run.state_dir is not None
    kept = sum(1 for run in plan.runs for k in run.kept if k.checked_out is None)
    busy = sum(1 for run in plan.runs for k in run.kept if k.checked_out is not None)
    summary = (f"{'dry run: ' if dry_run else ''}{verb} {branches} branch{'es' * (branches != 1)}, "
               f"{states} run state{'s' * (states != 1)} and {worktrees} leftover worktree{'s' * (worktrees != 1)}")
    if kept:
        summary += f"; kept {kept} branch{'es' * (kept != 1)} with work found nowhere else"
    if busy:
        summary += f"; kept {busy} branch{'es' * (busy != 1)} checked out in a worktree"
    stdout.write(summary + "\n")
