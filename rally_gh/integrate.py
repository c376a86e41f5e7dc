"""Integration: teammates' branches replayed, one teammate at a time, onto one branch.

Plan, execute, publish, as git-branchless does an in-memory rebase:

- ``plan_integration`` turns the caller's order of teammate branches (heads
  resolved once, before anything runs) into a checked list of commits to
  replay, refusing up front what cannot be replayed (a missing or force-moved
  branch, a merge commit).
- ``integrate`` replays them in the object database only (rally_gh.git's
  ``replay_commit``: no work tree, no index) and returns values: the new tip,
  an outcome per teammate, the old-to-new commit map. A conflict is a value;
  only the command boundary turns ``on_conflict: stop`` into ``ConflictError``.
- ``verify_and_bisect`` runs ``merge.verify`` on the result and, when it fails,
  finds the teammate(s) to drop by bisecting over the integration order.
- ``publish`` moves refs last: the local integration branch by compare-and-swap,
  then the remote ones with a lease.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from rally_gh import git
from rally_gh.errors import ConflictError
from rally_gh.git import RALLY_COMMITTER, Identity, PathConflict, PushedRef, RefPush, Remote, Repository, Sha
from rally_gh.process import CancelToken, Cancelled, CommandRun, Sandbox, run_commands
from rally_gh.words import possessive

OnConflict = Literal["skip", "stop"]
Status = Literal["integrated", "conflicted", "refused", "skipped"]


# --- Plan ------------------------------------------------------------------


@dataclass(frozen=True)
class TeammateBranch:
    """A teammate's work: its branch head, resolved once, and where the work started."""

    teammate: str
    head: Sha | None  # None: the branch was missing when resolved
    start: Sha  # the commit its worktree started from
    branch: str | None = None  # for messages and publishing


@dataclass(frozen=True)
class TeammatePlan:
    teammate: str
    branch: str | None
    head: Sha | None
    start: Sha
    commits: tuple[Sha, ...]  # to replay, oldest first
    refusal: str | None = None  # why nothing of it will be replayed
    refusal_detail: str | None = None


@dataclass(frozen=True)
class IntegrationPlan:
    base: Sha  # the base tip fetched just before integration
    teammates: tuple[TeammatePlan, ...]

    @property
    def steps(self) -> tuple[tuple[str, Sha], ...]:
        """Every (teammate, commit) to replay, in order."""
        return tuple((t.teammate, c) for t in self.teammates for c in t.commits)


class PlanError(ValueError):
    """A plan that breaks its invariants: a bug in the caller, not a user mistake."""


def plan_integration(repo: Repository, base: Sha, order: Sequence[TeammateBranch]) -> IntegrationPlan:
    """Which commits of each teammate to replay onto ``base``, in ``order``.

    A teammate's commits are those reachable from its head and not from its
    start, oldest first. Merge commits are refused, not flattened: a merge's
    diff against its first parent carries the other side's work (often the base
    branch's) under this teammate's name, and its own commits would not be
    checked one by one. The teammate's branch is kept; rebasing it onto its
    start makes it replayable.
    """
    if not git.object_exists(repo, base):
        raise PlanError(f"base {base} is not in {git.git_dir(repo)}")
    planned: list[TeammatePlan] = []
    owner_of: dict[Sha, str] = {}
    for tb in order:
        plan = _plan_one(repo, tb, owner_of)
        if plan.refusal is None:
            owner_of.update(dict.fromkeys(plan.commits, tb.teammate))
        planned.append(plan)
    result = IntegrationPlan(base, tuple(planned))
    check_plan(repo, result)
    return result


