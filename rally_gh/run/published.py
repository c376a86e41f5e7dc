"""A run as its publish side left it on the remote, and taking it up again in a later job.

A run ends in one job; a `/rally retry`, a `/rally drop` or a review on its pull request
arrives later, in another workflow run, on a fresh runner. What that job builds on must be
what the trusted side published, never what an agents' job handed over (an artifact is
untrusted input, and long gone): so the job that publishes (``finish_run`` with GitHub: the
one-job run, the publish job, a split run's merge job) also pushes the run's final state,
``published.json`` in a parentless commit at ``refs/rally/published/<run>``, beside the
branches it pushed. A job without a write token cannot push it; a later job reads it back
with the branches and checks that they agree: every teammate branch and the integration
branch must be where the record says, or someone else moved them (a person's commit on the
pull request's branch is never overwritten: the command is refused and says so).

In the split jobs of rally-comment.yml the run is taken up across three jobs, so that no agent
shares a job with a token: the command job (a token that reads, no agent) takes it up and hands
it on (``hand_over``: this record and a bundle of the run's branches, an artifact, because the
agents' job has no token to fetch them; what to do again, ``Again``, as its step output); the
agents' job (no token) restores it from that artifact (``take_over``) and runs the rounds; the
publish job fetches the record itself and judges the agents' results against it
(``results.import_again``), never against the artifact.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
import stat

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rally_gh import git
from rally_gh.config import LoadedConfig
from rally_gh.errors import RallyError, UsageError
from rally_gh.ownership.enforce import require_map_at
from rally_gh.run.ledger import set_aside_earlier_attempt
from rally_gh.state import (RunState, TeammateRecord, check_ref_component, integration_branch, save_state,
                            teammate_branch)
from rally_gh.tasks import apply_tasks, tasks_for_this_run

PUBLISHED_FILE = "published.json"


def published_ref(run_id: str) -> str:
    return f"refs/rally/published/{check_ref_component(run_id, 'run id')}"


class PublishedRun(BaseModel):
    """What a later job of the run needs: its state, and where it shows on GitHub."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    issue: int | None = None
    """The issue whose progress comment is the run's."""
    pull: int | None = None
    state: RunState
    answers: str | None = None
    """The command or review whose publish job of rally-comment.yml wrote this record (``comment 12``,
    ``review 34``): a later attempt of that job finds its work published already. None otherwise."""


def share(repo_path: Path, record: PublishedRun, remote: git.Remote, lease: str | None = None) -> str | None:
    """Push ``record`` to ``remote``'s ``published_ref``, replacing the one there: with a lease on
    ``lease`` (the record the work was judged against), else on what was read just before; a problem
    to report, or None."""
    state = record.state
    kept = state.model_copy(update={"pid": None, "teammates": tuple(
        t.model_copy(update={"worktree": None}) for t in state.teammates)})
    data = record.model_copy(update={"state": kept}).model_dump_json(indent=2).encode()
    repo = git.open_repo(repo_path)
    sha = git.write_record_commit(repo, PUBLISHED_FILE, data, f"rally: run {state.run_id} as published")
    ref = published_ref(state.run_id)
    try:
        now = git.Sha(lease) if lease is not None else git.remote_ref_shas(repo_path, remote, [ref])[ref]
        (pushed,) = git.push_refs(repo_path, remote, [git.RefPush(ref, sha, now)])
    except RallyError as err:
        return f"{ref}: {err.message}"
    return None if pushed.ok else f"{ref}: {pushed.message}"


def fetch(repo_path: Path, remote: git.Remote, run_id: str) -> PublishedRun:
    """The record of run ``run_id`` on ``remote``, with its branches fetched and checked against it."""
    return fetch_at(repo_path, remote, run_id)[0]


