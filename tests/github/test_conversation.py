"""``/rally`` commands in comments (rally_gh/github/conversation.py): parsed as data, admitted as the
label is, acknowledged, answered once however often the event is delivered; through ``rally-gh run``
in Actions against the fake GitHub and the real PyGithub client."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rally_gh.commands import run as run_cmd
from rally_gh.errors import UsageError
from rally_gh.github.actions import read
from rally_gh.github.conversation import parse_command, reply_marker, workflow_run_of
from rally_gh.github.endpoint import CommentId, run_marker
from rally_gh.github.events import parse_event
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.testing import SHOP_FILES, git, init_repo

# --- Parsing ------------------------------------------------------------------


@pytest.mark.parametrize(("body", "verb", "names", "problem"), [
    ("/rally status", "status", (), ""),
    ("thanks!\n\n/rally retry api web", "retry", ("api", "web"), ""),
    ("/rally   DROP   api", "drop", ("api",), ""),
    ("/rally approve", "approve", (), ""),
    ("/rally help", "help", (), ""),
    ("/rally", "help", (), "`/rally` needs a command"),
    ("/rally frobnicate", "help", (), "`frobnicate` is not a `/rally` command"),
    ("/rally retry", "retry", (), "`/rally retry` needs the teammates to retry"),
    ("/rally drop api web", "drop", ("api", "web"), "`/rally drop` takes one teammate a comment"),
    ("/rally status now", "status", ("now",), "`/rally status` takes no names"),
    ("/rally retry ../etc", "retry", ("../etc",), "`../etc` is not a teammate name"),
])
def test_a_comment_gives_one_command_read_as_data(body: str, verb: str, names: tuple[str, ...],
                                                  problem: str) -> None:
    command = parse_command(body)
    assert command is not None
    assert (command.verb, command.names, command.problem) == (verb, names, problem)


@pytest.mark.parametrize("body", [
    "no command here",
    "> /rally cancel\nquoting someone is not commanding",
    "```\n/rally cancel\n```\nan example in a code block is not a command",
    "please run /rally status",  # only a line that starts with it
])
def test_quotes_code_blocks_and_mid_line_mentions_are_not_commands(body: str) -> None:
    assert parse_command(body) is None


def test_only_the_first_command_of_a_comment_counts() -> None:
    command = parse_command("/rally status\n/rally cancel")
    assert command is not None and command.verb == "status"


def test_a_hostile_word_is_quoted_back_harmless() -> None:
    command = parse_command("/rally `@org/team`\u202e")
    assert command is not None
    # No backtick to break out of the code span, no right-to-left override, no mention that pings.
    assert command.problem == "`?@\u2060org/team??` is not a `/rally` command"


def test_a_run_id_names_its_workflow_run() -> None:
    assert workflow_run_of("issue-7-4207") == 4207
    assert workflow_run_of("20261202-101500") is None


# --- Events -------------------------------------------------------------------


def _payload(issue: int, comment_id: int, body: str, *, sender: str = "alice", action: str = "created",
             sender_type: str = "User") -> dict[str, object]:
    return {"action": action, "sender": {"login": sender, "type": sender_type},
            "issue": {"number": issue, "title": "Pick", "body": "", "labels": []},
            "comment": {"id": comment_id, "body": body, "user": {"login": sender}},
            "repository": {"default_branch": "main", "full_name": "owner/repo"}}


def test_a_new_comment_is_a_comment_trigger_and_an_edit_is_ignored() -> None:
    trigger = parse_event("issue_comment", _payload(7, 100, "/rally status"))
    assert trigger.kind == "comment" and trigger.comment is not None
    assert (trigger.comment.id, trigger.comment.issue, trigger.comment.body) == (100, 7, "/rally status")
    edited = parse_event("issue_comment", _payload(7, 100, "/rally cancel", action="edited"))
    assert edited.kind == "ignored" and "only a new comment" in edited.reason


def test_a_comment_event_without_a_comment_id_is_refused_with_a_message() -> None:
    payload = _payload(7, 100, "/rally status")
    payload["comment"] = {"id": "100; rm -rf /", "body": "/rally status"}
    with pytest.raises(UsageError, match="no issue number or comment id"):
        parse_event("issue_comment", payload)


# --- Through `rally-gh run` in Actions ----------------------------------------


def _run(fake: FakeGitHubServer, tmp_path: Path, repo: Path, payload: dict[str, object]) -> tuple[int, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload))
    env = {"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "test-token", "GITHUB_REPOSITORY": "owner/repo",
           "GITHUB_API_URL": fake.api_url, "GITHUB_EVENT_NAME": "issue_comment", "GITHUB_EVENT_PATH": str(event),
           "GITHUB_RUN_ID": "5151", "PATH": "/usr/bin:/bin"}
    out = io.StringIO()
    code = run_cmd.run(repo, read(env), out, progress_stream=io.StringIO())
    return code, out.getvalue()


def _replies(fake: FakeGitHubServer, comment_id: int) -> list[str]:
    return [c["body"] for c in fake.comments.values() if c["body"].startswith(reply_marker(CommentId(comment_id)))]


def _reactions(fake: FakeGitHubServer, comment_id: int) -> list[str]:
    return [r["content"] for r in fake.reactions if r.get("comment") == comment_id]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", SHOP_FILES)


def test_help_is_answered_once_however_often_the_event_is_delivered(
        fake_github: FakeGitHubServer, tmp_path: Path, repo: Path) -> None:
    fake_github.set_permission("alice", "write")
    issue = fake_github.create_issue("Pick", "do it", user="alice")
    said = fake_github.add_comment(issue, "/rally help", user="alice")
    for _ in range(3):  # redelivered, or the workflow re-run
        code, out = _run(fake_github, tmp_path, repo, _payload(issue, said, "/rally help"))
        assert code == 0, out
    (reply,) = _replies(fake_github, said)
    assert "/rally retry NAME..." in reply and "/rally cancel" in reply
    assert _reactions(fake_github, said) == ["eyes"]
    assert not (repo / ".git" / "rally" / "runs").exists()  # nothing ran


def test_a_reader_is_refused_with_a_reply_and_nothing_is_done(
        fake_github: FakeGitHubServer, tmp_path: Path, repo: Path) -> None:
    fake_github.set_permission("mallory", "read")
    issue = fake_github.create_issue("Pick", "do it")
    fake_github.add_comment(issue, run_marker("issue-1-4207") + "\nprogress", user=fake_github.actor)
    fake_github.add_workflow_run(4207)
    said = fake_github.add_comment(issue, "/rally cancel", user="mallory")
    code, out = _run(fake_github, tmp_path, repo, _payload(issue, said, "/rally cancel", sender="mallory"))
    assert code == 1 and "not acted on" in out
    (reply,) = _replies(fake_github, said)
    assert "@\u2060mallory" not in reply and "refused" in reply and "read permission" in reply
    assert _reactions(fake_github, said) == ["confused"]
    assert fake_github.workflow_runs[4207]["status"] == "in_progress"  # not cancelled


def test_a_bot_commands_only_when_allow_listed(fake_github: FakeGitHubServer, tmp_path: Path, repo: Path) -> None:
    issue = fake_github.create_issue("Pick", "do it")
    said = fake_github.add_comment(issue, "/rally help", user="helper[bot]")
    code, _ = _run(fake_github, tmp_path, repo,
                   _payload(issue, said, "/rally help", sender="helper[bot]", sender_type="Bot"))
    assert code == 1
    (reply,) = _replies(fake_github, said)
    assert "bots start runs only when allow-listed" in reply


def test_cancel_cancels_the_runs_workflow_run(fake_github: FakeGitHubServer, tmp_path: Path, repo: Path) -> None:
    fake_github.set_permission("alice", "write")
    issue = fake_github.create_issue("Pick", "do it")
    fake_github.add_comment(issue, run_marker(f"issue-{issue}-4207") + "\nrunning", user=fake_github.actor)
    fake_github.add_workflow_run(4207)
    said = fake_github.add_comment(issue, "/rally cancel", user="alice")
    code, out = _run(fake_github, tmp_path, repo, _payload(issue, said, "/rally cancel"))
    assert code == 0, out
    assert fake_github.workflow_runs[4207]["conclusion"] == "cancelled"
    (reply,) = _replies(fake_github, said)
    assert "Cancelling workflow run [4207]" in reply
    # Delivered again: the run already ended, and the one reply says so.
    code, _ = _run(fake_github, tmp_path, repo, _payload(issue, said, "/rally cancel"))
    (reply,) = _replies(fake_github, said)
    assert code == 0 and "already ended (cancelled)" in reply


def test_status_names_the_workflow_run_and_its_state(fake_github: FakeGitHubServer, tmp_path: Path,
                                                     repo: Path) -> None:
    fake_github.set_permission("alice", "maintain")
    issue = fake_github.create_issue("Pick", "do it")
    fake_github.add_comment(issue, run_marker(f"issue-{issue}-4207") + "\nrunning", user=fake_github.actor)
    fake_github.add_workflow_run(4207, "completed", "success")
    said = fake_github.add_comment(issue, "/rally status", user="alice")
    code, _ = _run(fake_github, tmp_path, repo, _payload(issue, said, "/rally status"))
    (reply,) = _replies(fake_github, said)
    assert code == 0 and f"Run `issue-{issue}-4207`: workflow run [4207]" in reply and "completed, success" in reply


def test_a_command_on_an_issue_without_a_run_says_how_to_start_one(
        fake_github: FakeGitHubServer, tmp_path: Path, repo: Path) -> None:
    fake_github.set_permission("alice", "write")
    issue = fake_github.create_issue("Pick", "do it")
    said = fake_github.add_comment(issue, "/rally status", user="alice")
    code, _ = _run(fake_github, tmp_path, repo, _payload(issue, said, "/rally status"))
    (reply,) = _replies(fake_github, said)
    assert code == 0 and "no rally-gh run" in reply and "rally:parallel" in reply


def test_a_command_on_a_forks_pull_request_from_a_branch_named_as_the_runs_finds_no_run(
        fake_github: FakeGitHubServer, tmp_path: Path, repo: Path) -> None:
    """A fork's ``rally/<run>/_integration`` is not the run's branch: its pull request is no run's."""
    fake_github.set_permission("alice", "write")
    git(repo, "push", "-q", fake_github.authenticated_git_url, "main")
    fork = fake_github.add_fork_pull("owner/repo-fork", "rally/issue-1-4207/_integration", "main", "planted",
                                     user="mallory")
    fake_github.add_workflow_run(4207)
    said = fake_github.add_comment(fork, "/rally cancel", user="alice")
    code, _ = _run(fake_github, tmp_path, repo, _payload(fork, said, "/rally cancel") | {
        "issue": {"number": fork, "title": "planted", "body": "", "labels": [], "pull_request": {}}})
    (reply,) = _replies(fake_github, said)
    assert code == 0 and f"no rally-gh run on #{fork}" in reply
    assert fake_github.workflow_runs[4207]["status"] == "in_progress"  # not cancelled


