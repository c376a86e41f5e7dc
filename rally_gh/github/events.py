"""What started this job, and whether its sender may start a run.

``parse_event`` turns the Actions event (its name and JSON payload, which
``actions`` reads) into a ``Trigger``; ``authorize`` asks the API for
the sender's permission and fails closed. Event payloads are untrusted: their
text is read as data and validated here, never handed to a shell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from rally_gh.errors import UsageError
from rally_gh.limits import TEAMMATE_NAME
from rally_gh.github.endpoint import (
    BODY_LIMIT,
    WRITE_PERMISSIONS,
    CommentId,
    GitHubEndpoint,
    IssueNumber,
    PullNumber,
)

START_LABEL = "rally:parallel"
MAX_NUMBER = 9_999_999_999
"""The largest issue or pull request number taken (ten digits, as a dispatch's input)."""
# A GitHub login (letters, digits, single hyphens, at most 39), or an app's bot (``name[bot]``).
_LOGIN = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}(?:\[bot\])?")
# An App's bot, or a workflow's (``github-actions[bot]``): what a token that cannot say whose it is writes as.
BOT_LOGIN = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}\[bot\]")
# What git refuses in a branch name: control characters, space, DEL and ~^:?*[\
_NOT_IN_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")

TriggerKind = Literal["issue-labeled", "dispatch", "pull-request", "comment", "review", "ignored"]


@dataclass(frozen=True)
class DispatchInputs:
    issue: IssueNumber | None
    teammates: tuple[str, ...] = ()
    """Empty means every teammate the map (or the issue's ``rally`` block) names."""
    dry_run: bool = False
    max_parallel: int | None = None


@dataclass(frozen=True)
class PullRef:
    number: PullNumber
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str


@dataclass(frozen=True)
class CommentRef:
    """A new comment on an issue or pull request (``issue_comment`` created): it may hold a ``/rally`` command."""
    id: CommentId
    issue: IssueNumber
    body: str
    on_pull_request: bool = False


@dataclass(frozen=True)
class ReviewRef:
    """A review submitted on a pull request (``pull_request_review`` submitted), or the review of an inline
    comment created on one (``pull_request_review_comment`` created: ``via_comment``)."""
    id: int
    pull: PullNumber
    head_ref: str
    state: str
    """``approved``, ``changes_requested`` or ``commented``, as GitHub says (lower case)."""
    body: str
    head_repo: str = ""
    """The repository the head branch is in (``pull_request.head.repo.full_name``): this one or a fork;
    empty when the event names none (a deleted fork)."""
    via_comment: int | None = None
    """The inline comment whose event (``pull_request_review_comment`` created) delivered the review; its
    ``state`` and ``body`` are then not known from the event and are read from the API (``review.read_review``)."""


@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    sender: str
    sender_type: str
    """``User`` or ``Bot`` (GitHub's ``sender.type``)."""
    reason: str = ""
    """Why an event is ignored; empty otherwise."""
    issue: IssueNumber | None = None
    label: str | None = None
    inputs: DispatchInputs | None = None
    pull: PullRef | None = None
    comment: CommentRef | None = None
    review: ReviewRef | None = None

    @property
    def starts_run(self) -> bool:
        return self.kind in ("issue-labeled", "dispatch")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    permission: str | None = None


EVENT_HINT = "run inside GitHub Actions, or pass --event FILE with a payload GitHub wrote"


def parse_event(event_name: str, payload: Mapping[str, Any]) -> Trigger:
    """The trigger an event's payload describes; a payload GitHub would not write is refused."""
    sender = json_object(payload.get("sender"), "the event's `sender`")
    login = _string(sender.get("login"), "the event's `sender.login`") or ""
    if login and not _LOGIN.fullmatch(login):
        raise UsageError(f"the event's `sender.login` is not a GitHub login: {_shown(login)}", hint=EVENT_HINT)
    sender_type = _string(sender.get("type"), "the event's `sender.type`") or "User"
    if event_name == "issues":
        return _issues_event(payload, login, sender_type)
    if event_name == "workflow_dispatch":
        inputs = _dispatch_inputs(json_object(payload.get("inputs"), "the `workflow_dispatch` event's `inputs`"))
        return Trigger("dispatch", login, sender_type, issue=inputs.issue, inputs=inputs)
    if event_name in ("pull_request", "pull_request_target"):
        return _pull_request_event(payload, login, sender_type)
    if event_name == "issue_comment":
        return _comment_event(payload, login, sender_type)
    if event_name == "pull_request_review":
        return _review_event(payload, login, sender_type)
    if event_name == "pull_request_review_comment":
        return _review_comment_event(payload, login, sender_type)
    return Trigger("ignored", login, sender_type, reason=f"rally-gh does not act on `{event_name}` events")


