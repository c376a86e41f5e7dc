"""``rally-gh run``, ``teammate`` and ``merge``: a whole run, or its parts in split CI jobs."""

from __future__ import annotations

from dataclasses import dataclass, replace
import sys
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TextIO

from rally_gh import docs_url, git, plan
from rally_gh.run import assess, pipeline, published, split
from rally_gh.run.finish import finish_run
from rally_gh.run.ledger import set_aside_earlier_attempt
from rally_gh.ownership.enforce import map_for_run
from rally_gh.config import LoadedConfig
from rally_gh.errors import RallyError, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from rally_gh.progress import Progress, wants_live
from rally_gh import publish
from rally_gh.github import conversation, review
from rally_gh.github.actions import (
    ActionsContext,
    GitHubRun,
    github_of_run,
    issue_of,
    issue_of_job,
    read_event,
)
from rally_gh.github.endpoint import IssueNumber
from rally_gh.admission import Asked, admitted, answer_event, approval_step, as_triggered, continued, wait
from rally_gh.results import RESULTS_ARTIFACT, teammate_artifact, write_results
from rally_gh.tasks import RunTasks, TasksRefused, apply_tasks, for_this_run, tasks_for_this_run
from rally_gh.state import RunState, load_state, new_run_id, runs_dir


@dataclass(frozen=True)
class RunOptions:
    config_path: Path | None = None
    run_id: str | None = None
    issue: int | None = None
    tasks_path: Path | None = None
    handoff_path: Path | None = None
    """This run's tasks from a planner's handoff file."""
    dry_run: bool = False
    resume: str | None = None
    no_sandbox: bool = False
    """Agents run as they are, outside bubblewrap: the report's first risk."""
    approved: bool = False
    """A person approved this run: the map's ``approval`` rules are met."""
    results: Path | None = None
    """The agents' job of the ready workflows: no GitHub token is used and nothing is pushed; the
    run's branches and records go to this folder for ``rally-gh publish --results`` in another job."""
    again: Path | None = None
    """With ``results``: the published run the command job of rally-comment.yml took up and handed on
    in this folder (``rally-gh admit --again``), to run again as it asks (retry, drop, follow-up rounds)."""


SHARED_TOKEN_RISK = (
    "the agents shared this job with a GitHub token that can write (a one-job `rally-gh run --event`): only the "
    "sandbox stood between them and it; the ready workflows run agents in a read-only job and publish from another "
    f"({docs_url('security.md')})")


@dataclass(frozen=True)
class TeammateOptions:
    name: str
    run_id: str
    config_path: Path | None = None
    no_sandbox: bool = False
    results: Path | None = None
    """Where its result goes (its job's artifact); default the run's artifacts folder (``split.artifacts_dir``)."""
    inputs: Path | None = None
    """The earlier teammate jobs' artifacts, its blockers' among them; default the run's artifacts folder."""


@dataclass(frozen=True)
class MergeOptions:
    run_id: str
    config_path: Path | None = None
    no_sandbox: bool = False
    results: Path | None = None
    """Where the run's results go, for ``rally-gh publish``; default ``rally-results`` in the run's artifacts folder."""
    inputs: Path | None = None
    """The teammate jobs' artifacts; default the run's artifacts folder."""


