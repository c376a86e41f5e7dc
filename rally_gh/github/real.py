"""The GitHub endpoint over PyGithub: the only module that imports ``github``.

PyGithub's own retry (``GithubRetry``, its default) is switched off. It puts
POST among the retried methods, so a POST answered 5xx or whose answer timed
out is sent again blindly: a second comment or pull request when GitHub had
performed the first. It retries 429 only when ``retry-after`` is present, and
waits for a primary rate-limit reset however far away it is.
``_Retrier`` below retries instead: on 5xx, timeouts, 429 and 403 rate limits
(waiting ``retry-after`` or until ``x-ratelimit-reset``), and before retrying a
write whose fate is unknown it looks the object up (by the comment marker, the
check run's name, head and external id, the pull request's head and base).
Writes are spaced by PyGithub's ``seconds_between_writes`` (GitHub asks for
at least one second between content-creating requests).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from github import Auth, Github, GithubException
from github.CheckRun import CheckRun
from github.IssueComment import IssueComment
from github.NamedUser import NamedUser
from github.Organization import Organization
from github.PullRequest import PullRequest as GhPullRequest

from rally_gh.errors import GitHubError
from rally_gh.github.endpoint import (
    ANNOTATIONS_PER_REQUEST,
    CHECK_OUTPUT_LIMIT,
    PERMISSIONS,
    WORKFLOW_BOT,
    Annotation,
    CheckConclusion,
    CheckRunId,
    CheckStatus,
    ChecksForbiddenError,
    CommentId,
    CommitSha,
    GitHubPermissionError,
    Issue,
    IssueNumber,
    Permission,
    PullNumber,
    PullRequest,
    Review,
    ReactionContent,
    RequestLimits,
    ReviewComment,
    StatusState,
    WorkflowRun,
    cut_body,
    run_of_comment,
    same_repository,
    with_marker,
)

DEFAULT_API_URL = "https://api.github.com"
SECONDARY_RATE_LIMIT_WAIT_S = 60.0
"""GitHub's advice when a secondary rate limit comes without ``retry-after``."""

T = TypeVar("T")


@dataclass(frozen=True)
class Action:
    """One request, described for error messages and retry decisions."""

    what: str
    """Completes "GitHub answered 403 to ...", e.g. ``create a comment on #3``."""
    permission: str
    """The workflow permission it needs, e.g. ``issues: write``."""
    write: bool = False
    idempotent: bool = True
    """A retry of this request cannot create a second object."""


