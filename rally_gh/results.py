"""A run's results, handed from the job where its agents ran to the one job that publishes.

SPEC section 5: no agent shares a job with a write token. The agents' job (``contents:
read``) runs, reconciles, integrates and verifies, then ``write_results`` leaves a folder
the workflow uploads as an artifact: ``run.bundle`` (a git bundle of the run's teammate
branches and its integration branch, beyond the base commit) and ``run.json`` (the run's
records). The publish job, which holds the write permissions and runs no code an agent, a
branch or the issue wrote, downloads it and ``import_results`` takes it as untrusted input:

1. size limits first; only regular files are read;
2. the records must be of this run (its id) on this job's base commit;
3. the bundle is verified against this repository, its objects checked as strictly as a
   server checks a push, and only the run's own branches are taken from it (no hook run,
   nothing else from it applied);
4. each teammate's branch must be at the head its record names, start from the base (or,
   for a teammate with ``blocked_by``, from commits that replay its accepted blockers'
   work), hold no merge, and every path each of its commits touches must be owned by that
   teammate under the map of the base commit (``ownership.enforce``): one commit, one owner;
5. the integration is re-derived here, in memory, from the accepted teammates' commits
   (``integrate``) and compared with the tree the agents' job verified; when it differs (a
   refused teammate, or a record that does not hold), the run is unverified: the report says
   so and the pull request is a draft.

A run taken up again (``/rally retry``, ``drop``, a review's rounds in rally-comment.yml) is
judged by ``import_again`` against the run as published, which the publish job fetched itself
(``run.published``), never against what came with the artifacts: a retried teammate's commits
must start at the integration as published, a follow-up round's at the teammate's published
head, and everyone else must be exactly as published.

A teammate that fails a check is refused with its reason; the others are still published.
What the published report says comes from the map and from git wherever it can; the little
taken from the records (outcomes, reasons, timings, verify output) is rebuilt as plain text
that cannot reach the pull request as Markdown or HTML.
"""

from __future__ import annotations

import math
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from rally_gh import git, integrate, plan
from rally_gh.config import LoadedConfig
from rally_gh.errors import RallyError
from rally_gh.ownership.enforce import Violation, check_commits
from rally_gh.run.planning import PLAN_LIMIT
from rally_gh.run.published import Again
from rally_gh.run.published import retried as published_retried
from rally_gh.run.ledger import fresh_state
from rally_gh.state import (
    INTEGRATION_NAME,
    PHASES,
    Conflict,
    ConflictCause,
    ConvergenceGroup,
    RunState,
    TeammateRecord,
    VerifyResult,
    VerifyRunRecord,
    integration_branch,
    teammate_branch,
)
from rally_gh.words import noun_for, plural

RECORD_FILE = "run.json"
BUNDLE_FILE = "run.bundle"
UNVERIFIED_CHECK = "rally-gh publish: the integrated tree is the one merge.verify passed"
"""The verification line the report shows when the publish job's integration is not the one verified."""


@dataclass(frozen=True)
class ResultLimits:
    """How large an artifact the publish job reads at all."""

    bundle_bytes: int = 1024 * 1024 * 1024
    record_bytes: int = 16 * 1024 * 1024


# --- The agents' side ------------------------------------------------------------------


def write_results(repo_path: Path, state: RunState, folder: Path) -> Path:
    """``folder`` holding the run's bundle and records, for the publish job (see the module docstring)."""
    repo = git.open_repo(repo_path)
    folder.mkdir(parents=True, exist_ok=True)
    bundle = folder / BUNDLE_FILE
    bundle.unlink(missing_ok=True)
    branches = [t.branch for t in state.teammates if t.head_sha]
    if state.integration_sha and state.integration_branch:
        branches.append(state.integration_branch)
    refs = [f"refs/heads/{b}" for b in branches if git.ref_sha(repo, f"refs/heads/{b}") is not None]
    if refs:
        git.write_bundle(repo_path, bundle, refs, git.Sha(state.base_sha))
    record = state.model_copy(update={"pid": None, "teammates": tuple(
        t.model_copy(update={"worktree": None}) for t in state.teammates)})
    (folder / RECORD_FILE).write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return folder


