"""What GitHub Actions tells a job through its environment, read in one place.

A job learns everything from environment variables: whether it runs in Actions
at all, a token, the repository and the API's address, what started it
(``GITHUB_EVENT_NAME`` and the event JSON at ``GITHUB_EVENT_PATH``), the
workflow run, the pull request's branches, the action's inputs (the ``RALLY_*``
variables ``action.yml`` sets), the remote to publish to (``RALLY_REMOTE``), and
the files a step answers through (``GITHUB_OUTPUT``, ``GITHUB_STEP_SUMMARY``).
``read`` takes all of it, once, into a frozen ``ActionsContext`` that ``cli.py``
hands to the commands: no other module reads these variables. ``read_event``
parses the event file once; ``connect`` is the one place the real GitHub client
is built.

A run (``run``, ``teammate``, ``merge``) is in GitHub mode in Actions
(``GITHUB_ACTIONS=true``) or with an explicit ``--event``. Anywhere else it is
local whatever tokens the shell holds (many `gh` users keep one set):
``ActionsContext.for_run`` drops them, so that no API is called and nothing
passes them on to agents or verify, and ``local_token_note`` says so.

The event's text is untrusted: it is data here, validated in ``events``, and
reaches agents only through their prompt files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from rally_gh import git
from rally_gh.errors import GitHubError, UsageError
from rally_gh.github.endpoint import WORKFLOW_BOT, GitHubEndpoint, IssueNumber, RequestLimits
from rally_gh.github.events import (
    BOT_LOGIN,
    Trigger,
    branch_name,
    issue_fields,
    parse_event,
    positive_number,
    teammate_names,
)

TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN")
# The files through which a step talks to the workflow, and the runner's own variables:
# code that came from an agent's branch must not see them (writing them would set variables,
# PATH entries or outputs for the steps after this one, or forge ours).
WORKFLOW_FILES = ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY", "GITHUB_STATE")
RUNNER_PREFIX = "ACTIONS_"


@dataclass(frozen=True)
class ActionInputs:
    """The action's inputs as ``action.yml`` passes them, unchecked until asked for."""

    teammates_text: str = ""
    max_parallel_text: str = ""
    bot_allowlist: tuple[str, ...] = ()
    bot_logins: tuple[str, ...] = (WORKFLOW_BOT,)
    """``RALLY_BOT_LOGIN``: the bots whose comments are rally-gh's own when the token cannot say whose it
    is (a workflow's ``GITHUB_TOKEN``, a GitHub App's installation token: ``<app-slug>[bot]``)."""
    split_run_id: str | None = None
    """``RALLY_RUN_ID``: the name the workflow gave a run split across jobs."""
    agents_here: bool = True
    """``RALLY_AGENTS``: ``false`` in a job that must run no agent, nor ``verify`` or ``merge.verify``
    (the commands workflow's, whose token writes): a `/rally retry` or `drop`, or a review, is answered
    there, not acted on."""
    issue_text: str | None = None
    """``RALLY_ISSUE_TEXT``: the issue's text as the admit job read it, for the agents' job of a dispatch
    (whose event names the issue without its text, and whose job has no token to read it)."""

    plans: tuple[tuple[str, str], ...] = ()
    """``RALLY_PLANS``: the approved plans of teammates in plan mode (JSON, teammate to text), as the comment
    workflow's command job read them from the run's progress comment, for its agents' job."""
    approval: Literal["comment", "environment"] = "comment"
    """``RALLY_APPROVAL``: how a run that needs approval is approved: ``/rally approve`` in a comment, or
    a required reviewer of the GitHub Environment on the agents' job."""

    def teammates(self) -> tuple[str, ...]:
        """The ``teammates`` input, checked as strictly as a dispatch's."""
        return teammate_names(self.teammates_text, "the action's input `teammates`")

    def max_parallel(self) -> int | None:
        return positive_number(self.max_parallel_text, "the action's input `max-parallel`")