def run(cwd: Path, actions: ActionsContext, stdout: TextIO, *, options: RunOptions = RunOptions(),
        progress_stream: TextIO | None = None) -> int:
    """`rally-gh run`: what is asked (the command line, the event, a `/rally` command or a review),
    the run's tasks, the run itself with its progress, and what it leaves (report, results, PR)."""
    resume, run_id = options.resume, options.run_id
    if resume and run_id and resume != run_id:
        raise UsageError(f"--run-id {run_id} and --resume {resume} name different runs", hint="give only --resume RUN")
    actions = _as_a_run(actions)
    if options.results is not None:
        actions = actions.without_token()
    if options.again is not None:
        return _taken_over(cwd, options.again, actions, stdout, options, progress_stream)
    repo = git.open_repo(cwd)
    loaded = _map(repo, options.config_path)
    decided = _decide(repo, loaded, actions, stdout, options)
    if isinstance(decided, int):
        return decided
    the_run, asked, github = decided.run_id, decided.asked, decided.github
    try:
        tasks = tasks_for_this_run(loaded.config, asked.issue_text, options.tasks_path, options.handoff_path,
                                   asked.issue)
    except TasksRefused as err:
        if github is not None and asked.issue is not None:
            publish.refuse_run(github.endpoint, IssueNumber(asked.issue), the_run, err)
        raise
    if github is not None and not decided.approved and not asked.dry_run \
            and approval_step(github, loaded, tasks, asked, the_run, actions, stdout) == "wait":
        return EXIT_OK
    if (github is not None and run_id is None or options.results is not None) and resume is None \
            and actions.workflow_run_id:
        # A re-run of this workflow run on a self-hosted runner that kept its workspace (the agents'
        # job is given the id the admit job chose: the same in every attempt).
        note = set_aside_earlier_attempt(repo, git.common_dir(repo), the_run, loaded.config.branch_prefix)
        if note:
            sys.stderr.write(f"rally-gh: note: {note}\n")
    state = _run_team(repo, loaded, decided, tasks, actions, options, progress_stream)
    return _conclude(repo, state, loaded, decided, tasks, actions, stdout, options)


@dataclass(frozen=True)
class _Decided:
    """What this `rally-gh run` is to do: which run, asked what, on GitHub or not, approved or not."""

    run_id: str
    asked: Asked
    github: GitHubRun | None
    approved: bool
    plans: Mapping[str, str]


def _decide(repo: git.Repository, loaded: LoadedConfig, actions: ActionsContext, stdout: TextIO,
            options: RunOptions) -> _Decided | int:
    """The run and what is asked of it, from the command line and, in Actions, the event: a label or
    a dispatch admitted, a `/rally` command or a review answered (an exit code when that is all), the
    agents' job of the ready workflows told by its event."""
    event = read_event(actions)  # in Actions: the issue names the run
    issue, issue_text = issue_of(event, options.issue)
    # One run per workflow run, however often its jobs are re-run (SPEC 5: one
    # pull request per run), so the attempt number is not part of the id.
    the_run = options.resume or options.run_id or new_run_id(issue, actions.workflow_run_id, time.time,
                                                             git.common_dir(repo))
    github = github_of_run(actions, event)
    asked = Asked(issue, issue_text, actions.inputs.teammates(), actions.inputs.max_parallel(), options.dry_run)
    approved = options.approved
    plans = dict(actions.inputs.plans)  # the agents' job of an approved run: the plans its command job read
    if github is not None and github.trigger.kind in ("comment", "review"):
        root = git.workdir(repo)
        here = actions.inputs.agents_here  # where agents may run beside the token: retry, drop, follow-up rounds
        answered = answer_event(github, loaded.config, actions, stdout,
                                act=_act(root, github, actions, stdout, options) if here else None,
                                follow_up=_follow_up(root, github, actions, stdout, options) if here else None)
        if answered.continuation is None:
            return answered.code
        # `/rally approve`: the waiting run goes on here, under its own id.
        the_run, approved, plans = answered.continuation.run_id, True, dict(answered.continuation.plans)
        asked = continued(github, answered.continuation, asked)
    elif github is not None:
        admitted_as = admitted(github, actions, asked, the_run, stdout)
        if isinstance(admitted_as, int):
            return admitted_as
        asked = admitted_as
    elif options.results is not None and event is not None and actions.event_name:
        # The agents' job: the admit job has admitted the run; what the event asks is read here too.
        trigger = event.trigger()
        if not trigger.starts_run and not (trigger.kind == "comment" and approved):
            stdout.write(f"rally-gh: nothing to run: {trigger.reason or trigger.kind}\n")
            return EXIT_OK
        asked = as_triggered(trigger, asked)
        if actions.inputs.issue_text and (asked.issue_text is None or trigger.kind == "comment"):
            # A dispatch names its issue without its text, and an approved run goes on with the text its
            # command job read (and checked the issue's `rally` block in): that job passes it on.
            asked = replace(asked, issue_text=actions.inputs.issue_text)
    return _Decided(the_run, asked, github, approved, plans)


