"""The fan-in (SPEC section 4, steps 6 and 7): integrate, verify, publish.

Integration replays each done teammate's commits, in order, onto the base branch's tip in
memory (``integrate``); ``merge.verify`` runs on the result and a failure is bisected to
the teammates that caused it, who are dropped with the reason; a conflict names the
teammate, the files and, where it can, whose work it met. Publishing keeps every teammate
branch and moves the integration branch last, as the run's policy says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rally_gh import agents, git, integrate, plan, process, sandbox
from rally_gh.errors import RallyError
from rally_gh.run.context import RunContext
from rally_gh.run.ledger import Ledger
from rally_gh.state import Conflict, ConflictCause, Outcome, VerifyResult, VerifyRunRecord, integration_branch
from rally_gh.words import possessive


@dataclass(frozen=True)
class Integration:
    """The done teammates' work replayed in memory, and who was left out before replaying."""

    plan: integrate.IntegrationPlan
    result: integrate.IntegrationResult
    left_out: Mapping[str, str] = field(default_factory=dict)  # teammate: its blocker that was not integrated


@dataclass(frozen=True)
class Verdict:
    """Integration's one decision on a teammate that reconciliation found done: integrated, or
    left out (its outcome becomes conflicted, unverified or skipped) and why."""

    integrated: bool
    outcome: Outcome = "done"
    reason: str = ""
    said: str | None = None  # what the live display shows of it, when it shows anything


def integrate_teammates(ctx: RunContext, ledger: Ledger, repo: git.Repository) -> Integration:
    """Every done teammate's work, replayed onto the base branch as it is now; a teammate whose
    blocker was left out is left out too (its work builds on what is not there)."""
    candidates = [n for n in plan.integration_order(ctx.config) if integrable(ledger, n)]
    onto = latest_base(ctx, ledger, repo)  # fetched just before integrating
    ledger.update_run(integrated_onto=onto)
    left_out: dict[str, str] = {}
    while True:
        iplan, result = integration_of(ledger, repo, candidates, ctx.config.merge.on_conflict, onto)
        applied = {a.teammate for a in result.applied}
        orphans = {n: b for n in applied for b in plan.blockers_closure(ctx.config, n)
                   if b not in applied and ledger.has(b)}
        if not orphans:
            return Integration(iplan, result, left_out)
        left_out.update(orphans)
        candidates = [n for n in candidates if n not in orphans]


def verify_integration(ctx: RunContext, ledger: Ledger, repo: git.Repository, integration: Integration,
                       cancel: process.CancelToken | None = None) -> integrate.IntegrationResult:
    """``merge.verify`` on the integration, bisected on failure; the integration as it stands after
    it, with integration's verdict on each teammate recorded."""
    result = integration.result
    verification: tuple[VerifyResult, ...] = ()
    if result.applied and ctx.config.merge.verify:
        ctx.emit("", "phase", "verify")
        result, verification = _verify_and_bisect(ctx, ledger, repo, integration.plan, result, cancel)
    verdicts, conflicts = integration_verdicts(result, integration.left_out, ctx.config.merge.on_conflict,
                                               _conflict_causes(ledger, repo, result), ledger.state.base_ref)
    for name, verdict in verdicts.items():
        if verdict.integrated:
            ledger.update(name, integrated=True)
        else:
            ledger.update(name, outcome=verdict.outcome, reason=verdict.reason, integrated=False)
        if verdict.said is not None:
            ctx.emit(name, verdict.outcome, verdict.said)
    ledger.update_run(integrated=tuple(a.teammate for a in result.applied), conflicts=conflicts,
                      verification=verification)
    return result