def _plan_one(repo: Repository, tb: TeammateBranch, owner_of: Mapping[Sha, str]) -> TeammatePlan:
    def refuse(reason: str, detail: str) -> TeammatePlan:
        return TeammatePlan(tb.teammate, tb.branch, tb.head, tb.start, (), reason, detail)

    where = tb.branch or tb.teammate
    if tb.head is None or not git.object_exists(repo, tb.head):
        return refuse("missing", f"{where}: the branch was not found when integration started")
    if not git.object_exists(repo, tb.start) or not git.is_ancestor(repo, tb.start, tb.head):
        return refuse("force-moved", f"{where}: its head {git.short(tb.head)} no longer contains the commit "
                                     f"it started from ({git.short(tb.start)}): the branch was force-moved")
    commits = git.commit_summaries(repo, tb.start, tb.head)
    for c in commits:
        if len(c.parents) > 1:
            return refuse("merge-commit", f"{where}: {git.short(c.sha)} ({c.title!r}) is a merge commit; "
                                          f"rebase the branch onto {git.short(tb.start)} to integrate it")
        if c.sha in owner_of:
            return refuse("shared-commits", f"{where}: {git.short(c.sha)} is also in {possessive(owner_of[c.sha])} work; "
                                            "a teammate must start from the integration tip, not another branch")
    return TeammatePlan(tb.teammate, tb.branch, tb.head, tb.start, tuple(c.sha for c in commits))


def check_plan(repo: Repository, plan: IntegrationPlan) -> None:
    """The plan's invariants: teammates named once, every commit once, and each
    teammate's commits one chain from its start to its head (so no cycle and no
    commit replayed before its parent)."""
    names = [t.teammate for t in plan.teammates]
    if len(set(names)) != len(names):
        raise PlanError(f"a teammate appears twice in the integration order: {names}")
    shas = [sha for _, sha in plan.steps]
    if len(set(shas)) != len(shas):
        raise PlanError("a commit is planned twice")
    for t in plan.teammates:
        if t.refusal is not None:
            continue
        expected_parent = t.start
        for sha in t.commits:
            parents = git.commit_summaries(repo, expected_parent, sha)
            if len(parents) != 1 or parents[0].parents != (expected_parent,):
                raise PlanError(f"{t.teammate}: {sha} does not follow {expected_parent}")
            expected_parent = sha
        if t.commits and expected_parent != t.head:
            raise PlanError(f"{t.teammate}: the planned commits end at {expected_parent}, not at the head {t.head}")


# --- Execute ---------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    """Why one teammate's work could not be replayed: the commit and the paths."""

    teammate: str
    commit: Sha
    paths: tuple[str, ...]
    details: tuple[PathConflict, ...] = ()

    def describe(self) -> str:
        return f"{self.teammate}: commit {git.short(self.commit)} conflicts in " + ", ".join(self.paths)


@dataclass(frozen=True)
class TeammateOutcome:
    teammate: str
    status: Status
    reason: str | None = None  # conflict | missing | force-moved | merge-commit | shared-commits | hostile-path | verify | stopped
    detail: str | None = None
    conflict: Conflict | None = None
    commit_map: tuple[tuple[Sha, Sha], ...] = ()  # (old, new) for each commit written
    dropped_empty: tuple[Sha, ...] = ()  # commits whose change was already on the tip


@dataclass(frozen=True)
class Applied:
    teammate: str
    tip: Sha  # the integration tip just after this teammate's commits


@dataclass(frozen=True)
class IntegrationResult:
    base: Sha
    tip: Sha
    outcomes: tuple[TeammateOutcome, ...]  # one per planned teammate, in plan order
    applied: tuple[Applied, ...]  # the integrated teammates, in order
    stopped_by: Conflict | None = None  # on_conflict: stop met this conflict

    @property
    def commit_map(self) -> dict[Sha, Sha]:
        return {old: new for o in self.outcomes for old, new in o.commit_map}

    def outcome(self, teammate: str) -> TeammateOutcome:
        return next(o for o in self.outcomes if o.teammate == teammate)