@dataclass(frozen=True)
class ActionsContext:
    """This job's environment as GitHub Actions shapes it; see the module docstring."""

    environ: Mapping[str, str]
    """What child processes start from: a copy of the environment, never with a token in it."""
    in_actions: bool = False
    event_given: bool = False
    """The command line named the event file (``--event``)."""
    token: str | None = None
    """None: no API is asked, and nothing is pushed with it."""
    token_names: tuple[str, ...] = ()
    """The variables the token was found in (``TOKEN_VARIABLES``)."""
    dropped_tokens: tuple[str, ...] = ()
    repository: str | None = None
    api_url: str | None = None
    server_url: str | None = None
    workflow_run_id: str | None = None
    event_name: str | None = None
    event_path: Path | None = None
    """``--event``, else ``GITHUB_EVENT_PATH``."""
    head_ref: str | None = None
    base_ref: str | None = None
    """A pull request's head and base branches (``GITHUB_HEAD_REF``, ``GITHUB_BASE_REF``)."""
    remote: str | None = None
    """``RALLY_REMOTE``: where a local run publishes, when asked to."""
    triggering_actor: str | None = None
    """``GITHUB_TRIGGERING_ACTOR``: who started this attempt of the workflow run (a re-run's, not the event's sender)."""
    write_interval_s: float | None = None
    """``RALLY_GITHUB_WRITE_INTERVAL``: seconds between two writes to the API (default 1, GitHub's advice
    against its secondary rate limits; 0 for a server without them, such as the fake of the tests)."""
    output_file: Path | None = None
    summary_file: Path | None = None
    inputs: ActionInputs = ActionInputs()

    @property
    def publish_remote(self) -> str:
        """Where a run in Actions, and every job of a split run, publishes."""
        return self.remote or "origin"

    @property
    def publish_to(self) -> git.Remote:
        """``publish_remote`` with this job's token: rally-gh's own pushes present it in a header, so
        no credential helper and no token in any environment is needed (docs/github.md)."""
        credentials = git.HttpCredentials(self.token) if self.token else None
        return git.Remote(self.publish_remote, credentials)

    @property
    def local_remote(self) -> git.Remote | None:
        """``RALLY_REMOTE`` for a local run: the user's own remote, reached with their own credentials."""
        return git.Remote(self.remote) if self.remote else None

    @property
    def job_url(self) -> str | None:
        """The job's page, where the step summary (the full report) is shown."""
        if not (self.server_url and self.repository and self.workflow_run_id):
            return None
        return f"{self.server_url}/{self.repository}/actions/runs/{self.workflow_run_id}"

    def for_run(self) -> ActionsContext:
        """This context as a run sees it: outside Actions and without ``--event``, with
        no token (``dropped_tokens`` names those the shell held)."""
        if self.in_actions or self.event_given or self.token is None:
            return self
        return replace(self, token=None, dropped_tokens=self.token_names)

    def without_token(self) -> ActionsContext:
        """This context for a job that must not write (the agents' job of the ready workflows): no
        API is asked, and no token is passed on, whatever the workflow gave the job."""
        return replace(self, token=None)

    def local_token_note(self) -> str | None:
        """Why a token the shell holds is not used, for the commands that would have used it."""
        if not self.dropped_tokens:
            return None
        one = len(self.dropped_tokens) == 1
        return (f"rally-gh: note: {' and '.join(self.dropped_tokens)} {'is' if one else 'are'} set, but this is a "
                f"local run (not GitHub Actions, no --event): {'the token is' if one else 'the tokens are'} not "
                "used and not passed on\n")