def _verify_and_bisect(ctx: RunContext, ledger: Ledger, repo: git.Repository, iplan: integrate.IntegrationPlan,
                       result: integrate.IntegrationResult, cancel: process.CancelToken | None,
                       ) -> tuple[integrate.IntegrationResult, tuple[VerifyResult, ...]]:
    commands, timeout = ctx.config.merge.verify, ctx.config.defaults.timeout

    def run_verify(sha: git.Sha) -> list[process.CommandRun]:
        return integrate.verify_commit(repo, sha, commands, timeout, log=ledger.verify_log(f"merge-{git.short(sha)}"),
                                       place=merge_verify_place(ctx), cancel=cancel)

    checked = integrate.verify_and_bisect(repo, iplan, result, run_verify)
    result = checked.result
    final = [r for r in checked.runs if r.sha == result.tip] or list(checked.runs[-1:])
    blamed = _blamed_runs(checked.runs, checked.culprits)
    ledger.update_run(verify_runs=tuple(
        VerifyRunRecord(sha=r.sha, teammates=r.teammates, passed=r.passed,
                        commands=tuple(ledger.verify_result(c) for c in r.commands),
                        blamed=tuple(n for n in checked.culprits if blamed.get(n) == i))
        for i, r in enumerate(checked.runs)))
    if checked.base_fails:
        ledger.add_problems("merge.verify fails on the base commit itself: nobody was blamed")
    return result, tuple(ledger.verify_result(c) for r in final for c in r.commands)


def merge_verify_place(ctx: RunContext) -> integrate.VerifyPlace:
    """Where ``merge.verify`` runs (docs/security.md): on its scratch checkout in a sandbox
    (None: --no-sandbox) where that checkout and its own home are writable, the checkout's git
    directory read-only (no config, hook or ref can be planted) and the user's objects it borrows
    too; the user's home, checkout and git directory (its config, rally-gh's state), the
    teammates' checkouts hidden; with an environment built from the run's:
    of the runner's variables the basics and those ``merge.env`` names, never a token."""
    def place(checkout: Path, home: Path) -> tuple[dict[str, str], process.Sandbox | None]:
        env = agents.verify_environment(ctx.environ, ctx.config.merge.env, home)
        if ctx.sandbox is None:
            return env, None
        repo = ctx.repo()
        search_path = env.get("PATH")
        user_home = Path(ctx.environ.get("HOME") or Path.home())
        spec = sandbox.verify_spec(
            checkout=checkout, home=home, git_dir=git.private_git_dir(checkout), env={},
            hidden=(user_home, git.workdir(repo), git.common_dir(repo), git.rally_worktrees_root(repo)),
            read_only=(git.objects_dir(repo), *sandbox.command_paths(ctx.config.merge.verify, search_path)),
            network=ctx.config.merge.network)
        return env, process.Sandbox(ctx.sandbox, spec)

    return place


def publish_integration(ctx: RunContext, ledger: Ledger, repo: git.Repository,
                        result: integrate.IntegrationResult) -> None:
    """The integration branch moved to the result (pushed with a lease when there is a remote), every
    teammate branch kept; with nothing integrated, the teammate branches are still pushed."""
    policy = ctx.policy
    branch = integration_branch(ctx.config.branch_prefix, ctx.run_id)
    kept = [(r.branch, git.Sha(r.head_sha)) for r in ledger.state.teammates if r.head_sha]
    if result.applied:
        remote_old = None
        if policy.integration_lease is not None:
            remote_old = policy.integration_lease.expected
        elif policy.remote is not None:
            remote_old = git.remote_ref_shas(ctx.repo_path, policy.remote, [f"refs/heads/{branch}"])[
                f"refs/heads/{branch}"]
        published = integrate.publish(repo, branch, result.tip, git.ref_sha(repo, f"refs/heads/{branch}"), kept,
                                      remote=policy.remote, remote_expected_old=remote_old, supersede=True)
        if published.ok:
            ledger.update_run(integration_branch=branch, integration_sha=result.tip)
        else:
            ledger.add_problems(*published.problems)
    elif policy.remote is not None:
        # Nothing integrated: every teammate branch is still pushed, whatever its outcome.
        _, problems = integrate.keep_teammate_branches(repo, policy.remote, kept, supersede=True)
        if problems:
            ledger.add_problems(*problems)


def integrable(ledger: Ledger, name: str) -> bool:
    if not ledger.has(name):
        return False
    record = ledger.record(name)
    return record.outcome == "done" and bool(record.head_sha) and bool(record.start_sha)