def integrate(repo: Repository, plan: IntegrationPlan, on_conflict: OnConflict = "skip",
              committer: Identity = RALLY_COMMITTER) -> IntegrationResult:
    """Replay the plan onto its base in memory. Nothing but new objects is
    written: no ref, no index, no work tree."""
    return _replay_from(repo, plan.base, plan.base, (), plan.teammates, on_conflict, committer)


def _replay_from(repo: Repository, base: Sha, tip: Sha, done: Sequence[TeammateOutcome],
                 teammates: Sequence[TeammatePlan], on_conflict: OnConflict, committer: Identity,
                 applied: Sequence[Applied] = ()) -> IntegrationResult:
    outcomes = list(done)
    applied_now = list(applied)
    stopped_by: Conflict | None = None
    with git.replay_session() as cache:
        for t in teammates:
            if stopped_by is not None:
                outcomes.append(TeammateOutcome(t.teammate, "skipped", "stopped",
                                                f"not attempted: integration stopped at {stopped_by.teammate}"))
                continue
            if t.refusal is not None:
                outcomes.append(TeammateOutcome(t.teammate, "refused", t.refusal, t.refusal_detail))
                continue
            outcome, new_tip = _replay_teammate(repo, t, tip, committer, cache)
            outcomes.append(outcome)
            if outcome.status == "integrated":
                tip = new_tip
                applied_now.append(Applied(t.teammate, tip))
            elif outcome.conflict is not None and on_conflict == "stop":
                stopped_by = outcome.conflict
    return IntegrationResult(base, tip, tuple(outcomes), tuple(applied_now), stopped_by)


def _replay_teammate(repo: Repository, t: TeammatePlan, tip: Sha, committer: Identity,
                     cache: git.TreeCache) -> tuple[TeammateOutcome, Sha]:
    """All of one teammate's commits onto ``tip``, or none of them: on a conflict the
    tip stays where it was before its first commit (the objects written are garbage)."""
    mapping: list[tuple[Sha, Sha]] = []
    dropped: list[Sha] = []
    current = tip
    for sha in t.commits:
        replayed = git.replay_commit(repo, sha, current, committer, cache)
        if replayed.hostile:
            detail = "; ".join(f"{path!r}: {why}" for path, why in replayed.hostile)
            return TeammateOutcome(t.teammate, "refused", "hostile-path",
                                   f"commit {git.short(sha)} writes a refused path: {detail}"), tip
        if replayed.conflicts:
            paths = tuple(sorted({c.path for c in replayed.conflicts}))
            conflict = Conflict(t.teammate, sha, paths, replayed.conflicts)
            return TeammateOutcome(t.teammate, "conflicted", "conflict", conflict.describe(), conflict), tip
        if replayed.new_sha is None:
            dropped.append(sha)  # its change is already on the tip
            mapping.append((sha, current))
            continue
        mapping.append((sha, replayed.new_sha))
        current = replayed.new_sha
    return TeammateOutcome(t.teammate, "integrated", commit_map=tuple(mapping), dropped_empty=tuple(dropped)), current


@dataclass(frozen=True)
class ConflictCause:
    """Whose change some of a conflict's paths meet: the work of a teammate
    integrated before, or a commit that landed on the base during the run."""

    paths: tuple[str, ...]
    teammate: str | None = None
    base_commit: Sha | None = None  # the newest base commit that changed these paths