def read(environ: Mapping[str, str], *, event_path: Path | None = None) -> ActionsContext:
    """The context of this job, from its environment and the command line's ``--event``. The token
    is kept in ``token`` alone: ``environ``, what children start from, holds none."""
    found_event = environ.get("GITHUB_EVENT_PATH")
    held = tuple(name for name in TOKEN_VARIABLES if environ.get(name))
    return ActionsContext(
        environ=MappingProxyType({k: v for k, v in environ.items() if k not in TOKEN_VARIABLES}),
        in_actions=environ.get("GITHUB_ACTIONS") == "true",
        event_given=event_path is not None,
        token=environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN") or None,
        token_names=held,
        repository=environ.get("GITHUB_REPOSITORY") or None,
        api_url=environ.get("GITHUB_API_URL") or None,
        server_url=environ.get("GITHUB_SERVER_URL") or None,
        workflow_run_id=environ.get("GITHUB_RUN_ID") or None,
        event_name=environ.get("GITHUB_EVENT_NAME") or None,
        event_path=event_path if event_path is not None else Path(found_event) if found_event else None,
        head_ref=_branch(environ, "GITHUB_HEAD_REF"),
        base_ref=_branch(environ, "GITHUB_BASE_REF"),
        remote=environ.get("RALLY_REMOTE") or None,
        triggering_actor=environ.get("GITHUB_TRIGGERING_ACTOR") or None,
        write_interval_s=_seconds("RALLY_GITHUB_WRITE_INTERVAL", environ.get("RALLY_GITHUB_WRITE_INTERVAL", "")),
        output_file=_path(environ.get("GITHUB_OUTPUT")),
        summary_file=_path(environ.get("GITHUB_STEP_SUMMARY")),
        inputs=ActionInputs(
            teammates_text=environ.get("RALLY_TEAMMATES", ""),
            max_parallel_text=environ.get("RALLY_MAX_PARALLEL", ""),
            bot_allowlist=tuple(environ.get("RALLY_BOT_ALLOWLIST", "").replace(",", " ").split()),
            bot_logins=_bot_logins(environ.get("RALLY_BOT_LOGIN", "")),
            agents_here=environ.get("RALLY_AGENTS", "").strip().lower() != "false",
            split_run_id=environ.get("RALLY_RUN_ID") or None,
            issue_text=environ.get("RALLY_ISSUE_TEXT") or None,
            approval=_approval(environ.get("RALLY_APPROVAL", "")),
            plans=_plans(environ.get("RALLY_PLANS", "")),
        ),
    )


def _plans(text: str) -> tuple[tuple[str, str], ...]:
    """The ``plans`` input: a JSON object of teammate names to text, checked as any input is."""
    if not text.strip():
        return ()
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise UsageError("the action's input `plans` must be a JSON object of teammate names to text",
                         hint="pass the command job's `plans` output as it is")
    teammate_names(" ".join(found), "the action's input `plans`")
    return tuple(found.items())