# --- A split run's teammate jobs (SPEC section 7) ----------------------------------------
#
# Each teammate job of a split run (read-only, like the agents' job) leaves its own artifact: its
# branch beyond the base as ``teammate.bundle`` and its record as ``teammate.json``. A blocked
# teammate's job and the merge job read the artifacts of the others as untrusted input, with the
# same limits and bundle checks as ``import_results``; the merge job then writes the whole run's
# results (``write_results``) for the publish job, which checks everything again from the map.

TEAMMATE_FILE = "teammate.json"
TEAMMATE_BUNDLE = "teammate.bundle"
RESULTS_ARTIFACT = "rally-results"
"""The artifact of a run's results (``write_results``): what the publish job downloads."""


def teammate_artifact(name: str) -> str:
    """The artifact a split run's teammate job uploads; actions/download-artifact keeps its name as the folder."""
    return f"rally-teammate-{name}"


class TeammateResult(BaseModel):
    """What a split run's teammate job hands on: its record, and the risks its job ran with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record: TeammateRecord
    risks: tuple[str, ...] = ()


def write_teammate_result(repo_path: Path, record: TeammateRecord, risks: Sequence[str], base: str,
                          folder: Path) -> Path:
    """``folder`` holding one teammate's record and its branch's commits beyond ``base``."""
    folder.mkdir(parents=True, exist_ok=True)
    bundle = folder / TEAMMATE_BUNDLE
    bundle.unlink(missing_ok=True)
    if record.head_sha and record.head_sha != base:
        git.write_bundle(repo_path, bundle, [f"refs/heads/{record.branch}"], git.Sha(base))
    result = TeammateResult(record=record.model_copy(update={"worktree": None}), risks=tuple(risks))
    (folder / TEAMMATE_FILE).write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return folder


def read_teammate_results(repo_path: Path, folder: Path, prefix: str, run_id: str, names: Sequence[str],
                          limits: ResultLimits = ResultLimits()) -> dict[str, TeammateResult]:
    """The results of ``names`` in ``folder`` (one artifact folder each, ``teammate_artifact``),
    each teammate's branch imported as this run's branch of it, whatever its record says. A
    result that cannot be read, or whose bundle does not hold the head its record names, is a
    ``skipped`` record with the reason; a teammate without an artifact is absent."""
    found: dict[str, TeammateResult] = {}
    for name in names:
        artifact = folder / teammate_artifact(name)
        branch = teammate_branch(prefix, run_id, name)
        try:
            data = _read_file(artifact / TEAMMATE_FILE, limits.record_bytes) if not artifact.is_symlink() else None
            if data is None:
                continue
            result = TeammateResult.model_validate_json(data)
            record = result.record.model_copy(update={"name": name, "branch": branch, "worktree": None})
            why = _import_teammate(repo_path, artifact, branch, record, limits)
        except (ValidationError, ValueError):
            why, result = "its record cannot be read", TeammateResult(record=TeammateRecord(name=name, branch=branch))
            record = result.record
        except RallyError as err:
            why, result = _flat(str(err), 300), TeammateResult(record=TeammateRecord(name=name, branch=branch))
            record = result.record
        if why is not None:
            record = record.model_copy(update={"outcome": "skipped", "head_sha": None, "integrated": False,
                                               "reason": f"its job's result ({teammate_artifact(name)}): {why}"})
        found[name] = TeammateResult(record=record, risks=tuple(_flat(r, 500) for r in result.risks[:20]))
    return found


def _import_teammate(repo_path: Path, artifact: Path, branch: str, record: TeammateRecord,
                     limits: ResultLimits) -> str | None:
    """The teammate's branch from its artifact's bundle, set here at the head its record names;
    why not, when it cannot be."""
    head = record.head_sha
    if not head or (record.start_sha == head and git.object_exists(git.open_repo(repo_path), head)):
        return None  # nothing committed
    if not _is_sha(head):
        return "its record names no commit as its head"
    path = artifact / TEAMMATE_BUNDLE
    if _read_size(path, limits.bundle_bytes) is None:
        return f"its record names head {head[:10]}, and there is no bundle"
    tips = [sha for sha, ref in git.bundle_heads(repo_path, path) if ref == f"refs/heads/{branch}"]
    if tips != [head]:
        return f"its bundle does not hold {branch} at {head[:10]}, the head its record names"
    git.import_bundle(repo_path, path, {f"refs/heads/{branch}": git.Sha(head)})
    return None


def _read_size(path: Path, limit: int) -> int | None:
    """The size of the artifact's regular file at ``path`` within ``limit`` (None: absent)."""
    try:
        found = path.lstat()
    except FileNotFoundError:
        return None
    _check_file(path, found.st_mode, found.st_size, limit)
    return found.st_size