def _run_team(repo: git.Repository, loaded: LoadedConfig, decided: _Decided, tasks: RunTasks | None,
              actions: ActionsContext, options: RunOptions, progress_stream: TextIO | None) -> RunState:
    """The run itself (``pipeline.run``), its progress shown live and, on GitHub, in the issue's comment."""
    the_run, asked, github = decided.run_id, decided.asked, decided.github
    common = git.common_dir(repo)
    stream = progress_stream if progress_stream is not None else sys.stderr
    progress = Progress(stream, wants_live(stream, actions.environ), common_dir=common, run_id=the_run)
    events: list[Callable[[str, str, str], None]] = [progress.event]
    if github is not None and asked.issue is not None:
        publish.announce(github.endpoint, IssueNumber(asked.issue), the_run)
        events.append(publish.ProgressComment(github.endpoint, IssueNumber(asked.issue), the_run,
                                              lambda: load_state(common, the_run), time.time))

    def on_event(name: str, state: str, detail: str) -> None:
        for sink in events:
            sink(name, state, detail)

    with progress:
        try:
            return pipeline.run(git.workdir(repo), loaded, the_run, asked.issue_text, time.time, actions.environ,
                                on_event, dry_run=asked.dry_run, resume=options.resume is not None,
                                # In Actions the run publishes to origin; a local run only when asked
                                # (RALLY_REMOTE names the remote): a person's remotes are theirs.
                                remote=(actions.publish_to if github is not None
                                        else None if options.results is not None else actions.local_remote),
                                only=asked.only or None, max_parallel=asked.max_parallel, tasks=tasks,
                                sandbox=not options.no_sandbox, approved=decided.approved, plans=decided.plans,
                                risks=(SHARED_TOKEN_RISK,) if github is not None else ())
        except RallyError as err:
            started = (runs_dir(common) / the_run / "run.json").exists()
            if github is not None and asked.issue is not None and not started:
                _nothing_ran(github, IssueNumber(asked.issue), the_run, err)
            raise


def _conclude(repo: git.Repository, state: RunState, loaded: LoadedConfig, decided: _Decided,
              tasks: RunTasks | None, actions: ActionsContext, stdout: TextIO, options: RunOptions) -> int:
    """What the run leaves: its results for the publish job, a waiting run's plans and how to go on,
    the report and what it publishes, or a dry run's plan."""
    asked, github = decided.asked, decided.github
    if options.results is not None:
        write_results(git.workdir(repo), state, options.results)
    if state.status == "waiting":
        return _waiting(state, loaded, github, asked.issue, actions, stdout)
    if github is not None:
        return finish_run(repo, state, loaded.config, actions, stdout, github=github)
    if asked.dry_run:
        # Nothing ran: what would run is the plan, not a report of outcomes.
        config, selected = for_this_run(loaded.config, tasks)
        stdout.write(f"Dry run {state.run_id}: nothing was started.\n")
        stdout.write(plan.plan_text(config, plan.waves(config, selected), plan.assess(config, selected),
                                    asked.issue_text, asked.issue, selected))
        return EXIT_OK
    return finish_run(repo, state, loaded.config, actions, stdout)


def _act(root: Path, github: GitHubRun, actions: ActionsContext, stdout: TextIO,
         options: RunOptions) -> conversation.Act:
    """How this job carries out ``/rally retry`` and ``drop`` (where agents may run beside its token)."""
    def act(run_id: str, command: conversation.Command) -> str:
        record, at_base = published.take_up(root, actions.publish_to, run_id, _config_name(options))
        published.check_command(record.state, command.verb, command.names)
        drop = {n: published.drop_reason(github.trigger.sender) for n in command.names} \
            if command.verb == "drop" else None
        state = _again(root, github, record, at_base, actions, stdout, options,
                       retry=command.names if command.verb == "retry" else (), drop=drop)
        return conversation.changed(state, command)
    return act