@pytest.mark.parametrize(("body", "said", "reactions"), [
    ("/rally retry nobody", "no teammate named `nobody` in the map", ["confused"]),
    ("/rally approve", "does not wait for approval", ["confused"]),
    # Taken (👀), then found impossible: this run was never published (its record is not on the remote).
    ("/rally retry api", "`/rally retry api` was not done", ["eyes", "confused"]),
    ("/rally sing", "`sing` is not a `/rally` command", ["confused"]),
])
def test_what_cannot_be_done_is_said_with_the_list_of_commands_or_honestly_not_yet(
        fake_github: FakeGitHubServer, tmp_path: Path, repo: Path, body: str, said: str,
        reactions: list[str]) -> None:
    fake_github.set_permission("alice", "write")
    issue = fake_github.create_issue("Pick", "do it")
    fake_github.add_comment(issue, run_marker(f"issue-{issue}-4207") + "\nrunning", user=fake_github.actor)
    comment = fake_github.add_comment(issue, body, user="alice")
    code, _ = _run(fake_github, tmp_path, repo, _payload(issue, comment, body))
    (reply,) = _replies(fake_github, comment)
    assert code == 0 and said in reply
    assert _reactions(fake_github, comment) == reactions


def test_a_comment_without_a_command_does_nothing(fake_github: FakeGitHubServer, tmp_path: Path, repo: Path) -> None:
    issue = fake_github.create_issue("Pick", "do it")
    said = fake_github.add_comment(issue, "looks good to me", user="alice")
    code, out = _run(fake_github, tmp_path, repo, _payload(issue, said, "looks good to me"))
    assert code == 0 and "no `/rally` command" in out
    assert not _replies(fake_github, said) and not _reactions(fake_github, said)
