"""A whole run (SPEC section 4): assess, plan, spawn, run, reconcile, integrate,
verify, publish, clean up.

The run's state is saved atomically after every step, so an interrupted or
crashed run can be resumed and reported on. Teammates are scheduled by
``rally_gh.runner.run_teammates``; each teammate's job creates its worktree,
runs its agent and reconciles the result in its own thread, so a teammate
blocked by another starts as soon as that one is reconciled, from an
integration tip holding its work.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rally_gh import agents, git, integrate, plan, process, runner
from rally_gh.config import Config, LoadedConfig, Problem, Teammate, format_key_path
from rally_gh.limits import MAX_TEAM as MAX_PARALLEL_LIMIT
from rally_gh.errors import RallyError, UsageError
from rally_gh.tasks import RunTasks, apply_tasks
from rally_gh.state import (
    Clock,
    Conflict,
    ConflictCause,
    ConvergenceGroup,
    RunState,
    TeammateRecord,
    VerifyResult,
    VerifyRunRecord,
    Violation,
    check_ref_component,
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
from rally_gh.ownership import enforce
from rally_gh.ownership.validation import control_file_grants, validate_map
from rally_gh.words import plural, possessive

EventSink = Callable[[str, str, str], None]  # (teammate or "", state, detail), as runner.EventSink

RALLY_AUTHOR = ("rally-gh", "rally-gh@users.noreply.github.com")
VERIFY_OUTPUT_TAIL = 2000


def _noop(name: str, state: str, detail: str) -> None:
    pass


def run(repo_path: Path, loaded: LoadedConfig, run_id: str, issue_text: str | None, clock: Clock,
        environ: Mapping[str, str], on_event: EventSink | None = None, dry_run: bool = False,
        resume: bool = False, *, remote: str | None = None, only: Collection[str] | None = None,
        max_parallel: int | None = None, tasks: RunTasks | None = None) -> RunState:
    """Run the team once (or resume run ``run_id``); the final state, also saved in run.json.

    ``remote``: push every branch there too (a run in CI). ``only``: run just these
    teammates (a dispatch's ``teammates`` input). ``max_parallel``: fewer at once than the map's (never more).
    ``tasks``: this run's tasks (the issue's ``rally`` block, a tasks or handoff file).

    Raises RallyError when the plan is refused or the run cannot start; the
    outcome of each teammate is data in the returned state, never an exception.
    """
    emit = on_event or _noop
    check_ref_component(run_id, "run id")
    for t in loaded.config.teammates:
        check_ref_component(t.name, "teammate name")
    repo = git.open_repo(repo_path)
    common = git.common_dir(repo)

    phase_started = clock()
    emit("", "phase", "assess")
    # This run's tasks choose who runs and what they are asked; ownership stays the map's.
    selected = None if tasks is None else frozenset(tasks.names)
    if tasks is not None:
        loaded = replace(loaded, config=apply_tasks(loaded.config, tasks))
    if only:
        unknown = sorted(set(only) - {t.name for t in loaded.config.teammates})
        if unknown:
            raise UsageError(f"teammates {', '.join(unknown)}: not in {loaded.source.file}",
                             hint="teammates are: " + ", ".join(t.name for t in loaded.config.teammates))
        selected = frozenset(only) if selected is None else selected & frozenset(only)
    if max_parallel is not None:
        if not 1 <= max_parallel <= MAX_PARALLEL_LIMIT:
            raise UsageError(f"max-parallel {max_parallel}: must be 1 to {MAX_PARALLEL_LIMIT}")
        # Lower only: the map's max_parallel is what its owners allowed (and paid for).
        capped = min(max_parallel, loaded.config.max_parallel)
        loaded = replace(loaded, config=loaded.config.model_copy(update={"max_parallel": capped}))
    config = loaded.config
    problems = _assess(loaded, selected, agent_program_problems(repo, loaded, selected, environ),
                       git.branch_names(repo))
    if resume:
        state = _resumable(common, run_id, config)
    else:
        state = _new_state(repo, common, run_id, loaded, issue_text, clock, dry_run, selected)
    state = state.model_copy(update={"problems": tuple(p.message for p in problems),
                                     "risks": tuple(_risks(loaded, environ))})
    state = state.with_phase("assess", clock() - phase_started)
    save_state(common, state)

    phase_started = clock()
    emit("", "phase", "plan")
    waves = plan.waves(config, selected)
    state = state.model_copy(update={"waves": tuple(tuple(w) for w in waves)}).with_phase("plan", clock() - phase_started)
    if dry_run:
        state = state.model_copy(update={"status": "planned", "finished_at": clock()})
        save_state(common, state)
        return state

    # Leftovers of a crashed run (this one, when resuming) would block `worktree add`; its agents,
    # in process groups of their own, may even still be running.
    for dead in {*_dead_runs(common, exclude=run_id), *([run_id] if resume else [])}:
        process.stop_strays(runs_dir(common) / dead)
    git.prune_worktrees(repo, keep_runs=_live_runs(common, exclude=run_id))
    state = state.model_copy(update={"status": "running", "pid": os.getpid()})
    save_state(common, state)

    ledger = _Ledger(common, state)
    orchestra = _Orchestra(repo_path, loaded, ledger, issue_text, clock, environ, emit, remote)
    cancel = process.CancelToken()
    before = git.dirty_paths(repo)
    # Signals are handled the same in every phase, whatever rally-gh inherited: during the agents
    # they cancel (the agents are stopped through the token), in integrate, verify and publish they
    # interrupt (a verify command is stopped with its group); either way the run ends interrupted,
    # reported and resumable. During cleanup a second signal only cancels, so cleanup finishes.
    with _signals_cancel(cancel):
        try:
            orchestra.run_agents(cancel)
            _note_writes_outside_worktrees(ledger, before, git.dirty_paths(git.open_repo(repo_path)))
            if not cancel.cancelled:
                try:
                    with _signals_interrupt(cancel):
                        orchestra.integrate_verify_publish(cancel)
                except KeyboardInterrupt:
                    cancel.cancel()
        finally:
            # Whatever happened, no worktree stays behind: branches keep everything.
            started = clock()
            emit("", "phase", "cleanup")
            git.prune_worktrees(git.open_repo(repo_path), keep_runs=_live_runs(common, exclude=run_id))
            ledger.clear_worktrees()
            ledger.add_phase("cleanup", clock() - started)
            if cancel.cancelled or sys.exc_info()[0] is not None:
                # Stopped, or broken by an error of ours: either way `run --resume` picks it up.
                ledger.update_run(status="interrupted", pid=None)
            else:
                ledger.update_run(status="finished", finished_at=clock(), pid=None)
            cancel.close()
    return ledger.state


# --- Runs split across CI jobs (SPEC section 7) -------------------------------------
#
# The jobs share nothing but the remote: each teammate job pushes its branch and
# its record (a parentless commit holding teammate.json under
# refs/rally/<run>/results/<teammate>); a blocked teammate and the merge job
# read their blockers' records and branches back from there.

RESULT_FILE = "teammate.json"


def result_ref(run_id: str, name: str) -> str:
    return f"refs/rally/{run_id}/results/{name}"


def run_teammate(repo_path: Path, loaded: LoadedConfig, run_id: str, name: str, issue_text: str | None,
                 clock: Clock, environ: Mapping[str, str], on_event: EventSink | None = None,
                 remote: str = "origin") -> TeammateRecord:
    """One teammate of a split run: its agent, reconciled, its branch and record pushed to ``remote``."""
    emit = on_event or _noop
    config = loaded.config
    check_ref_component(run_id, "run id")
    try:
        teammate = config.teammate(name)
    except KeyError:
        raise UsageError(f"no teammate {name!r} in the map",
                         hint="teammates: " + ", ".join(t.name for t in config.teammates)) from None
    repo = git.open_repo(repo_path)
    common = git.common_dir(repo)
    state = _split_state(repo, common, run_id, loaded, issue_text, clock)
    blockers = plan.blockers_closure(config, name)
    for record in _fetch_records(repo_path, run_id, config.branch_prefix, blockers, remote).values():
        state = state.with_teammate(record)
    ledger = _Ledger(common, state)
    not_done = [b for b in teammate.blocked_by if ledger.record(b).outcome != "done"]
    if not_done:
        ledger.update(name, outcome="skipped", reason=f"blocker {not_done[0]} is not done "
                                                      f"({ledger.record(not_done[0]).outcome})")
    else:
        orchestra = _Orchestra(repo_path, loaded, ledger, issue_text, clock, environ, emit, remote)
        cancel = process.CancelToken()
        try:
            with _signals_cancel(cancel):
                orchestra.run_agents(cancel, only={name})
        finally:
            git.prune_worktrees(git.open_repo(repo_path), keep_runs=_live_runs(common, exclude=run_id))
            ledger.clear_worktrees()
            cancel.close()
    record = ledger.record(name)
    if record.finished:
        _push_record(repo_path, run_id, record, remote)
    ledger.update_run(status="finished" if record.finished else "interrupted", finished_at=clock(), pid=None)
    return record


def merge_run(repo_path: Path, loaded: LoadedConfig, run_id: str, clock: Clock, environ: Mapping[str, str],
              on_event: EventSink | None = None, remote: str = "origin",
              selected: frozenset[str] | None = None) -> RunState:
    """The fan-in of a split run: every teammate's record and branch from ``remote``, integrated and
    published. ``selected``: who this run had (the issue's rally block); None: the whole map."""
    emit = on_event or _noop
    config = loaded.config
    check_ref_component(run_id, "run id")
    repo = git.open_repo(repo_path)
    common = git.common_dir(repo)
    state = _split_state(repo, common, run_id, loaded, None, clock, selected)
    # The lease is taken before the results are read: a merge job that publishes meanwhile (another
    # merge of this run, started later) makes ours fail instead of being overwritten by older results.
    integration_ref = f"refs/heads/{integration_branch(config.branch_prefix, run_id)}"
    lease = git.remote_ref_shas(repo_path, remote, [integration_ref])[integration_ref]
    names = [t.name for t in config.teammates if selected is None or t.name in selected]
    fetched = _fetch_records(repo_path, run_id, config.branch_prefix, names, remote)
    for name in names:
        record = fetched.get(name)
        if record is None:
            record = state.teammate(name).model_copy(update={
                "outcome": "skipped", "reason": f"no result from its job (nothing at {result_ref(run_id, name)})"})
        state = state.with_teammate(record.model_copy(update={"integrated": False}))
    ledger = _Ledger(common, state)
    orchestra = _Orchestra(repo_path, loaded, ledger, None, clock, environ, emit, remote, merge_lease=(lease,))
    orchestra.check_again()
    known_problems = len(ledger.state.problems)
    orchestra.integrate_verify_publish()
    ledger.update_run(status="finished", finished_at=clock(), pid=None)
    state = ledger.state
    if state.integrated and not state.integration_sha:
        # Another merge job of this run published first (or the push was refused): what is there stands,
        # and this job publishes nothing, not even a report, that could contradict it.
        raise RallyError(f"run {run_id}: {integration_ref[len('refs/heads/'):]} was not published: "
                         + "; ".join(state.problems[known_problems:]),
                         hint="when another merge job of this run published first, its report is the run's; "
                              "re-run this merge job to integrate the latest results over it")
    return state


def _split_state(repo: git.Repository, common: Path, run_id: str, loaded: LoadedConfig, issue_text: str | None,
                 clock: Clock, selected: frozenset[str] | None = None) -> RunState:
    """This job's own state of the run (a retried job starts it again). The state
    of a local run of the same id is never replaced: it is someone's work."""
    path = state_path(common, run_id)
    if path.exists():
        try:
            earlier = load_state(common, run_id)
        except RallyError:
            earlier = None
        if earlier is None or not earlier.split:
            raise RallyError(
                f"run {run_id!r} here is not a split run ({path} was written by `rally-gh run`); "
                "`teammate` and `merge` are the jobs of a run split across CI jobs and would replace it",
                hint=f"see that run with `rally-gh report --run {run_id}` or go on with "
                     f"`rally-gh run --resume {run_id}`; give a split run an id of its own",
            )
        path.unlink()
    state = _new_state(repo, common, run_id, loaded, issue_text, clock, dry_run=False, selected=selected)
    return state.model_copy(update={"status": "running", "pid": os.getpid(), "split": True})


def _fetch_records(repo_path: Path, run_id: str, prefix: str, names: Sequence[str],
                   remote: str) -> dict[str, TeammateRecord]:
    """The records that teammate jobs pushed for ``names``, each with its branch made local.

    Any job, or an agent holding a job's push credentials, can write these refs: a record is read only
    from this run's result ref, its branch is this run's branch of that teammate whatever the record
    says, and its head must be where that branch is on the remote (a teammate job pushes both at once).
    """
    branches = {n: teammate_branch(prefix, run_id, n) for n in names}
    found = git.remote_ref_shas(repo_path, remote, [result_ref(run_id, n) for n in names]
                                + [f"refs/heads/{b}" for b in branches.values()])  # fetches their commits
    repo = git.open_repo(repo_path)
    records: dict[str, TeammateRecord] = {}
    for name in names:
        sha = found[result_ref(run_id, name)]
        data = git.read_blob(repo, sha, RESULT_FILE) if sha is not None else None
        if data is None:
            continue
        branch = branches[name]
        try:
            record = TeammateRecord.model_validate_json(data).model_copy(update={"name": name, "branch": branch})
        except ValidationError:
            records[name] = TeammateRecord(name=name, branch=branch, outcome="skipped",
                                           reason=f"its result at {result_ref(run_id, name)} cannot be read")
            continue
        head, tip = record.head_sha, found[f"refs/heads/{branch}"]
        if head and (tip != head or not git.object_exists(repo, head)):
            record = record.model_copy(update={
                "outcome": "skipped", "reason": f"its branch {branch} on {remote} is not at the head its result "
                                                f"names ({git.short(head)}): re-run its job"})
        elif head and git.ref_sha(repo, f"refs/heads/{branch}") != head:
            git.update_ref_if(repo, f"refs/heads/{branch}", head, git.ref_sha(repo, f"refs/heads/{branch}"))
        records[name] = record
    return records


def _push_record(repo_path: Path, run_id: str, record: TeammateRecord, remote: str) -> None:
    repo = git.open_repo(repo_path)
    ref = result_ref(run_id, record.name)
    data = record.model_copy(update={"worktree": None}).model_dump_json(indent=2).encode()
    sha = git.write_record_commit(repo, RESULT_FILE, data, f"rally: {record.name} {record.outcome} in run {run_id}")
    refs = [ref] + ([f"refs/heads/{record.branch}"] if record.head_sha else [])
    now = git.remote_ref_shas(repo_path, remote, refs)
    # A re-run job replaces what an earlier attempt of the same job pushed: a lease on what is there now.
    pushes = [git.RefPush(ref, sha, now[ref])]
    if record.head_sha:
        branch = f"refs/heads/{record.branch}"
        pushes.append(git.RefPush(branch, git.Sha(record.head_sha), now[branch]))
    # Atomic: a merge job reading between the two would see a branch without its result.
    failed = [p for p in git.push_refs(repo_path, remote, pushes, atomic=True) if not p.ok]
    if failed:
        raise RallyError(f"{record.name}: pushing to {remote} failed: "
                         + "; ".join(f"{p.ref} {p.message}" for p in failed),
                         hint="check that the job's token may push branches, then re-run the job")


# --- Assess ------------------------------------------------------------------


def _assess(loaded: LoadedConfig, selected: frozenset[str] | None = None,
            programs: Sequence[Problem] = (), branches: Sequence[str] | None = None) -> list[Problem]:
    problems = ([p for p in validate_map(loaded, branches=branches) if p.code != "control-file"]
                + plan.assess(loaded.config, selected)
                + list(programs))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        where = f"{loaded.path}" if loaded.path else "the map"
        raise RallyError(
            f"{where}: the run is refused:\n" + "\n".join(f"  - {p.message}" for p in errors),
            hint="fix the map (`rally-gh validate`, `rally-gh plan` show the details) and run again",
        )
    return [p for p in problems if p.severity == "warning"]


def agent_program_problems(repo: git.Repository | None, loaded: LoadedConfig, selected: Collection[str] | None,
                           environ: Mapping[str, str]) -> list[Problem]:
    """Every agent program and preset CLI of the teammates who run, found before anything starts:
    a missing one would otherwise fail its teammate midway, after the others ran. A relative program
    is looked for in the commit the teammates start from (the map's base), as their checkouts will
    hold it; without a repository, in the directory the map was read from."""
    config = loaded.config
    base: git.Sha | None = None
    if repo is not None:
        try:
            base = git.resolve(repo, config.base or git.head_branch(repo) or "HEAD")
        except RallyError:
            base = None  # the run itself says what is wrong with the base

    def in_checkout(path: str) -> bool | None:
        if repo is not None and base is not None:
            entry = git.entry_at(repo, base, path)
            return None if entry is None else entry[1] in (0o100755, 0o120000)
        folder = loaded.path.parent if loaded.path is not None else Path.cwd()
        candidate = folder / path
        return os.access(candidate, os.X_OK) if candidate.is_file() else None

    search_path = environ.get("PATH", os.defpath)
    # One problem per place in the map: a missing defaults.agent is said once, naming every teammate it stops.
    found: dict[tuple[tuple[str | int, ...], str], list[str]] = {}
    for index, t in enumerate(config.teammates):
        if selected is not None and t.name not in selected:
            continue
        spec = config.agent_of(t)
        err = agents.program_problem(spec, search_path, in_checkout)
        if err is None:
            continue
        key: tuple[str | int, ...] = ("teammates", index, "agent") if t.agent is not None else ("defaults", "agent")
        key += ("command", 0) if spec.preset == "command" else ("preset",)
        found.setdefault((key, err.message + (f"; {err.hint}" if err.hint else "")), []).append(t.name)
    problems = []
    for (key, text), names in found.items():
        whose = f"{possessive(names[0])} agent" if len(names) == 1 else \
            f"the agent of {', '.join(names[:-1])} and {names[-1]}"
        problems.append(Problem("error", "agent-program",
                                f"{loaded.locate(*key)}: {format_key_path(key)}: {whose}: {text}",
                                teammates=tuple(names)))
    return problems


def _note_writes_outside_worktrees(ledger: _Ledger, before: Mapping[str, int], after: Mapping[str, int]) -> None:
    """Agents run in their own worktrees but are not sandboxed: a change to the main
    checkout while they ran cannot be blamed on one of them, so the report says so."""
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if changed:
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        ledger.update_run(risks=(*ledger.state.risks,
                                 f"the main checkout changed while the agents ran ({shown}): an agent may have "
                                 "written outside its worktree; nothing of it is in any teammate branch, so check "
                                 "`git status` before committing"))


def _risks(loaded: LoadedConfig, environ: Mapping[str, str]) -> list[str]:
    risks = [p.message.split(": ", 1)[-1] for p in control_file_grants(loaded)]
    if not process.sandbox_available():
        risks.append("agents ran without a sandbox (it needs root and unshare): a write outside an agent's worktree "
                     "is only noticed in the main checkout")
    config = loaded.config
    for t in config.teammates:
        spec = config.agent_of(t)
        passed = [*agents.PRESET_PASSTHROUGH.get(spec.preset, ()), *spec.env]
        present = list(dict.fromkeys(n for n in passed if n in environ))
        if present:
            risks.append(f"{possessive(t.name)} agent receives runner variables {', '.join(present)} (env passthrough"
                         + (f", as the {spec.preset} preset needs)" if spec.preset != "command" else ")"))
    return risks


def _new_state(repo: git.Repository, common: Path, run_id: str, loaded: LoadedConfig, issue_text: str | None,
               clock: Clock, dry_run: bool, selected: frozenset[str] | None = None) -> RunState:
    config = loaded.config
    if state_path(common, run_id).exists():
        raise RallyError(f"run {run_id!r} already exists ({state_path(common, run_id)})",
                         hint=f"continue it with `rally-gh run --resume {run_id}`, or choose another --run-id")
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


def _resumable(common: Path, run_id: str, config: Config) -> RunState:
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


def _live_runs(common: Path, exclude: str) -> list[str]:
    """Runs whose orchestrator is still alive: their worktrees are in use."""
    return [run_id for run_id, alive in _running(common, exclude) if alive]


def _dead_runs(common: Path, exclude: str) -> list[str]:
    """Runs whose orchestrator is gone (killed, crashed) without saying so."""
    return [run_id for run_id, alive in _running(common, exclude) if not alive]


def _signals_interrupt(cancel: process.CancelToken) -> AbstractContextManager[object]:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (and cancel), so that `finally` blocks run."""
    if threading.current_thread() is threading.main_thread():
        return process.interrupt_on_signals(cancel)
    return nullcontext()


def _signals_cancel(cancel: process.CancelToken) -> AbstractContextManager[object]:
    """SIGINT and SIGTERM stop the agents instead of killing us midway (signals reach the main thread only)."""
    if threading.current_thread() is threading.main_thread():
        return process.cancel_on_signals(cancel)
    return nullcontext()


# --- The state, shared by the job threads -------------------------------------


class _Ledger:
    """The run state behind a lock; every change is saved at once."""

    def __init__(self, common: Path, state: RunState) -> None:
        self.common = common
        self._lock = threading.Lock()
        self.state = state

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

    def add_phase(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.state = self.state.with_phase(phase, seconds)
            save_state(self.common, self.state)

    def clear_worktrees(self) -> None:
        with self._lock:
            records = tuple(r.model_copy(update={"worktree": None}) for r in self.state.teammates)
            self.state = self.state.model_copy(update={"teammates": records})
            save_state(self.common, self.state)


# --- Spawn, run, reconcile ----------------------------------------------------


@dataclass
class _Orchestra:
    repo_path: Path
    loaded: LoadedConfig
    ledger: _Ledger
    issue_text: str | None
    clock: Clock
    environ: Mapping[str, str]
    emit: EventSink
    remote: str | None = None  # split runs publish to it; a local run publishes locally only
    # Set by a split run's merge job only: the remote integration branch (None inside: absent) as it was
    # before the results were read, the lease of its publish.
    merge_lease: tuple[git.Sha | None] | None = None
    worktree_lock: threading.Lock = field(default_factory=threading.Lock)
    # The git directory's controls as they were before the agents started (see git.git_dir_controls).
    git_controls: git.GitDirControls | None = None
    # The user's user.name and user.email (either may be unknown), for agents' own commits.
    identity: tuple[str | None, str | None] = (None, None)

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def run_id(self) -> str:
        return self.ledger.state.run_id

    def _repo(self) -> git.Repository:
        # One Repository per call: pygit2 objects are not shared between threads.
        return git.open_repo(self.repo_path)

    def _teammate_dir(self, name: str) -> Path:
        return runs_dir(self.ledger.common) / self.run_id / "teammates" / name

    def _worktree_path(self, name: str) -> Path:
        return git.rally_worktrees_root(self._repo()) / self.run_id / name

    def run_agents(self, cancel: process.CancelToken, only: Collection[str] | None = None) -> None:
        self.git_controls = git.git_dir_controls(self._repo())
        self.identity = git.user_identity(self._repo(), self.environ)
        try:
            self._run_agents(cancel, only)
        finally:
            self.restore_git_dir()

    def restore_git_dir(self) -> None:
        """Undo what agents changed among the git directory's controls, before any git
        command of ours (and at the end, for the user's own git); the report says so."""
        if self.git_controls is None:
            return
        with self.worktree_lock:
            try:
                changed = git.restore_git_dir_controls(self._repo(), self.git_controls)
            except OSError as err:  # best effort: the run goes on, the report says what could not be done
                self.ledger.update_run(risks=(*self.ledger.state.risks,
                                              f"the git directory's controls could not be checked or put back: {err}"))
                return
        if changed:
            self.ledger.update_run(risks=(*self.ledger.state.risks, (
                f"an agent changed {', '.join(changed)} in the git directory while the agents ran: put back as "
                "it was before rally-gh ran any git command (a planted filter, alias, helper or hook would have "
                "run outside the sandbox); look for the agent that did it in the logs")))

    def _run_agents(self, cancel: process.CancelToken, only: Collection[str] | None) -> None:
        emit = self.emit
        emit("", "phase", "run")
        started = self.clock()
        jobs = [
            runner.Job(t.name, self._job(t), retries=self.config.retries_of(t), after=frozenset(t.blocked_by))
            for t in self.config.teammates
            if self.ledger.has(t.name) and not self.ledger.record(t.name).finished
            and (only is None or t.name in only)
        ]

        def ready_ok(name: str, result: runner.JobResult | None) -> bool:
            # A blocker counts once reconciled as done: its dependents build on its work.
            # One not in this run holds nobody back: the dependent starts from the base.
            return not self.ledger.has(name) or self.ledger.record(name).outcome == "done"

        def relay(name: str, state: str, detail: str) -> None:
            if state == "running" and self.ledger.record(name).started_at is None:
                self.ledger.update(name, started_at=self.clock())
            emit(name, state, detail)

        # A resumed run has already spent part of its budget.
        spent_usd = sum(r.cost_usd for r in self.ledger.state.teammates)
        spent_s = self.ledger.state.phases.get("run", 0.0)
        results = runner.run_teammates(jobs, self.config.max_parallel, self.config.budget, clock=time.monotonic,
                                       on_event=relay, ready_ok=ready_ok, cancel=cancel,
                                       spent_usd=spent_usd, spent_s=spent_s)
        for name, result in results.items():
            self._settle(name, result)
        groups = tuple(ConvergenceGroup(signature=c.signature, teammates=c.teammates)
                       for c in runner.find_convergence(results))
        self.ledger.update_run(convergence=self.ledger.state.convergence + groups)
        self.ledger.add_phase("run", self.clock() - started)

    def _job(self, t: Teammate) -> Callable[[int, process.CancelToken], runner.Attempt]:
        def run_attempt(attempt: int, cancel: process.CancelToken) -> runner.Attempt:
            record = self.ledger.record(t.name)
            path = Path(record.worktree) if record.worktree else None
            if path is None or not path.is_dir():
                path = self._spawn(t)
            record = self.ledger.record(t.name)
            files = self._teammate_dir(t.name)
            files.mkdir(parents=True, exist_ok=True)
            prompt_file = files / "prompt.md"
            in_run = [r.name for r in self.ledger.state.teammates]
            prompt_file.write_text(plan.prompt_for(self.config, t, self.issue_text, self.run_id, in_run),
                                   encoding="utf-8")
            report_file, home = files / "report.json", files / "home"
            home.mkdir(exist_ok=True)
            spec = self.config.agent_of(t)
            cmd = agents.agent_command(spec, prompt_file, path, home, search_path=self.environ.get("PATH"))
            env = agents.agent_environment(
                self.environ, t, self.run_id, self.config.team, record.start_sha or "", prompt_file, report_file,
                t.exclusive_write, (*spec.env, *cmd.passthrough), home, self.identity,
                sparse=self.config.checkout_of(t) == "sparse")
            if process.sandbox_available():
                cmd = process.sandboxed(cmd, self._mounts(path))
            attempt_fn = runner.agent_attempt(cmd, path, env, prompt_file, report_file, self.config.timeout_of(t),
                                              files / "logs", model=spec.model)
            result = attempt_fn(attempt, cancel)
            self.ledger.update(t.name, attempts=attempt)
            if result.status == "ok":
                # Reconciled here, in the job's thread, so that dependents can start the moment it is done.
                self._reconcile(t, result, cancel)
                if not self.ledger.record(t.name).finished:  # its verify was interrupted: --resume starts it again
                    result = replace(result, status="cancelled", message="stopped: the run was interrupted")
            return result

        return run_attempt

    def _mounts(self, own_worktree: Path) -> list[process.Mount]:
        """What an agent may write: its own worktree, and the git directory (its commits
        write objects there) except the files that make git run programs; the main
        checkout, the other worktrees and the user's git config are read-only."""
        repo = self._repo()
        common = git.common_dir(repo)
        mounts: list[process.Mount] = [("ro", git.workdir(repo)), ("rw", common)]
        home = Path(self.environ.get("HOME") or Path.home())
        controls = [common / "config", common / "info", common / "hooks", home / ".gitconfig", home / ".config" / "git"]
        mounts += [("ro", p) for p in controls if os.path.lexists(p)]  # never raises
        return [*mounts, ("ro", git.rally_worktrees_root(repo)), ("rw", own_worktree)]

    def _spawn(self, t: Teammate) -> Path:
        started = self.clock()
        self.emit(t.name, "spawning", "")
        repo = self._repo()
        record = self.ledger.record(t.name)
        start = record.start_sha if record.start_sha and git.ref_sha(repo, f"refs/heads/{record.branch}") else None
        if start is None:
            start = self._start_point(repo, t)
        sparse = None
        if self.config.checkout_of(t) == "sparse":
            # The agent's own program too, when the checkout holds it: without it the agent cannot start.
            program = agents.checkout_program(self.config.agent_of(t))
            own = ("/" + program,) if program is not None and not program.startswith("../") else ()
            sparse = plan.sparse_directories((*t.exclusive_write, *t.read, *t.done_when, *own))
        path = self._worktree_path(t.name)
        self.restore_git_dir()  # `git read-tree` below would run a filter planted by an earlier agent
        with self.worktree_lock:
            git.register_worktree(repo, path, record.branch, start)
        git.populate_worktree(path, sparse)
        if sparse is not None and self.git_controls is not None:
            with self.worktree_lock:  # `git sparse-checkout` writes the config itself
                self.git_controls = git.git_dir_controls(repo)
        self.ledger.update(t.name, start_sha=start, worktree=str(path), outcome="running")
        self.ledger.add_phase("spawn", self.clock() - started)
        return path

    def _start_point(self, repo: git.Repository, t: Teammate) -> str:
        """The base commit, or an integration tip holding the work of everyone ``t`` waits for."""
        blockers = [n for n in plan.blockers_closure(self.config, t.name) if self._integrable(n)]
        if not blockers:
            return self.ledger.state.base_sha
        _, result = self._integration_of(repo, blockers, "stop")
        missing = [o for o in result.outcomes if o.status != "integrated"]
        if missing:
            raise RallyError(f"{t.name}: the work of its blocker {missing[0].teammate} cannot be combined with "
                             f"the others': {missing[0].detail or missing[0].reason}")
        return result.tip

    def _settle(self, name: str, result: runner.JobResult) -> None:
        """Fold the scheduler's result into the teammate's record."""
        record = self.ledger.record(name)
        common = {"attempts": max(result.attempts, record.attempts), "cost_usd": result.cost_usd,
                  "tokens": result.tokens, "duration_s": round(result.duration_s, 3)}
        if result.last is not None and result.last.status == "ok":
            self.ledger.update(name, **common)  # reconciled in its job already
            return
        interrupted = result.outcome == "cancelled" or (result.outcome == "skipped" and result.reason == "cancelled")
        head, files = self._keep_leftovers(record)
        if interrupted:
            outcome = "pending"  # to be started again by --resume
        elif result.outcome == "done":  # ok status is handled above; only for safety
            outcome = "failed"
        else:
            outcome = result.outcome
        # Its branch is kept and pushed whatever the outcome: what it holds is checked too, and a
        # violation is listed while the outcome stays what stopped the teammate.
        violations = record.violations
        reason = result.reason
        if head and record.start_sha and head != record.start_sha:
            violations = self._violations(self._repo(), name, record.start_sha, head)
        if violations and outcome != "pending":
            reason = f"{reason}; its branch also holds {_paths_it_does_not_own(violations)}"
        finished_at = self.clock() if record.started_at is not None else None
        self.ledger.update(name, outcome=outcome, reason=reason, head_sha=head, files_changed=files,
                           violations=violations, finished_at=finished_at, **common)
        self.emit(name, outcome, reason)

    def _keep_leftovers(self, record: TeammateRecord) -> tuple[str | None, tuple[str, ...]]:
        """Commit what a stopped or failed agent left, so its branch keeps everything it produced."""
        if not record.worktree or not Path(record.worktree).is_dir() or not record.start_sha:
            # The worktree is gone (a resumed run): the branch holds what it produced.
            head = record.head_sha or git.ref_sha(self._repo(), f"refs/heads/{record.branch}")
            if head is None or record.start_sha is None or head == record.head_sha:
                return head, record.files_changed
            return head, tuple(git.changed_files(self._repo(), record.start_sha, head))
        head = self._commit_leftovers(record)
        return head, tuple(git.changed_files(self._repo(), record.start_sha, head))

    def _commit_leftovers(self, record: TeammateRecord) -> str:
        path = Path(record.worktree or "")
        message = f"rally({record.name}): {record.task_title or 'work in progress'}"
        scratch = agents.PRESET_SCRATCH.get(self.config.agent_of(self.config.teammate(record.name)).preset, ())
        head = git.commit_all(path, message, RALLY_AUTHOR, scratch) or git.worktree_head(path) or record.start_sha or ""
        repo = self._repo()
        # An agent that switched branches or detached HEAD still produced this work for its branch.
        ref = f"refs/heads/{record.branch}"
        current = git.ref_sha(repo, ref)
        if current != head:
            git.update_ref_if(repo, ref, head, current)
        return head

    def _reconcile(self, t: Teammate, attempt: runner.Attempt, cancel: process.CancelToken | None = None) -> None:
        started = self.clock()
        self.emit(t.name, "reconciling", "")
        self.restore_git_dir()  # the verify commands below may run git
        record = self.ledger.record(t.name)
        head = self._commit_leftovers(record)
        start = record.start_sha or self.ledger.state.base_sha
        repo = self._repo()
        files = tuple(git.changed_files(repo, start, head))
        violations = self._violations(repo, t.name, start, head)
        verify: tuple[VerifyResult, ...] = ()
        outcome, reason = "done", ""
        if violations:
            outcome = "violated"
            reason = f"wrote {_paths_it_does_not_own(violations)}"
        elif not files:
            outcome, reason = "no_changes", "the agent finished without changing any file"
        else:
            log = new_verify_log(self.ledger.common, self.run_id, t.name) if t.verify else None
            runs = process.run_commands(t.verify, Path(record.worktree or ""), self.config.timeout_of(t),
                                        log=log, cancel=cancel)
            if any(r.cancelled for r in runs):
                return
            verify = tuple(self._verify_result(r) for r in runs)
            failed = [v for v in verify if not v.passed]
            missing = [p for p in t.done_when if p not in files or git.read_blob(repo, head, p) is None]
            if failed:
                outcome, reason = "unverified", f"`{failed[0].command}` failed"
            elif missing:
                outcome = "incomplete"
                reason = "done_when not met: " + ", ".join(f"{p} not created or changed" for p in missing)
            elif attempt.agent_status == "partial":
                outcome, reason = "incomplete", f"the agent reported partial work: {attempt.message}"
        self.ledger.update(t.name, head_sha=head, files_changed=files, violations=violations, verify=verify,
                           outcome=outcome, reason=reason, summary=attempt.message if outcome == "done" else "",
                           finished_at=self.clock())
        self.ledger.add_phase("reconcile", self.clock() - started)
        self.emit(t.name, outcome, reason)

    def _violations(self, repo: git.Repository, name: str, start: str, head: str) -> tuple[Violation, ...]:
        result = enforce.check_commits(repo, self.loaded, name, start, head)
        return tuple(Violation(teammate=v.teammate, path=v.path, owner=v.owner, kind=v.kind, commit=v.commit or head)
                     for v in result.violations)

    # --- Integrate, verify, publish -----------------------------------------

    def check_again(self) -> None:
        """A split run's records come from refs an agent could have forged: ownership, which decides
        integration, is checked again here on exactly the commits integration would replay."""
        repo = self._repo()
        for record in self.ledger.state.teammates:
            if not record.head_sha or not record.start_sha or not git.object_exists(repo, record.start_sha):
                continue  # nothing to integrate, or integration refuses it and says why
            violations = self._violations(repo, record.name, record.start_sha, record.head_sha)
            changes: dict[str, Any] = {"violations": violations, "files_changed": tuple(
                git.changed_files(repo, record.start_sha, record.head_sha))}
            if violations and record.outcome not in ("violated", *_STOPPED):
                changes.update(outcome="violated", reason=(
                    f"its result said {record.outcome}; the merge job found {_paths_it_does_not_own(violations)}"))
                self.emit(record.name, "violated", changes["reason"])
            self.ledger.update(record.name, **changes)

    def integrate_verify_publish(self, cancel: process.CancelToken | None = None) -> None:
        started = self.clock()
        self.emit("", "phase", "integrate")
        repo = self._repo()
        on_conflict = self.config.merge.on_conflict
        candidates = [n for n in plan.integration_order(self.config) if self._integrable(n)]
        onto = self._latest_base(repo)  # fetched just before integrating
        self.ledger.update_run(integrated_onto=onto)
        while True:
            iplan, result = self._integration_of(repo, candidates, on_conflict, onto)
            # A teammate whose blocker was left out built on work that is not there: leave it out too.
            applied = {a.teammate for a in result.applied}
            orphans = {n: b for n in applied for b in plan.blockers_closure(self.config, n)
                       if b not in applied and self.ledger.has(b)}
            if not orphans:
                break
            for name, blocker in orphans.items():
                self.ledger.update(name, outcome="skipped",
                                   reason=f"not integrated: its blocker {blocker} was not, and its work builds on it")
            candidates = [n for n in candidates if n not in orphans]
        self.ledger.add_phase("integrate", self.clock() - started)

        started = self.clock()
        verification: tuple[VerifyResult, ...] = ()
        if result.applied and self.config.merge.verify:
            self.emit("", "phase", "verify")
            commands, timeout = self.config.merge.verify, self.config.defaults.timeout

            def run_verify(sha: git.Sha) -> list[process.CommandRun]:
                log = new_verify_log(self.ledger.common, self.run_id, f"merge-{git.short(sha)}")
                return integrate.verify_commit(repo, sha, commands, timeout, log=log, cancel=cancel)

            checked = integrate.verify_and_bisect(repo, iplan, result, run_verify)
            result = checked.result
            final = [r for r in checked.runs if r.sha == result.tip] or list(checked.runs[-1:])
            verification = tuple(self._verify_result(c) for r in final for c in r.commands)
            blamed = _blamed_runs(checked.runs, checked.culprits)
            self.ledger.update_run(verify_runs=tuple(
                VerifyRunRecord(sha=r.sha, teammates=r.teammates, passed=r.passed,
                                commands=tuple(self._verify_result(c) for c in r.commands),
                                blamed=tuple(n for n in checked.culprits if blamed.get(n) == i))
                for i, r in enumerate(checked.runs)))
            if checked.base_fails:
                self.ledger.update_run(problems=(*self.ledger.state.problems,
                                                 "merge.verify fails on the base commit itself: nobody was blamed"))
        self._record_integration(result, on_conflict, self._conflict_causes(repo, result))
        self.ledger.update_run(verification=verification)
        self.ledger.add_phase("verify", self.clock() - started)

        started = self.clock()
        self.emit("", "phase", "publish")
        branch = integration_branch(self.config.branch_prefix, self.run_id)
        if result.applied:
            # A split merge leaves teammate branches to their own jobs: a job re-run meanwhile has moved
            # its branch on, and pushing the head fetched earlier would only be refused.
            kept = [(r.branch, git.Sha(r.head_sha)) for r in self.ledger.state.teammates
                    if r.head_sha and self.merge_lease is None]
            remote_old = None
            if self.merge_lease is not None:
                remote_old = self.merge_lease[0]
            elif self.remote is not None:
                remote_old = git.remote_ref_shas(self.repo_path, self.remote, [f"refs/heads/{branch}"])[
                    f"refs/heads/{branch}"]
            published = integrate.publish(repo, branch, result.tip, git.ref_sha(repo, f"refs/heads/{branch}"), kept,
                                          remote=self.remote, remote_expected_old=remote_old,
                                          supersede=self.merge_lease is None)
            if published.ok:
                self.ledger.update_run(integration_branch=branch, integration_sha=result.tip)
            else:
                self.ledger.update_run(problems=(*self.ledger.state.problems, *published.problems))
        elif self.remote is not None and self.merge_lease is None:
            # Nothing integrated: every teammate branch is still pushed, whatever its outcome.
            kept = [(r.branch, git.Sha(r.head_sha)) for r in self.ledger.state.teammates if r.head_sha]
            _, problems = integrate.keep_teammate_branches(repo, self.remote, kept, supersede=True)
            if problems:
                self.ledger.update_run(problems=(*self.ledger.state.problems, *problems))
        self.ledger.add_phase("publish", self.clock() - started)

    def _integrable(self, name: str) -> bool:
        if not self.ledger.has(name):
            return False
        record = self.ledger.record(name)
        return record.outcome == "done" and bool(record.head_sha) and bool(record.start_sha)

    def _latest_base(self, repo: git.Repository) -> git.Sha:
        """The base branch's tip now (fetched from the remote in CI): what landed on it
        during the run goes under the teammates' work, so the pull request is up to
        date, and a clash with it is reported as a conflict like any other. A base
        that was rewritten (not a descendant of where the run started) is not used."""
        started = git.Sha(self.ledger.state.base_sha)
        ref = self.ledger.state.base_ref
        if ref == "HEAD":
            return started
        try:
            if self.remote is not None:
                found = git.remote_ref_shas(self.repo_path, self.remote, [f"refs/heads/{ref}"])[f"refs/heads/{ref}"]
            else:
                found = git.resolve(repo, ref)
        except RallyError:
            return started
        if found is None or not git.object_exists(repo, found) or not git.is_ancestor(repo, started, found):
            return started
        return found

    def _integration_of(self, repo: git.Repository, names: Sequence[str], on_conflict: integrate.OnConflict,
                        onto: git.Sha | None = None) -> tuple[integrate.IntegrationPlan, integrate.IntegrationResult]:
        """The work of ``names``, replayed in that order onto ``onto`` (default: the run's
        base) in memory (no ref moved)."""
        records = [self.ledger.record(n) for n in names]
        branches = integrate.resolve_teammate_branches(
            repo, [(r.name, f"refs/heads/{r.branch}", git.Sha(r.start_sha or "")) for r in records])
        iplan = integrate.plan_integration(repo, onto or git.Sha(self.ledger.state.base_sha), branches)
        return iplan, integrate.integrate(repo, iplan, on_conflict)

    def _verify_result(self, run: process.CommandRun) -> VerifyResult:
        folder = run_dir(self.ledger.common, self.run_id)
        log = str(run.log.relative_to(folder)) if run.log is not None and run.log.is_relative_to(folder) else None
        return VerifyResult(command=run.command, passed=run.passed, exit_code=run.exit_code,
                            duration_s=run.duration_s, output_tail=run.output_tail[-VERIFY_OUTPUT_TAIL:], log=log)

    def _conflict_causes(self, repo: git.Repository,
                         result: integrate.IntegrationResult) -> dict[str, tuple[ConflictCause, ...]]:
        started = git.Sha(self.ledger.state.base_sha)
        return {o.teammate: tuple(ConflictCause(paths=c.paths, teammate=c.teammate, base_commit=c.base_commit)
                                  for c in integrate.conflict_causes(repo, result, o.conflict, started))
                for o in result.outcomes if o.conflict is not None}

    def _record_integration(self, result: integrate.IntegrationResult, on_conflict: str,
                            causes: Mapping[str, tuple[ConflictCause, ...]]) -> None:
        conflicts: list[Conflict] = []
        stopped_at = next((o.teammate for o in result.outcomes if o.conflict is not None), None)
        for o in result.outcomes:
            if o.status == "integrated":
                self.ledger.update(o.teammate, integrated=True)
            elif o.conflict is not None:
                action = "stopped" if on_conflict == "stop" else "skipped"
                conflict = Conflict(teammate=o.teammate, paths=o.conflict.paths, action=action,
                                    commit=str(o.conflict.commit), causes=causes.get(o.teammate, ()))
                conflicts.append(conflict)
                self.ledger.update(o.teammate, outcome="conflicted", integrated=False,
                                   reason=conflict.describe(self.ledger.state.base_ref))
                self.emit(o.teammate, "conflicted", ", ".join(o.conflict.paths))
            elif o.reason == "verify":
                self.ledger.update(o.teammate, outcome="unverified", integrated=False,
                                   reason=f"dropped from the integration: {o.detail}")
                self.emit(o.teammate, "unverified", o.detail or "")
            elif o.status == "refused":
                self.ledger.update(o.teammate, outcome="skipped", integrated=False,
                                   reason=f"not integrated: {o.detail or o.reason}")
            else:  # not attempted: integration stopped at an earlier conflict (on_conflict: stop)
                if self.ledger.record(o.teammate).outcome == "done":
                    self.ledger.update(o.teammate, outcome="skipped", integrated=False, reason=(
                        f"not integrated: integration stopped at {possessive(stopped_at or 'a teammate')} conflict (merge.on_conflict: stop); "
                        "its work is on its branch"))
                else:
                    self.ledger.update(o.teammate, integrated=False, reason=f"not integrated: {o.detail or o.reason}")
        self.ledger.update_run(integrated=tuple(a.teammate for a in result.applied), conflicts=tuple(conflicts))


# Outcomes that say why a teammate stopped: a violation found on its branch is listed beside them.
_STOPPED = ("failed", "timed_out", "skipped", "pending", "running")


def _paths_it_does_not_own(violations: Sequence[Violation]) -> str:
    paths = sorted({v.path for v in violations})
    return f"{plural(paths, 'path')} it does not own: " + ", ".join(paths[:5]) + (
        f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def _blamed_runs(runs: Sequence[integrate.VerifyRun], culprits: Sequence[str]) -> dict[str, int]:
    """For each teammate dropped by merge.verify, the run whose failure shows why: the one
    that failed once its work was added (bisection's answer), else the last failing run holding it."""
    found: dict[str, int] = {}
    for name in culprits:
        failing = [i for i, r in enumerate(runs) if not r.passed and name in r.teammates]
        added = [i for i in failing if runs[i].teammates[-1] == name]
        if added or failing:
            found[name] = (added or failing)[-1]
    return found


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:72]
    return ""