def conflict_causes(repo: Repository, result: IntegrationResult, conflict: Conflict,
                    started: Sha) -> tuple[ConflictCause, ...]:
    """What ``conflict``'s paths meet on the tip it was replayed onto: the work of
    the teammates integrated before it (each named), and the base's change from
    ``started`` (where the run began) to ``result.base`` (where integration went),
    blamed on the newest commit that touched each path. A path both changed is
    named under both; a path neither changed (it meets what the teammate's start
    held) under none."""
    causes: list[ConflictCause] = []
    before: list[str] = []
    for o in result.outcomes:
        if o.teammate == conflict.teammate:
            break
        if o.status == "integrated":
            before.append(o.teammate)
    previous = result.base
    for a in result.applied:
        if a.teammate in before:
            hit = _touched(conflict.paths, git.changed_files(repo, previous, a.tip))
            if hit:
                causes.append(ConflictCause(hit, teammate=a.teammate))
        previous = a.tip
    if started != result.base and git.object_exists(repo, started):
        left = list(_touched(conflict.paths, git.changed_files(repo, started, result.base)))
        for c in reversed(git.commit_summaries(repo, started, result.base)):  # newest first
            if not left:
                break
            hit = _touched(left, git.changed_files(repo, c.parents[0], c.sha) if c.parents else [])
            if hit:
                causes.append(ConflictCause(hit, base_commit=c.sha))
                left = [p for p in left if p not in hit]
    return tuple(causes)


def _touched(paths: Sequence[str], changed: Sequence[str]) -> tuple[str, ...]:
    """The ``paths`` that a change of ``changed`` reaches: the path itself, a file
    where it needs a directory, or something inside it where it is a file."""
    hit = []
    for path in paths:
        if any(c == path or path.startswith(c + "/") or c.startswith(path + "/") for c in changed):
            hit.append(path)
    return tuple(hit)


def conflict_error(conflict: Conflict) -> ConflictError:
    """The error the command boundary raises for ``on_conflict: stop``."""
    return ConflictError(
        conflict.describe(),
        hint=f"the branch {conflict.teammate} is kept as it is; resolve the conflict on it, "
             "or set merge.on_conflict: skip to integrate the others without it",
    )


# --- Verify and bisect -----------------------------------------------------


@dataclass(frozen=True)
class VerifyRun:
    sha: Sha
    teammates: tuple[str, ...]  # whose work the verified commit holds
    passed: bool
    commands: tuple[CommandRun, ...] = ()


@dataclass(frozen=True)
class VerifyResult:
    result: IntegrationResult  # after the culprits were dropped
    runs: tuple[VerifyRun, ...]
    passed: bool  # the final tip passed verify
    culprits: tuple[str, ...] = ()
    base_fails: bool = False  # the base itself fails: nobody is to blame
    exhausted: bool = False  # max_runs ran out before a passing tip was found


VerifyFn = Callable[[Sha], "bool | Sequence[CommandRun]"]


def default_max_verify_runs(team_size: int) -> int:
    """One run of the result, log2(team) to find a culprit, one to confirm, and
    room for a second culprit or a broken base."""
    return 2 * math.ceil(math.log2(max(team_size, 1) + 1)) + 3