def fetch_at(repo_path: Path, remote: git.Remote, run_id: str) -> tuple[PublishedRun, git.Sha]:
    """``fetch``, and the commit of the record (what ``published_ref`` is at): a later job of the same
    workflow run checks that the run was not published again since (``Again.record``)."""
    ref = published_ref(run_id)
    sha = git.remote_ref_shas(repo_path, remote, [ref])[ref]
    hint = "a run is published by the job that holds the write token; start a new run with the label"
    if sha is None:
        raise RallyError(f"run {run_id} has no published record on {remote} ({ref})", hint=hint)
    repo = git.open_repo(repo_path)
    data = git.read_blob(repo, sha, PUBLISHED_FILE)
    try:
        record = PublishedRun.model_validate_json(data or b"")
    except ValidationError as err:
        raise RallyError(f"{ref}: not a record this version of rally-gh can read: {err.errors()[0]['msg']}",
                         hint=hint) from None
    state = record.state
    if state.run_id != run_id:
        raise RallyError(f"{ref} holds the record of run {state.run_id!r}, not of {run_id}", hint=hint)
    expected = {f"refs/heads/{t.branch}": t.head_sha for t in state.teammates if t.head_sha}
    if state.integration_sha and state.integration_branch:
        expected[f"refs/heads/{state.integration_branch}"] = state.integration_sha
    found = git.remote_ref_shas(repo_path, remote, list(expected))
    moved = [(r, sha_) for r, sha_ in found.items() if sha_ != expected[r]]
    if moved:
        what, now = moved[0]
        raise RallyError(
            f"{what.removeprefix('refs/heads/')} on {remote} is at {git.short(now) if now else 'nothing'}, not at "
            f"{git.short(expected[what] or '')} where run {run_id} left it: someone else moved it, and rally-gh "
            "overwrites nobody's commits",
            hint="move the branch back, or start a new run")
    return record, sha


def restore(repo_path: Path, record: PublishedRun) -> RunState:
    """The published run made local: its branches set where the record says (their commits were
    fetched), its state in run.json; an earlier local state of the same run (a kept workspace) set aside."""
    state = record.state
    repo = git.open_repo(repo_path)
    common = git.common_dir(repo)
    set_aside_earlier_attempt(repo, common, state.run_id, state.branch_prefix)
    for branch, head in _heads(state).items():
        ref = f"refs/heads/{branch}"
        git.update_ref_if(repo, ref, git.Sha(head), git.ref_sha(repo, ref))
    save_state(common, state)
    return state


def take_up(repo_path: Path, remote: git.Remote, run_id: str, config_path: str | None = None,
            ) -> tuple[PublishedRun, LoadedConfig]:
    """Run ``run_id`` as published on ``remote``, made local (``fetch``, ``restore``), and the map it
    obeys: the one committed at its base commit (never the checkout's, which may be newer), with
    the tasks its issue's ``rally`` block gave."""
    record = fetch(repo_path, remote, run_id)
    restore(repo_path, record)
    return record, map_at_base(repo_path, record, config_path)


def map_at_base(repo_path: Path, record: PublishedRun, config_path: str | None = None) -> LoadedConfig:
    """The map a published run obeys: the one committed at its base commit (never the checkout's,
    which may be newer), with the tasks its issue's ``rally`` block gave."""
    state = record.state
    loaded = require_map_at(git.open_repo(repo_path), state.base_sha, config_path)
    tasks = tasks_for_this_run(loaded.config, state.issue_text, None, None, record.issue)
    if tasks is not None:
        loaded = replace(loaded, config=apply_tasks(loaded.config, tasks))
    missing = [t.name for t in state.teammates if t.name not in {m.name for m in loaded.config.teammates}]
    if missing:
        raise RallyError(f"run {state.run_id} had {', '.join(missing)}, which the map of its base commit "
                         f"{git.short(state.base_sha)} does not name", hint="start a new run")
    return loaded


def _heads(state: RunState) -> dict[str, str]:
    """Each branch of the run that holds something, at its commit."""
    heads = {t.branch: t.head_sha for t in state.teammates if t.head_sha}
    if state.integration_branch and state.integration_sha:
        heads[state.integration_branch] = state.integration_sha
    return heads


def check_command(state: RunState, verb: str, names: Collection[str]) -> None:
    """RallyError when ``/rally retry`` or ``/rally drop`` of ``names`` cannot apply to the run as it is."""
    for name in names:
        try:
            record = state.teammate(name)
        except KeyError:
            raise RallyError(f"{name} is not a teammate of run {state.run_id}",
                             hint="teammates: " + ", ".join(t.name for t in state.teammates)) from None
        if verb == "retry" and record.integrated:
            raise RallyError(f"{name} is done and its work is in the pull request: there is nothing to retry",
                             hint="a review with inline comments on its files starts a follow-up round")
        if verb == "drop" and not record.integrated:
            raise RallyError(f"{name}'s work is not in the pull request ({record.outcome}): there is nothing to drop")
    if verb == "drop" and not [t for t in state.teammates if t.integrated and t.name not in names]:
        # The pull request's branch cannot go back to the base: GitHub would take the pull request for merged.
        raise RallyError(f"dropping {', '.join(names)} would leave nothing in the pull request",
                         hint="close the pull request instead: every teammate's branch keeps its work")