def _follow_up(root: Path, github: GitHubRun, actions: ActionsContext, stdout: TextIO,
               options: RunOptions) -> review.FollowUp:
    """How this job runs a review's follow-up rounds (where agents may run beside its token)."""
    def follow_up(run_id: str, asks: Mapping[str, str]) -> dict[str, review.Addressed]:
        record, at_base = published.take_up(root, actions.publish_to, run_id, _config_name(options))
        before = record.state
        ready, why = published.in_pull(before, asks)
        rounds = {n: review.Addressed(None, reason) for n, reason in why.items()}
        if ready:
            state = _again(root, github, record, published.with_more_task(at_base, ready), actions, stdout, options,
                           follow_up=tuple(ready))
            for name in ready:
                rounds[name] = review.Addressed(*published.answering_commit(root, before, state, name))
        return rounds
    return follow_up


def _again(root: Path, github: GitHubRun, record: published.PublishedRun, at_base: LoadedConfig,
           actions: ActionsContext, stdout: TextIO, options: RunOptions, *, retry: Collection[str] = (),
           drop: Mapping[str, str] | None = None, follow_up: Collection[str] = ()) -> RunState:
    """A published run taken up again in this job (``pipeline.again``) and published as a run ends: the
    same pull request, checks, progress comment on its issue, labels, and its record."""
    progress = Progress(sys.stderr, wants_live(sys.stderr, actions.environ))
    with progress:
        state = pipeline.again(root, at_base, record.state, time.time, actions.environ, progress.event, retry=retry,
                               drop=drop, follow_up=follow_up, remote=actions.publish_to,
                               sandbox=not options.no_sandbox, risks=(SHARED_TOKEN_RISK,))
    issue = IssueNumber(record.issue) if record.issue is not None else None
    finish_run(git.open_repo(root), state, at_base.config, actions, stdout,
               github=GitHubRun(github.endpoint, replace(github.trigger, issue=issue)))
    return state


def _taken_over(cwd: Path, folder: Path, actions: ActionsContext, stdout: TextIO, options: RunOptions,
                progress_stream: TextIO | None) -> int:
    """The agents' job of a run the command job took up (``published.take_over``): its teammates run
    again as asked, without a token, and the results go to the publish job, which judges them
    against the run as published."""
    if options.results is None:
        raise UsageError("--again DIR runs a taken-up run in the agents' job: give --results DIR too",
                         hint=f"rally-gh run --again DIR --results DIR ({docs_url('github.md')})")
    root = git.workdir(git.open_repo(cwd))
    taken, at_base = published.take_over(root, folder, _config_name(options))
    again = taken.again
    stream = progress_stream if progress_stream is not None else sys.stderr
    progress = Progress(stream, wants_live(stream, actions.environ))
    with progress:
        state = pipeline.again(root, published.with_more_task(at_base, taken.asks), taken.published.state, time.time,
                               actions.environ, progress.event, retry=again.retry, drop=again.drop,
                               follow_up=again.follow_up, remote=None, sandbox=not options.no_sandbox)
    write_results(root, state, options.results)
    return finish_run(git.open_repo(root), state, at_base.config, actions, stdout)


def _config_name(options: RunOptions) -> str | None:
    return None if options.config_path is None else options.config_path.as_posix()


def _waiting(state: RunState, loaded: LoadedConfig, github: GitHubRun | None, issue: int | None,
             actions: ActionsContext, stdout: TextIO) -> int:
    """The plans of the teammates in plan mode are written: the run waits for a person's approval,
    on the issue (``/rally approve``) or here (``--resume RUN --approved``)."""
    names = [t.name for t in state.teammates]
    plans = {t.name: t.plan for t in state.teammates if t.plan}
    reasons = assess.approval_reasons(loaded, names)
    if github is not None:
        wait(github, issue, state.run_id, reasons, names, plans, actions, stdout)
        return EXIT_OK
    for name, text in plans.items():
        stdout.write(f"--- plan of {name} " + "-" * max(0, 60 - len(name)) + f"\n{text}\n\n")
    stdout.write(f"Run {state.run_id} waits for approval: {'; '.join(reasons)}.\n"
                 "Read the plans above (the run's records keep them); to go on, each teammate with its plan: "
                 f"rally-gh run --resume {state.run_id} --approved\n")
    return EXIT_OK


def _nothing_ran(github: GitHubRun, issue: IssueNumber, the_run: str, err: RallyError) -> None:
    """Refused in assess (a missing agent program, ...) after the issue was told it started:
    the progress comment says why nothing ran, and the issue stops showing it as running.
    A failure after the run began (a push, say) keeps its report: the run says what it did."""
    try:
        publish.refuse_run(github.endpoint, issue, the_run, err)
        github.endpoint.remove_label(issue, publish.RUNNING)
    except RallyError:
        pass  # the refusal itself is what the user must see