# --- The publish job's side ------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Something of the results not published, and why: a teammate, or ``results`` itself."""

    who: str
    reason: str


@dataclass(frozen=True)
class ImportedRun:
    """The run as the publish job will publish it: its state, the integration it derived
    itself, whether that is the tree the agents' job verified."""

    state: RunState
    integration: integrate.IntegrationResult
    """Empty (no teammate applied) when nothing is integrated."""
    verified: bool
    refusals: tuple[Refusal, ...]


def import_results(repo_path: Path, loaded: LoadedConfig, run_id: str, folder: Path, clock_now: float,
                   limits: ResultLimits = ResultLimits(), *, dry_run: bool | None = None) -> ImportedRun:
    """The results in ``folder``, checked against the map ``loaded`` of this repository's base
    commit (see the module docstring); RallyError when nothing of them can be used. ``dry_run``:
    whether the run was asked as one, as the publish job knows it (the event); None when only the
    results can say (a local publish)."""
    repo = git.open_repo(repo_path)
    config = loaded.config
    claimed = _read_record(folder, limits)
    if claimed.run_id != run_id:
        raise RallyError(f"{folder / RECORD_FILE}: the records are of run {_plain(claimed.run_id, 100)!r}, "
                         f"not of this run {run_id}", hint="download the artifact of this workflow run's agents job")
    known = {t.name for t in config.teammates}
    names = [t.name for t in claimed.teammates if t.name in known]
    refusals = [Refusal("results", f"its records name {_plain(t.name, 100)!r}, not a teammate of the map on the "
                                   "base commit: ignored")
                for t in claimed.teammates if t.name not in known]
    trusted = fresh_state(repo, run_id, loaded, None, lambda: clock_now, False, frozenset(names))
    if claimed.base_sha != trusted.base_sha:
        raise RallyError(f"{folder / RECORD_FILE}: the agents' job ran on {_plain(claimed.base_sha, 40)[:10]}, "
                         f"this job's {trusted.base_ref} is at {git.short(trusted.base_sha)}",
                         hint="check out the commit the agents' job checked out (the event's) in the publish job")
    tips = _import_bundle(repo_path, folder, config.branch_prefix, run_id, names, limits, refusals)
    repo = git.open_repo(repo_path)  # a handle opened before the import may not see the objects it brought
    order = plan.integration_order(config, frozenset(names))
    accepted: dict[str, git.Sha] = {}
    records: dict[str, TeammateRecord] = {}
    for name in order:
        record, refusal = _judge(repo, loaded, trusted, claimed.teammate(name), tips, accepted)
        records[name] = record
        if refusal is not None:
            refusals.append(refusal)
        elif record.head_sha:
            accepted[name] = git.Sha(record.head_sha)
    if dry_run is not None:  # the agents' job cannot turn a run into a dry run, nor the other way round
        claimed = claimed.model_copy(update={"dry_run": dry_run})
    state = _claimed_run(trusted, claimed, known, clock_now).model_copy(update={
        "teammates": tuple(records[n] for n in names if n in records)})
    result, verified, state = _integrate(repo, loaded, state, claimed, tips, refusals)
    state = state.model_copy(update={"problems": state.problems + tuple(
        f"publish job: {r.reason}" for r in refusals if r.who == "results") + _workflow_files(state)})
    return ImportedRun(state, result, verified, tuple(refusals))


