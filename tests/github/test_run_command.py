"""``rally-gh run`` in Actions, against the fake GitHub: what it refuses and how it says so."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rally_gh.commands import run as run_cmd
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.tasks import TasksRefused
from rally_gh.testing import SHOP_FILES, init_repo


def _event(tmp_path: Path, issue: int, body: str) -> Path:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({
        "action": "labeled", "label": {"name": "rally:parallel"}, "sender": {"login": "alice", "type": "User"},
        "issue": {"number": issue, "title": "Pick", "body": body, "labels": [{"name": "rally:parallel"}]},
        "repository": {"default_branch": "main", "full_name": "owner/repo"},
    }))
    return event


def _env(server: FakeGitHubServer, event: Path) -> dict[str, str]:
    return {"GITHUB_TOKEN": "test-token", "GITHUB_REPOSITORY": "owner/repo", "GITHUB_API_URL": server.api_url,
            "GITHUB_EVENT_NAME": "issues", "GITHUB_EVENT_PATH": str(event), "PATH": "/usr/bin:/bin"}


def test_a_rally_block_that_reaches_for_ownership_is_refused_with_a_comment(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    fake_github.set_permission("alice", "write")
    body = "Do it.\n\n```rally\napi:\n  task: Build it\n  exclusive_write: ['**']\n```\n"
    issue = fake_github.create_issue("Pick", body, user="alice", labels=("rally:parallel",))
    repo = init_repo(tmp_path / "repo", SHOP_FILES)
    with pytest.raises(TasksRefused) as refused:
        run_cmd.run(repo, None, None, None, None, None, False, None, _env(fake_github, _event(tmp_path, issue, body)),
                    io.StringIO(), progress_stream=io.StringIO())
    assert "exclusive_write" in str(refused.value)
    (comment,) = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert comment["body"].startswith("<!-- rally-gh:run:") and "exclusive_write" in comment["body"]
    assert not fake_github.pulls  # nothing ran


def test_a_sender_without_write_access_is_refused_and_nothing_runs(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    fake_github.set_permission("alice", "read")
    issue = fake_github.create_issue("Pick", "please", user="alice", labels=("rally:parallel",))
    repo = init_repo(tmp_path / "repo", SHOP_FILES)
    out = io.StringIO()
    code = run_cmd.run(repo, None, None, None, None, None, False, None,
                       _env(fake_github, _event(tmp_path, issue, "please")), out, progress_stream=io.StringIO())
    assert code == 1 and "refused" in out.getvalue()
    (comment,) = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert "alice" in comment["body"]
    assert not (repo / ".git" / "rally" / "runs").exists()