def with_more_task(loaded: LoadedConfig, extra: Mapping[str, str]) -> LoadedConfig:
    """The map with ``extra`` added to the task of each teammate it names (a follow-up round's
    review comments): what reaches the agent through its prompt file, and nothing else changed."""
    teammates = tuple(t.model_copy(update={"task": t.task.rstrip() + "\n" + extra[t.name]}) if t.name in extra else t
                      for t in loaded.config.teammates)
    return replace(loaded, config=loaded.config.model_copy(update={"teammates": teammates}))


def answering_commit(repo_path: Path, before: RunState, after: RunState, name: str) -> tuple[str | None, str]:
    """The commit of the run's integration (the pull request's branch) that holds ``name``'s newest
    work since ``before``, or None and why there is none."""
    record, old = after.teammate(name), before.teammate(name).head_sha
    if record.outcome != "done":
        return None, f"its follow-up round ended {record.outcome}" + (f": {record.reason}" if record.reason else "")
    if record.head_sha == old or not record.head_sha:
        return None, "its follow-up round changed nothing"
    if not record.integrated or not after.integration_sha:
        return None, "its change was left out of the integration" + (f": {record.reason}" if record.reason else "")
    repo = git.open_repo(repo_path)
    cache = git.new_tree_cache()
    wanted = git.replay_key(repo, record.head_sha, cache)
    onto = after.integrated_onto or after.base_sha
    found = next((sha for sha in git.commits_between(repo, onto, after.integration_sha)
                  if git.replay_key(repo, sha, cache) == wanted), None)
    return (found or record.head_sha), ""


def retried(record: TeammateRecord, onto: str) -> TeammateRecord:
    """``record`` as a ``/rally retry`` starts it over: from ``onto`` (the run's integration as it
    stands, or its base), nothing of its last attempt kept in the record (its branch keeps it)."""
    return record.model_copy(update={
        "outcome": "pending", "start_sha": onto, "head_sha": None, "worktree": None, "reason": "",
        "summary": "", "files_changed": (), "verify": (), "violations": (), "integrated": False,
        "attempts": 0, "started_at": None, "finished_at": None})


def drop_reason(sender: str) -> str:
    return f"taken out of the integration by {sender}'s `/rally drop`; its branch keeps its work"