def import_again(repo_path: Path, loaded: LoadedConfig, published: RunState, again: Again, folder: Path,
                 clock_now: float, limits: ResultLimits = ResultLimits()) -> ImportedRun:
    """The results of a published run taken up again (``/rally retry``, ``drop``, a review's
    rounds), checked against ``published``, the record the publish job fetched itself, and what
    ``again`` asked: a retried teammate's commits start exactly at the run's integration as
    published (its base when nothing was integrated); a follow-up round's go on from its published
    head; everyone else is exactly as published (a dropped teammate leaves the integration). Every
    new commit is judged against the map ``loaded`` of the run's base commit; the integration is
    re-derived as ``import_results`` does. Work refused is reported; published work is never lost."""
    claimed = _read_record(folder, limits)
    run_id = published.run_id
    if claimed.run_id != run_id or claimed.base_sha != published.base_sha:
        raise RallyError(f"{folder / RECORD_FILE}: the records are of run {_plain(claimed.run_id, 100)!r} on "
                         f"{_plain(claimed.base_sha, 40)[:10]}, not of run {run_id} on {git.short(published.base_sha)} "
                         "as published", hint="download the artifact of this workflow run's agents job")
    names = [t.name for t in published.teammates]
    refusals = [Refusal("results", f"its records name {_plain(t.name, 100)!r}, not a teammate of run {run_id}: "
                                   "ignored") for t in claimed.teammates if t.name not in names]
    tips = _import_bundle(repo_path, folder, loaded.config.branch_prefix, run_id, names, limits, refusals)
    repo = git.open_repo(repo_path)
    claims = {t.name: t for t in claimed.teammates if t.name in names}
    kept: list[str] = []
    records = []
    for before in published.teammates:
        record, refusal = _judge_again(repo, loaded, published, before, claims.get(before.name), tips, again)
        records.append(record.model_copy(update={"integrated": False}))
        if refusal is not None:
            refusals.append(refusal)
            if before.name not in again.retry:
                kept.append(f"publish job: {refusal.who}: {refusal.reason}; its work stays as published")
    # Never a dry run, whatever the records claim: its branches are pushed, so its checks, pull request and
    # record must follow (a record left behind would have every later command refused).
    state = _claimed_run(published, claimed, set(names), clock_now).model_copy(update={
        "teammates": tuple(records), "dry_run": False, "status": "finished"})
    result, verified, state = _integrate(repo, loaded, state, claimed, tips, refusals)
    state = _left_out(state, published, claims, again)
    state = state.model_copy(update={"problems": state.problems + tuple(
        f"publish job: {r.reason}" for r in refusals if r.who == "results") + tuple(kept) + _workflow_files(state)})
    return ImportedRun(state, result, verified, tuple(refusals))


def _left_out(state: RunState, published: RunState, claims: Mapping[str, TeammateRecord], again: Again) -> RunState:
    """A teammate not asked to run again whose published work the agents' job left out of the
    integration (``merge.verify`` blamed it, or the job says so): said, with the job's reason as plain
    text, instead of a record that shows it done with no word of why it is not in the pull request."""
    asked = {*again.retry, *again.follow_up, *again.drop}
    for before in published.teammates:
        now = state.teammate(before.name)
        if before.name in asked or not before.integrated or now.integrated or now.outcome != "done":
            continue
        claim = claims.get(before.name)
        why = _plain(claim.reason, 300) if claim is not None and claim.reason else "it gave no reason"
        # As a run shows a teammate merge.verify dropped, or one that conflicted; anything else is skipped.
        outcome = claim.outcome if claim is not None and claim.outcome in ("unverified", "conflicted") else "skipped"
        state = state.with_teammate(now.model_copy(update={
            "outcome": outcome,
            "reason": f"left out of the integration by the agents' job, which ran it as published: {why}"}))
    return state


def _judge_again(repo: git.Repository, loaded: LoadedConfig, published: RunState, before: TeammateRecord,
                 claim: TeammateRecord | None, tips: Mapping[str, git.Sha],
                 again: Again) -> tuple[TeammateRecord, Refusal | None]:
    """One teammate of a taken-up run as published now, and its refusal when its results fail a check."""
    name, tip = before.name, tips.get(before.name)
    if name in again.retry:
        onto = git.Sha(published.integration_sha or published.base_sha)
        record = published_retried(before, onto)
        if claim is None:
            return _refused(record, "the results hold no record of it")
        record = _claimed_teammate(record, claim)
        why = _again_problem(repo, claim, tip, onto, "the run's integration as published, where a retry starts")
        if why is not None:
            return _refused(record, why)
        if tip is None:
            return record.model_copy(update={"head_sha": None, "start_sha": None}), None
        return _judged(repo, loaded, record, tip, onto, onto)
    if name in again.follow_up:
        # A round refused leaves the teammate's work as published.
        head = git.Sha(before.head_sha or published.base_sha)
        if claim is None:
            return before, Refusal(name, "the results hold no record of its follow-up round")
        why = _again_problem(repo, claim, tip, head, "its head as published, where its follow-up round starts")
        if why is not None:
            return before, Refusal(name, why)
        record = _claimed_teammate(before, claim)
        if tip is None:
            return record, None
        judged, refusal = _judged(repo, loaded, record, tip, head, git.Sha(before.start_sha or published.base_sha))
        return (before, refusal) if refusal is not None else (judged, None)
    if name in again.drop:
        before = before.model_copy(update={"outcome": "skipped", "reason": _plain(again.drop[name], 500)})
    if tip is not None and tip != before.head_sha:
        return before, Refusal(name, f"its branch in the results is at {git.short(tip)}, not at "
                                     f"{_plain(before.head_sha or 'nothing', 40)[:10]} where the run published it: "
                                     "it was not asked to run again")
    return before, None