def latest_base(ctx: RunContext, ledger: Ledger, repo: git.Repository) -> git.Sha:
    """What integration builds on. In CI, the base branch's tip on the remote now (fetched):
    what landed on it during the run goes under the teammates' work, so the pull request is up
    to date, and a clash with it is reported as a conflict like any other. A base that was
    rewritten (not a descendant of where the run started) is not used. Locally, the commit the
    run started from: the user's base branch is not read again (SPEC section 3, nothing builds
    on a ref read later), so whatever moves it during the run changes nothing of the run."""
    started = git.Sha(ledger.state.base_sha)
    ref = ledger.state.base_ref
    if ref == "HEAD" or ctx.policy.remote is None:
        return started
    try:
        found = git.remote_ref_shas(ctx.repo_path, ctx.policy.remote, [f"refs/heads/{ref}"])[f"refs/heads/{ref}"]
    except RallyError:
        return started
    if found is None or not git.object_exists(repo, found) or not git.is_ancestor(repo, started, found):
        return started
    return found


def integration_of(ledger: Ledger, repo: git.Repository, names: Sequence[str], on_conflict: integrate.OnConflict,
                   onto: git.Sha | None = None) -> tuple[integrate.IntegrationPlan, integrate.IntegrationResult]:
    """The work of ``names``, replayed in that order onto ``onto`` (default: the run's
    base) in memory (no ref moved): exactly the head each record holds, the commit reconciliation
    checked, never its branch read again (another agent, or anyone, may have moved it since)."""
    records = [ledger.record(n) for n in names]
    branches = [integrate.TeammateBranch(r.name, git.Sha(r.head_sha) if r.head_sha else None,
                                         git.Sha(r.start_sha or ""), f"refs/heads/{r.branch}") for r in records]
    iplan = integrate.plan_integration(repo, onto or git.Sha(ledger.state.base_sha), branches)
    return iplan, integrate.integrate(repo, iplan, on_conflict)


def _conflict_causes(ledger: Ledger, repo: git.Repository,
                     result: integrate.IntegrationResult) -> dict[str, tuple[ConflictCause, ...]]:
    started = git.Sha(ledger.state.base_sha)
    return {o.teammate: tuple(ConflictCause(paths=c.paths, teammate=c.teammate, base_commit=c.base_commit)
                              for c in integrate.conflict_causes(repo, result, o.conflict, started))
            for o in result.outcomes if o.conflict is not None}


def integration_verdicts(result: integrate.IntegrationResult, left_out: Mapping[str, str], on_conflict: str,
                         causes: Mapping[str, tuple[ConflictCause, ...]],
                         base_ref: str) -> tuple[dict[str, Verdict], tuple[Conflict, ...]]:
    """Integration's verdict on each teammate it was given (all found done by reconciliation), and
    the conflicts met: the one place where integration changes a teammate's outcome."""
    verdicts = {name: Verdict(False, "skipped", f"not integrated: its blocker {blocker} was not, and its work "
                                                "builds on it")
                for name, blocker in left_out.items()}
    conflicts: list[Conflict] = []
    stopped_at = next((o.teammate for o in result.outcomes if o.conflict is not None), None)
    for o in result.outcomes:
        if o.status == "integrated":
            verdicts[o.teammate] = Verdict(True)
        elif o.conflict is not None:
            action = "stopped" if on_conflict == "stop" else "skipped"
            conflict = Conflict(teammate=o.teammate, paths=o.conflict.paths, action=action,
                                commit=str(o.conflict.commit), causes=causes.get(o.teammate, ()))
            conflicts.append(conflict)
            verdicts[o.teammate] = Verdict(False, "conflicted", conflict.describe(base_ref),
                                           ", ".join(o.conflict.paths))
        elif o.reason == "verify":
            verdicts[o.teammate] = Verdict(False, "unverified", f"dropped from the integration: {o.detail}",
                                           o.detail or "")
        elif o.status == "refused":
            verdicts[o.teammate] = Verdict(False, "skipped", f"not integrated: {o.detail or o.reason}")
        else:  # not attempted: integration stopped at an earlier conflict (on_conflict: stop)
            verdicts[o.teammate] = Verdict(False, "skipped", (
                f"not integrated: integration stopped at {possessive(stopped_at or 'a teammate')} conflict "
                "(merge.on_conflict: stop); its work is on its branch"))
    return verdicts, tuple(conflicts)


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
