"""The run's ledger: its state (run.json), shared by the job threads, saved atomically at every change.

Also where a run's state begins (a new run, a resumed one) and which other runs of the
repository are still alive: their worktrees are in use, their agents may still run.
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path
from typing import Any

from rally_gh import git, process
from rally_gh.config import Config, LoadedConfig
from rally_gh.errors import RallyError
from rally_gh.integrate import superseded_ref
from rally_gh.state import (
    Clock,
    RunState,
    TeammateRecord,
    VerifyResult,
    config_digest,
    integration_branch,
    list_runs,
    load_state,
    new_verify_log,
    pid_alive,
    run_dir,
    runs_dir,
    save_state,
    state_path,
    teammate_branch,
)

VERIFY_OUTPUT_TAIL = 2000


class Ledger:
    """The run state behind a lock; every change is saved at once."""

    def __init__(self, common: Path, state: RunState) -> None:
        self.common = common
        self._lock = threading.Lock()
        self.state = state

    @property
    def run_id(self) -> str:
        return self.state.run_id

    def has(self, name: str) -> bool:
        """Is ``name`` part of this run (the issue may choose a few teammates)?"""
        with self._lock:
            return any(r.name == name for r in self.state.teammates)

    def record(self, name: str) -> TeammateRecord:
        with self._lock:
            return self.state.teammate(name)

    def update(self, name: str, **changes: Any) -> TeammateRecord:
        with self._lock:
            record = self.state.teammate(name).model_copy(update=changes)
            self.state = self.state.with_teammate(record)
            save_state(self.common, self.state)
            return record

    def update_run(self, **changes: Any) -> None:
        with self._lock:
            self.state = self.state.model_copy(update=changes)
            save_state(self.common, self.state)

    def add_risk(self, risk: str) -> None:
        with self._lock:
            self.state = self.state.model_copy(update={"risks": (*self.state.risks, risk)})
            save_state(self.common, self.state)

    def add_problems(self, *problems: str) -> None:
        with self._lock:
            self.state = self.state.model_copy(update={"problems": (*self.state.problems, *problems)})
            save_state(self.common, self.state)

    def add_phase(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.state = self.state.with_phase(phase, seconds)
            save_state(self.common, self.state)

    def clear_worktrees(self) -> None:
        with self._lock:
            records = tuple(r.model_copy(update={"worktree": None}) for r in self.state.teammates)
            self.state = self.state.model_copy(update={"teammates": records})
            save_state(self.common, self.state)

    def verify_log(self, name: str) -> Path:
        """A new file under the run's folder for the output of ``name``'s verify commands."""
        return new_verify_log(self.common, self.run_id, name)

    def verify_result(self, run: process.CommandRun) -> VerifyResult:
        """A verify command's run as the state keeps it: its output's tail, its log relative to the run's folder."""
        folder = run_dir(self.common, self.run_id)
        log = str(run.log.relative_to(folder)) if run.log is not None and run.log.is_relative_to(folder) else None
        return VerifyResult(command=run.command, passed=run.passed, exit_code=run.exit_code,
                            duration_s=run.duration_s, output_tail=run.output_tail[-VERIFY_OUTPUT_TAIL:], log=log)


def new_state(repo: git.Repository, common: Path, run_id: str, loaded: LoadedConfig, issue_text: str | None,
              clock: Clock, dry_run: bool, selected: frozenset[str] | None = None) -> RunState:
    if state_path(common, run_id).exists():
        raise RallyError(f"run {run_id!r} already exists ({state_path(common, run_id)})",
                         hint=f"continue it with `rally-gh run --resume {run_id}`, or choose another --run-id")
    return fresh_state(repo, run_id, loaded, issue_text, clock, dry_run, selected)


def fresh_state(repo: git.Repository, run_id: str, loaded: LoadedConfig, issue_text: str | None, clock: Clock,
                dry_run: bool, selected: frozenset[str] | None = None) -> RunState:
    """A run's state before anything ran, from the map and the base commit alone."""
    config = loaded.config
    base_ref = config.base or git.head_branch(repo) or "HEAD"
    base_sha = git.resolve(repo, base_ref)
    prefix = config.branch_prefix
    records = tuple(
        TeammateRecord(
            name=t.name, role=t.role, agent=config.agent_of(t).preset, task_title=_first_line(t.task),
            owns=t.exclusive_write, blocked_by=t.blocked_by, branch=teammate_branch(prefix, run_id, t.name),
        )
        for t in config.teammates
        if selected is None or t.name in selected
    )
    return RunState(
        run_id=run_id, team=config.team, branch_prefix=prefix, base_ref=base_ref, base_sha=base_sha,
        config_digest=config_digest(config), dry_run=dry_run, started_at=clock(), issue_text=issue_text,
        max_parallel=config.max_parallel, teammates=records, integration_branch=integration_branch(prefix, run_id),
    )


