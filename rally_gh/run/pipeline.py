"""A whole run (SPEC section 4) as its phases: assess, plan, spawn, run, reconcile, integrate,
verify, publish, clean up.

Every phase reads one frozen ``RunContext`` (the repository, the map as this run applies
it, the run id, the clock, the environment, the publishing policy) and writes the run's
``Ledger``, whose state is saved atomically at every change, so an interrupted or crashed
run can be resumed and reported on. Spawn, run and reconcile happen per teammate, in the
scheduler's job threads (``teammate``): a teammate blocked by another starts as soon as
that one is reconciled, from an integration tip holding its work. The fan-in (``fanin``)
integrates, verifies and publishes; ``split`` runs the same phases across CI jobs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

from rally_gh import egress, git, plan, process
from rally_gh.config import LoadedConfig
from rally_gh.run import assess, fanin, planning, published, scheduler
from rally_gh.run.context import EventSink, Lease, Policy, RunContext, no_events
from rally_gh.run.ledger import Ledger, dead_runs, live_runs, new_state, resumed_state
from rally_gh.run.teammate import GitDirGuard, TeammateJob
from rally_gh.state import Clock, ConvergenceGroup, RunState, check_ref_component, runs_dir, save_state
from rally_gh.tasks import RunTasks


def run(repo_path: Path, loaded: LoadedConfig, run_id: str, issue_text: str | None, clock: Clock,
        environ: Mapping[str, str], on_event: EventSink | None = None, dry_run: bool = False,
        resume: bool = False, *, remote: git.Remote | None = None, only: Collection[str] | None = None,
        max_parallel: int | None = None, tasks: RunTasks | None = None, sandbox: bool = True,
        risks: Sequence[str] = (), approved: bool = False, plans: Mapping[str, str] | None = None) -> RunState:
    """Run the team once (or resume run ``run_id``); the final state, also saved in run.json.

    ``remote``: push every branch there too (a run in CI). ``only``: run just these
    teammates (a dispatch's ``teammates`` input). ``max_parallel``: fewer at once than the map's (never more).
    ``tasks``: this run's tasks (the issue's ``rally`` block, a tasks or handoff file).
    ``sandbox``: agents run in bubblewrap, and the run is refused where it cannot build one;
    False (``--no-sandbox``) runs them as they are, the report's first risk.
    ``risks``: what the caller knows the report must name besides (a write token in the agents' job).
    ``approved``: a person approved the run (the map's ``approval`` rules). Not approved, a run with
    teammates in plan mode writes their plans and ends ``waiting`` (``planning``); one without is refused.
    ``plans``: the approved plans of teammates in plan mode, when they were written elsewhere (the run's
    progress comment on GitHub): each goes to its teammate's prompt.

    Raises RallyError when the plan is refused or the run cannot start; the
    outcome of each teammate is data in the returned state, never an exception.
    """
    check_ref_component(run_id, "run id")
    for t in loaded.config.teammates:
        check_ref_component(t.name, "teammate name")
    repo = git.open_repo(repo_path)
    emit = on_event or no_events
    started = clock()
    emit("", "phase", "assess")
    loaded, selected = assess.select(loaded, tasks, only, max_parallel)
    ctx = RunContext(repo_path, git.common_dir(repo), loaded, run_id, issue_text, clock, environ, emit,
                     Policy(remote=remote), assess.sandbox_of(environ, sandbox))
    planned_first = [] if approved or dry_run else planning.planners(loaded.config, selected)
    if not (approved or dry_run or planned_first):
        assess.approval(loaded, selected)
    state = _assess(ctx, selected, resume, dry_run, risks).with_phase("assess", clock() - started)
    if plans:
        state = state.model_copy(update={"teammates": tuple(
            r.model_copy(update={"plan": plans[r.name]}) if r.name in plans else r for r in state.teammates)})
    save_state(ctx.common, state)

    state = _plan(ctx, state, selected)
    if dry_run:
        state = state.model_copy(update={"status": "planned", "finished_at": clock()})
        save_state(ctx.common, state)
        return state

    ledger = _start(ctx, state, resume)
    if planned_first:
        # Plan mode: the plans first, read-only; then the run waits for a person (``--approved``).
        cancel = process.CancelToken()
        with signals_cancel(cancel), _phase(ctx, ledger, "plan"), egress.proxies(_allow_lists(ctx)) as proxies:
            planning.write_plans(replace(ctx, egress=proxies), ledger, planned_first, cancel)
        ledger.update_run(status="interrupted" if cancel.cancelled else "waiting", pid=None)
        cancel.close()
        return ledger.state
    _agents_and_fanin(ctx, ledger, None)
    return ledger.state


def again(repo_path: Path, loaded: LoadedConfig, state: RunState, clock: Clock, environ: Mapping[str, str],
          on_event: EventSink | None = None, *, retry: Collection[str] = (), drop: Mapping[str, str] | None = None,
          follow_up: Collection[str] = (), remote: git.Remote | None = None, sandbox: bool = True,
          risks: Sequence[str] = ()) -> RunState:
    """A finished run taken up again (``state``: as it was published, made local by
    ``published.restore``), then integrated, verified and published as a run is.

    ``retry``: these teammates start over from the run's integration as it stands (the base
    when nothing is integrated): their new work goes on top of everyone's. ``follow_up``: these
    go on from their own branch heads, with what ``loaded`` says they must do now (a review's
    comments in their task). ``drop``: these leave the integration, each with its reason; their
    branches are kept. Everyone else's work is integrated again as it was. ``loaded`` is the map of
    the run's base commit. The integration branch is pushed with a lease on where the run left it.
    """
    repo = git.open_repo(repo_path)
    onto = state.integration_sha or state.base_sha
    records = []
    for record in state.teammates:
        if record.name in retry:
            record = published.retried(record, onto)
            # Its new repository starts from the integration, not from what its last attempt left.
            ref = f"refs/heads/{record.branch}"
            git.update_ref_if(repo, ref, git.Sha(onto), git.ref_sha(repo, ref))
        elif record.name in follow_up:
            record = record.model_copy(update={"outcome": "pending", "worktree": None, "integrated": False})
        elif drop is not None and record.name in drop:
            record = record.model_copy(update={"outcome": "skipped", "reason": drop[record.name], "integrated": False})
        records.append(record)
    ctx = RunContext(repo_path, git.common_dir(repo), loaded, state.run_id, state.issue_text, clock, environ,
                     on_event or no_events,
                     Policy(remote=remote, integration_lease=Lease(git.Sha(state.integration_sha)
                                                                   if state.integration_sha else None)),
                     assess.sandbox_of(environ, sandbox))
    state = state.model_copy(update={
        "teammates": tuple(records), "status": "running", "pid": os.getpid(), "finished_at": None,
        "risks": tuple(dict.fromkeys((*risks, *state.risks)))})
    save_state(ctx.common, state)
    ledger = Ledger(ctx.common, state)
    _agents_and_fanin(ctx, ledger, {*retry, *follow_up})
    return ledger.state


def _agents_and_fanin(ctx: RunContext, ledger: Ledger, only: Collection[str] | None) -> None:
    """The agents of the run's unfinished teammates (of ``only``), then integrate, verify and publish."""
    cancel = process.CancelToken()
    before = git.dirty_paths(ctx.repo())
    # Signals are handled the same in every phase, whatever rally-gh inherited: during the agents
    # they cancel (the agents are stopped through the token), in integrate, verify and publish they
    # interrupt (a verify command is stopped with its group); either way the run ends interrupted,
    # reported and resumable. During cleanup a second signal only cancels, so cleanup finishes.
    with signals_cancel(cancel):
        try:
            if only is None or only:
                run_agents(ctx, ledger, cancel, only)
            risk = assess.outside_writes_risk(before, git.dirty_paths(ctx.repo()))
            if risk is not None:
                ledger.add_risk(risk)
            if not cancel.cancelled:
                try:
                    with _signals_interrupt(cancel):
                        integrate_verify_publish(ctx, ledger, cancel)
                except KeyboardInterrupt:
                    cancel.cancel()
        except BaseException:
            _cleanup(ctx, ledger, cancel, broken=True)
            raise
        _cleanup(ctx, ledger, cancel, broken=False)


def _assess(ctx: RunContext, selected: frozenset[str] | None, resume: bool, dry_run: bool,
            known_risks: Sequence[str] = ()) -> RunState:
    """Assess (step 1): the run refused, or its state begun (or resumed) with its warnings and risks."""
    repo = ctx.repo()
    programs = assess.agent_program_problems(repo, ctx.loaded, selected, ctx.environ)
    problems = assess.assess(ctx.loaded, selected, programs, git.branch_names(repo))
    if resume:
        state = resumed_state(ctx.common, ctx.run_id, ctx.config)
    else:
        state = new_state(repo, ctx.common, ctx.run_id, ctx.loaded, ctx.issue_text, ctx.clock, dry_run, selected)
    return state.model_copy(update={"problems": tuple(p.message for p in problems),
                                    "risks": (*known_risks, *assess.risks(ctx.loaded, ctx.environ, ctx.sandbox))})


def _plan(ctx: RunContext, state: RunState, selected: frozenset[str] | None) -> RunState:
    """Plan (step 2): the waves of ``blocked_by``."""
    started = ctx.clock()
    ctx.emit("", "phase", "plan")
    waves = plan.waves(ctx.config, selected)
    return state.model_copy(update={"waves": tuple(tuple(w) for w in waves)}).with_phase("plan", ctx.clock() - started)


def _start(ctx: RunContext, state: RunState, resume: bool) -> Ledger:
    """The run's ledger, once nothing of a crashed run stands in its way."""
    # Leftovers of a crashed run (this one, when resuming) would block `worktree add`; its agents,
    # in process groups of their own, may even still be running.
    for dead in {*dead_runs(ctx.common, exclude=ctx.run_id), *([ctx.run_id] if resume else [])}:
        process.stop_strays(runs_dir(ctx.common) / dead)
    git.prune_worktrees(ctx.repo(), keep_runs=live_runs(ctx.common, exclude=ctx.run_id))
    state = state.model_copy(update={"status": "running", "pid": os.getpid()})
    save_state(ctx.common, state)
    return Ledger(ctx.common, state)


def run_agents(ctx: RunContext, ledger: Ledger, cancel: process.CancelToken,
               only: Collection[str] | None = None) -> None:
    """Spawn, run, reconcile (steps 3 to 5): every unfinished teammate of the run (or of ``only``)
    through the scheduler, each to its final record; the git directory guarded meanwhile."""
    guard = GitDirGuard.taken(ctx)
    identity = git.user_identity(ctx.repo(), ctx.environ)
    try:
        with _phase(ctx, ledger, "run"), egress.proxies(_allow_lists(ctx)) as proxies:
            _schedule(replace(ctx, egress=proxies), ledger, guard, identity, cancel, only)
            for name, proxy in proxies.items():
                if proxy.refused:
                    tried = sorted(set(proxy.refused))
                    more = f" and {len(tried) - 5} more" if len(tried) > 5 else ""
                    ledger.add_risk(f"{name} tried to reach {', '.join(f'`{t}`' for t in tried[:5])}{more}, not on "
                                    "its network list: refused")
    finally:
        guard.restore(ledger)


def _allow_lists(ctx: RunContext) -> dict[str, tuple[str, ...]]:
    """The teammates whose map lists the hosts they may reach (only a sandbox can hold them to it)."""
    if ctx.sandbox is None:
        return {}
    return {t.name: net for t in ctx.config.teammates if isinstance(net := ctx.config.network_of(t), tuple)}


def _schedule(ctx: RunContext, ledger: Ledger, guard: GitDirGuard, identity: tuple[str | None, str | None],
              cancel: process.CancelToken, only: Collection[str] | None) -> None:
    config = ctx.config
    teammates = {t.name: TeammateJob(ctx, ledger, guard, t, identity) for t in config.teammates
                 if ledger.has(t.name) and not ledger.record(t.name).finished and (only is None or t.name in only)}
    jobs = [scheduler.Job(name, job.attempt, retries=config.retries_of(job.teammate),
                       after=frozenset(job.teammate.blocked_by)) for name, job in teammates.items()]

    def ready_ok(name: str, result: scheduler.JobResult | None) -> bool:
        # A blocker counts once reconciled as done: its dependents build on its work.
        # One not in this run holds nobody back: the dependent starts from the base.
        return not ledger.has(name) or ledger.record(name).outcome == "done"

    def relay(name: str, state: str, detail: str) -> None:
        if state == "running" and ledger.record(name).started_at is None:
            ledger.update(name, started_at=ctx.clock())
        ctx.emit(name, state, detail)

    # A resumed run has already spent part of its budget.
    spent_usd = sum(r.cost_usd + r.plan_cost_usd for r in ledger.state.teammates)
    spent_s = ledger.state.phases.get("run", 0.0)
    results = scheduler.run_teammates(jobs, config.max_parallel, config.budget, clock=time.monotonic,
                                   on_event=relay, ready_ok=ready_ok, cancel=cancel,
                                   spent_usd=spent_usd, spent_s=spent_s)
    for name, result in results.items():
        teammates[name].settle(result)
    groups = tuple(ConvergenceGroup(signature=c.signature, teammates=c.teammates)
                   for c in scheduler.find_convergence(results))
    ledger.update_run(convergence=ledger.state.convergence + groups)


def integrate_verify_publish(ctx: RunContext, ledger: Ledger, cancel: process.CancelToken | None = None) -> None:
    """Integrate, verify, publish (steps 6 and 7); ``cancel`` stops merge.verify."""
    repo = ctx.repo()
    with _phase(ctx, ledger, "integrate"):
        integration = fanin.integrate_teammates(ctx, ledger, repo)
    with _phase(ctx, ledger, "verify", announce=False):  # announced only when merge.verify runs
        result = fanin.verify_integration(ctx, ledger, repo, integration, cancel)
    with _phase(ctx, ledger, "publish"):
        fanin.publish_integration(ctx, ledger, repo, result)


def _cleanup(ctx: RunContext, ledger: Ledger, cancel: process.CancelToken, broken: bool) -> None:
    """Clean up (step 8): whatever happened, no worktree stays behind; branches keep everything."""
    with _phase(ctx, ledger, "cleanup"):
        git.prune_worktrees(ctx.repo(), keep_runs=live_runs(ctx.common, exclude=ctx.run_id))
        ledger.clear_worktrees()
    if cancel.cancelled or broken:
        # Stopped, or broken by an error of ours: either way `run --resume` picks it up.
        ledger.update_run(status="interrupted", pid=None)
    else:
        ledger.update_run(status="finished", finished_at=ctx.clock(), pid=None)
    cancel.close()


@contextmanager
def _phase(ctx: RunContext, ledger: Ledger, name: str, announce: bool = True) -> Iterator[None]:
    """A phase, announced and timed into the run's state when it ends (an error leaves it untimed)."""
    started = ctx.clock()
    if announce:
        ctx.emit("", "phase", name)
    yield
    ledger.add_phase(name, ctx.clock() - started)


def _signals_interrupt(cancel: process.CancelToken) -> AbstractContextManager[object]:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (and cancel), so that `finally` blocks run."""
    if threading.current_thread() is threading.main_thread():
        return process.interrupt_on_signals(cancel)
    return nullcontext()


def signals_cancel(cancel: process.CancelToken) -> AbstractContextManager[object]:
    """SIGINT and SIGTERM stop the agents instead of killing us midway (signals reach the main thread only)."""
    if threading.current_thread() is threading.main_thread():
        return process.cancel_on_signals(cancel)
    return nullcontext()