def _issues_event(payload: Mapping[str, Any], login: str, sender_type: str) -> Trigger:
    action = payload.get("action")
    issue, _ = issue_fields(payload)
    label = _string(json_object(payload.get("label"), "the `issues` event's `label`").get("name"),
                    "the `issues` event's `label.name`")
    if action != "labeled":
        return Trigger("ignored", login, sender_type, issue=issue, label=label,
                       reason=f"issue event {_code(action)}: only adding the `{START_LABEL}` label starts a run")
    if label != START_LABEL:
        # Includes the labels rally-gh sets itself (rally:running, ...): they must not loop.
        return Trigger("ignored", login, sender_type, issue=issue, label=label,
                       reason=f"label {_code(label)} added: only `{START_LABEL}` starts a run")
    if issue is None:
        raise UsageError("the `issues` event has no issue number")
    return Trigger("issue-labeled", login, sender_type, issue=issue, label=label)


def _comment_event(payload: Mapping[str, Any], login: str, sender_type: str) -> Trigger:
    """A comment created on an issue or pull request; edits and deletions are not commands
    (an edit must not replay a command that was already answered)."""
    action = payload.get("action")
    issue, _ = issue_fields(payload)
    if action != "created":
        return Trigger("ignored", login, sender_type, issue=issue,
                       reason=f"comment event {_code(action)}: only a new comment can give a `/rally` command")
    found = json_object(payload.get("comment"), "the `issue_comment` event's `comment`")
    number = found.get("id")
    if issue is None or type(number) is not int or not 1 <= number <= 2**63 - 1:
        raise UsageError("the `issue_comment` event has no issue number or comment id", hint=EVENT_HINT)
    body = _string(found.get("body"), "the `issue_comment` event's `comment.body`", limit=BODY_LIMIT) or ""
    on_pull = "pull_request" in json_object(payload.get("issue"), "the event's `issue`")
    return Trigger("comment", login, sender_type, issue=issue,
                   comment=CommentRef(CommentId(number), issue, body, on_pull))


def _review_event(payload: Mapping[str, Any], login: str, sender_type: str) -> Trigger:
    action = payload.get("action")
    if action != "submitted":
        return Trigger("ignored", login, sender_type,
                       reason=f"review event {_code(action)}: only a submitted review is routed")
    review = json_object(payload.get("review"), "the `pull_request_review` event's `review`")
    review_id = review.get("id")
    if type(review_id) is not int or review_id < 1:
        raise UsageError("the `pull_request_review` event has no review id", hint=EVENT_HINT)
    state = (_string(review.get("state"), "the `pull_request_review` event's `review.state`") or "").lower()
    body = _string(review.get("body"), "the `pull_request_review` event's `review.body`", limit=BODY_LIMIT) or ""
    pull, head_ref, head_repo = _reviewed_pull(payload, "pull_request_review")
    return Trigger("review", login, sender_type, issue=IssueNumber(pull),
                   review=ReviewRef(review_id, pull, head_ref, state, body, head_repo))


def _review_comment_event(payload: Mapping[str, Any], login: str, sender_type: str) -> Trigger:
    """An inline comment created on a pull request: taken as its review (``pull_request_review_id``), whose
    state and text are read from the API when it is routed. GitHub sends a submitted review's event and
    one for each of its comments: all of them name the same review, which is taken once, by whichever
    arrives first (``review.route_review``)."""
    action = payload.get("action")
    if action != "created":
        return Trigger("ignored", login, sender_type,
                       reason=f"review comment event {_code(action)}: only a new comment's review is routed")
    comment = json_object(payload.get("comment"), "the `pull_request_review_comment` event's `comment`")
    comment_id, review_id = comment.get("id"), comment.get("pull_request_review_id")
    if type(comment_id) is not int or comment_id < 1 or type(review_id) is not int or review_id < 1:
        raise UsageError("the `pull_request_review_comment` event has no comment id or review id", hint=EVENT_HINT)
    pull, head_ref, head_repo = _reviewed_pull(payload, "pull_request_review_comment")
    return Trigger("review", login, sender_type, issue=IssueNumber(pull),
                   review=ReviewRef(review_id, pull, head_ref, "", "", head_repo, via_comment=comment_id))