def _again_problem(repo: git.Repository, claim: TeammateRecord, tip: git.Sha | None, since: git.Sha,
                   where: str) -> str | None:
    """Why a retried teammate's or a follow-up round's results cannot be its work from ``since`` on."""
    if tip is None:
        if claim.head_sha and claim.head_sha != since:
            return f"the head its records name ({_plain(claim.head_sha, 40)[:10]}) is not in the results' bundle"
        return None
    if claim.head_sha != tip:
        return _not_at(tip, claim)
    if not git.object_exists(repo, since) or not git.is_ancestor(repo, since, tip):
        return f"its work does not start from {git.short(since)}, {where}"
    return None


WORKFLOWS = ".github/workflows/"


def waiting_plans(folder: Path, loaded: LoadedConfig,
                  limits: ResultLimits = ResultLimits()) -> tuple[tuple[str, ...], dict[str, str]] | None:
    """A run whose agents' job only wrote the plans of its teammates in plan mode, and now waits for
    approval: its teammates and their plans (names only of the map's, each plan cut to its limit);
    None for a run that ran. The plans are untrusted text, to be shown as text."""
    claimed = _read_record(folder, limits)
    if claimed.status != "waiting":
        return None
    known = {t.name for t in loaded.config.teammates}
    names = tuple(t.name for t in claimed.teammates if t.name in known)
    return names, {t.name: t.plan[:PLAN_LIMIT] for t in claimed.teammates if t.name in known and t.plan}