def _seconds(name: str, text: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:
        raise UsageError(f"{name}={text[:40]!r} is not a number of seconds from 0 to 60",
                         hint="leave it unset for GitHub's advice, one second between writes")
    return value


def _bot_logins(text: str) -> tuple[str, ...]:
    """The ``bot-login`` input: bot logins separated by commas or spaces; the workflow's bot when empty."""
    logins = tuple(text.replace(",", " ").split()) or (WORKFLOW_BOT,)
    for login in logins:
        if not BOT_LOGIN.fullmatch(login):
            raise UsageError(f"the action's input `bot-login`: {login[:60]!r} is not a bot's login",
                             hint=f"a GitHub App writes as `<app-slug>[bot]`, a workflow's token as `{WORKFLOW_BOT}`")
    return logins


def _approval(value: str) -> Literal["comment", "environment"]:
    if value in ("", "comment"):
        return "comment"
    if value == "environment":
        return "environment"
    raise UsageError(f"the action's input `approval` must be comment or environment, got {value[:40]!r}")


def _branch(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return branch_name(value, name) if value else None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def is_workflow_variable(name: str) -> bool:
    """A variable only the runner and the workflow's own steps may see (the files
    steps answer through, the runner's ``ACTIONS_*``)."""
    return name.startswith(RUNNER_PREFIX) or name in WORKFLOW_FILES


@dataclass(frozen=True)
class Event:
    """The event file of this job, parsed once."""

    name: str | None
    path: Path
    payload: Any

    def issue(self) -> tuple[int | None, str | None]:
        """The issue the payload carries: its number and text (title and body), checked (``events.issue_fields``)."""
        if not isinstance(self.payload, dict):
            return None, None
        return issue_fields(self.payload)

    def trigger(self) -> Trigger:
        """What started the job, and who (``events.parse_event``)."""
        if not isinstance(self.payload, dict):
            raise UsageError(f"{self.path}: the event payload is not a JSON object")
        return parse_event(self.name or "", self.payload)


EVENT_FILE_LIMIT = 25 * 1024 * 1024
"""GitHub caps a webhook's payload at 25 MB: a larger event file is not one it wrote."""


def read_event(context: ActionsContext) -> Event | None:
    """The event file, parsed; None when there is none (a local run)."""
    path = context.event_path
    if path is None:
        return None
    try:
        size = path.stat().st_size
        if size > EVENT_FILE_LIMIT:
            raise UsageError(f"--event {path}: {size:,} bytes, larger than any event GitHub sends "
                             f"({EVENT_FILE_LIMIT:,} bytes at most)")
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: JSON nested past Python's stack
        raise UsageError(f"--event {path}: not a readable JSON event: {err}") from None
    return Event(context.event_name, path, payload)


def issue_of(event: Event | None, issue: int | None) -> tuple[int | None, str | None]:
    """The issue number (``issue`` when given) and text of the event."""
    if event is None:
        return issue, None
    number, text = event.issue()
    return (issue if issue is not None else number), text


DEFAULT_LIMITS = RequestLimits()
"""How the real client paces and retries; the tests, against the fake, pace nothing (tests/conftest.py)."""


def connect(context: ActionsContext, *, limits: RequestLimits | None = None) -> GitHubEndpoint:
    """The real GitHub client for this job's token and repository (PyGithub is imported only now)."""
    if not context.token or not context.repository:
        raise GitHubError("no GitHub token or repository in the environment",
                          hint="pass `github-token` to the action, or set GITHUB_TOKEN and GITHUB_REPOSITORY")
    from rally_gh.github.real import DEFAULT_API_URL, RealGitHub

    return RealGitHub(context.token, context.repository, context.api_url or DEFAULT_API_URL,
                      limits=_paced(DEFAULT_LIMITS if limits is None else limits, context.write_interval_s),
                      bot_logins=context.inputs.bot_logins)


def _paced(limits: RequestLimits, write_interval_s: float | None) -> RequestLimits:
    return limits if write_interval_s is None else replace(limits, write_interval_s=write_interval_s)


@dataclass(frozen=True)
class GitHubRun:
    """A run that talks to GitHub: the endpoint, and the trigger that admits it or not."""

    endpoint: GitHubEndpoint
    trigger: Trigger


def github_of_run(context: ActionsContext, event: Event | None) -> GitHubRun | None:
    """The GitHub side of a run: None without a token (a local run: no API calls)."""
    if context.token is None:
        return None
    if event is None or not context.event_name:
        raise UsageError("a GitHub run needs an event: GITHUB_EVENT_NAME and --event or GITHUB_EVENT_PATH are "
                         f"not both set (found GITHUB_EVENT_NAME={context.event_name or '(unset)'})",
                         hint="set GITHUB_EVENT_NAME to the event's name (issues, workflow_dispatch, "
                              "issue_comment, ...), or leave out --event for a local run")
    trigger = event.trigger()  # the untrusted payload is checked before any request is made
    return GitHubRun(connect(context), trigger)


def issue_text_from_github(github: GitHubEndpoint, issue: int) -> str | None:
    """The issue's text as GitHub has it now: a dispatch names the issue but does not carry its text."""
    found = github.issue(IssueNumber(issue))
    return f"{found.title}\n\n{found.body}".strip() or None


def issue_of_job(context: ActionsContext, event: Event | None, issue: int | None) -> tuple[int | None, str | None]:
    """The issue number and text of a job of a split run (plan, teammate, merge): the event's,
    and for a dispatch naming an issue, its text from GitHub when there is a token, as ``run``
    does, so that every job reads the same ``rally`` block and prompts."""
    issue, text = issue_of(event, issue)
    if text is not None or event is None or context.event_name != "workflow_dispatch" or context.token is None:
        return issue, text
    named = event.trigger().issue
    number = named if named is not None else issue
    if number is None:
        return issue, None
    return number, issue_text_from_github(connect(context), number)