def _reviewed_pull(payload: Mapping[str, Any], event: str) -> tuple[PullNumber, str, str]:
    """The number, head branch and head repository (empty for a deleted fork) of the pull request a
    review's event, or its comment's, names."""
    pull = json_object(payload.get("pull_request"), f"the `{event}` event's `pull_request`")
    head = json_object(pull.get("head"), f"the `{event}` event's `pull_request.head`")
    number = pull.get("number")
    if type(number) is not int or not 1 <= number <= MAX_NUMBER:
        raise UsageError(f"the `{event}` event has no pull request number", hint=EVENT_HINT)
    where = f"the `{event}` event's `pull_request.head.ref`"
    head_ref = branch_name(_string(head.get("ref"), where) or "", where)
    head_repo = _string(json_object(head.get("repo"), f"the `{event}` event's `pull_request.head.repo`")
                        .get("full_name"), f"the `{event}` event's `pull_request.head.repo.full_name`")
    return PullNumber(number), head_ref, head_repo or ""


def issue_fields(payload: Mapping[str, Any]) -> tuple[IssueNumber | None, str | None]:
    """The number and text (title and body) of the issue an event carries, each checked."""
    found = json_object(payload.get("issue"), "the event's `issue`")
    number = found.get("number")
    if number is not None and (type(number) is not int or not 1 <= number <= MAX_NUMBER):
        raise UsageError(f"the event's `issue.number` must be a whole number from 1, got {_shown(number)}",
                         hint=EVENT_HINT)
    parts = (_string(found.get(key), f"the event's `issue.{key}`", limit=BODY_LIMIT) for key in ("title", "body"))
    text = "\n\n".join(part or "" for part in parts).strip() or None
    return (None if number is None else IssueNumber(number)), text


def branch_name(value: str, where: str) -> str:
    """``value`` if git could name a branch so (``git check-ref-format --branch``'s rules, roughly):
    a branch name is shown to people and resolved as a revision, so it must not smuggle
    control characters or revision syntax."""
    if (not value or len(value) > 255 or _NOT_IN_BRANCH.search(value) or ".." in value or "@{" in value
            or "//" in value or value.startswith(("-", "/", ".")) or value.endswith(("/", ".", ".lock"))
            or "/." in value):
        raise UsageError(f"{where} is not a branch name git allows: {_shown(value)}", hint=EVENT_HINT)
    return value


def json_object(value: Any, where: str) -> Mapping[str, Any]:
    """A JSON object of an event's payload; {} when it is absent or null."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a JSON object, got {_shown(value)}", hint=EVENT_HINT)
    return value


def _string(value: Any, where: str, *, limit: int = 1024) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        what = f"{len(value):,} characters" if isinstance(value, str) else _shown(value)
        raise UsageError(f"{where} must be text of at most {limit:,} characters, got {what}", hint=EVENT_HINT)
    return value


def _code(value: Any) -> str:
    """A value from the payload as inline code in a log line or comment: one line, no backtick
    to break out of it, no control character, at most 60 characters."""
    text = "".join(c if c.isprintable() and c != "`" else "?" for c in str(value))
    return f"`{text if len(text) <= 60 else text[:57] + '...'}`"


def _shown(value: Any) -> str:
    """A hostile value, short and on one line, for a message."""
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _dispatch_inputs(raw: Mapping[str, Any]) -> DispatchInputs:
    issue_text = str(raw.get("issue", "")).strip()
    issue: IssueNumber | None = None
    if issue_text:
        if not re.fullmatch(r"#?[0-9]{1,10}", issue_text) or int(issue_text.lstrip("#")) < 1:
            raise UsageError(f"workflow_dispatch input `issue` must be an issue number (an integer), got {issue_text!r}",
                             hint="enter the number only, e.g. 42")
        issue = IssueNumber(int(issue_text.lstrip("#")))
    names = teammate_names(str(raw.get("teammates", "")), "workflow_dispatch input `teammates`")
    return DispatchInputs(issue=issue, teammates=names, dry_run=_flag(raw.get("dry-run", False)),
                          max_parallel=positive_number(raw.get("max-parallel"), "workflow_dispatch input `max-parallel`"))


def teammate_names(text: str, where: str) -> tuple[str, ...]:
    """The teammates an input names (separated by commas or spaces), each a valid name; ``where`` is the input."""
    names = tuple(n for n in re.split(r"[\s,]+", text.strip()) if n)
    for name in names:
        if not TEAMMATE_NAME.match(name):
            raise UsageError(f"{where}: {name!r} is not a teammate name",
                             hint="teammate names as in rally.yml, separated by commas or spaces")
    return names


def positive_number(value: Any, where: str) -> int | None:
    """A whole number from 1 that an input gives in ASCII digits; None when it is empty."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) < 1:
        raise UsageError(f"{where} must be a whole number from 1, got {text!r}")
    return int(text)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "false", "0", "no"):
        return False
    if text in ("true", "1", "yes"):
        return True
    raise UsageError(f"workflow_dispatch input `dry-run` must be true or false, got {value!r}")