def verify_and_bisect(repo: Repository, plan: IntegrationPlan, result: IntegrationResult,
                      run_verify: VerifyFn, *, max_runs: int | None = None,
                      committer: Identity = RALLY_COMMITTER) -> VerifyResult:
    """Verify the integrated tip; on failure, bisect the integration order.

    The tips after each teammate (``result.applied``) are the candidate
    prefixes: the first failing prefix names the teammate whose work breaks it
    (as bors and Mergify split a failing batch). It is dropped with reason
    ``verify``, the teammates after it are replayed again without it, and the
    new tip is verified; a further failure lies after the last passing prefix,
    so the search goes on from there. If the first teammate is blamed, the base
    is verified too: a base that fails blames nobody. When the runs run out, the
    tip falls back to the last prefix that passed and the teammates after it are
    dropped (``verify``, not cleared): an integration branch that fails its
    checks is never published as passing. A run that cancellation cut short
    has no verdict: ``Cancelled`` is raised, and nobody is blamed.
    """
    budget = max_runs if max_runs is not None else default_max_verify_runs(len(result.applied))
    runs: list[VerifyRun] = []
    known: dict[Sha, bool] = {}

    def verify(sha: Sha, teammates: Sequence[str]) -> bool:
        if sha not in known:
            got = run_verify(sha)
            commands = () if isinstance(got, bool) else tuple(got)
            if any(c.cancelled for c in commands):
                raise Cancelled(f"merge.verify of {git.short(sha)} was stopped: the run was interrupted")
            passed = got if isinstance(got, bool) else all(c.passed for c in commands)
            runs.append(VerifyRun(sha, tuple(teammates), passed, commands))
            known[sha] = passed
        return known[sha]

    def names(upto: int) -> list[str]:
        return [a.teammate for a in result.applied[: upto + 1]]

    culprits: list[str] = []
    good = -1  # result.applied[: good + 1] is known to pass (-1: the base, assumed)
    if not result.applied or verify(result.tip, names(len(result.applied) - 1)):
        return VerifyResult(result, tuple(runs), True)
    while True:
        bad = len(result.applied) - 1  # the whole of the current result fails
        while bad - good > 1 and len(runs) < budget:
            mid = (good + bad) // 2
            if verify(result.applied[mid].tip, names(mid)):
                good = mid
            else:
                bad = mid
        if bad - good > 1:
            return _give_up(repo, plan, result, good, runs, culprits, committer)
        if bad == 0 and len(runs) < budget and not verify(result.base, []):
            return VerifyResult(result, tuple(runs), False, tuple(culprits), base_fails=True)
        culprit = result.applied[bad].teammate
        culprits.append(culprit)
        result = _drop_and_replay(repo, plan, result, bad, committer,
                                  f"verify fails once {possessive(culprit)} work is added")
        last = len(result.applied) - 1
        if last == good or len(runs) >= budget:
            passed = last == good  # the known-good prefix is all that is left
            if not passed:
                return _give_up(repo, plan, result, good, runs, culprits, committer)
            return VerifyResult(result, tuple(runs), True, tuple(culprits))
        if verify(result.tip, names(last)):
            return VerifyResult(result, tuple(runs), True, tuple(culprits))


def _drop_and_replay(repo: Repository, plan: IntegrationPlan, result: IntegrationResult, index: int,
                     committer: Identity, why: str) -> IntegrationResult:
    """``result`` without the teammate at ``result.applied[index]``: the teammates
    after it are replayed again onto the tip before it, those that conflicted
    too (what they met may have been the culprit's work), unless integration
    had stopped at a conflict."""
    culprit = result.applied[index].teammate
    keep = {a.teammate for a in result.applied[:index]}
    start_tip = result.applied[index - 1].tip if index > 0 else result.base
    later = {a.teammate for a in result.applied[index + 1:]}
    if result.stopped_by is None:
        order = [o.teammate for o in result.outcomes]
        later |= {o.teammate for o in result.outcomes
                  if o.status == "conflicted" and order.index(o.teammate) > order.index(culprit)}
    done = [o if o.teammate != culprit else TeammateOutcome(culprit, "refused", "verify", why)
            for o in result.outcomes if o.teammate not in later]
    again = [t for t in plan.teammates if t.teammate in later]
    replayed = _replay_from(repo, result.base, start_tip, (), again, "skip", committer,
                            [a for a in result.applied if a.teammate in keep])
    by_name = {o.teammate: o for o in (*done, *replayed.outcomes)}
    outcomes = tuple(by_name[o.teammate] for o in result.outcomes)
    return replace(result, tip=replayed.tip, outcomes=outcomes, applied=replayed.applied)


def _give_up(repo: Repository, plan: IntegrationPlan, result: IntegrationResult, good: int,
             runs: list[VerifyRun], culprits: list[str], committer: Identity) -> VerifyResult:
    uncleared = [a.teammate for a in result.applied[good + 1:]]
    outcomes = tuple(
        TeammateOutcome(o.teammate, "refused", "verify", "verify failed and bisection ran out of runs before "
                                                         "clearing this teammate's work")
        if o.teammate in uncleared else o
        for o in result.outcomes
    )
    tip = result.applied[good].tip if good >= 0 else result.base
    trimmed = replace(result, tip=tip, outcomes=outcomes, applied=result.applied[: good + 1])
    passed = any(r.sha == tip and r.passed for r in runs)
    return VerifyResult(trimmed, tuple(runs), passed, (*culprits, *uncleared), exhausted=True)


