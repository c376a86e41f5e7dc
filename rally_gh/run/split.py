"""Runs split across CI jobs (SPEC section 7): a teammate job, a merge job, and what passes between them.

No job of a split run that runs agents, verify or ``merge.verify`` can write to the repository:
the jobs hand their results on as workflow artifacts (``rally_gh.results``). Each teammate job
leaves its record and its branch's commits (``write_teammate_result``); a blocked teammate's job
and the merge job read the artifacts of the teammates they build on as untrusted input (the merge
job checks ownership again on exactly the commits it would integrate); the merge job integrates,
runs ``merge.verify`` and leaves the whole run's results (``write_results``), which the
workflow's publish job checks against the map of the base commit and publishes
(``rally-gh publish``), as for a run whose agents ran in one job.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rally_gh import git, plan, process
from rally_gh.config import LoadedConfig
from rally_gh.errors import GitError, RallyError, UsageError
from rally_gh.ownership.enforce import check_commits
from rally_gh.results import TEAMMATE_FILE, read_teammate_results, teammate_artifact, write_results, write_teammate_result
from rally_gh.run import assess, fanin, pipeline
from rally_gh.run.context import EventSink, RunContext, no_events
from rally_gh.run.ledger import Ledger, live_runs, new_state
from rally_gh.run.teammate import STOPPED, find_violations, paths_it_does_not_own
from rally_gh.state import (
    Clock,
    RunState,
    TeammateRecord,
    check_ref_component,
    load_state,
    run_dir,
    state_path,
)
from rally_gh.words import noun_for, possessive


def artifacts_dir(common: Path, run_id: str) -> Path:
    """Where a split run's jobs leave and find their artifacts when no folder is given: a run
    played in one clone (locally, or in a test) passes them on as the workflow's artifact store does."""
    return run_dir(common, run_id) / "artifacts"


def run_teammate(repo_path: Path, loaded: LoadedConfig, run_id: str, name: str, issue_text: str | None,
                 clock: Clock, environ: Mapping[str, str], on_event: EventSink | None = None, *,
                 inputs: Path | None, results: Path, sandbox: bool = True) -> TeammateRecord:
    """One teammate of a split run: its agent, reconciled, its record and branch left in ``results``.
    ``inputs``: the artifacts of the teammate jobs before it (its blockers' work is read from
    there). ``sandbox`` as for ``pipeline.run``; without one, the result carries the risk."""
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
                     sandbox=assess.sandbox_of(environ, sandbox))
    blockers = plan.blockers_closure(config, name)
    if inputs is not None:
        for found in read_teammate_results(repo_path, inputs, config.branch_prefix, run_id, blockers).values():
            state = state.with_teammate(found.record)
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
        # What this job ran with (no sandbox, env passthrough, a control-file grant) and what happened in it
        # (hosts refused, the git directory's controls put back): the merge job carries them into the report.
        risks = [*assess.teammates_risks(loaded, environ, ctx.sandbox, [teammate]), *ledger.state.risks]
        write_teammate_result(repo_path, record, list(dict.fromkeys(risks)), ledger.state.base_sha, results)
    ledger.update_run(status="finished" if record.finished else "interrupted", finished_at=clock(), pid=None)
    return record


def merge_run(repo_path: Path, loaded: LoadedConfig, run_id: str, clock: Clock, environ: Mapping[str, str],
              on_event: EventSink | None = None, *, inputs: Path, results: Path,
              selected: frozenset[str] | None = None, sandbox: bool = True) -> RunState:
    """The fan-in of a split run: every teammate's result from ``inputs`` (the teammate jobs'
    artifacts), integrated and verified here, and the run's results left in ``results`` for the
    publish job. ``selected``: who this run had (the issue's rally block); None: the whole map.
    ``sandbox``: ``merge.verify`` runs in bubblewrap, and a merge job that has some is refused
    where none can be built; False (``--no-sandbox``) runs it as it is, the report's first risk."""
    config = loaded.config
    check_ref_component(run_id, "run id")
    repo = git.open_repo(repo_path)
    common = git.common_dir(repo)
    state = _split_state(repo, common, run_id, loaded, None, clock, selected)
    verifies = bool(config.merge.verify)
    ctx = RunContext(repo_path, common, loaded, run_id, None, clock, environ, on_event or no_events,
                     sandbox=assess.sandbox_of(environ, sandbox and verifies))
    names = [t.name for t in config.teammates if selected is None or t.name in selected]
    found = read_teammate_results(repo_path, inputs, config.branch_prefix, run_id, names)
    risks: dict[str, tuple[str, ...]] = {}
    for name in names:
        result = found.get(name)
        if result is None:
            record = state.teammate(name).model_copy(update={
                "outcome": "skipped",
                "reason": f"no result from its job (no {teammate_artifact(name)}/{TEAMMATE_FILE})"})
        else:
            record = result.record
            risks[name] = result.risks
        state = state.with_teammate(record.model_copy(update={"integrated": False}))
    ledger = Ledger(common, state)
    for risk in [*([assess.MERGE_NO_SANDBOX_RISK] if verifies and not sandbox else []),
                 *assess.merge_risks(config, environ, sandbox), *teammate_jobs_risks(risks)]:
        ledger.add_risk(risk)
    _check_again(ctx, ledger)
    _check_starts(ctx, ledger)
    pipeline.integrate_verify_publish(ctx, ledger)
    ledger.update_run(status="finished", finished_at=clock(), pid=None)
    write_results(repo_path, ledger.state, results)
    return ledger.state


TEAMMATE_JOB_RISKS = 30
"""How many of the teammate jobs' risks the merge job carries into the report (the publish job shows
50 risks at most, and this job's own come first)."""


