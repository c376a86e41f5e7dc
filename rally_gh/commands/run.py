"""``rally-gh run``, ``teammate`` and ``merge``: a whole run, or its parts in split CI jobs."""

from __future__ import annotations

import json
import re
from dataclasses import replace
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from rally_gh import git, orchestrate, plan
from rally_gh.commands import plan as plan_cmd
from rally_gh.enforce import map_for_run
from rally_gh.config import Config, LoadedConfig
from rally_gh.errors import RallyError, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from rally_gh.progress import Progress, wants_live
from rally_gh.report import report_json, report_markdown, run_status
from rally_gh.report_text import write_report
from rally_gh import publish
from rally_gh.github.endpoint import GitHubEndpoint, IssueNumber, run_marker
from rally_gh.github.events import Trigger
from rally_gh.limits import TEAMMATE_NAME
from rally_gh.tasks import RunTasks, TasksRefused, apply_tasks, refusal_comment
from rally_gh.state import RunState, load_state, new_run_id, runs_dir


def run(cwd: Path, config_path: Path | None, run_id: str | None, issue: int | None, event_path: Path | None,
        tasks_path: Path | None, dry_run: bool, resume: str | None, environ: Mapping[str, str], stdout: TextIO,
        *, progress_stream: TextIO | None = None, handoff_path: Path | None = None) -> int:
    if resume and run_id and resume != run_id:
        raise UsageError(f"--run-id {run_id} and --resume {resume} name different runs", hint="give only --resume RUN")
    environ = run_environment(environ, event_given=event_path is not None)
    repo = git.open_repo(cwd)
    root = git.workdir(repo)
    loaded = _map(repo, config_path)
    if event_path is None and environ.get("GITHUB_EVENT_PATH"):
        event_path = Path(environ["GITHUB_EVENT_PATH"])  # in Actions: the issue names the run
    issue, issue_text = plan_cmd.issue_from_event(issue, event_path)
    # One run per workflow run, however often its jobs are re-run (SPEC 5: one
    # pull request per run), so the attempt number is not part of the id.
    the_run = resume or run_id or new_run_id(issue, environ.get("GITHUB_RUN_ID"), time.time, git.common_dir(repo))
    github = _github(environ, event_path)
    only, max_parallel = _action_inputs(environ)
    if github is not None:
        endpoint, trigger = github
        if not trigger.starts_run:
            stdout.write(f"rally-gh: nothing to run: {trigger.reason or trigger.kind}\n")
            return EXIT_OK
        allow = environ.get("RALLY_BOT_ALLOWLIST", "").replace(",", " ").split()
        decision = publish.admit(endpoint, trigger, allow, run_id=the_run)
        if not decision.allowed:
            stdout.write(f"rally-gh: refused: {decision.reason}\n")
            return EXIT_FAILED
        issue = trigger.issue if trigger.issue is not None else issue
        if issue is not None and issue_text is None:
            issue_text = plan_cmd.issue_text_from_github(endpoint, issue)
        if trigger.inputs is not None:
            # Who runs: the dispatch's choice, else the action's. How many at once: the lowest of
            # those given; orchestrate never lets it pass the map's max_parallel.
            only = trigger.inputs.teammates or only
            max_parallel = min((n for n in (max_parallel, trigger.inputs.max_parallel) if n is not None), default=None)
            dry_run = dry_run or trigger.inputs.dry_run
    try:
        tasks = plan_cmd.tasks_for_this_run(loaded.config, issue_text, tasks_path, handoff_path, issue)
    except TasksRefused as err:
        if github is not None and issue is not None:
            marker = run_marker(the_run)
            github[0].upsert_comment(IssueNumber(issue), marker, f"{marker}\n{refusal_comment(err)}")
        raise
    stream = progress_stream if progress_stream is not None else sys.stderr
    progress = Progress(stream, wants_live(stream, environ), common_dir=git.common_dir(repo), run_id=the_run)
    events: list[Callable[[str, str, str], None]] = [progress.event]
    if github is not None and issue is not None:
        publish.announce(github[0], IssueNumber(issue), the_run)
        common = git.common_dir(repo)
        events.append(publish.ProgressComment(github[0], IssueNumber(issue), the_run,
                                              lambda: load_state(common, the_run), time.time))

    def on_event(name: str, state: str, detail: str) -> None:
        for sink in events:
            sink(name, state, detail)

    with progress:
        try:
            state = orchestrate.run(root, loaded, the_run, issue_text, time.time, environ, on_event,
                                    dry_run=dry_run, resume=resume is not None,
                                    # In Actions the run publishes to origin; a local run only when asked
                                    # (RALLY_REMOTE names the remote): a person's remotes are theirs.
                                    remote=environ.get("RALLY_REMOTE", "origin") if github is not None
                                    else environ.get("RALLY_REMOTE") or None,
                                    only=only or None, max_parallel=max_parallel, tasks=tasks)
        except RallyError as err:
            started = (runs_dir(git.common_dir(repo)) / the_run / "run.json").exists()
            if github is not None and issue is not None and not started:
                # Refused in assess (a missing agent program, ...) after the issue was told it started:
                # the progress comment says why nothing ran, and the issue stops showing it as running.
                # A failure after the run began (a push, say) keeps its report: the run says what it did.
                marker = run_marker(the_run)
                try:
                    github[0].upsert_comment(IssueNumber(issue), marker, f"{marker}\n{refusal_comment(err)}")
                    github[0].remove_label(IssueNumber(issue), publish.RUNNING)
                except RallyError:
                    pass  # the refusal itself is what the user must see
            raise
    if github is not None:
        return finish(repo, state, loaded.config, environ, stdout, github=github)
    if dry_run:
        # Nothing ran: what would run is the plan, not a report of outcomes.
        config, selected = plan_cmd.for_this_run(loaded.config, tasks)
        stdout.write(f"Dry run {state.run_id}: nothing was started.\n")
        stdout.write(plan_cmd.plan_text(config, plan.waves(config, selected), plan.assess(config, selected),
                                        issue_text, issue, selected))
        return EXIT_OK
    return finish(repo, state, loaded.config, environ, stdout)


