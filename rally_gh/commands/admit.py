"""``rally-gh admit``: the first job of the ready workflows, which runs no agent.

Who may start the run (the sender's permission, asked of the API), what it is asked to do
(the issue's ``rally`` block checked, a dispatch's inputs), and the issue told it started
(👀, ``rally:running``, the progress comment), or why not. Its step outputs tell the next
jobs whether to run (``admitted``), the run's id, and the issue's text as read now (a
dispatch's agents' job has no token to read it).

In rally-comment.yml it answers a comment or a review. A ``/rally retry`` or ``drop``, or a
review whose comments go to teammates whose work is in the pull request, is acknowledged and
taken up here (``published.take_up``, with this job's token that reads), then handed on
(``--again DIR``): the run as published goes to the agents' job as an artifact, and what to do
again (``again``, JSON) to both later jobs as a step output. The publish job edits the reply,
or answers the review's threads, when the run is published again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rally_gh import git, publish
from rally_gh.admission import Asked, admitted, answer_event, approval_step, continued
from rally_gh.errors import EXIT_OK, UsageError
from rally_gh.github import conversation, review
from rally_gh.github.actions import ActionsContext, GitHubRun, github_of_run, issue_of, read_event
from rally_gh.github.endpoint import IssueNumber
from rally_gh.ownership.enforce import map_for_run
from rally_gh.run import published
from rally_gh.state import check_ref_component, new_run_id
from rally_gh.tasks import TasksRefused, tasks_for_this_run


@dataclass(frozen=True)
class AdmitOptions:
    config_path: Path | None = None
    run_id: str | None = None
    """Default: from the issue and the workflow run, as ``run`` names it."""
    issue: int | None = None
    again: Path | None = None
    """Where a run taken up again (``/rally retry``, ``drop``, a review's rounds) is handed on to the agents'
    job (the artifact ``published.AGAIN_ARTIFACT``); None: those are answered here, not acted on."""


def admit(cwd: Path, actions: ActionsContext, stdout: TextIO, *, options: AdmitOptions = AdmitOptions()) -> int:
    repo = git.open_repo(cwd)
    loaded, _ = map_for_run(repo, None if options.config_path is None else options.config_path.as_posix())
    event = read_event(actions)
    issue, issue_text = issue_of(event, options.issue)
    run_id = check_ref_component(options.run_id or new_run_id(issue, actions.workflow_run_id, time.time), "run id")
    github = github_of_run(actions, event)
    if github is None:
        raise UsageError("admit asks GitHub who started the run: it needs a token (GITHUB_TOKEN) and the event",
                         hint="run it in the admit job of the ready workflows (docs/workflows/)")
    asked = Asked(issue, issue_text, actions.inputs.teammates(), actions.inputs.max_parallel(), False)
    approved = False
    plans: tuple[tuple[str, str], ...] = ()
    if github.trigger.kind in ("comment", "review"):
        handed: list[tuple[published.Again, int | None]] = []
        act, follow_up = (None, None) if options.again is None else _handing_on(
            git.workdir(repo), github, actions, options, options.again, handed)
        answered = answer_event(github, loaded.config, actions, stdout, act=act, follow_up=follow_up)
        if handed:
            return _handed_on(actions, stdout, *handed[0])
        if answered.continuation is None:
            publish.write_outputs(actions.output_file, {"run-id": run_id, "admitted": "false"})
            return answered.code
        # `/rally approve`: the waiting run goes on in this workflow run's next jobs, under its own id.
        run_id, approved, plans = answered.continuation.run_id, True, answered.continuation.plans
        decided: Asked | int = continued(github, answered.continuation, asked)
    else:
        decided = admitted(github, actions, asked, run_id, stdout)
    if isinstance(decided, int):
        publish.write_outputs(actions.output_file, {"run-id": run_id, "admitted": "false"})
        return decided
    try:
        tasks = tasks_for_this_run(loaded.config, decided.issue_text, None, None, decided.issue)
    except TasksRefused as err:
        if decided.issue is not None:
            publish.refuse_run(github.endpoint, IssueNumber(decided.issue), run_id, err)
        raise
    step = "go" if approved else approval_step(github, loaded, tasks, decided, run_id, actions, stdout)
    if step == "wait":
        return EXIT_OK
    if decided.issue is not None:
        publish.announce(github.endpoint, IssueNumber(decided.issue), run_id)
    publish.write_outputs(actions.output_file, {"run-id": run_id, "admitted": "true",
                                                "issue": "" if decided.issue is None else str(decided.issue),
                                                "issue-text": decided.issue_text or "",
                                                "approved": "true" if approved else "false",
                                                # Teammates in plan mode write their plans, then the run waits.
                                                "needs-approval": "true" if step == "plan" else "false",
                                                "teammates": " ".join(decided.only) if approved else "",
                                                "plans": json.dumps(dict(plans)) if plans else ""})
    stdout.write(f"rally-gh: run {run_id} admitted" + (" (approved)" if approved else " (plans first)"
                                                        if step == "plan" else "") + "\n")
    return EXIT_OK


def _handing_on(root: Path, github: GitHubRun, actions: ActionsContext, options: AdmitOptions, folder: Path,
                handed: list[tuple[published.Again, int | None]]) -> tuple[conversation.Act, review.FollowUp]:
    """How this job carries out ``/rally retry`` and ``drop``, and a review's rounds: the run taken up
    (its record and branches fetched with this job's token, checked) and handed on to the agents' job
    in ``folder``; what to do again, with the run's issue, in ``handed``, for the step outputs."""
    config = None if options.config_path is None else options.config_path.as_posix()

    def taken_up(run_id: str) -> tuple[published.PublishedRun, str]:
        """``published.take_up``, and the commit of the record taken up."""
        record, at = published.fetch_at(root, actions.publish_to, run_id)
        published.restore(root, record)
        published.map_at_base(root, record, config)
        return record, at

    def act(run_id: str, command: conversation.Command) -> str | None:
        record, at = taken_up(run_id)
        published.check_command(record.state, command.verb, command.names)
        again = published.Again(
            run_id=run_id, record=at, retry=command.names if command.verb == "retry" else (),
            drop={n: published.drop_reason(github.trigger.sender) for n in command.names}
            if command.verb == "drop" else {})
        published.hand_over(root, record, again, {}, folder)
        handed.append((again, record.issue))
        return None

    def follow_up(run_id: str, asks: Mapping[str, str]) -> Mapping[str, review.Addressed] | None:
        record, at = taken_up(run_id)
        ready, why = published.in_pull(record.state, asks)
        if not ready:
            return {n: review.Addressed(None, reason) for n, reason in why.items()}
        again = published.Again(run_id=run_id, record=at, follow_up=tuple(ready))
        published.hand_over(root, record, again, ready, folder)
        handed.append((again, record.issue))
        return None

    return act, follow_up


def _handed_on(actions: ActionsContext, stdout: TextIO, again: published.Again, issue: int | None) -> int:
    """The step outputs of a run taken up and handed on: the next jobs run it again, as ``again`` says."""
    publish.write_outputs(actions.output_file, {
        "run-id": again.run_id, "admitted": "true", "again": again.model_dump_json(),
        "issue": "" if issue is None else str(issue), "issue-text": "", "approved": "false",
        "needs-approval": "false", "teammates": "", "plans": ""})
    what = [f"{verb} {', '.join(names)}" for verb, names in (
        ("retry", again.retry), ("drop", tuple(again.drop)), ("follow-up rounds of", again.follow_up)) if names]
    stdout.write(f"rally-gh: run {again.run_id} taken up ({'; '.join(what)}): handed on to the agents' job\n")
    return EXIT_OK
