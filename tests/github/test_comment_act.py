"""rally-comment.yml run by ``act`` offline against the fake GitHub (how: tests/github/test_action_act.py,
whose helpers, artifact stand-ins included, this uses): a writer's ``/rally approve`` on a run that waits
for approval, and a writer's ``/rally retry`` of a published run's failed teammate, go through the command
job, the read-only agents' job and the publish job."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from github_testing import job_env

from rally_gh.commands import run as run_cmd
from rally_gh.github.actions import read
from rally_gh.github.approval import waiting_comment
from rally_gh.github.conversation import reply_marker
from rally_gh.github.endpoint import CommentId, run_marker
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.testing import commit, git
from test_action_act import _repository, _sender, _workflow, act

pytestmark = pytest.mark.slow


def _waiting_run(fake: FakeGitHubServer, tmp_path: Path) -> tuple[int, Path, str]:
    """A map whose approval rules hold for web, and its run waiting on the issue (as rally-issue.yml's admit leaves it)."""
    fake.set_permission("alice", "write")
    fake.set_permission("mallory", "read")
    work = _repository(fake, tmp_path)
    rally_yml = (work / "rally.yml").read_text().replace("teammates:\n", "approval: {high_risk: [web]}\nteammates:\n")
    commit(work, {"rally.yml": rally_yml}, "approval for web")
    git(work, "push", "-q", fake.authenticated_git_url, "main")
    git(work, "fetch", "-q", fake.authenticated_git_url, "+main:refs/remotes/origin/main")
    issue = fake.create_issue("Add the shop", "Both halves, please.", user="alice", labels=("rally:parallel",))
    run_id = f"issue-{issue}-4500"
    fake.add_comment(issue, waiting_comment(run_id, ["web is marked high-risk (rally.yml:5:15)"], ["api", "web"]),
                     user="github-actions[bot]")  # ours: a comment of anyone else is never taken for the run's
    return issue, work, run_id


def _comment_event(issue: int, comment: int, body: str, sender: str) -> dict[str, Any]:
    return {"action": "created", "sender": _sender(sender),
            "issue": {"number": issue, "title": "Add the shop", "body": "Both halves, please.", "labels": []},
            "comment": {"id": comment, "body": body, "user": {"login": sender}},
            "repository": {"default_branch": "main", "full_name": "owner/repo"}}


def test_a_writers_approve_runs_the_waiting_run_through_the_three_jobs(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, work, run_id = _waiting_run(fake_github, tmp_path)
    said = fake_github.add_comment(issue, "/rally approve", user="alice")
    result = act(fake_github, work, _workflow("rally-comment.yml", tmp_path / "wf"), "issue_comment",
                 _comment_event(issue, said, "/rally approve", "alice"), tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    # The same run: its branches, its one progress comment, now linking the one pull request.
    (number,) = fake_github.pulls
    assert fake_github.issues[number]["title"] == "rally: Add the shop (#1)"
    assert sorted(ref for ref in fake_github.refs() if ref.startswith("refs/heads/rally/")) == [
        f"refs/heads/rally/{run_id}/{n}" for n in ("_integration", "api", "web")]
    (progress,) = [c["body"] for c in fake_github.comments.values() if c["body"].startswith(run_marker(run_id))]
    assert "waiting for approval" not in progress and f"#{number}" in progress
    assert sorted(fake_github.issues[issue]["labels"]) == ["rally:done", "rally:parallel"]


def test_a_readers_approve_is_refused_and_no_agent_job_runs(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, work, run_id = _waiting_run(fake_github, tmp_path)
    said = fake_github.add_comment(issue, "/rally approve", user="mallory")
    result = act(fake_github, work, _workflow("rally-comment.yml", tmp_path / "wf"), "issue_comment",
                 _comment_event(issue, said, "/rally approve", "mallory"), tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out  # the command job says no
    assert not fake_github.pulls and not [r for r in fake_github.refs() if r.startswith("refs/heads/rally/")]
    (progress,) = [c["body"] for c in fake_github.comments.values() if c["body"].startswith(run_marker(run_id))]
    assert "waiting for approval" in progress


def test_a_writers_retry_runs_the_failed_teammate_in_the_agents_job_and_updates_the_pull_request(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    fake_github.set_permission("alice", "write")
    work = _repository(fake_github, tmp_path, web_needs_api=True)
    issue = fake_github.create_issue("Add the shop", "Both halves, please.", user="alice", labels=("rally:parallel",))
    # The run, published as a one-job `rally-gh run` publishes it (here in-process, in a clone of its own):
    # web, which builds on api's work, failed beside api.
    clone = tmp_path / "first-run"
    git(tmp_path, "clone", "-q", fake_github.authenticated_git_url, str(clone))
    git(clone, "remote", "set-url", "origin", fake_github.git_url)  # no token where an agent can read it
    event = tmp_path / "labeled.json"
    event.write_text(json.dumps({
        "action": "labeled", "label": {"name": "rally:parallel"}, "sender": _sender("alice"),
        "issue": {"number": issue, "title": "Add the shop", "body": "Both halves, please.",
                  "labels": [{"name": "rally:parallel"}]},
        "repository": {"default_branch": "main", "full_name": "owner/repo"}}))
    out = io.StringIO()
    code = run_cmd.run(clone, read(job_env(fake_github, "issues", event, 4600)), out, progress_stream=io.StringIO())
    assert code == 1 and "needs src/api/main.py" in out.getvalue(), out.getvalue()
    run_id = f"issue-{issue}-4600"

    said = fake_github.add_comment(issue, "/rally retry web", user="alice")
    result = act(fake_github, work, _workflow("rally-comment.yml", tmp_path / "wf"), "issue_comment",
                 _comment_event(issue, said, "/rally retry web", "alice"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The taken-up run went to the agents' job as the command job's artifact; its results to the publish job.
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["rally-again", "rally-results"]
    (reply,) = [c["body"] for c in fake_github.comments.values() if c["body"].startswith(reply_marker(CommentId(said)))]
    assert "**web**: done, in the pull request" in reply, reply
    (number,) = fake_github.pulls
    assert not fake_github.pulls[number]["draft"]
    files = git(fake_github.bare_repo, "ls-tree", "-r", "--name-only", f"rally/{run_id}/_integration").split()
    assert {"src/api/main.py", "src/web/main.py"} <= set(files)