def finish(repo: git.Repository, state: RunState, config: Config, environ: Mapping[str, str], stdout: TextIO,
           github: tuple[GitHubEndpoint, Trigger] | None = None) -> int:
    """Write the report next to run.json and to standard output; with GitHub, publish
    it (checks, pull request, comment, labels); in CI, the job summary and outputs."""
    markdown = report_markdown(state)
    data = report_json(state)
    folder = runs_dir(git.common_dir(repo)) / state.run_id
    (folder / "report.md").write_text(markdown, encoding="utf-8")
    (folder / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    write_report(state, stdout)
    _record_history(repo, data, config, environ, push=github is not None)
    if github is not None:
        publish.publish_run(github[0], state, github[1], environ)
    else:
        publish.write_step_summary(environ, markdown)
        publish.write_outputs(environ, publish.run_outputs(state, None))
    if state.status == "interrupted":
        return EXIT_INTERRUPTED
    if state.dry_run or run_status(state) == "done":  # a dry run that planned well has done its job
        return EXIT_OK
    return EXIT_FAILED


TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN")


def in_github_actions(environ: Mapping[str, str]) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


def run_environment(environ: Mapping[str, str], *, event_given: bool = False) -> Mapping[str, str]:
    """The environment a run works with. GitHub mode is GitHub Actions (``GITHUB_ACTIONS=true``) or an
    explicit ``--event``; anywhere else the run is local whatever tokens the shell holds (many `gh`
    users keep one set): they are dropped here, with a note, so that no API is called and nothing
    passes them on to agents or verify."""
    if in_github_actions(environ) or event_given:
        return environ
    held = [name for name in TOKEN_VARIABLES if environ.get(name)]
    if not held:
        return environ
    one = len(held) == 1
    sys.stderr.write(f"rally-gh: note: {' and '.join(held)} {'is' if one else 'are'} set, but this is a local run "
                     f"(not GitHub Actions, no --event): {'the token is' if one else 'the tokens are'} not used and "
                     "not passed on\n")
    return {name: value for name, value in environ.items() if name not in TOKEN_VARIABLES}


def _action_inputs(environ: Mapping[str, str]) -> tuple[tuple[str, ...], int | None]:
    """The action's ``teammates`` and ``max-parallel`` inputs (``RALLY_TEAMMATES``,
    ``RALLY_MAX_PARALLEL``), checked as strictly as a dispatch's."""
    names = tuple(n for n in re.split(r"[\s,]+", environ.get("RALLY_TEAMMATES", "").strip()) if n)
    for name in names:
        if not TEAMMATE_NAME.match(name):
            raise UsageError(f"the action's input `teammates`: {name!r} is not a teammate name",
                             hint="teammate names as in rally.yml, separated by commas or spaces")
    text = environ.get("RALLY_MAX_PARALLEL", "").strip()
    if text and (not re.fullmatch(r"[0-9]+", text) or int(text) < 1):
        raise UsageError(f"the action's input `max-parallel` must be a whole number from 1, got {text!r}")
    return names, int(text) if text else None


def _event_tasks(loaded: LoadedConfig, environ: Mapping[str, str]) -> tuple[str | None, RunTasks | None]:
    """The issue text and tasks every job of a split run reads from the same event."""
    event = Path(environ["GITHUB_EVENT_PATH"]) if environ.get("GITHUB_EVENT_PATH") else None
    issue, issue_text = plan_cmd.issue_of_job(None, event, environ)
    return issue_text, plan_cmd.tasks_for_this_run(loaded.config, issue_text, None, None, issue)


def _record_history(repo: git.Repository, report: dict[str, Any], config: Config, environ: Mapping[str, str],
                    push: bool) -> None:
    """Append this run to refs/rally/history (and, in CI, to the remote's, so it
    outlives the runner). Never fails the run: a warning says what went wrong."""
    from rally_gh import history

    try:
        if push:
            if report.get("dry_run"):
                return
            history.share_record(repo, history.record_of_run(report, config, time.time()),
                                 environ.get("RALLY_REMOTE", "origin"))
        else:
            history.record_run(repo, report, config, time.time)
    except RallyError as err:
        sys.stderr.write(f"rally-gh: warning: the run was not added to the history: {err}\n")


def _github(environ: Mapping[str, str], event_path: Path | None) -> tuple[GitHubEndpoint, Trigger] | None:
    """The GitHub side of a run in Actions: None without a token (a local run: no API calls)."""
    if not plan_cmd.has_token(environ):
        return None
    path = event_path or (Path(environ["GITHUB_EVENT_PATH"]) if environ.get("GITHUB_EVENT_PATH") else None)
    name = environ.get("GITHUB_EVENT_NAME")
    if path is None or not name:
        raise UsageError("a GitHub run needs an event: GITHUB_EVENT_NAME and --event or GITHUB_EVENT_PATH are "
                         f"not both set (found GITHUB_EVENT_NAME={name or '(unset)'})",
                         hint="set GITHUB_EVENT_NAME to the event's name (issues, workflow_dispatch, "
                              "issue_comment, ...), or leave out --event for a local run")
    from rally_gh.github.events import load_event
    from rally_gh.github.real import RealGitHub

    return RealGitHub.from_environment(environ), load_event(name, path)


def _map(repo: git.Repository, config_path: Path | None) -> LoadedConfig:
    loaded, note = map_for_run(repo, None if config_path is None else config_path.as_posix())
    if note:
        sys.stderr.write(f"rally-gh: note: {note}\n")
    return loaded


def teammate(cwd: Path, config_path: Path | None, name: str, run_id: str, environ: Mapping[str, str],
             stdout: TextIO) -> int:
    """One teammate of a split run; its branch and record go to the remote (RALLY_REMOTE, default origin)."""
    environ = run_environment(environ)
    repo = git.open_repo(cwd)
    root = git.workdir(repo)
    loaded = _map(repo, config_path)
    issue_text, tasks = _event_tasks(loaded, environ)
    if tasks is not None:
        if name not in tasks.names:
            stdout.write(f"{name}: not in this run (the issue's rally block names {', '.join(tasks.names)})\n")
            return EXIT_OK
        loaded = replace(loaded, config=apply_tasks(loaded.config, tasks))
    progress = Progress(sys.stderr, wants_live(sys.stderr, environ))
    with progress:
        record = orchestrate.run_teammate(root, loaded, run_id, name, issue_text, time.time, environ, progress.event,
                                          remote=environ.get("RALLY_REMOTE", "origin"))
    stdout.write(f"{record.name}: {record.outcome}" + (f" ({record.reason})" if record.reason else "") + "\n")
    if not record.finished:
        return EXIT_INTERRUPTED
    return EXIT_OK if record.outcome == "done" else EXIT_FAILED


def merge(cwd: Path, config_path: Path | None, run_id: str, environ: Mapping[str, str], stdout: TextIO) -> int:
    """The fan-in of a split run: integrate what the teammate jobs pushed, publish, report."""
    environ = run_environment(environ)
    repo = git.open_repo(cwd)
    root = git.workdir(repo)
    loaded = _map(repo, config_path)
    _, tasks = _event_tasks(loaded, environ)
    if tasks is not None:
        loaded = replace(loaded, config=apply_tasks(loaded.config, tasks))
    progress = Progress(sys.stderr, wants_live(sys.stderr, environ))
    with progress:
        state = orchestrate.merge_run(root, loaded, run_id, time.time, environ, progress.event,
                                      remote=environ.get("RALLY_REMOTE", "origin"),
                                      selected=None if tasks is None else frozenset(tasks.names))
    # The plan job admitted the run; the merge job publishes it like a single-job run.
    return finish(repo, state, loaded.config, environ, stdout, github=_github(environ, None))
