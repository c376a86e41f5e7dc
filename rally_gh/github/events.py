"""What started this job, and whether its sender may start a run.

``parse_event`` turns the Actions event (its name and JSON payload, which
``actions`` reads) into a ``Trigger``; ``authorize`` asks the API for
the sender's permission and fails closed. Event payloads are untrusted: their
text is read as data and validated here, never handed to a shell.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rally_gh.errors import UsageError
from rally_gh.limits import TEAMMATE_NAME
from rally_gh.github.endpoint import WRITE_PERMISSIONS, GitHubEndpoint, IssueNumber, PullNumber

START_LABEL = "rally:parallel"

TriggerKind = Literal["issue-labeled", "dispatch", "pull-request", "ignored"]


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

    @property
    def starts_run(self) -> bool:
        return self.kind in ("issue-labeled", "dispatch")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    permission: str | None = None


def parse_event(event_name: str, payload: Mapping[str, Any]) -> Trigger:
    sender = payload.get("sender") or {}
    login = str(sender.get("login") or "")
    sender_type = str(sender.get("type") or "User")
    if event_name == "issues":
        return _issues_event(payload, login, sender_type)
    if event_name == "workflow_dispatch":
        inputs = _dispatch_inputs(payload.get("inputs") or {})
        return Trigger("dispatch", login, sender_type, issue=inputs.issue, inputs=inputs)
    if event_name in ("pull_request", "pull_request_target"):
        return _pull_request_event(payload, login, sender_type)
    return Trigger("ignored", login, sender_type, reason=f"rally-gh does not act on `{event_name}` events")


def _issues_event(payload: Mapping[str, Any], login: str, sender_type: str) -> Trigger:
    action = payload.get("action")
    number = (payload.get("issue") or {}).get("number")
    issue = IssueNumber(number) if isinstance(number, int) else None
    label = (payload.get("label") or {}).get("name")
    if action != "labeled":
        return Trigger("ignored", login, sender_type, issue=issue, label=label,
                       reason=f"issue event `{action}`: only adding the `{START_LABEL}` label starts a run")
    if label != START_LABEL:
        # Includes the labels rally-gh sets itself (rally:running, ...): they must not loop.
        return Trigger("ignored", login, sender_type, issue=issue, label=label,
                       reason=f"label `{label}` added: only `{START_LABEL}` starts a run")
    if issue is None:
        raise UsageError("the `issues` event has no issue number")
    return Trigger("issue-labeled", login, sender_type, issue=issue, label=label)


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
    pull = payload.get("pull_request") or {}
    head, base = pull.get("head") or {}, pull.get("base") or {}
    number = pull.get("number", payload.get("number"))
    if not isinstance(number, int) or not head.get("sha") or not base.get("sha"):
        raise UsageError("the `pull_request` event has no pull request number, head or base commit")
    ref = PullRef(PullNumber(number), str(head.get("ref", "")), str(head["sha"]), str(base.get("ref", "")),
                  str(base["sha"]))
    return Trigger("pull-request", login, sender_type, pull=ref)


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