# Where verify commands run, given their scratch checkout and a home of their own: the whole
# environment, and the sandbox (None: none, --no-sandbox).
VerifyPlace = Callable[[Path, Path], tuple[Mapping[str, str], Sandbox | None]]


def verify_commit(repo: Repository, sha: Sha, commands: Sequence[str], expected_s: float,
                  scratch_root: Path | None = None, log: Path | None = None, *, place: VerifyPlace,
                  cancel: CancelToken | None = None) -> list[CommandRun]:
    """Run ``commands`` in a scratch checkout of ``sha`` with a home of their own, as
    ``place`` says (the environment, the sandbox), both removed afterwards, their
    output kept in ``log``; ``cancel`` stops them. Usable as ``run_verify`` with
    ``lambda sha: verify_commit(repo, sha, commands, t, place=...)``."""
    parent = scratch_root or git.common_dir(repo) / "rally" / "verify"
    parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f"{git.short(sha)}-", dir=parent))
    path = holder / "tree"  # a fresh name: the worktree is made by git, not found half made
    try:
        git.materialize(repo, sha, path)
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as fh:
                fh.write(f"# commit {sha}, in a scratch checkout\n".encode())
        env, box = place(path, holder / "home")
        return run_commands(commands, path, expected_s, env=env, in_sandbox=box, log=log, cancel=cancel)
    finally:
        git.dematerialize(repo, path)
        shutil.rmtree(holder, ignore_errors=True)


# --- Publish ---------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    ok: bool
    local_moved: bool  # the local integration branch now points at the new tip
    pushed: tuple[PushedRef, ...] = ()
    problems: tuple[str, ...] = ()
    attempts: int = 0


