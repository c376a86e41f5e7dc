from __future__ import annotations

from typing import Any

import pytest

from github_testing import TEST_LIMITS
from rally_gh.errors import UsageError
from rally_gh.github.endpoint import IssueNumber
from rally_gh.github.events import DispatchInputs, Trigger, authorize, parse_event
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.github.real import RealGitHub


def labeled(label: str, *, action: str = "labeled", sender: str = "alice", sender_type: str = "User") -> dict[str, Any]:
    return {"action": action, "label": {"name": label}, "issue": {"number": 7, "title": "x; rm -rf /"},
            "sender": {"login": sender, "type": sender_type}}


def test_only_adding_rally_parallel_starts_a_run() -> None:
    trigger = parse_event("issues", labeled("rally:parallel"))
    assert trigger == Trigger("issue-labeled", "alice", "User", issue=IssueNumber(7), label="rally:parallel")
    assert trigger.starts_run


@pytest.mark.parametrize("payload, reason", [
    (labeled("bug"), "label `bug` added: only `rally:parallel` starts a run"),
    (labeled("rally:running"), "label `rally:running` added"),
    (labeled("rally:parallel", action="unlabeled"), "issue event `unlabeled`"),
    (labeled("rally:parallel", action="edited"), "issue event `edited`"),
])
def test_other_issue_events_are_ignored_with_a_reason(payload: dict[str, Any], reason: str) -> None:
    trigger = parse_event("issues", payload)
    assert trigger.kind == "ignored" and not trigger.starts_run
    assert reason in trigger.reason


def test_unknown_events_are_ignored() -> None:
    assert parse_event("push", {"sender": {"login": "a"}}).kind == "ignored"


def test_dispatch_inputs() -> None:
    trigger = parse_event("workflow_dispatch", {
        "inputs": {"issue": "12", "teammates": "api, web", "dry-run": "true", "max-parallel": "3"},
        "sender": {"login": "alice", "type": "User"}})
    assert trigger.kind == "dispatch" and trigger.issue == 12
    assert trigger.inputs == DispatchInputs(IssueNumber(12), ("api", "web"), True, 3)
    bare = parse_event("workflow_dispatch", {"inputs": {"dry-run": False}, "sender": {"login": "a"}})
    assert bare.inputs == DispatchInputs(None, (), False, None)


