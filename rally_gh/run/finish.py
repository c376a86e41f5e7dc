"""The end of a run, whichever job ends it: the report in the run folder and on standard
output, the history, and with GitHub, everything ``publish.publish_run`` shows there."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from rally_gh import git, publish
from rally_gh.config import Config
from rally_gh.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RallyError
from rally_gh.github.actions import ActionsContext, Event, GitHubRun, read_event
from rally_gh.git.repository import commit_of
from rally_gh.github.events import issue_fields
from rally_gh.report import Report, build_report, report_markdown
from rally_gh.report.text import write_report
from rally_gh.run import published
from rally_gh.state import IssueOrigin, RunState, runs_dir, save_state


def finish_run(repo: git.Repository, state: RunState, config: Config, actions: ActionsContext, stdout: TextIO,
               github: GitHubRun | None = None, *, taken_up: tuple[str | None, str] | None = None) -> int:
    """Write the report next to run.json and to standard output; with GitHub, publish
    it (checks, pull request, comment, labels); in CI, the job summary and outputs.
    ``taken_up``: a published run taken up again, what its record answers (``PublishedRun.answers``)
    and the commit of the record it was judged against, on which the new record is pushed with a lease."""
    if github is not None and state.issue_origin is None:
        origin = issue_origin(github, read_event(actions))
        if origin is not None:
            state = state.model_copy(update={"issue_origin": origin})
            save_state(git.common_dir(repo), state)
    state = _with_closing_commits(repo, state)
    report = build_report(state)
    markdown = report_markdown(report)
    folder = runs_dir(git.common_dir(repo)) / state.run_id
    (folder / "report.md").write_text(markdown, encoding="utf-8")
    (folder / "report.json").write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
    write_report(report, stdout)
    _record_history(repo, report, config, actions.publish_to if github is not None else None)
    if github is not None:
        outputs = publish.publish_run(github.endpoint, state, report, github.trigger, actions)
        _share_published(repo, state, github, outputs, actions.publish_to, taken_up)
    else:
        publish.write_step_summary(actions.summary_file, markdown)
        publish.write_outputs(actions.output_file, publish.run_outputs(report, None))
    if state.status == "interrupted":
        return EXIT_INTERRUPTED
    if state.dry_run or report.status == "done":  # a dry run that planned well has done its job
        return EXIT_OK
    return EXIT_FAILED


CLOSING_COMMITS = "commits of the integration close issues when the pull request is merged"


def closing_commits_risk(repo: git.Repository, start: str, tip: str) -> str | None:
    """A risk naming the commits between ``start`` and ``tip`` whose messages hold a closing keyword
    (``Fixes #12``): GitHub closes what they name once they reach the default branch, whatever the pull
    request's own ``Closes`` line says. An agent writes its commits' messages, and a task from the
    issue's text writes the message of the commit made for an agent's leftovers."""
    found = []
    for sha in git.commits_between(repo, start, tip):
        references = publish.closing_references(commit_of(repo, sha).message)
        if references:
            shown = ", ".join("`" + r[:100].replace("`", "'") + "`" for r in references[:3])
            found.append(f"`{sha[:10]}` says {shown}")
    if not found:
        return None
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return (f"{CLOSING_COMMITS}, whatever its own `Closes` line says (their messages are an agent's, or a "
            f"task's): {'; '.join(found[:5])}{more}")


def _with_closing_commits(repo: git.Repository, state: RunState) -> RunState:
    """``state`` with the risk ``closing_commits_risk`` finds on its integration (saved), in place of an
    earlier one."""
    if not state.integration_sha:
        return state
    try:
        risk = closing_commits_risk(repo, state.integrated_onto or state.base_sha, state.integration_sha)
    except (RallyError, KeyError, ValueError):
        return state  # the commits are not here to read: nothing to say about them
    risks = tuple(r for r in state.risks if not r.startswith(CLOSING_COMMITS))
    risks += (risk,) if risk is not None else ()
    if risks == state.risks:
        return state
    state = state.model_copy(update={"risks": risks})
    save_state(git.common_dir(repo), state)
    return state


def issue_origin(github: GitHubRun, event: Event | None) -> IssueOrigin | None:
    """Which text of its issue the run used: a label's event carries a copy of the issue as it was
    when the label was added, which is the text the run used; when the issue's text differs now, it
    was edited after that (its ``updated_at`` says when). A dispatch's run read the issue itself."""
    trigger = github.trigger
    if trigger.issue is None:
        return None
    if trigger.kind == "dispatch":
        return IssueOrigin(number=trigger.issue, source="issue")
    if trigger.kind != "issue-labeled" or event is None or not isinstance(event.payload, dict):
        return None
    _, copied = issue_fields(event.payload)
    stamp = event.payload["issue"].get("updated_at")
    origin = IssueOrigin(number=trigger.issue, source="event",
                         labelled_at=stamp if isinstance(stamp, str) and len(stamp) <= 40 else None)
    try:
        now = github.endpoint.issue(trigger.issue)
    except RallyError as err:
        sys.stderr.write(f"rally-gh: warning: could not tell whether #{trigger.issue} was edited after it was "
                         f"labelled: {err}\n")
        return origin
    if (f"{now.title}\n\n{now.body}".strip() or None) != copied:
        origin = origin.model_copy(update={"edited_at": now.updated_at or "an unknown time"})
    return origin


def _share_published(repo: git.Repository, state: RunState, github: GitHubRun, outputs: dict[str, str],
                     remote: git.Remote, taken_up: tuple[str | None, str] | None = None) -> None:
    """The run as published, for the later jobs that take it up (``run.published``); a warning when it
    cannot be pushed: the run is published, only `/rally retry`, `drop` and reviews cannot take it up."""
    if state.dry_run or state.status != "finished":
        return
    pull = outputs.get("pr-number", "")
    answers, lease = taken_up if taken_up is not None else (None, None)
    record = published.PublishedRun(issue=github.trigger.issue, pull=int(pull) if pull.isdigit() else None,
                                    state=state, answers=answers)
    problem = published.share(git.workdir(repo), record, remote, lease)
    if problem is not None:
        sys.stderr.write(f"rally-gh: warning: the run's record was not pushed ({problem}): `/rally` commands "
                         "and reviews cannot take it up\n")


def _record_history(repo: git.Repository, report: Report, config: Config, remote: git.Remote | None) -> None:
    """Append this run to refs/rally/history (and, in CI, to ``remote``'s, so it
    outlives the runner). Never fails the run: a warning says what went wrong."""
    from rally_gh import history

    try:
        if remote is not None:
            if report.dry_run:
                return
            history.share_record(repo, history.record_of_run(report, config, time.time()), remote)
        else:
            history.record_run(repo, report, config, time.time)
    except RallyError as err:
        sys.stderr.write(f"rally-gh: warning: the run was not added to the history: {err}\n")
