"""``rally-gh admit``, the first job of the ready workflows, against the fake GitHub: who may start a run,
the issue told, and what the next jobs read from its outputs."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from rally_gh.commands import admit as admit_cmd
from rally_gh.commands.admit import AdmitOptions
from rally_gh.github.actions import read
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.publish import outputs_file_values
from rally_gh.testing import SHOP_FILES, init_repo


def _job(fake: FakeGitHubServer, tmp_path: Path, event_name: str, payload: dict[str, object]) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload))
    outputs = tmp_path / "outputs"
    outputs.touch()
    return {"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": fake.token, "GITHUB_REPOSITORY": "owner/repo",
            "GITHUB_API_URL": fake.api_url, "GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(event),
            "GITHUB_RUN_ID": "31", "GITHUB_OUTPUT": str(outputs), "PATH": os.environ["PATH"]}


def test_a_writers_label_is_admitted_announced_and_named_for_the_next_jobs(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    fake_github.set_permission("alice", "write")
    issue = fake_github.create_issue("Shop", "Both halves.", user="alice", labels=("rally:parallel",))
    repo = init_repo(tmp_path / "repo", SHOP_FILES)
    env = _job(fake_github, tmp_path, "issues", {
        "action": "labeled", "label": {"name": "rally:parallel"}, "sender": {"login": "alice", "type": "User"},
        "issue": {"number": issue, "title": "Shop", "body": "Both halves.", "labels": [{"name": "rally:parallel"}]}})
    assert admit_cmd.admit(repo, read(env), io.StringIO()) == 0
    outputs = outputs_file_values(Path(env["GITHUB_OUTPUT"]))
    assert outputs["admitted"] == "true" and outputs["run-id"] == f"issue-{issue}-31"
    assert outputs["issue-text"] == "Shop\n\nBoth halves."
    assert "rally:running" in fake_github.issues[issue]["labels"]
    (comment,) = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert comment["body"].startswith(f"<!-- rally-gh:run:issue-{issue}-31 -->")
    assert not (repo / ".git" / "rally" / "runs").exists()  # nothing ran


def test_a_reader_is_refused_and_the_next_jobs_do_not_run(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    fake_github.set_permission("mallory", "read")
    issue = fake_github.create_issue("Shop", "x", user="mallory", labels=("rally:parallel",))
    repo = init_repo(tmp_path / "repo", SHOP_FILES)
    env = _job(fake_github, tmp_path, "issues", {
        "action": "labeled", "label": {"name": "rally:parallel"}, "sender": {"login": "mallory", "type": "User"},
        "issue": {"number": issue, "title": "Shop", "body": "x"}})
    assert admit_cmd.admit(repo, read(env), io.StringIO()) == 1
    assert outputs_file_values(Path(env["GITHUB_OUTPUT"]))["admitted"] == "false"
    (comment,) = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert "mallory" in comment["body"] and "rally:running" not in fake_github.issues[issue]["labels"]


def test_a_dispatch_passes_on_the_text_of_the_issue_it_names(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    fake_github.set_permission("alice", "write")
    issue = fake_github.create_issue("Shop", "As it reads now.", user="alice")
    repo = init_repo(tmp_path / "repo", SHOP_FILES)
    env = _job(fake_github, tmp_path, "workflow_dispatch", {
        "inputs": {"issue": str(issue), "teammates": "", "dry-run": False, "max-parallel": ""},
        "sender": {"login": "alice", "type": "User"}})
    assert admit_cmd.admit(repo, read(env), io.StringIO(), options=AdmitOptions(run_id="d1")) == 0
    outputs = outputs_file_values(Path(env["GITHUB_OUTPUT"]))
    assert outputs["run-id"] == "d1" and outputs["issue-text"] == "Shop\n\nAs it reads now."


def test_a_re_run_started_by_a_reader_is_refused_though_a_writer_sent_the_event(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    fake_github.set_permission("alice", "write")
    fake_github.set_permission("mallory", "read")
    issue = fake_github.create_issue("Shop", "x", user="alice", labels=("rally:parallel",))
    repo = init_repo(tmp_path / "repo", SHOP_FILES)
    env = _job(fake_github, tmp_path, "issues", {
        "action": "labeled", "label": {"name": "rally:parallel"}, "sender": {"login": "alice", "type": "User"},
        "issue": {"number": issue, "title": "Shop", "body": "x"}})
    env["GITHUB_TRIGGERING_ACTOR"] = "mallory"  # a re-run keeps the event, alice's, but mallory started it
    assert admit_cmd.admit(repo, read(env), io.StringIO()) == 1
    (comment,) = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert "mallory" in comment["body"] and "rally:running" not in fake_github.issues[issue]["labels"]
    env["GITHUB_TRIGGERING_ACTOR"] = "alice"
    assert admit_cmd.admit(repo, read(env), io.StringIO()) == 0
