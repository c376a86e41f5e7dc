"""Runs split across CI jobs (SPEC section 7): a teammate job, a merge job, and what passes between them.

The jobs share nothing but the remote: each teammate job pushes its branch and its record
(a parentless commit holding teammate.json under refs/rally/<run>/results/<teammate>), in
one atomic push; a blocked teammate and the merge job read their blockers' records and
branches back from there, as untrusted input: the merge job checks ownership again on
exactly the commits it would integrate.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rally_gh import git, plan, process
from rally_gh.config import LoadedConfig
from rally_gh.errors import RallyError, UsageError
from rally_gh.run import assess, pipeline
from rally_gh.run.context import EventSink, Lease, Policy, RunContext, no_events
from rally_gh.run.ledger import Ledger, live_runs, new_state
from rally_gh.run.teammate import STOPPED, find_violations, paths_it_does_not_own
from rally_gh.state import (
    Clock,
    RunState,
    TeammateRecord,
    check_ref_component,
    integration_branch,
    load_state,
    state_path,
    teammate_branch,
)

RESULT_FILE = "teammate.json"


def result_ref(run_id: str, name: str) -> str:
    return f"refs/rally/{run_id}/results/{name}"


def run_teammate(repo_path: Path, loaded: LoadedConfig, run_id: str, name: str, issue_text: str | None,
                 clock: Clock, environ: Mapping[str, str], on_event: EventSink | None = None,
                 remote: git.Remote = git.Remote("origin"), sandbox: bool = True) -> TeammateRecord:
    """One teammate of a split run: its agent, reconciled, its branch and record pushed to ``remote``.
    ``sandbox`` as for ``pipeline.run``."""
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
    ctx = RunContext(repo_path, common, loaded, run_id, issue_text, clock, environ, on_event or no_events,
                     Policy(remote=remote), assess.sandbox_of(environ, sandbox))
    blockers = plan.blockers_closure(config, name)
    for record in _fetch_records(ctx, remote, blockers).values():
        state = state.with_teammate(record)
    ledger = Ledger(common, state)
    not_done = [b for b in teammate.blocked_by if ledger.record(b).outcome != "done"]
    if not_done:
        ledger.update(name, outcome="skipped", reason=f"blocker {not_done[0]} is not done "
                                                      f"({ledger.record(not_done[0]).outcome})")
    else:
        cancel = process.CancelToken()
        try:
            with pipeline.signals_cancel(cancel):
                pipeline.run_agents(ctx, ledger, cancel, only={name})
        finally:
            git.prune_worktrees(git.open_repo(repo_path), keep_runs=live_runs(common, exclude=run_id))
            ledger.clear_worktrees()
            cancel.close()
    record = ledger.record(name)
    if record.finished:
        _push_record(ctx, remote, record)
    ledger.update_run(status="finished" if record.finished else "interrupted", finished_at=clock(), pid=None)
    return record


def merge_run(repo_path: Path, loaded: LoadedConfig, run_id: str, clock: Clock, environ: Mapping[str, str],
              on_event: EventSink | None = None, remote: git.Remote = git.Remote("origin"),
              selected: frozenset[str] | None = None, sandbox: bool = True) -> RunState:
    """The fan-in of a split run: every teammate's record and branch from ``remote``, integrated and
    published. ``selected``: who this run had (the issue's rally block); None: the whole map.
    ``sandbox``: ``merge.verify`` runs in bubblewrap, and a merge job that has some is refused
    where none can be built; False (``--no-sandbox``) runs it as it is, the report's first risk."""
    config = loaded.config
    check_ref_component(run_id, "run id")
    repo = git.open_repo(repo_path)
    common = git.common_dir(repo)
    state = _split_state(repo, common, run_id, loaded, None, clock, selected)
    # The lease is taken before the results are read: a merge job that publishes meanwhile (another
    # merge of this run, started later) makes ours fail instead of being overwritten by older results.
    integration_ref = f"refs/heads/{integration_branch(config.branch_prefix, run_id)}"
    lease = Lease(git.remote_ref_shas(repo_path, remote, [integration_ref])[integration_ref])
    verifies = bool(config.merge.verify)
    ctx = RunContext(repo_path, common, loaded, run_id, None, clock, environ, on_event or no_events,
                     Policy.merge_job(remote, lease), assess.sandbox_of(environ, sandbox and verifies))
    names = [t.name for t in config.teammates if selected is None or t.name in selected]
    fetched = _fetch_records(ctx, remote, names)
    for name in names:
        record = fetched.get(name)
        if record is None:
            record = state.teammate(name).model_copy(update={
                "outcome": "skipped", "reason": f"no result from its job (nothing at {result_ref(run_id, name)})"})
        state = state.with_teammate(record.model_copy(update={"integrated": False}))
    ledger = Ledger(common, state)
    for risk in ([assess.MERGE_NO_SANDBOX_RISK] if verifies and not sandbox else []) + assess.merge_env_risks(
            config, environ):
        ledger.add_risk(risk)
    _check_again(ctx, ledger)
    known_problems = len(ledger.state.problems)
    pipeline.integrate_verify_publish(ctx, ledger)
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
    state = new_state(repo, common, run_id, loaded, issue_text, clock, dry_run=False, selected=selected)
    return state.model_copy(update={"status": "running", "pid": os.getpid(), "split": True})


def _fetch_records(ctx: RunContext, remote: git.Remote, names: Sequence[str]) -> dict[str, TeammateRecord]:
    """The records that teammate jobs pushed for ``names``, each with its branch made local.

    Any job, or an agent holding a job's push credentials, can write these refs: a record is read only
    from this run's result ref, its branch is this run's branch of that teammate whatever the record
    says, and its head must be where that branch is on the remote (a teammate job pushes both at once).
    """
    run_id = ctx.run_id
    branches = {n: teammate_branch(ctx.config.branch_prefix, run_id, n) for n in names}
    found = git.remote_ref_shas(ctx.repo_path, remote, [result_ref(run_id, n) for n in names]
                                + [f"refs/heads/{b}" for b in branches.values()])  # fetches their commits
    repo = ctx.repo()
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


def _push_record(ctx: RunContext, remote: git.Remote, record: TeammateRecord) -> None:
    repo = ctx.repo()
    ref = result_ref(ctx.run_id, record.name)
    data = record.model_copy(update={"worktree": None}).model_dump_json(indent=2).encode()
    sha = git.write_record_commit(repo, RESULT_FILE, data, f"rally: {record.name} {record.outcome} in run {ctx.run_id}")
    refs = [ref] + ([f"refs/heads/{record.branch}"] if record.head_sha else [])
    now = git.remote_ref_shas(ctx.repo_path, remote, refs)
    # A re-run job replaces what an earlier attempt of the same job pushed: a lease on what is there now.
    pushes = [git.RefPush(ref, sha, now[ref])]
    if record.head_sha:
        branch = f"refs/heads/{record.branch}"
        pushes.append(git.RefPush(branch, git.Sha(record.head_sha), now[branch]))
    # Atomic: a merge job reading between the two would see a branch without its result.
    failed = [p for p in git.push_refs(ctx.repo_path, remote, pushes, atomic=True) if not p.ok]
    if failed:
        raise RallyError(f"{record.name}: pushing to {remote} failed: "
                         + "; ".join(f"{p.ref} {p.message}" for p in failed),
                         hint="check that the job's token may push branches, then re-run the job")


def _check_again(ctx: RunContext, ledger: Ledger) -> None:
    """A split run's records come from refs an agent could have forged: ownership, which decides
    integration, is checked again here on exactly the commits integration would replay."""
    repo = ctx.repo()
    for record in ledger.state.teammates:
        if not record.head_sha or not record.start_sha or not git.object_exists(repo, record.start_sha):
            continue  # nothing to integrate, or integration refuses it and says why
        violations = find_violations(ctx, repo, record.name, record.start_sha, record.head_sha)
        changes: dict[str, Any] = {"violations": violations, "files_changed": tuple(
            git.changed_files(repo, record.start_sha, record.head_sha))}
        if violations and record.outcome not in ("violated", *STOPPED):
            changes.update(outcome="violated", reason=(
                f"its result said {record.outcome}; the merge job found {paths_it_does_not_own(violations)}"))
            ctx.emit(record.name, "violated", changes["reason"])
        ledger.update(record.name, **changes)