def _as_a_run(actions: ActionsContext) -> ActionsContext:
    """The context a run works in (``ActionsContext.for_run``), and the note when a local shell's tokens go."""
    actions = actions.for_run()
    note = actions.local_token_note()
    if note is not None:
        sys.stderr.write(note)
    return actions


def _map(repo: git.Repository, config_path: Path | None) -> LoadedConfig:
    loaded, note = map_for_run(repo, None if config_path is None else config_path.as_posix())
    if note:
        sys.stderr.write(f"rally-gh: note: {note}\n")
    return loaded


def _split_job(actions: ActionsContext) -> ActionsContext:
    """A job of a split run that runs agents or merge.verify: no token is used there (its
    workflow gives it none: the publish job publishes), the issue's text read by the plan job."""
    return _as_a_run(actions).without_token()


def _split_issue_text(actions: ActionsContext, issue_text: str | None) -> str | None:
    # A dispatch names its issue without its text: the plan job read it, and passes it on.
    return issue_text if issue_text is not None else actions.inputs.issue_text


def teammate(cwd: Path, actions: ActionsContext, stdout: TextIO, *, options: TeammateOptions) -> int:
    """One teammate of a split run; its record and branch go to its results folder (its job's artifact)."""
    name = options.name
    actions = _split_job(actions)
    repo = git.open_repo(cwd)
    root = git.workdir(repo)
    loaded = _map(repo, options.config_path)
    event = read_event(actions)
    issue, issue_text = issue_of_job(actions, event, None)
    issue_text = _split_issue_text(actions, issue_text)
    tasks = tasks_for_this_run(loaded.config, issue_text, None, None, issue)
    if tasks is not None:
        if name not in tasks.names:
            stdout.write(f"{name}: not in this run (the issue's rally block names {', '.join(tasks.names)})\n")
            return EXIT_OK
        loaded = replace(loaded, config=apply_tasks(loaded.config, tasks))
    artifacts = split.artifacts_dir(git.common_dir(repo), options.run_id)
    progress = Progress(sys.stderr, wants_live(sys.stderr, actions.environ))
    with progress:
        record = split.run_teammate(root, loaded, options.run_id, name, issue_text, time.time, actions.environ,
                                    progress.event, inputs=options.inputs or artifacts,
                                    results=options.results or artifacts / teammate_artifact(name),
                                    sandbox=not options.no_sandbox)
    stdout.write(f"{record.name}: {record.outcome}" + (f" ({record.reason})" if record.reason else "") + "\n")
    if not record.finished:
        return EXIT_INTERRUPTED
    return EXIT_OK if record.outcome == "done" else EXIT_FAILED


def merge(cwd: Path, actions: ActionsContext, stdout: TextIO, *, options: MergeOptions) -> int:
    """The fan-in of a split run: integrate and verify what the teammate jobs left, and leave the
    run's results for the publish job (``rally-gh publish``); the report as it stands before that."""
    actions = _split_job(actions)
    repo = git.open_repo(cwd)
    root = git.workdir(repo)
    loaded = _map(repo, options.config_path)
    issue, issue_text = issue_of_job(actions, read_event(actions), None)
    tasks = tasks_for_this_run(loaded.config, _split_issue_text(actions, issue_text), None, None, issue)
    if tasks is not None:
        loaded = replace(loaded, config=apply_tasks(loaded.config, tasks))
    artifacts = split.artifacts_dir(git.common_dir(repo), options.run_id)
    progress = Progress(sys.stderr, wants_live(sys.stderr, actions.environ))
    with progress:
        state = split.merge_run(root, loaded, options.run_id, time.time, actions.environ, progress.event,
                                inputs=options.inputs or artifacts,
                                results=options.results or artifacts / RESULTS_ARTIFACT,
                                selected=None if tasks is None else frozenset(tasks.names),
                                sandbox=not options.no_sandbox)
    return finish_run(repo, state, loaded.config, actions, stdout)