def in_pull(state: RunState, asks: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """A review's ``asks`` (teammate: what its prompt adds) split: those whose work is in the pull
    request, whose follow-up rounds can run; and for the others, why not."""
    in_run = {t.name: t for t in state.teammates}
    ready = {n: text for n, text in asks.items() if n in in_run and in_run[n].integrated}
    why = {n: f"{n}'s work is not in this pull request" + (f" ({in_run[n].outcome}): `/rally retry {n}` first"
                                                           if n in in_run else ": it was not in this run")
           for n in asks if n not in ready}
    return ready, why


# --- Across the split jobs of rally-comment.yml (see the module docstring) ----------------------

AGAIN_ARTIFACT = "rally-again"
"""The command job's artifact of a taken-up run, for the agents' job."""
TAKEN_UP_FILE = "taken-up.json"
TAKEN_UP_BUNDLE = "run.bundle"
TAKEN_UP_LIMIT = 16 * 1024 * 1024
TAKEN_UP_BUNDLE_LIMIT = 1024 * 1024 * 1024
"""As ``results.ResultLimits``: the artifact is read only if it is no larger."""


class Again(BaseModel):
    """What a taken-up run does again: the command job's ``again`` step output. The publish job
    reads it from that job (never from an artifact) and judges each teammate by it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    record: str = Field(pattern=r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
    """The commit of the run's record the command job took up (``fetch_at``): the publish job publishes
    only over that record. Published again since (another command or review, or an earlier attempt of
    the publish job itself), the run is no longer what the agents' job built on: nothing is published."""
    retry: tuple[str, ...] = ()
    """Start over from the run's integration as published (``/rally retry``)."""
    drop: dict[str, str] = {}
    """Leave the integration, each with its reason (``/rally drop``)."""
    follow_up: tuple[str, ...] = ()
    """Go on from their published heads (a review's follow-up rounds)."""


def read_again(path: Path) -> Again:
    """What to do again, from the command job's ``again`` output written to ``path``."""
    try:
        return Again.model_validate_json(path.read_bytes()[:TAKEN_UP_LIMIT])
    except (OSError, ValidationError) as err:
        why = err.errors()[0]["msg"] if isinstance(err, ValidationError) else err.strerror or str(err)
        raise UsageError(f"{path}: not what a taken-up run does again: {why}",
                         hint="give the command job's `again` output (rally-comment.yml)") from None


class TakenUp(BaseModel):
    """The command job's artifact: the run as published, what to do again, and what each
    follow-up round's prompt adds (a review's comments, as data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    published: PublishedRun
    again: Again
    asks: dict[str, str] = {}


def hand_over(repo_path: Path, record: PublishedRun, again: Again, asks: Mapping[str, str], folder: Path) -> Path:
    """``folder`` holding the taken-up run (restored here by ``take_up``) for the agents' job: the
    record, what to do again, and a bundle of the run's branches beyond its base."""
    state = record.state
    folder.mkdir(parents=True, exist_ok=True)
    bundle = folder / TAKEN_UP_BUNDLE
    bundle.unlink(missing_ok=True)
    refs = [f"refs/heads/{branch}" for branch in _heads(state)]
    if refs:
        git.write_bundle(repo_path, bundle, refs, git.Sha(state.base_sha))
    taken = TakenUp(published=record, again=again, asks=dict(asks))
    (folder / TAKEN_UP_FILE).write_text(taken.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return folder


def take_over(repo_path: Path, folder: Path, config_path: str | None = None) -> tuple[TakenUp, LoadedConfig]:
    """The run the command job handed over in ``folder``, made local as ``take_up`` makes it
    (its branches from the folder's bundle, at the heads its record names), and the map it obeys."""
    path = folder / TAKEN_UP_FILE
    hint = "the command job of rally-comment.yml writes it (`rally-gh admit --again DIR`); download its artifact"
    try:
        found = path.lstat()
    except FileNotFoundError:
        raise RallyError(f"{path}: no run taken up here", hint=hint) from None
    if not stat.S_ISREG(found.st_mode) or found.st_size > TAKEN_UP_LIMIT:
        raise RallyError(f"{path}: not a regular file of at most {TAKEN_UP_LIMIT:,} bytes", hint=hint)
    try:
        taken = TakenUp.model_validate_json(path.read_bytes())
    except ValidationError as err:
        raise RallyError(f"{path}: not a run taken up: {err.errors()[0]['msg']}", hint=hint) from None
    state = taken.published.state
    check_ref_component(state.run_id, "run id")
    loaded = map_at_base(repo_path, taken.published, config_path)
    prefix = loaded.config.branch_prefix
    # Only the run's own branches are set here, as the map of its base commit names them.
    stray = [t.branch for t in state.teammates if t.branch != teammate_branch(prefix, state.run_id, t.name)]
    if state.integration_branch is not None and state.integration_branch != integration_branch(prefix, state.run_id):
        stray.append(state.integration_branch)
    if stray:
        raise RallyError(f"{path}: {stray[0]!r} is not a branch of run {state.run_id}", hint=hint)
    heads = _heads(state)
    bundle = folder / TAKEN_UP_BUNDLE
    if bundle.is_file() and not bundle.is_symlink():
        if bundle.stat().st_size > TAKEN_UP_BUNDLE_LIMIT:
            raise RallyError(f"{bundle}: more than the {TAKEN_UP_BUNDLE_LIMIT:,} bytes a taken-up run's bundle "
                             "may have", hint=hint)
        listed = {ref: sha for sha, ref in git.bundle_heads(repo_path, bundle)}
        git.import_bundle(repo_path, bundle, {f"refs/rally/incoming/{state.run_id}/{n}": listed[f"refs/heads/{b}"]
                                              for n, b in enumerate(heads) if listed.get(f"refs/heads/{b}") == heads[b]})
    repo = git.open_repo(repo_path)
    missing = [b for b, sha in heads.items() if not git.object_exists(repo, sha)]
    if missing:
        raise RallyError(f"{folder}: the taken-up run's {missing[0]} is not at {heads[missing[0]][:10]} in its bundle",
                         hint=hint)
    restore(repo_path, taken.published)
    return taken, loaded