def teammate_jobs_risks(risks: Mapping[str, Sequence[str]], limit: int = TEAMMATE_JOB_RISKS) -> list[str]:
    """The teammate jobs' risks (each job's, by teammate), as the report names them: each job's first
    risk (whether it had a sandbox) before any job's second, and so on, at most ``limit`` and a line
    saying how many more. A job's result is untrusted: however many risks one job claims, it cannot
    push another job's out of the report, nor the merge job's own (named before these)."""
    queues = [[(name, risk) for risk in found] for name, found in risks.items()]
    ordered = [item for tier in itertools.zip_longest(*queues) for item in tier if item is not None]
    shown = ordered if len(ordered) <= limit else ordered[:limit - 1]
    out = [f"{name}'s job: {risk}" for name, risk in shown]
    if len(shown) < len(ordered):
        left = {name for name, _ in ordered[len(shown):]}
        whose = ", ".join(name for name in risks if name in left)
        out.append(f"{len(ordered) - len(shown)} more risks of the jobs of {whose} are not shown here: each job's "
                   f"artifact ({teammate_artifact('<teammate>')}) lists them")
    return out


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


def _check_again(ctx: RunContext, ledger: Ledger) -> None:
    """A split run's records come from artifacts an agent could have forged: ownership, which decides
    integration, is checked again here on exactly the commits integration would replay."""
    repo = ctx.repo()
    for record in ledger.state.teammates:
        if not record.head_sha or not record.start_sha or not git.object_exists(repo, record.start_sha):
            continue  # nothing to integrate, or integration refuses it and says why
        if not _one_chain(repo, record.start_sha, record.head_sha):
            if record.outcome == "done":
                reason = (f"its result names {record.start_sha[:10]} as its start, not a commit its head "
                          f"{record.head_sha[:10]} descends from")
                ledger.update(record.name, outcome="skipped", reason=reason)
                ctx.emit(record.name, "skipped", reason)
            continue
        violations = find_violations(ctx, repo, record.name, record.start_sha, record.head_sha)
        changes: dict[str, Any] = {"violations": violations, "files_changed": tuple(
            git.changed_files(repo, record.start_sha, record.head_sha))}
        if violations and record.outcome not in ("violated", *STOPPED):
            changes.update(outcome="violated", reason=(
                f"its result said {record.outcome}; the merge job found {paths_it_does_not_own(violations)}"))
            ctx.emit(record.name, "violated", changes["reason"])
        ledger.update(record.name, **changes)


def _one_chain(repo: git.Repository, start: str, head: str) -> bool:
    """Whether ``start`` and ``head`` are commits, ``head`` descending from ``start``: a forged record may
    name a tree, a blob or a tag, on which walking the commits between them fails."""
    return git.is_commit(repo, start) and git.is_commit(repo, head) and git.is_ancestor(repo, start, head)


def _check_starts(ctx: RunContext, ledger: Ledger) -> None:
    """A dependent's job started from an integration of its blockers' work as their artifacts held it
    then. A blocker's job run again alone (by hand, a workflow of one's own) replaces that work: the
    dependent's result was not made or checked on the blocker's current work, so it is left out of
    the integration (skipped, saying whose job ran again and to re-run its own), the others go on.
    Blockers' commits reach a dependent's start replayed, so they are compared by replay key (author,
    date, message and change), as the publish job compares them, never by ancestry."""
    repo, config = ctx.repo(), ctx.config
    cache = git.new_tree_cache()
    for name in [n for wave in plan.waves(config) for n in wave]:
        if not fanin.integrable(ledger, name) or not plan.blockers_closure(config, name):
            continue
        try:
            stale = _stale_blockers(ctx, ledger, repo, name, cache)
        except GitError:
            continue  # a record naming no commit (a forged one): integration refuses it and says why
        if not stale:
            continue
        one = len(stale) == 1
        reason = (f"left out of the integration: its job started from the work of its {noun_for(stale, 'blocker')} "
                  f"{', '.join(stale)} as it was before {'that job' if one else 'their jobs'} ran again, and was not "
                  f"made or checked on {possessive(stale[0]) if one else 'their'} current work; "
                  f"re-run {possessive(name)} job, then the merge and publish jobs")
        ledger.update(name, outcome="skipped", reason=reason)
        ctx.emit(name, "skipped", reason)


def _stale_blockers(ctx: RunContext, ledger: Ledger, repo: git.Repository, name: str,
                    cache: git.TreeCache) -> list[str]:
    """The blockers whose current work ``name``'s recorded start does not hold exactly: one with a commit
    the start lacks, or the owner of a commit the start holds that no blocker's current work has. None
    while a blocker of it is left out (not done, violated): integration leaves it out too, naming that one."""
    base, start = ledger.state.base_sha, ledger.record(name).start_sha or ""
    blockers = [b for b in plan.blockers_closure(ctx.config, name) if ledger.has(b)]
    if not git.is_commit(repo, start) or not all(fanin.integrable(ledger, b) for b in blockers):
        return []
    held = {git.replay_key(repo, sha, cache) for sha in git.commits_between(repo, base, start)}
    behind = [b for b in blockers for r in [ledger.record(b)]
              if any(git.replay_key(repo, sha, cache) not in held
                     for sha in git.commits_between(repo, r.start_sha or base, r.head_sha or base))]
    if behind:
        return behind
    theirs = {git.replay_key(repo, sha, cache) for b in blockers
              for sha in git.commits_between(repo, base, ledger.record(b).head_sha or base)}
    foreign = [c for c in git.commit_summaries(repo, base, start) if git.replay_key(repo, c.sha, cache) not in theirs]
    owners = [b for b in blockers for c in foreign[:1] if len(c.parents) == 1
              and not check_commits(repo, ctx.loaded, b, c.parents[0], c.sha).violations]
    return (owners or blockers) if foreign else []