def _workflow_files(state: RunState) -> tuple[str, ...]:
    """What GitHub will refuse, said before the push: a workflow's own GITHUB_TOKEN may not push a
    commit that changes a workflow file (only a token with the ``workflows`` permission may)."""
    found = []
    for t in state.teammates:
        files = [f for f in t.files_changed if f.startswith(WORKFLOWS)] if t.head_sha else []
        if files:
            shown = ", ".join(_plain(f, 200) for f in files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
            found.append(f"{t.name} changes workflow files ({shown}): GitHub refuses them from a workflow's "
                         "GITHUB_TOKEN, so its branch and an integration holding it will not be pushed; to publish "
                         "them, give the publish job a GitHub App token with the `workflows` permission "
                         "(the action's `github-token`)")
    return tuple(found)


def _read_record(folder: Path, limits: ResultLimits) -> RunState:
    path = folder / RECORD_FILE
    data = _read_file(path, limits.record_bytes)
    if data is None:
        raise RallyError(f"{path}: no records of a run", hint="the agents' job uploads them; see its log")
    try:
        return RunState.model_validate_json(data)
    except (ValidationError, ValueError) as err:
        raise RallyError(f"{path}: not the records of a run: {_plain(str(err).splitlines()[0], 300)}",
                         hint="the agents' job writes them with `rally-gh run --results DIR`") from None


def _read_file(path: Path, limit: int) -> bytes | None:
    """A regular file of the artifact (never a link to one), at most ``limit`` bytes; None when absent."""
    return None if _read_size(path, limit) is None else path.read_bytes()


def _check_file(path: Path, mode: int, size: int, limit: int) -> None:
    if not stat.S_ISREG(mode):
        raise RallyError(f"{path}: not a regular file: the results are refused")
    if size > limit:
        raise RallyError(f"{path}: {size:,} bytes, more than the {limit:,} a run's results may have: refused",
                         hint="a run's commits are source changes; look for what the agents added")


def _import_bundle(repo_path: Path, folder: Path, prefix: str, run_id: str, names: Sequence[str],
                   limits: ResultLimits, refusals: list[Refusal]) -> dict[str, git.Sha]:
    """The run's branches in the bundle (teammate name or ``_integration``: its tip), imported
    under refs/rally/incoming/<run>/; every other ref of the bundle refused."""
    path = folder / BUNDLE_FILE
    if _read_size(path, limits.bundle_bytes) is None:
        return {}  # nobody committed anything
    wanted = {f"refs/heads/{teammate_branch(prefix, run_id, n)}": n for n in names}
    integration = f"refs/heads/{integration_branch(prefix, run_id)}"
    wanted[integration] = INTEGRATION_NAME
    tips: dict[str, git.Sha] = {}
    for sha, ref in git.bundle_heads(repo_path, path):
        who = wanted.get(ref)
        if who is None or who in tips:
            refusals.append(Refusal("results", f"the bundle holds {_plain(ref, 200)}, not a branch of run {run_id}: "
                                               "not imported"))
            continue
        tips[who] = sha
    git.import_bundle(repo_path, path, {f"refs/rally/incoming/{run_id}/{who}": sha for who, sha in tips.items()})
    repo = git.open_repo(repo_path)
    for who, sha in list(tips.items()):
        if git.ref_sha(repo, f"refs/rally/incoming/{run_id}/{who}") != sha:
            refusals.append(Refusal(who, "its branch in the bundle did not import as listed: refused"))
            del tips[who]
    return tips


def _judge(repo: git.Repository, loaded: LoadedConfig, trusted: RunState, claim: TeammateRecord,
           tips: Mapping[str, git.Sha], accepted: Mapping[str, git.Sha]) -> tuple[TeammateRecord, Refusal | None]:
    """One teammate's record as published, and its refusal when its work fails a check."""
    name = claim.name
    base = git.Sha(trusted.base_sha)
    record = _claimed_teammate(trusted.teammate(name), claim)
    tip = tips.get(name)
    start = git.Sha(claim.start_sha) if claim.start_sha and _is_sha(claim.start_sha) else base
    if tip is None:
        if claim.head_sha and claim.head_sha not in (claim.start_sha, trusted.base_sha):
            return _refused(record, f"the head its records name ({_plain(claim.head_sha, 40)[:10]}) is not in the "
                                    "results' bundle")
        return record.model_copy(update={"head_sha": None, "start_sha": start if start == base else None}), None
    if claim.head_sha != tip:
        return _refused(record, _not_at(tip, claim))
    why = _start_problem(repo, loaded, name, start, base, tip, accepted)
    if why is not None:
        refused, refusal = _refused(record, why)
        if claim.outcome != "done" and record.reason:
            # The agents' job left it out already and says why first (a split run's merge job: a blocker re-ran).
            refused = refused.model_copy(update={"reason": f"{record.reason}; refused by the publish job too: {why}"})
        return refused, refusal
    return _judged(repo, loaded, record, tip, start, start)


def _not_at(tip: git.Sha, claim: TeammateRecord) -> str:
    return f"its branch in the bundle is at {git.short(tip)}, its records say {_plain(claim.head_sha or 'nothing', 40)[:10]}"


def _judged(repo: git.Repository, loaded: LoadedConfig, record: TeammateRecord, tip: git.Sha, since: git.Sha,
            start: git.Sha) -> tuple[TeammateRecord, Refusal | None]:
    """The teammate's commits after ``since`` up to ``tip`` judged (no merge; every path each
    touches its own under the map of the base commit); its record with its work from ``start`` to ``tip``."""
    commits = git.commit_summaries(repo, since, tip)
    merges = [c for c in commits if len(c.parents) != 1]
    if merges:
        return _refused(record, f"{git.short(merges[0].sha)} is a merge commit: each commit must be one "
                                "teammate's own change")
    violations = check_commits(repo, loaded, record.name, since, tip).violations
    if violations:
        return _refused(record, f"it wrote {_not_owned(violations)}", violations)
    return record.model_copy(update={"head_sha": tip, "start_sha": start, "files_changed": tuple(
        git.changed_files(repo, start, tip))}), None


def _start_problem(repo: git.Repository, loaded: LoadedConfig, name: str, start: git.Sha, base: git.Sha,
                   tip: git.Sha, accepted: Mapping[str, git.Sha]) -> str | None:
    """Why ``start`` cannot be where ``name``'s own commits begin: it must be the base, or
    hold only replays of its accepted blockers' commits (each the same change, author, date
    and message as one of theirs), one after the other on the base."""
    if start == base:
        return None
    if not git.is_commit(repo, start) or not git.is_ancestor(repo, base, start) \
            or not git.is_ancestor(repo, start, tip):
        return f"it says it started from {git.short(start)}, which is not between the base and its head"
    blockers = [b for b in plan.blockers_closure(loaded.config, name) if b in accepted]
    cache = git.new_tree_cache()
    theirs = {git.replay_key(repo, sha, cache) for b in blockers for sha in git.commits_between(repo, base, accepted[b])}
    for commit in git.commit_summaries(repo, base, start):
        if len(commit.parents) != 1 or git.replay_key(repo, commit.sha, cache) not in theirs:
            return (f"it started from {git.short(start)}, whose commit {git.short(commit.sha)} is not the work of an "
                    "accepted blocker")
    return None


def _refused(record: TeammateRecord, why: str,
             violations: Sequence[Violation] = ()) -> tuple[TeammateRecord, Refusal]:
    reason = f"refused by the publish job: {why}"
    return record.model_copy(update={
        "outcome": "violated" if violations else "skipped", "reason": reason, "head_sha": None,
        "files_changed": (), "violations": tuple(violations), "integrated": False}), Refusal(record.name, why)


def _not_owned(violations: Sequence[Violation]) -> str:
    paths = list(dict.fromkeys(v.path for v in violations))
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return f"{plural(paths, 'path')} it does not own under the map of the base commit: {shown}"


def _integrate(repo: git.Repository, loaded: LoadedConfig, state: RunState, claimed: RunState,
               tips: Mapping[str, git.Sha], refusals: list[Refusal],
               ) -> tuple[integrate.IntegrationResult, bool, RunState]:
    """The integration re-derived from the accepted teammates the agents' job integrated, and
    whether it is the tree that job verified; the state with integration's verdicts."""
    config = loaded.config
    base = git.Sha(state.base_sha)
    wanted = set(claimed.integrated)
    branches = [integrate.TeammateBranch(t.name, git.Sha(t.head_sha), git.Sha(t.start_sha or base), t.branch)
                for n in plan.integration_order(config, frozenset(t.name for t in state.teammates))
                for t in [state.teammate(n)]
                if n in wanted and t.outcome == "done" and t.head_sha]
    if not branches:
        return integrate.IntegrationResult(base, base, (), ()), not wanted, state.model_copy(update={"integrated": ()})
    result = integrate.integrate(repo, integrate.plan_integration(repo, base, branches), config.merge.on_conflict)
    for outcome in result.outcomes:
        if outcome.status != "integrated":
            why = f"its commits do not replay onto the base here: {_plain(outcome.detail or outcome.reason or '', 300)}"
            refusals.append(Refusal(outcome.teammate, why))
            state = state.with_teammate(state.teammate(outcome.teammate).model_copy(update={
                "outcome": "skipped", "reason": f"refused by the publish job: {why}"}))
    integrated = tuple(a.teammate for a in result.applied)
    for name in integrated:
        state = state.with_teammate(state.teammate(name).model_copy(update={"integrated": True}))
    state = state.model_copy(update={"integrated": integrated})
    if not result.applied:
        return result, False, state
    verified_tip = tips.get(INTEGRATION_NAME)
    verified = (verified_tip is not None and verified_tip == claimed.integration_sha
                and integrated == claimed.integrated and not git.changed_files(repo, verified_tip, result.tip))
    if not verified:
        what = (f"{noun_for(list(integrated), 'teammate')} {', '.join(integrated)}" if integrated else "nothing")
        state = state.model_copy(update={
            "problems": state.problems + (
                f"unverified: the publish job's integration (of {what}) is not the tree the agents' job verified; "
                "merge.verify has not run on what this pull request holds",),
            "verification": state.verification + (VerifyResult(
                command=UNVERIFIED_CHECK, passed=False, exit_code=1,
                output_tail="The integration was re-derived from the accepted teammates' commits and differs from "
                            "the one the agents' job verified (a teammate refused, or records that do not hold)."),)})
    return result, verified, state


# --- Text from the records, made plain -------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_MARKUP = re.compile(r"([\\`*_\[\]<>~&])")
_HEX = re.compile(r"[0-9a-f]{40}")


def _plain(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters, every character Markdown or HTML
    would act on escaped: it reads as it was written and does nothing else."""
    return _MARKUP.sub(r"\\\1", _flat(text, limit))


def _flat(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters (the publish job escapes it when it shows it)."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _code(text: str, limit: int = 300) -> str:
    """Text shown inside a code span: one line, no backtick to end the span early."""
    flat = " ".join(_CONTROL.sub(" ", text).split()).replace("`", "'")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _tail(text: str) -> str:
    """Command output the report fences (it picks a fence longer than any backtick run)."""
    lines = [_CONTROL.sub("", line)[:300] for line in text.splitlines()[-20:]]
    return "\n".join(lines)


def _is_sha(value: str | None) -> bool:
    return value is not None and _HEX.fullmatch(value) is not None


def _amount(value: float) -> float:
    return value if math.isfinite(value) and value >= 0 else 0.0


def _verify(results: Sequence[VerifyResult]) -> tuple[VerifyResult, ...]:
    return tuple(VerifyResult(command=_code(v.command), passed=v.passed, exit_code=v.exit_code,
                              duration_s=_amount(v.duration_s), output_tail=_tail(v.output_tail))
                 for v in results[:50])


def _claimed_teammate(trusted: TeammateRecord, claim: TeammateRecord) -> TeammateRecord:
    """The map's record of a teammate with what only the agents' job knows, made plain."""
    return trusted.model_copy(update={
        "task_title": _plain(claim.task_title, 200) or trusted.task_title,
        "outcome": claim.outcome, "attempts": max(0, min(claim.attempts, 1000)),
        "started_at": claim.started_at if claim.started_at is None or math.isfinite(claim.started_at) else None,
        "finished_at": claim.finished_at if claim.finished_at is None or math.isfinite(claim.finished_at) else None,
        "duration_s": _amount(claim.duration_s), "cost_usd": _amount(claim.cost_usd), "tokens": max(0, claim.tokens),
        "plan_cost_usd": _amount(claim.plan_cost_usd), "plan_tokens": max(0, claim.plan_tokens),
        "reason": _plain(claim.reason, 500), "summary": _plain(claim.summary, 500), "verify": _verify(claim.verify),
    })


def _claimed_run(trusted: RunState, claimed: RunState, known: set[str], now: float) -> RunState:
    """The run's own record: the map's and this job's facts, with the agents' job's timings,
    verification, conflicts and notes made plain (names only of the map's teammates)."""
    def names(found: Sequence[str]) -> tuple[str, ...]:
        return tuple(n for n in found if n in known)

    def sha(value: str | None) -> str | None:
        return value if _is_sha(value) else None

    started = claimed.started_at if math.isfinite(claimed.started_at) and claimed.started_at <= now else now
    return trusted.model_copy(update={
        "status": "planned" if claimed.dry_run else "finished", "dry_run": claimed.dry_run, "started_at": started, "finished_at": now, "pid": None,
        "integrated_onto": None, "integration_sha": None,
        "waves": tuple(w for w in (names(wave) for wave in claimed.waves) if w),
        "problems": tuple(_plain(p, 500) for p in claimed.problems[:50]),
        "risks": tuple(_plain(r, 500) for r in claimed.risks[:50]),
        "phases": {k: _amount(v) for k, v in claimed.phases.items() if k in PHASES},
        "conflicts": tuple(
            Conflict(teammate=c.teammate, paths=tuple(_plain(p, 300) for p in c.paths[:50]),
                     action="stopped" if c.action == "stopped" else "skipped", commit=sha(c.commit),
                     causes=tuple(ConflictCause(paths=tuple(_plain(p, 300) for p in k.paths[:50]),
                                                teammate=k.teammate if k.teammate in known else None,
                                                base_commit=sha(k.base_commit)) for k in c.causes[:20]))
            for c in claimed.conflicts if c.teammate in known),
        "verification": _verify(claimed.verification),
        "verify_runs": tuple(
            VerifyRunRecord(sha=r.sha, teammates=names(r.teammates), passed=r.passed, commands=_verify(r.commands),
                            blamed=names(r.blamed))
            for r in claimed.verify_runs[:50] if _is_sha(r.sha)),
        "convergence": tuple(ConvergenceGroup(signature=_plain(g.signature, 300), teammates=names(g.teammates))
                             for g in claimed.convergence[:20]),
        "manual_steps": tuple(_plain(m, 300) for m in claimed.manual_steps[:20]),
    })
