"""The one reader of GitHub Actions' environment: what a job is told, read once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from github_testing import TEST_LIMITS
from rally_gh.errors import GitHubError, UsageError
from rally_gh.git import HttpCredentials, Remote
from rally_gh.github.actions import (
    ActionInputs,
    connect,
    github_of_run,
    is_workflow_variable,
    issue_of,
    read,
    read_event,
)
from rally_gh.github.fake import FakeGitHubServer


def test_a_job_in_actions_is_read_once_into_a_frozen_value(tmp_path: Path) -> None:
    env = {"GITHUB_ACTIONS": "true", "GH_TOKEN": "t", "GITHUB_REPOSITORY": "owner/repo",
           "GITHUB_SERVER_URL": "https://github.example", "GITHUB_RUN_ID": "42", "GITHUB_EVENT_NAME": "issues",
           "GITHUB_EVENT_PATH": str(tmp_path / "event.json"), "GITHUB_OUTPUT": str(tmp_path / "out"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"), "GITHUB_HEAD_REF": "feature",
           "GITHUB_BASE_REF": "main", "RALLY_BOT_ALLOWLIST": "a[bot], b[bot]", "RALLY_RUN_ID": "issue-7-42"}
    actions = read(env)
    assert actions.in_actions and actions.token == "t" and not actions.dropped_tokens
    assert (actions.event_name, actions.event_path) == ("issues", tmp_path / "event.json")
    assert (actions.output_file, actions.summary_file) == (tmp_path / "out", tmp_path / "summary")
    assert (actions.head_ref, actions.base_ref) == ("feature", "main")
    assert actions.job_url == "https://github.example/owner/repo/actions/runs/42"
    assert actions.inputs.bot_allowlist == ("a[bot]", "b[bot]") and actions.inputs.split_run_id == "issue-7-42"
    # The token is in the context alone: what children start from holds none.
    assert dict(actions.environ) == {k: v for k, v in env.items() if k != "GH_TOKEN"}
    assert actions.local_token_note() is None
    env["GITHUB_RUN_ID"] = "changed later"
    assert actions.workflow_run_id == "42" and actions.environ["GITHUB_RUN_ID"] == "42"  # a copy, not a view
    with pytest.raises(AttributeError):
        actions.token = "other"  # type: ignore[misc]


def test_a_run_drops_a_local_shell_s_tokens_and_says_so(tmp_path: Path) -> None:
    shell = {"GITHUB_TOKEN": "a", "GH_TOKEN": "b", "PATH": "/bin"}
    assert read(shell).token == "a" and read(shell).local_token_note() is None  # what the environment holds
    local = read(shell).for_run()
    assert local.token is None and dict(local.environ) == {"PATH": "/bin"}
    assert local.local_token_note() == (
        "rally-gh: note: GITHUB_TOKEN and GH_TOKEN are set, but this is a local run (not GitHub Actions, "
        "no --event): the tokens are not used and not passed on\n")
    given = read({"GH_TOKEN": "b"}, event_path=tmp_path / "event.json").for_run()  # an explicit --event: GitHub
    assert given.token == "b" and given.event_path == tmp_path / "event.json" and given.local_token_note() is None
    assert read({"GH_TOKEN": "b", "GITHUB_ACTIONS": "true"}).for_run().token == "b"


def test_the_remote_a_run_publishes_to() -> None:
    assert read({"GITHUB_TOKEN": "t"}).publish_to == Remote("origin", HttpCredentials("t"))
    assert read({"RALLY_REMOTE": "fork"}).publish_to == Remote("fork") == read({"RALLY_REMOTE": "fork"}).local_remote
    assert read({"GITHUB_TOKEN": "t"}).local_remote is None
    assert "s3cr3t" not in repr(read({"GITHUB_TOKEN": "s3cr3t"}).publish_to)
    assert (read({}).remote, read({}).publish_remote) == (None, "origin")
    assert (read({"RALLY_REMOTE": ""}).remote, read({"RALLY_REMOTE": ""}).publish_remote) == (None, "origin")
    assert (read({"RALLY_REMOTE": "fork"}).remote, read({"RALLY_REMOTE": "fork"}).publish_remote) == ("fork", "fork")


def test_the_action_s_inputs_are_checked_when_asked_for() -> None:
    assert ActionInputs(teammates_text="api, web\nend").teammates() == ("api", "web", "end")
    assert ActionInputs(max_parallel_text=" 3 ").max_parallel() == 3 and ActionInputs().max_parallel() is None
    with pytest.raises(UsageError, match="input `teammates`: '../x' is not a teammate name"):
        ActionInputs(teammates_text="api ../x").teammates()
    with pytest.raises(UsageError, match="`max-parallel` must be a whole number from 1, got '0'"):
        ActionInputs(max_parallel_text="0").max_parallel()


def test_the_event_file_is_parsed_once_for_its_issue_and_its_trigger(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"action": "labeled", "label": {"name": "rally:parallel"},
                                "sender": {"login": "alice", "type": "User"},
                                "issue": {"number": 7, "title": "Orders", "body": "Both halves."}}))
    event = read_event(read({"GITHUB_EVENT_NAME": "issues", "GITHUB_EVENT_PATH": str(path)}))
    assert event is not None
    path.unlink()  # nothing reads the file again
    assert issue_of(event, None) == (7, "Orders\n\nBoth halves.") and issue_of(event, 9) == (9, "Orders\n\nBoth halves.")
    assert event.trigger().kind == "issue-labeled" and event.trigger().issue == 7
    assert read_event(read({})) is None and issue_of(None, 3) == (3, None)


def test_a_broken_event_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text("{not json")
    with pytest.raises(UsageError, match=r"--event .*event.json: not a readable JSON event"):
        read_event(read({}, event_path=path))
    path.write_text("[1]")
    event = read_event(read({"GITHUB_EVENT_NAME": "issues"}, event_path=path))
    assert event is not None and issue_of(event, None) == (None, None)
    with pytest.raises(UsageError, match="the event payload is not a JSON object"):
        event.trigger()


def test_a_hostile_event_file_or_environment_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"issue": {"number": "7/../../x", "title": "t"}}))
    event = read_event(read({"GITHUB_EVENT_NAME": "issue_comment"}, event_path=path))
    with pytest.raises(UsageError, match=r"`issue.number` must be a whole number from 1, got \"7/\.\./\.\./x\""):
        issue_of(event, None)  # before it could name a run or a branch
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UsageError, match="not a readable JSON event"):
        read_event(read({}, event_path=path))
    with path.open("wb") as fh:
        fh.truncate(26 * 1024 * 1024)  # sparse: the size is checked before anything is read
    with pytest.raises(UsageError, match="larger than any event GitHub sends"):
        read_event(read({}, event_path=path))
    for name in ("GITHUB_HEAD_REF", "GITHUB_BASE_REF"):
        with pytest.raises(UsageError, match=rf"{name} is not a branch name git allows: \"rally/r1/api\\u001b\[2J\""):
            read({name: "rally/r1/api\x1b[2J"})
    fine = read({"GITHUB_HEAD_REF": "rally/r1/api", "GITHUB_BASE_REF": "release/1.x"})
    assert (fine.head_ref, fine.base_ref) == ("rally/r1/api", "release/1.x")


def test_a_hostile_event_is_refused_before_any_request(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"action": "labeled", "sender": "alice"}))
    actions = read({"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "owner/repo",
                    "GITHUB_API_URL": "http://127.0.0.1:9", "GITHUB_EVENT_NAME": "issues"}, event_path=path)
    with pytest.raises(UsageError, match="the event's `sender` must be a JSON object"):
        github_of_run(actions, read_event(actions))  # port 9 answers nothing: no client was built


def test_a_github_run_needs_a_token_and_an_event(tmp_path: Path) -> None:
    assert github_of_run(read({}), None) is None  # local: no API calls
    with pytest.raises(UsageError, match=r"needs an event.*found GITHUB_EVENT_NAME=\(unset\)"):
        github_of_run(read({"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "t"}), None)


def test_the_endpoint_is_built_from_the_job_s_token_repository_and_api(fake_github: FakeGitHubServer) -> None:
    actions = read({"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": fake_github.token, "GITHUB_REPOSITORY": "owner/repo",
                    "GITHUB_API_URL": fake_github.api_url})
    assert connect(actions, limits=TEST_LIMITS).default_branch() == "main"
    with pytest.raises(GitHubError, match="no GitHub token"):
        connect(read({"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "owner/repo"}))


def test_the_bots_whose_comments_are_ours_are_named_by_the_action_s_input() -> None:
    assert read({}).inputs.bot_logins == ("github-actions[bot]",)
    both = read({"RALLY_BOT_LOGIN": "rally-app[bot], github-actions[bot]"}).inputs.bot_logins
    assert both == ("rally-app[bot]", "github-actions[bot]")
    with pytest.raises(UsageError, match=r"`bot-login`: 'alice' is not a bot's login"):
        read({"RALLY_BOT_LOGIN": "alice"})


def test_the_seconds_between_writes_can_be_set_and_a_bad_value_is_refused() -> None:
    assert read({}).write_interval_s is None  # GitHub's advice: RequestLimits' one second
    assert read({"RALLY_GITHUB_WRITE_INTERVAL": "0"}).write_interval_s == 0
    assert read({"RALLY_GITHUB_WRITE_INTERVAL": " 2.5 "}).write_interval_s == 2.5
    for bad in ("soon", "-1", "3600", "nan"):
        with pytest.raises(UsageError, match=r"^RALLY_GITHUB_WRITE_INTERVAL=.* is not a number of seconds from 0 to 60"):
            read({"RALLY_GITHUB_WRITE_INTERVAL": bad})


def test_workflow_variables_are_named_here() -> None:
    assert is_workflow_variable("GITHUB_OUTPUT") and is_workflow_variable("ACTIONS_RUNTIME_TOKEN")
    assert not is_workflow_variable("GITHUB_SHA") and not is_workflow_variable("PATH")