def resumed_state(common: Path, run_id: str, config: Config) -> RunState:
    state = load_state(common, run_id)
    if state.config_digest != config_digest(config):
        raise RallyError(
            f"run {run_id} was started with a different rally.yml; resuming it with this one could change "
            "who owns what mid-run",
            hint="restore the map it started with, or start a new run",
        )
    if state.status == "running" and state.pid != os.getpid() and pid_alive(state.pid):
        raise RallyError(f"run {run_id} is still running (process {state.pid})",
                         hint="wait for it, or stop that process first")
    if state.status == "finished":
        raise RallyError(f"run {run_id} has already finished", hint=f"see `rally-gh report --run {run_id}`")
    # Teammates cut short by the interruption start again; finished ones are kept.
    records = tuple(r if r.finished else r.model_copy(update={"outcome": "pending", "worktree": None})
                    for r in state.teammates)
    return state.model_copy(update={"teammates": records, "status": "running", "finished_at": None})


def _running(common: Path, exclude: str) -> list[tuple[str, bool]]:
    """Runs that say they are running, each with whether its orchestrator is alive."""
    found = []
    for run_id in list_runs(common):
        if run_id == exclude:
            continue
        try:
            other = load_state(common, run_id)
        except RallyError:
            continue
        if other.status == "running":
            found.append((run_id, pid_alive(other.pid)))
    return found


def live_runs(common: Path, exclude: str) -> list[str]:
    """Runs whose orchestrator is still alive: their worktrees are in use."""
    return [run_id for run_id, alive in _running(common, exclude) if alive]


def dead_runs(common: Path, exclude: str) -> list[str]:
    """Runs whose orchestrator is gone (killed, crashed) without saying so."""
    return [run_id for run_id, alive in _running(common, exclude) if not alive]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:72]
    return ""


def set_aside_earlier_attempt(repo: git.Repository, common: Path, run_id: str, prefix: str) -> str | None:
    """Before a re-run of a CI run in the workspace an earlier attempt left (a self-hosted runner
    keeps it): that attempt's records go to ``rally/attempts/<run>-<n>`` and its branches under
    ``refs/rally/superseded/``, as a re-run on a fresh runner supersedes them on the remote, so the
    re-run starts as on a fresh runner and nothing of the earlier one is lost. A note saying so;
    None when there was none. Refused while that attempt still runs."""
    folder = run_dir(common, run_id)
    if not folder.exists():
        return None
    try:
        earlier: RunState | None = load_state(common, run_id)
    except RallyError:
        earlier = None
    if earlier is not None and earlier.status == "running" and earlier.pid != os.getpid() and pid_alive(earlier.pid):
        raise RallyError(f"run {run_id} is still running here (process {earlier.pid})",
                         hint="wait for it, or stop that process first")
    attempts = runs_dir(common).parent / "attempts"
    attempts.mkdir(parents=True, exist_ok=True)
    number = next(n for n in itertools.count(1) if not (attempts / f"{run_id}-{n}").exists())
    aside = attempts / f"{run_id}-{number}"
    folder.rename(aside)
    git.prune_worktrees(repo, keep_runs=live_runs(common, exclude=run_id))
    branches = git.ref_names(repo, f"refs/heads/{prefix}/{run_id}/")
    for ref in branches:
        sha = git.ref_sha(repo, ref)
        if sha is not None:
            git.update_ref_if(repo, superseded_ref(ref.removeprefix("refs/heads/"), sha), sha, None)
    if branches:
        git.delete_branches(repo, [ref.removeprefix("refs/heads/") for ref in branches])
    return (f"an earlier attempt of run {run_id} left its records here (a kept workspace): they are now in {aside}, "
            "its branches under refs/rally/superseded/; this attempt starts afresh")