def retry_delay(status: int | None, headers: Mapping[str, str], message: str, attempt: int,
                limits: RequestLimits, now: float) -> float | None:
    """Seconds to wait before retrying, or None when the failure is not worth a retry.

    ``status`` None means no answer came (timeout, connection reset).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    backoff = limits.backoff_s * (2.0 ** attempt)
    retry_after = _seconds(lower.get("retry-after"))
    if status is None or status >= 500:
        return retry_after if retry_after is not None else backoff
    rate_limited = status == 429 or (status == 403 and (
        retry_after is not None or lower.get("x-ratelimit-remaining") == "0"
        or "rate limit" in message.lower()))
    if not rate_limited:
        return None
    if retry_after is not None:
        return retry_after
    reset = _seconds(lower.get("x-ratelimit-reset"))
    if lower.get("x-ratelimit-remaining") == "0" and reset is not None:
        # The reset is a whole-second epoch time: one more second covers the rounding.
        return max(reset - now, 0.0) + 1.0
    return max(backoff, SECONDARY_RATE_LIMIT_WAIT_S)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _message(err: GithubException) -> str:
    data = err.data
    if isinstance(data, dict):
        text = str(data.get("message", ""))
        errors = data.get("errors")
        if errors:
            text += " " + json.dumps(errors)
        return text
    return str(data or "")


class RealGitHub:
    """``GitHubEndpoint`` for one repository, through PyGithub."""

    def __init__(self, token: str, repo_full_name: str, base_url: str = DEFAULT_API_URL, *,
                 limits: RequestLimits = RequestLimits(), sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, bot_logins: Sequence[str] = (WORKFLOW_BOT,)) -> None:
        """``bot_logins``: whose comments are ours when the token cannot say whose it is (``_ours``)."""
        if "/" not in repo_full_name:
            raise GitHubError(f"repository {repo_full_name!r} is not of the form owner/name")
        self._repo_full_name = repo_full_name
        self.owner = repo_full_name.split("/", 1)[0]
        self.base_url = base_url.rstrip("/")
        self._limits = limits
        self._sleep = sleep
        self._clock = clock
        self._github = Github(
            auth=Auth.Token(token), base_url=self.base_url, timeout=limits.timeout_s,
            retry=None,  # ours, below: PyGithub's would repeat POSTs blindly
            seconds_between_requests=None, seconds_between_writes=limits.write_interval_s or None,
            per_page=100, lazy=True,
        )
        self._repo = self._github.get_repo(repo_full_name)
        self._default_branch: str | None = None
        self._me: tuple[str | None] | None = None  # (our login, or None: a bot's token), once asked
        self._bot_logins = frozenset(bot_logins)

    @property
    def repo_full_name(self) -> str:
        return self._repo_full_name

    # -- the retry loop ------------------------------------------------------
    def _call(self, action: Action, op: Callable[[], T], *, lookup: Callable[[], T | None] | None = None) -> T:
        attempt = 0
        while True:
            ambiguous = False
            try:
                return op()
            except GithubException as err:
                delay = retry_delay(err.status, err.headers or {}, _message(err), attempt, self._limits,
                                    self._clock())
                if delay is None or attempt + 1 >= self._limits.max_attempts:
                    raise self._explain(action, err) from err
                ambiguous = err.status >= 500
            except (requests.Timeout, requests.ConnectionError) as err:
                if attempt + 1 >= self._limits.max_attempts:
                    raise GitHubError(f"GitHub did not answer to {action.what} in {self._repo_full_name}"
                                      f" after {attempt + 1} attempts: {err}",
                                      hint="check GitHub's status page and re-run the job") from err
                delay = retry_delay(None, {}, "", attempt, self._limits, self._clock())
                ambiguous = True
            if delay is None or delay > self._limits.max_wait_s:
                raise GitHubError(f"GitHub asks to wait {delay:.0f}s before {action.what}: over the"
                                  f" {self._limits.max_wait_s:.0f}s this job is willing to wait",
                                  hint="re-run the job once the rate limit resets")
            self._sleep(delay)
            attempt += 1
            if action.write and ambiguous and not action.idempotent:
                if lookup is None:
                    raise GitHubError(f"GitHub may or may not have done {action.what}; not retrying blindly")
                found = lookup()
                if found is not None:
                    return found

    def _explain(self, action: Action, err: GithubException) -> GitHubError:
        message = _message(err)
        where = f"{action.what} in {self._repo_full_name}"
        if err.status == 401:
            return GitHubError(f"GitHub refused the token (401 {message}) to {where}",
                               hint="check the `github-token` input or GITHUB_TOKEN: it is missing, expired or revoked")
        if err.status in (403, 404):
            kind = ChecksForbiddenError if action.permission.startswith("checks") else GitHubPermissionError
            doing = "write" if action.write else "read"
            subject, _, _ = action.permission.partition(":")
            not_found = " (or it does not exist)" if err.status == 404 and not action.write else ""
            return kind(
                f"GitHub answered {err.status} ({message}) to {where}{not_found}: the token cannot {doing}"
                f" {subject}: add `{action.permission}` to the workflow's permissions",
                hint="a workflow run for a pull request from a fork gets a read-only token whatever it asks for",
                status=err.status, missing_permission=action.permission)
        return GitHubError(f"GitHub answered {err.status} to {where}: {message}")

    # -- repository -----------------------------------------------------------
    def default_branch(self) -> str:
        if self._default_branch is None:
            self._default_branch = self._call(Action("read the repository", "contents: read"),
                                              lambda: str(self._repo.default_branch))
        return self._default_branch

    def permission(self, user: str) -> Permission:
        action = Action(f"read {user}'s permission", "metadata: read")
        role = self._call(action, lambda: self._repo.get_collaborator_role_name(user))
        if role in PERMISSIONS:
            return role
        # A custom organisation role: its coarse base permission is what counts.
        coarse = self._call(action, lambda: self._repo.get_collaborator_permission(user))
        return coarse if coarse in PERMISSIONS else "none"

    # -- issues, comments, reactions, labels ------------------------------------
    def issue(self, number: IssueNumber) -> Issue:
        def fetch() -> Issue:
            found = self._repo.get_issue(number)
            return Issue(number=IssueNumber(found.number), title=found.title, body=found.body or "",
                         labels=tuple(label.name for label in found.labels), user=found.user.login,
                         user_type=found.user.type, state=found.state,
                         is_pull_request=found.pull_request is not None,
                         updated_at=found.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ") if found.updated_at else "")
        return self._call(Action(f"read issue #{number}", "issues: read"), fetch)

    def add_reaction(self, issue: IssueNumber, content: ReactionContent) -> None:
        self._call(Action(f"add a reaction to #{issue}", "issues: write", write=True),
                   lambda: self._repo.get_issue(issue).create_reaction(content))

    def add_comment_reaction(self, comment: CommentId, content: ReactionContent) -> None:
        # PyGithub reaches a comment only through its issue; the REST path needs the comment alone.
        self._call(Action(f"add a reaction to comment {int(comment)}", "issues: write", write=True),
                   lambda: self._github.requester.requestJsonAndCheck(
                       "POST", f"{self._repo.url}/issues/comments/{int(comment)}/reactions",
                       input={"content": content}))

    def run_ids(self, issue: IssueNumber) -> tuple[str, ...]:
        comments = self._call(Action(f"list the comments of #{issue}", "issues: read"),
                              lambda: list(self._repo.get_issue(issue).get_comments()))
        found = (run_of_comment(c.body or "") for c in comments if self._ours(c.user))
        return tuple(dict.fromkeys(r for r in found if r is not None))

    def workflow_run(self, run_id: int) -> WorkflowRun | None:
        def read() -> WorkflowRun | None:
            try:
                run = self._repo.get_workflow_run(run_id)
            except GithubException as err:
                if err.status == 404:
                    return None
                raise
            return WorkflowRun(run.id, str(run.status), run.conclusion, str(run.html_url))
        return self._call(Action(f"read workflow run {run_id}", "actions: read"), read)

    def cancel_workflow_run(self, run_id: int) -> None:
        self._call(Action(f"cancel workflow run {run_id}", "actions: write", write=True),
                   lambda: self._repo.get_workflow_run(run_id).cancel())

    def review(self, pull: PullNumber, review: int) -> Review | None:
        def read() -> Review | None:
            try:
                found = self._repo.get_pull(pull).get_review(review)
            except GithubException as err:
                if err.status == 404:
                    return None
                raise
            return Review(found.id, str(found.state or "").lower(), found.body or "",
                          found.user.login if found.user else "")
        return self._call(Action(f"read review {review} of #{pull}", "pull-requests: read"), read)

    def review_comments(self, pull: PullNumber, review: int) -> tuple[ReviewComment, ...]:
        found = self._call(Action(f"list the comments of review {review} on #{pull}", "pull-requests: read"),
                           lambda: list(self._repo.get_pull(pull).get_single_review_comments(review)))
        return tuple(ReviewComment(CommentId(c.id), str(c.path), c.raw_data.get("line"), c.body or "",
                                   c.user.login if c.user else "", c.diff_hunk or "",
                                   CommentId(c.in_reply_to_id) if c.raw_data.get("in_reply_to_id") else None)
                     for c in found)

    def reply_to_review_comment(self, pull: PullNumber, comment: CommentId, marker: str, body: str) -> CommentId:
        def existing() -> CommentId | None:
            replies = self._call(Action(f"list the review comments of #{pull}", "pull-requests: read"),
                                 lambda: list(self._repo.get_pull(pull).get_review_comments()))
            return next((CommentId(c.id) for c in replies
                         if c.raw_data.get("in_reply_to_id") == comment and (c.body or "").startswith(marker)
                         and self._ours(c.user)), None)
        kept = existing()
        if kept is not None:
            return kept
        created = self._call(
            Action(f"reply to review comment {int(comment)} on #{pull}", "pull-requests: write", write=True,
                   idempotent=False),
            lambda: self._reply(pull, comment, cut_body(with_marker(body, marker))), lookup=existing)
        return created

    def _reply(self, pull: PullNumber, comment: CommentId, text: str) -> CommentId:
        made = self._repo.get_pull(pull).create_review_comment_reply(comment, text)
        self._written_as_us(made.user, f"a reply to review comment {int(comment)} on #{pull}")
        return CommentId(made.id)

    def _find_comment(self, issue: IssueNumber, marker: str) -> IssueComment | None:
        comments = self._call(Action(f"list the comments of #{issue}", "issues: read"),
                              lambda: list(self._repo.get_issue(issue).get_comments()))
        # Ours alone: anyone may post a comment that starts with a marker, to have a command taken for
        # answered or our comment looked for in theirs. Of ours, the oldest wins.
        return next((c for c in comments if (c.body or "").startswith(marker) and self._ours(c.user)), None)

    def _ours(self, user: NamedUser | Organization | None) -> bool:
        """Whether a comment by ``user`` can be one we wrote: by our login when the token can say whose it
        is (a person's token), else by one of the bots named (``bot_logins``): a workflow's or an App's
        installation token cannot ask ``GET /user``. Never by any bot: another App, or another
        workflow's token, could then plant our markers (a progress comment, an approval, a reply)."""
        if self._me is None:
            try:
                self._me = (self._call(Action("ask whose the token is", "none"), lambda: self._github.get_user().login),)
            except GitHubPermissionError:  # refused, not failed: a timeout or a 5xx is not taken for an answer
                self._me = (None,)
        if user is None:
            return False
        me = self._me[0]
        return user.login == me if me is not None else user.type == "Bot" and user.login in self._bot_logins

    def _written_as_us(self, user: NamedUser | Organization | None, what: str) -> None:
        """Refuse to go on when what we just wrote is not taken for ours: every later look would miss it,
        and write again (a second progress comment; a command acted on twice)."""
        if self._ours(user):
            return
        login = user.login if user is not None else "(nobody)"
        raise GitHubError(
            f"rally-gh wrote {what} as @{login}, but takes comments for its own only from "
            f"{' or '.join(f'@{b}' for b in sorted(self._bot_logins))}: this token cannot say whose it is "
            "(a GitHub App's installation token)",
            hint=f"add {login} to the action's input `bot-login` (the bots whose comments are rally-gh's), "
                 "then re-run the job")

    def comment_with(self, issue: IssueNumber, marker: str) -> str | None:
        found = self._find_comment(issue, marker)
        return None if found is None else found.body or ""

    def upsert_comment(self, issue: IssueNumber, marker: str, body: str) -> CommentId:
        text = cut_body(with_marker(body, marker))
        existing = self._find_comment(issue, marker)
        if existing is not None:
            if existing.body != text:
                self._call(Action(f"edit comment {existing.id} on #{issue}", "issues: write", write=True),
                           lambda: existing.edit(text))
            return CommentId(existing.id)
        created = self._call(
            Action(f"create a comment on #{issue}", "issues: write", write=True, idempotent=False),
            lambda: self._repo.get_issue(issue).create_comment(text),
            lookup=lambda: self._find_comment(issue, marker))
        self._written_as_us(created.user, f"comment {created.id} on #{issue}")
        return CommentId(created.id)

    def _send_labels(self, verb: str, issue: IssueNumber, labels: Sequence[str]) -> None:
        # PyGithub sends a bare list; GitHub documents (and recommends) {"labels": [...]}.
        self._github.requester.requestJsonAndCheck(
            verb, f"{self._repo.url}/issues/{issue}/labels", input={"labels": list(labels)})

    def set_labels(self, issue: IssueNumber, labels: Sequence[str]) -> None:
        self._call(Action(f"set the labels of #{issue}", "issues: write", write=True),
                   lambda: self._send_labels("PUT", issue, labels))

    def add_labels(self, issue: IssueNumber, labels: Sequence[str]) -> None:
        if labels:
            self._call(Action(f"add labels to #{issue}", "issues: write", write=True),
                       lambda: self._send_labels("POST", issue, labels))

    def remove_label(self, issue: IssueNumber, label: str) -> None:
        def remove() -> None:
            try:
                self._repo.get_issue(issue).remove_from_labels(label)
            except GithubException as err:
                if err.status != 404 or "label does not exist" not in _message(err).lower():
                    raise
        self._call(Action(f"remove label {label!r} from #{issue}", "issues: write", write=True), remove)

    def ensure_label(self, name: str, color: str, description: str) -> None:
        color = color.lstrip("#").lower()  # GitHub stores and answers bare lower-case hex

        def ensure() -> None:
            try:
                label = self._repo.get_label(name)
                current = (label.color, label.description)
            except GithubException as err:
                if err.status != 404:
                    raise
                try:
                    self._repo.create_label(name, color, description)
                except GithubException as create_err:
                    # Another job created it between our look and our write.
                    if create_err.status != 422 or "already_exists" not in _message(create_err):
                        raise
                return
            if current != (color, description):
                label.edit(name, color, description)
        self._call(Action(f"create or update label {name!r}", "issues: write", write=True), ensure)

    # -- checks and statuses ---------------------------------------------------
    def create_check_run(
        self, name: str, head_sha: CommitSha, *, status: CheckStatus = "completed",
        conclusion: CheckConclusion | None = None, title: str, summary: str,
        annotations: Sequence[Annotation] = (), external_id: str = "",
        details_url: str | None = None,
    ) -> CheckRunId:
        chunks = [annotations[i:i + ANNOTATIONS_PER_REQUEST]
                  for i in range(0, len(annotations), ANNOTATIONS_PER_REQUEST)] or [[]]
        summary = cut_body(summary, limit=CHECK_OUTPUT_LIMIT)
        kwargs: dict[str, Any] = {"name": name, "head_sha": head_sha, "status": status,
                                  "external_id": external_id,
                                  "output": _check_output(title, summary, chunks[0])}
        if conclusion is not None:
            kwargs["conclusion"] = conclusion
        if details_url is not None:
            kwargs["details_url"] = details_url

        def lookup() -> CheckRun | None:
            runs = self._call(Action(f"list check runs of {head_sha[:12]}", "checks: read"),
                              lambda: list(self._repo.get_commit(head_sha).get_check_runs(check_name=name, filter="all")))
            return next((r for r in reversed(runs) if r.external_id == external_id
                         and r.output.title == title and r.output.summary == summary), None)

        run = self._call(Action(f"create check run {name!r} on {head_sha[:12]}", "checks: write", write=True,
                                idempotent=False), lambda: self._repo.create_check_run(**kwargs), lookup=lookup)
        sent = len(chunks[0])
        for chunk in chunks[1:]:
            sent += len(chunk)
            self._add_annotations(run, title, summary, chunk, total_after=sent)
        return CheckRunId(run.id)

    def _add_annotations(self, run: CheckRun, title: str, summary: str, chunk: Sequence[Annotation], *,
                         total_after: int) -> None:
        def applied() -> CheckRun | None:
            # Every update appends its annotations: the count tells whether ours landed.
            fresh = self._call(Action(f"read check run {run.id}", "checks: read"),
                               lambda: self._repo.get_check_run(run.id))
            return fresh if fresh.output.annotations_count >= total_after else None

        def send() -> CheckRun:
            run.edit(output=_check_output(title, summary, chunk))
            return run

        self._call(Action(f"add annotations to check run {run.id}", "checks: write", write=True,
                          idempotent=False), send, lookup=applied)

    def create_status(self, sha: CommitSha, state: StatusState, context: str, description: str,
                      target_url: str | None = None) -> None:
        kwargs: dict[str, Any] = {"state": state, "context": context, "description": description[:140]}
        if target_url is not None:
            kwargs["target_url"] = target_url
        # A repeated status only restates the latest one for the context: safe to retry.
        self._call(Action(f"set commit status {context!r} on {sha[:12]}", "statuses: write", write=True),
                   lambda: self._repo.get_commit(sha).create_status(**kwargs))

    # -- pull requests ----------------------------------------------------------
    def _find_pull(self, head: str, base: str) -> GhPullRequest | None:
        pulls = self._call(Action(f"list pull requests from {head}", "pull-requests: read"),
                           lambda: list(self._repo.get_pulls(state="open", head=f"{self.owner}:{head}", base=base)))
        # ``owner:branch`` also matches a fork in the same organisation (owner/repo-fork:branch): ours alone.
        return next((p for p in pulls if same_repository(_head_repo(p), self._repo_full_name)), None)

    def find_or_create_pull(self, head: str, base: str, title: str, body: str, draft: bool) -> PullRequest:
        text = cut_body(body)
        existing = self._find_pull(head, base)
        if existing is not None:
            return self._refresh(existing, title, text, draft)

        def create() -> GhPullRequest | None:
            try:
                return self._repo.create_pull(base=base, head=head, title=title, body=text, draft=draft)
            except GithubException as err:
                if err.status == 422 and "already exists" in _message(err):
                    return None
                raise

        created = self._call(Action(f"create a pull request from {head} into {base}", "pull-requests: write",
                                    write=True, idempotent=False),
                             create, lookup=lambda: self._find_pull(head, base))
        if created is None:  # 422: it appeared between our look and our write
            found = self._find_pull(head, base)
            if found is None:
                raise GitHubError(f"GitHub says a pull request from {head} into {base} exists, but none is open")
            return self._refresh(found, title, text, draft)
        if created.title != title or (created.body or "") != text:  # found by the lookup after a lost answer
            return self._refresh(created, title, text, draft)
        return _pull(created, created=True)

    def _refresh(self, pull: GhPullRequest, title: str, body: str, draft: bool) -> PullRequest:
        if pull.title != title or (pull.body or "") != body:
            self._call(Action(f"update pull request #{pull.number}", "pull-requests: write", write=True),
                       lambda: pull.edit(title=title, body=body))
        if pull.draft and not draft:
            # REST cannot take a pull request out of draft; GraphQL can (same token, same permission).
            self._call(Action(f"mark pull request #{pull.number} ready for review", "pull-requests: write",
                              write=True), pull.mark_ready_for_review)
        return _pull(pull, created=False)

    def pull(self, number: PullNumber) -> PullRequest:
        return self._call(Action(f"read pull request #{number}", "pull-requests: read"),
                          lambda: _pull(self._repo.get_pull(number), created=False))

    def update_pull(self, number: PullNumber, title: str, body: str) -> PullRequest:
        pull = self._repo.get_pull(number)
        self._call(Action(f"update pull request #{number}", "pull-requests: write", write=True),
                   lambda: pull.edit(title=title, body=cut_body(body)))
        return self._call(Action(f"read pull request #{number}", "pull-requests: read"),
                          lambda: _pull(pull, created=False))


def _check_output(title: str, summary: str, annotations: Sequence[Annotation]) -> dict[str, Any]:
    return {"title": title, "summary": summary,
            "annotations": [_annotation_json(a) for a in annotations]}


def _annotation_json(annotation: Annotation) -> dict[str, Any]:
    out: dict[str, Any] = {"path": annotation.path, "start_line": annotation.start_line,
                           "end_line": annotation.end_line, "annotation_level": annotation.level,
                           "message": annotation.message}
    if annotation.title is not None:
        out["title"] = annotation.title
    return out


def _pull(pull: GhPullRequest, *, created: bool) -> PullRequest:
    return PullRequest(number=PullNumber(pull.number), url=pull.html_url, api_url=pull.url, head=pull.head.ref,
                       head_sha=CommitSha(pull.head.sha), base=pull.base.ref, title=pull.title,
                       body=pull.body or "", draft=bool(pull.draft), state=pull.state, created=created,
                       head_repo=_head_repo(pull))


def _head_repo(pull: GhPullRequest) -> str:
    """The ``owner/name`` of the repository a pull request's head is in; empty for a deleted fork."""
    repo = pull.head.raw_data.get("repo")
    return str(repo.get("full_name") or "") if isinstance(repo, dict) else ""