def publish(repo: Repository, integration_branch: str, new_sha: Sha, expected_old: Sha | None,
            teammate_branches: Sequence[tuple[str, Sha]], *, remote: Remote | None = None,
            remote_expected_old: Sha | None = None,
            max_attempts: int = 3, supersede: bool = False) -> PublishResult:
    """Keep every teammate branch, then move the integration branch, last.

    Locally, a teammate branch deleted during the run is recreated at the head
    integration used, and one that was moved is left alone. The integration
    branch moves only if it is still at ``expected_old`` (None: only if it does
    not exist). With a ``remote``, teammate branches are pushed as fast-forwards
    and the integration branch with a lease on ``remote_expected_old``. When the
    remote integration branch moved meanwhile, it is read again: already at our
    tip is success; an ancestor of our tip (a retried job's earlier result) is
    pushed over with the new lease; anything else (someone's own commits) is
    reported, never overwritten. At most ``max_attempts`` pushes. ``supersede``:
    see ``keep_teammate_branches``.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    problems: list[str] = []
    integration_ref = _full(integration_branch)
    nested = [b for b, _ in teammate_branches if _full(b).startswith(integration_ref + "/")]
    if nested:
        # git keeps refs as paths: refs/heads/x cannot exist next to refs/heads/x/y.
        return PublishResult(False, False, problems=(
            f"{integration_branch} cannot be created while {nested[0]} exists (git refs are paths); "
            "name the integration branch so that no teammate branch lies under it",))
    for branch, head in teammate_branches:
        if git.ref_sha(repo, _full(branch)) is None and git.object_exists(repo, head):
            git.update_ref_if(repo, _full(branch), head, None)
    if git.head_branch(repo) == integration_branch:
        return PublishResult(False, False, problems=(f"{integration_branch} is checked out here; "
                                                     "moving it would leave the work tree out of date",))
    if not git.update_ref_if(repo, integration_ref, new_sha, expected_old):
        now = git.ref_sha(repo, integration_ref)
        return PublishResult(False, False, problems=(
            f"{integration_branch} moved during the run (now {now or 'deleted'}, expected {expected_old or 'absent'}); "
            "nothing was overwritten: re-run the merge to integrate onto it",))
    if remote is None:
        return PublishResult(True, True)
    cwd = git.git_dir(repo)
    pushed, teammate_problems = keep_teammate_branches(repo, remote, teammate_branches,
                                                       supersede=supersede)
    problems.extend(teammate_problems)
    lease = remote_expected_old
    attempts = 0
    while attempts < max_attempts:
        attempts += 1
        (result,) = git.push_refs(cwd, remote, [RefPush(integration_ref, new_sha, lease)])
        if result.ok:
            pushed.append(result)
            break
        now = git.remote_ref_shas(cwd, remote, [integration_ref])[integration_ref]
        if now == new_sha:
            pushed.append(PushedRef(integration_ref, True, "already there"))
            break
        if now is not None and not (git.object_exists(repo, now) and git.is_ancestor(repo, now, new_sha)):
            pushed.append(result)
            problems.append(f"{integration_ref} on {remote} moved to {git.short(now)}, which is not part of this "
                            "integration; it was left as it is")
            break
        lease = now
    else:
        pushed.append(result)
        problems.append(f"{integration_ref}: push rejected {attempts} times: {result.message}")
    return PublishResult(not problems, True, tuple(pushed), tuple(problems), attempts)


def superseded_ref(branch: str, sha: str) -> str:
    return f"refs/rally/superseded/{branch}/{sha[:12]}"


def keep_teammate_branches(repo: Repository, remote: Remote, teammate_branches: Sequence[tuple[str, Sha]], *,
                           supersede: bool = False) -> tuple[list[PushedRef], list[str]]:
    """Push every teammate branch to ``remote`` as a fast-forward.

    ``supersede`` (a re-run of the same run, on a fresh runner): a remote branch
    holding an earlier attempt's commits is kept under ``superseded_ref`` first,
    in the same atomic push that moves the branch (with a lease on what it was),
    so the pull request shows this attempt and nothing of the earlier one is lost.
    """
    if not teammate_branches:
        return [], []
    cwd = git.git_dir(repo)
    refs = [_full(b) for b, _ in teammate_branches]
    now = git.remote_ref_shas(cwd, remote, refs) if supersede else dict.fromkeys(refs)
    pushed: list[PushedRef] = []
    problems: list[str] = []
    plain: list[RefPush] = []
    for (branch, head), ref in zip(teammate_branches, refs):
        old = now[ref]
        if old is None or old == head or (git.object_exists(repo, old) and git.is_ancestor(repo, old, head)):
            plain.append(RefPush(ref, head, lease=False))
            continue
        pair = [RefPush(superseded_ref(branch, old), old, None), RefPush(ref, head, old)]
        results = git.push_refs(cwd, remote, pair, atomic=True)
        pushed.extend(results)
        problems.extend(f"{r.ref}: {r.message}" for r in results if not r.ok)
    if plain:
        results = git.push_refs(cwd, remote, plain)
        pushed.extend(results)
        problems.extend(f"{r.ref}: {r.message}" for r in results if not r.ok)
    return pushed, problems


def _full(branch: str) -> str:
    return branch if branch.startswith("refs/") else f"refs/heads/{branch}"


__all__ = [
    "Applied", "Conflict", "ConflictCause", "IntegrationPlan", "IntegrationResult", "PlanError",
    "PublishResult", "TeammateBranch", "TeammateOutcome", "TeammatePlan", "VerifyPlace", "VerifyResult", "VerifyRun",
    "check_plan",
    "conflict_causes", "conflict_error", "default_max_verify_runs", "integrate", "plan_integration", "publish",
    "verify_and_bisect", "verify_commit",
]
