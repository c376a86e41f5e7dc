"""The one GitHub interface the rest of rally-gh talks to.

Two implementations: ``real.RealGitHub`` (PyGithub, over HTTP to GitHub or to
the fake) and nothing else; tests point the real client at
``fake.FakeGitHubServer`` so the code under test is the code users run.
Everything here is data or pure functions, so commands can be written and
tested against the interface alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NewType, Protocol, runtime_checkable

from rally_gh.errors import GitHubError

IssueNumber = NewType("IssueNumber", int)
"""An issue or pull request number: GitHub numbers both from one sequence."""
PullNumber = NewType("PullNumber", int)
CommentId = NewType("CommentId", int)
CheckRunId = NewType("CheckRunId", int)
CommitSha = NewType("CommitSha", str)

Permission = Literal["admin", "maintain", "write", "triage", "read", "none"]
PERMISSIONS: tuple[Permission, ...] = ("admin", "maintain", "write", "triage", "read", "none")
WRITE_PERMISSIONS: frozenset[str] = frozenset({"admin", "maintain", "write"})

ReactionContent = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]
CheckStatus = Literal["queued", "in_progress", "completed"]
CheckConclusion = Literal[
    "action_required", "cancelled", "failure", "neutral", "success", "skipped", "timed_out"
]
StatusState = Literal["error", "failure", "pending", "success"]
AnnotationLevel = Literal["notice", "warning", "failure"]

WORKFLOW_BOT = "github-actions[bot]"
"""Who a workflow's ``GITHUB_TOKEN`` writes as: the comments rally-gh takes for its own by default when the
token cannot say whose it is (``GET /user`` is refused to installation tokens)."""

BODY_LIMIT = 65_536
"""GitHub refuses issue, comment and pull request bodies longer than this (characters)."""
CHECK_OUTPUT_LIMIT = 65_535
"""A check run's ``output.summary`` and ``output.text`` stop one character short of bodies."""
ANNOTATIONS_PER_REQUEST = 50
"""The checks API takes at most this many annotations in one create or update."""
STATUS_DESCRIPTION_LIMIT = 140


@dataclass(frozen=True)
class Issue:
    number: IssueNumber
    title: str
    body: str
    labels: tuple[str, ...]
    user: str
    user_type: str = "User"
    state: str = "open"
    is_pull_request: bool = False
    updated_at: str = ""
    """When GitHub last changed it (ISO 8601); empty when unknown."""


@dataclass(frozen=True)
class PullRequest:
    number: PullNumber
    url: str
    """The page a person opens (``html_url``)."""
    api_url: str
    head: str
    head_sha: CommitSha
    base: str
    title: str
    body: str
    draft: bool
    state: str = "open"
    created: bool = False
    """True when this call created it, False when an existing one was found."""
    head_repo: str = ""
    """The repository its head branch is in (``owner/name``): this one, or a fork; empty when that
    repository is gone (a deleted fork)."""


@dataclass(frozen=True)
class ReviewComment:
    """An inline comment of a pull request review: on one file, at one line."""
    id: CommentId
    path: str
    line: int | None
    body: str
    author: str
    diff_hunk: str = ""
    in_reply_to: CommentId | None = None


@dataclass(frozen=True)
class Review:
    """A review of a pull request, as the API says it is now."""
    id: int
    state: str
    """``approved``, ``changes_requested``, ``commented``, ``dismissed`` or ``pending`` (lower case)."""
    body: str
    author: str


@dataclass(frozen=True)
class WorkflowRun:
    """One run of a workflow (the Actions API's ``workflow_run``)."""
    id: int
    status: str
    """``queued``, ``in_progress``, ``completed``, ... as GitHub says."""
    conclusion: str | None
    url: str
    """The page a person opens (``html_url``)."""


@dataclass(frozen=True)
class Annotation:
    path: str
    message: str
    start_line: int = 1
    end_line: int = 1
    level: AnnotationLevel = "failure"
    title: str | None = None


@dataclass(frozen=True)
class CheckPublication:
    """Where an ownership result ended up: a check run, or a commit status."""

    kind: Literal["check-run", "status"]
    check_run_id: CheckRunId | None = None
    reason: str = ""