@pytest.mark.parametrize("inputs, message", [
    ({"issue": "twelve"}, "input `issue` must be an issue number (an integer), got 'twelve'"),
    ({"issue": "12; echo"}, "must be an issue number"),
    ({"issue": "0"}, "must be an issue number"),
    ({"teammates": "api,$(id)"}, "'$(id)' is not a teammate name"),
    ({"dry-run": "maybe"}, "`dry-run` must be true or false"),
    ({"max-parallel": "-1"}, "`max-parallel` must be a whole number"),
    ({"max-parallel": "\u0663"}, "`max-parallel` must be a whole number"),  # a digit, but not ASCII
    ({"max-parallel": "99999999999"}, "`max-parallel` must be a whole number"),
])
def test_bad_dispatch_inputs_are_refused_clearly(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_event("workflow_dispatch", {"inputs": inputs, "sender": {"login": "alice"}})
    assert message in str(caught.value)


def test_pull_request_event_is_the_ownership_check() -> None:
    trigger = parse_event("pull_request", {
        "action": "synchronize", "number": 500, "sender": {"login": "mallory", "type": "User"},
        "pull_request": {"number": 500, "head": {"ref": "feature", "sha": "a" * 40},
                         "base": {"ref": "main", "sha": "b" * 40}}})
    assert trigger.kind == "pull-request" and not trigger.starts_run
    assert trigger.pull is not None and (trigger.pull.number, trigger.pull.head_sha) == (500, "a" * 40)


_LABELED = {"action": "labeled", "label": {"name": "rally:parallel"}, "sender": {"login": "alice", "type": "User"}}
_PULL = {"number": 500, "head": {"ref": "feature", "sha": "a" * 40}, "base": {"ref": "main", "sha": "b" * 40}}


@pytest.mark.parametrize("name, payload, message", [
    ("issues", {**_LABELED, "issue": {"number": "7; rm -rf /"}}, "`issue.number` must be a whole number from 1"),
    ("issues", {**_LABELED, "issue": {"number": True}}, "`issue.number` must be a whole number from 1, got true"),
    ("issues", {**_LABELED, "issue": {"number": 7.0}}, "`issue.number` must be a whole number from 1, got 7.0"),
    ("issues", {**_LABELED, "issue": {"number": -3}}, "`issue.number` must be a whole number from 1, got -3"),
    ("issues", {**_LABELED, "issue": {"number": 10 ** 30}}, "`issue.number` must be a whole number from 1, got 1000"),
    ("issues", {**_LABELED, "issue": ["not", "an", "object"]}, "the event's `issue` must be a JSON object"),
    ("issues", {**_LABELED, "issue": {"number": 7, "title": {"nested": 1}}}, "`issue.title` must be text"),
    ("issues", {**_LABELED, "issue": {"number": 7, "body": "x" * 70_000}},
     "`issue.body` must be text of at most 65,536 characters, got 70,000 characters"),
    ("issues", {**_LABELED, "label": "rally:parallel", "issue": {"number": 7}}, "`label` must be a JSON object"),
    ("issues", {**_LABELED, "label": {"name": ["rally:parallel"]}, "issue": {"number": 7}}, "`label.name` must be text"),
    ("issues", {**_LABELED, "sender": "alice", "issue": {"number": 7}}, "the event's `sender` must be a JSON object"),
    ("issues", {**_LABELED, "sender": {"login": 42}, "issue": {"number": 7}}, "`sender.login` must be text"),
    ("workflow_dispatch", {"inputs": ["issue", 7]}, "`inputs` must be a JSON object"),
    ("pull_request", {"pull_request": "500"}, "`pull_request` must be a JSON object"),
    ("pull_request", {"pull_request": {**_PULL, "head": "feature"}}, "`pull_request.head` must be a JSON object"),
    ("pull_request", {"pull_request": {**_PULL, "number": True}}, "has no pull request number"),
    ("pull_request", {"pull_request": {**_PULL, "head": {"ref": "evil\n\x1b[31mbranch", "sha": "a" * 40}}},
     'is not a branch name git allows: "evil\\n\\u001b[31mbranch"'),
    ("pull_request", {"pull_request": {**_PULL, "base": {"ref": "main@{1}", "sha": "b" * 40}}},
     "`base.ref` is not a branch name git allows"),
])
def test_a_hostile_event_payload_is_refused_with_a_message(name: str, payload: dict[str, Any], message: str) -> None:
    """GitHub writes none of these; a forged or hand-made event file ends in a message, never a traceback,
    and nothing hostile reaches a run id, a branch name or a message unshown (control characters escaped)."""
    with pytest.raises(UsageError) as caught:
        parse_event(name, payload)
    assert message in str(caught.value)
    assert "--event FILE" in (caught.value.hint or "") or "no pull request number" in str(caught.value)
    assert not any(ord(c) < 32 and c != "\n" for c in str(caught.value))


@pytest.fixture
def endpoint(fake_github: FakeGitHubServer) -> RealGitHub:
    for user, level in [("ada", "admin"), ("mo", "maintain"), ("wu", "write"), ("tri", "triage"), ("rae", "read")]:
        fake_github.set_permission(user, level)
    fake_github.set_permission("helper[bot]", "write", user_type="Bot")
    return RealGitHub(fake_github.token, "owner/repo", base_url=fake_github.api_url, limits=TEST_LIMITS)


@pytest.mark.parametrize("user, allowed", [("ada", True), ("mo", True), ("wu", True), ("tri", False),
                                           ("rae", False), ("stranger", False)])
def test_only_write_maintain_and_admin_may_start_a_run(endpoint: RealGitHub, user: str, allowed: bool) -> None:
    decision = authorize(parse_event("issues", labeled("rally:parallel", sender=user)), endpoint)
    assert decision.allowed is allowed
    if user == "rae":
        assert decision.reason == "@rae has read permission; starting a run needs write, maintain or admin"


def test_an_api_error_refuses(endpoint: RealGitHub, fake_github: FakeGitHubServer) -> None:
    fake_github.inject("GET", r"/permission$", 500, times=10)
    decision = authorize(parse_event("issues", labeled("rally:parallel", sender="ada")), endpoint)
    assert not decision.allowed
    assert "could not confirm @ada's permission" in decision.reason


def test_bots_only_when_allow_listed(endpoint: RealGitHub) -> None:
    trigger = parse_event("issues", labeled("rally:parallel", sender="helper[bot]", sender_type="Bot"))
    assert not authorize(trigger, endpoint).allowed
    assert authorize(trigger, endpoint, bot_allowlist={"helper[bot]"}).allowed


def test_ignored_and_anonymous_triggers_are_refused(endpoint: RealGitHub) -> None:
    assert not authorize(parse_event("issues", labeled("bug", sender="ada")), endpoint).allowed
    assert not authorize(parse_event("issues", {**labeled("rally:parallel"), "sender": None}), endpoint).allowed


def test_a_label_or_action_that_would_break_out_of_a_log_line_is_shown_harmless() -> None:
    payload = {"action": "labeled", "sender": {"login": "alice", "type": "User"},
               "label": {"name": "x`\n::error::pwned"}, "issue": {"number": 7}}
    reason = parse_event("issues", payload).reason
    assert "\n" not in reason and reason.startswith("label `x??::error::pwned` added")


@pytest.mark.parametrize("login", ["alice bob", "-alice", "a" * 40, "alice\n::error::x", "../../orgs"])
def test_a_sender_login_github_would_not_give_is_refused(login: str) -> None:
    payload = {"action": "labeled", "sender": {"login": login, "type": "User"},
               "label": {"name": "rally:parallel"}, "issue": {"number": 7}}
    with pytest.raises(UsageError, match="is not a GitHub login"):
        parse_event("issues", payload)


@pytest.mark.parametrize("login", ["alice", "a-b-c", "A1", "renovate[bot]", "github-actions[bot]", "a" * 39])
def test_real_logins_and_bots_are_taken(login: str) -> None:
    payload = {"action": "labeled", "sender": {"login": login, "type": "User"},
               "label": {"name": "rally:parallel"}, "issue": {"number": 7}}
    assert parse_event("issues", payload).sender == login