def _pull_request_event(payload: Mapping[str, Any], login: str, sender_type: str) -> Trigger:
    pull = json_object(payload.get("pull_request"), "the `pull_request` event's `pull_request`")
    head = json_object(pull.get("head"), "the `pull_request` event's `pull_request.head`")
    base = json_object(pull.get("base"), "the `pull_request` event's `pull_request.base`")
    number = pull.get("number", payload.get("number"))
    if type(number) is not int or number < 1 or not head.get("sha") or not base.get("sha"):
        raise UsageError("the `pull_request` event has no pull request number, head or base commit")
    refs = [branch_name(_string(side.get("ref"), f"the `pull_request` event's `{name}.ref`") or "",
                        f"the `pull_request` event's `{name}.ref`") for name, side in (("head", head), ("base", base))]
    shas = [_string(side.get("sha"), f"the `pull_request` event's `{name}.sha`") or ""
            for name, side in (("head", head), ("base", base))]
    return Trigger("pull-request", login, sender_type, pull=PullRef(PullNumber(number), refs[0], shas[0], refs[1], shas[1]))


def authorize(trigger: Trigger, endpoint: GitHubEndpoint, bot_allowlist: Collection[str] = ()) -> Decision:
    """May this trigger's sender start a run? Any doubt refuses."""
    if trigger.kind == "ignored":
        return Decision(False, trigger.reason)
    if trigger.kind == "pull-request":
        return Decision(True, "the ownership check of a pull request only reads; anyone may trigger it")
    who = trigger.sender
    if not who:
        return Decision(False, "the event names no sender: refusing to start a run")
    if trigger.sender_type == "Bot" or who.endswith("[bot]"):
        # An app's bot has no collaborator permission to ask about: trust is explicit or absent.
        if who in bot_allowlist:
            return Decision(True, f"bot @{who} is on the allow-list")
        return Decision(False, f"@{who} is a bot; bots start runs only when allow-listed")
    try:
        permission = endpoint.permission(who)
    except Exception as err:  # noqa: BLE001 - fail closed on anything, not only GitHub's refusals
        return Decision(False, f"could not confirm @{who}'s permission ({err}): refusing to start a run")
    if permission in WRITE_PERMISSIONS:
        return Decision(True, f"@{who} has {permission} permission", permission)
    return Decision(False, f"@{who} has {permission} permission; starting a run needs write, maintain or admin",
                    permission)


def authorize_attempt(trigger: Trigger, endpoint: GitHubEndpoint, bot_allowlist: Collection[str] = (),
                      triggering_actor: str | None = None) -> Decision:
    """``authorize``, and on an attempt started by someone else than the sender
    (``GITHUB_TRIGGERING_ACTOR``: a re-run keeps the original event, sender included), that one too."""
    decision = authorize(trigger, endpoint, bot_allowlist)
    if not decision.allowed or not triggering_actor or triggering_actor == trigger.sender:
        return decision
    kind = "Bot" if triggering_actor.endswith("[bot]") else "User"
    again = authorize(replace(trigger, sender=triggering_actor, sender_type=kind), endpoint, bot_allowlist)
    if again.allowed:
        return decision
    return Decision(False, f"this attempt was started by @{triggering_actor}, not by @{trigger.sender} "
                           f"who sent the event: {again.reason}", again.permission)