class GitHubPermissionError(GitHubError):
    """GitHub answered 403/404 where a token permission is the likely cause."""

    def __init__(self, message: str, *, status: int, missing_permission: str | None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.missing_permission = missing_permission


class ChecksForbiddenError(GitHubPermissionError):
    """The token cannot write check runs (fork pull requests, ``checks`` not granted)."""


@runtime_checkable
class GitHubEndpoint(Protocol):
    """What rally-gh asks of GitHub, for one repository."""

    @property
    def repo_full_name(self) -> str: ...

    def default_branch(self) -> str: ...

    def permission(self, user: str) -> Permission:
        """The user's role on the repository; ``"none"`` for a stranger."""
        ...

    def issue(self, number: IssueNumber) -> Issue: ...

    def add_reaction(self, issue: IssueNumber, content: ReactionContent) -> None: ...

    def add_comment_reaction(self, comment: CommentId, content: ReactionContent) -> None:
        """React to a comment on an issue or pull request; adding the same reaction again is not an error."""
        ...

    def run_ids(self, issue: IssueNumber) -> tuple[str, ...]:
        """The runs whose progress comment is on ``issue`` (their hidden marker), oldest first."""
        ...

    def workflow_run(self, run_id: int) -> WorkflowRun | None:
        """A workflow run of this repository; None when there is none of that id."""
        ...

    def cancel_workflow_run(self, run_id: int) -> None: ...

    def review(self, pull: PullNumber, review: int) -> Review | None:
        """Review ``review`` of ``pull``; None when ``pull`` has none of that id."""
        ...

    def review_comments(self, pull: PullNumber, review: int) -> tuple[ReviewComment, ...]:
        """The inline comments of one review of ``pull``."""
        ...

    def reply_to_review_comment(self, pull: PullNumber, comment: CommentId, marker: str, body: str) -> CommentId:
        """Reply in the thread of ``comment`` once: a reply of ours that starts with ``marker`` is kept."""
        ...

    def upsert_comment(self, issue: IssueNumber, marker: str, body: str) -> CommentId:
        """Edit the one comment holding ``marker`` or create it; never a second one."""
        ...

    def comment_with(self, issue: IssueNumber, marker: str) -> str | None:
        """The body of the comment ``upsert_comment`` keeps for ``marker``; None when there is none yet."""
        ...

    def set_labels(self, issue: IssueNumber, labels: Sequence[str]) -> None: ...

    def add_labels(self, issue: IssueNumber, labels: Sequence[str]) -> None: ...

    def remove_label(self, issue: IssueNumber, label: str) -> None:
        """Remove a label; a label that is not on the issue is not an error."""
        ...

    def ensure_label(self, name: str, color: str, description: str) -> None: ...

    def create_check_run(
        self, name: str, head_sha: CommitSha, *, status: CheckStatus = "completed",
        conclusion: CheckConclusion | None = None, title: str, summary: str,
        annotations: Sequence[Annotation] = (), external_id: str = "",
        details_url: str | None = None,
    ) -> CheckRunId:
        """Raises ``ChecksForbiddenError`` when the token cannot write checks."""
        ...

    def create_status(self, sha: CommitSha, state: StatusState, context: str, description: str,
                      target_url: str | None = None) -> None: ...

    def find_or_create_pull(self, head: str, base: str, title: str, body: str,
                            draft: bool) -> PullRequest:
        """The open pull request from branch ``head`` into ``base``, updated, or a new one.

        ``draft``: whether a new one starts as a draft. An existing draft is marked
        ready for review when ``draft`` is False (a re-run that succeeded); a ready
        one is never turned back into a draft, as people may be reviewing it."""
        ...

    def update_pull(self, number: PullNumber, title: str, body: str) -> PullRequest: ...

    def pull(self, number: PullNumber) -> PullRequest:
        """A pull request of this repository, as it is now."""
        ...


def same_repository(name: str, other: str) -> bool:
    """Whether two ``owner/name`` are one repository (GitHub's names ignore case); an empty name is none.
    A run's pull request is known by its head branch *in this repository*: anyone can fork it and
    open a pull request from a branch of the same name."""
    return bool(name) and name.lower() == other.lower()


def run_marker(run_id: str) -> str:
    """The hidden line that identifies a run's progress comment."""
    return f"<!-- rally-gh:run:{run_id} -->"


_RUN_MARKER = re.compile(r"<!-- rally-gh:run:([A-Za-z0-9][A-Za-z0-9._-]{0,99}) -->")


def run_of_comment(body: str) -> str | None:
    """The run a comment is the progress comment of: its first line is the run's marker."""
    found = _RUN_MARKER.match(body)
    return found.group(1) if found else None


def cut_body(body: str, pointer: str = "the job summary", limit: int = BODY_LIMIT) -> str:
    """``body`` if GitHub accepts it, else its head with a note saying where the rest is.

    Cuts at a line boundary when one is near, so a Markdown table or fence is
    not split mid-line; an open code fence is closed so the note renders.
    """
    if len(body) <= limit:
        return body
    note = f"\n\n---\n**Report cut to GitHub's {limit:,}-character limit: the full report is in {pointer}.**\n"
    room = limit - len(note) - len("\n```")
    head = body[:room]
    newline = head.rfind("\n")
    if newline > room // 2:
        head = head[:newline]
    if head.count("```") % 2 == 1:
        head += "\n```"
    return head + note


def with_marker(body: str, marker: str) -> str:
    """``body`` led by ``marker``: a run's comment is found by the marker it starts with, never by one
    quoted further down (an agent's output in a report can hold another run's marker)."""
    return body if body.startswith(marker) else f"{marker}\n{body}"


def publish_check(
    endpoint: GitHubEndpoint, name: str, head_sha: CommitSha, *, conclusion: CheckConclusion,
    title: str, summary: str, annotations: Sequence[Annotation] = (), external_id: str = "",
    details_url: str | None = None,
) -> CheckPublication:
    """A completed check run, or a commit status where the token cannot write checks."""
    try:
        run_id = endpoint.create_check_run(
            name, head_sha, status="completed", conclusion=conclusion, title=title,
            summary=summary, annotations=annotations, external_id=external_id,
            details_url=details_url,
        )
    except ChecksForbiddenError as err:
        state: StatusState = "success" if conclusion in ("success", "neutral", "skipped") else "failure"
        endpoint.create_status(head_sha, state, name, title[:STATUS_DESCRIPTION_LIMIT], details_url)
        return CheckPublication("status", None, err.message)
    return CheckPublication("check-run", run_id)


@dataclass(frozen=True)
class RequestLimits:
    """Pacing and retry policy of the real client; tests shrink the waits."""

    write_interval_s: float = 1.0
    max_attempts: int = 5
    backoff_s: float = 1.0
    max_wait_s: float = 900.0
    timeout_s: int = 15
    """Seconds; PyGithub takes whole seconds only."""
