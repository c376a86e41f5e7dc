"""The two jobs of the ready workflows against the fake GitHub, through the real PyGithub client:
the agents' job (``rally-gh run --results DIR``, no token) and the publish job (``rally-gh publish
--results DIR``, the write token), each in its own clone, sharing only the results folder (the artifact).
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

from rally_gh import git as rgit
from rally_gh.commands import publish as publish_cmd
from rally_gh.commands import run as run_cmd
from rally_gh.commands.publish import PublishOptions
from rally_gh.commands.run import RunOptions
from rally_gh.errors import RallyError
from rally_gh.github.actions import read
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.results import BUNDLE_FILE, RECORD_FILE, write_results
from rally_gh.state import RunState
from rally_gh.testing import commit, git, init_repo

RUN_ID = "4242"

AGENT = """\
import os, pathlib
name = os.environ["RALLY_TEAMMATE"]
# The token must never reach an agent of the agents' job.
assert not any(k in os.environ for k in ("GITHUB_TOKEN", "GH_TOKEN")), "a token reached the agent"
pathlib.Path(f"src/{name}").mkdir(parents=True, exist_ok=True)
pathlib.Path(f"src/{name}/work.txt").write_text(f"{name}'s work\\n")
"""


def _team_map(agent: Path) -> str:
    command = f"[{json.dumps(sys.executable)}, {json.dumps(str(agent))}]"
    lines = ["version: 1", "team: shop", "defaults: {timeout: 30s, retries: 0}", "teammates:"]
    for name in ("api", "web"):
        lines += [f"  - name: {name}", f"    exclusive_write: [src/{name}/**]",
                  f"    agent: {{preset: command, command: {command}}}"]
    return "\n".join(lines) + "\n"


def _shop(fake: FakeGitHubServer, tmp_path: Path) -> tuple[int, Path]:
    """A labeled issue by a writer, a two-teammate shop on the fake; the issue and the event file."""
    fake.set_permission("alice", "write")
    issue = fake.create_issue("Shop", "Both halves.", user="alice", labels=("rally:parallel",))
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    origin = init_repo(tmp_path / "origin", {"README.md": "# shop\n", "rally.yml": _team_map(agent)})
    git(origin, "remote", "add", "origin", fake.authenticated_git_url)
    git(origin, "push", "-q", "origin", "main")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({
        "action": "labeled", "label": {"name": "rally:parallel"}, "sender": {"login": "alice", "type": "User"},
        "issue": {"number": issue, "title": "Shop", "body": "Both halves.", "labels": [{"name": "rally:parallel"}]},
        "repository": {"default_branch": "main", "full_name": "owner/repo"}}))
    return issue, event


def _env(fake: FakeGitHubServer, event: Path, *, token: bool) -> dict[str, str]:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "owner/repo", "GITHUB_API_URL": fake.api_url,
           "GITHUB_EVENT_NAME": "issues", "GITHUB_EVENT_PATH": str(event), "GITHUB_RUN_ID": RUN_ID,
           "PATH": os.environ["PATH"]}
    return {**env, "GITHUB_TOKEN": fake.token} if token else env


def _checkout(fake: FakeGitHubServer, where: Path) -> Path:
    git(where.parent, "clone", "-q", fake.authenticated_git_url, str(where))
    return where


def _agents_job(fake: FakeGitHubServer, tmp_path: Path, event: Path) -> tuple[Path, Path]:
    """The agents' job in a clone of its own; its clone and the results folder it leaves."""
    clone = _checkout(fake, tmp_path / "agents-job")
    results = tmp_path / "artifact"
    out = io.StringIO()
    code = run_cmd.run(clone, read(_env(fake, event, token=False)), out, options=RunOptions(results=results),
                       progress_stream=io.StringIO())
    assert code == 0, out.getvalue()[-3000:]
    return clone, results


def _publish_job(fake: FakeGitHubServer, tmp_path: Path, event: Path, results: Path,
                 name: str = "publish-job") -> tuple[int, str]:
    clone = _checkout(fake, tmp_path / name)
    out = io.StringIO()
    code = publish_cmd.publish(clone, read(_env(fake, event, token=True)), out,
                               options=PublishOptions(results=results))
    return code, out.getvalue()


def test_the_agents_job_leaves_results_and_touches_nothing_on_github(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _shop(fake_github, tmp_path)
    _, results = _agents_job(fake_github, tmp_path, event)
    assert sorted(p.name for p in results.iterdir()) == [BUNDLE_FILE, RECORD_FILE]
    assert not fake_github.requests  # no API call: no token in the job
    assert set(fake_github.refs()) == {"refs/heads/main"}  # nothing pushed
    state = RunState.model_validate_json((results / RECORD_FILE).read_text())
    assert state.run_id == f"issue-{issue}-{RUN_ID}" and state.integrated == ("api", "web")
    assert not any("shared this job" in r for r in state.risks)


def test_the_publish_job_publishes_what_the_agents_job_verified(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _shop(fake_github, tmp_path)
    _, results = _agents_job(fake_github, tmp_path, event)
    code, out = _publish_job(fake_github, tmp_path, event, results)
    assert code == 0, out
    run = f"issue-{issue}-{RUN_ID}"
    refs = fake_github.refs()
    assert {f"refs/heads/rally/{run}/{n}" for n in ("api", "web", "_integration")} <= set(refs)
    files = git(fake_github.bare_repo, "ls-tree", "-r", "--name-only", f"refs/heads/rally/{run}/_integration").split()
    assert {"src/api/work.txt", "src/web/work.txt"} <= set(files)
    (pull,) = fake_github.pulls.values()
    assert pull["draft"] is False
    (number,) = fake_github.pulls
    assert fake_github.issues[number]["body"].startswith(f"Closes #{issue}")
    assert "unverified" not in fake_github.issues[number]["body"]
    assert {(r["name"], r["conclusion"]) for r in fake_github.check_runs.values()} == {("rally-gh/ownership", "success")}
    assert sorted(fake_github.issues[issue]["labels"]) == ["rally:done", "rally:parallel"]
    # The report says which text of the issue the agents worked from: the label event's copy, unedited since.
    assert f"Issue text: #{issue} as it was when `rally:parallel` was added, from the label's event." \
        in fake_github.issues[number]["body"]
    assert "[!WARNING]" not in fake_github.issues[number]["body"]
    # A re-run of the publish job (a fresh runner) leaves one pull request and one comment.
    code, out = _publish_job(fake_github, tmp_path, event, results, name="publish-again")
    assert code == 0, out
    assert len(fake_github.pulls) == 1
    assert len([c for c in fake_github.comments.values() if c["issue"] == issue]) == 1


def test_results_that_claim_a_dry_run_do_not_make_the_labelled_run_one(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    """Whether a run is a dry run is the event's to say (a dispatch's input), not the agents' job's."""
    issue, event = _shop(fake_github, tmp_path)
    _, results = _agents_job(fake_github, tmp_path, event)
    claimed = json.loads((results / RECORD_FILE).read_text())
    (results / RECORD_FILE).write_text(json.dumps({**claimed, "dry_run": True}))
    code, out = _publish_job(fake_github, tmp_path, event, results)
    assert code == 0, out
    (number,) = fake_github.pulls
    assert "(dry run)" not in fake_github.issues[number]["body"]
    assert sorted(fake_github.issues[issue]["labels"]) == ["rally:done", "rally:parallel"]


def test_an_issue_edited_after_it_was_labelled_is_noted_in_the_report(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _shop(fake_github, tmp_path)
    payload = json.loads(event.read_text())
    payload["issue"]["updated_at"] = "2026-12-01T10:00:00Z"  # when the label was added
    event.write_text(json.dumps(payload))
    _, results = _agents_job(fake_github, tmp_path, event)
    # Someone edits the issue while the agents work on the text the event carried.
    fake_github.issues[issue].update(body="Both halves, and a third.", updated_at="2026-12-01T10:05:00Z")
    code, out = _publish_job(fake_github, tmp_path, event, results)
    assert code == 0, out
    (number,) = fake_github.pulls
    body = fake_github.issues[number]["body"]
    assert (f"Issue text: #{issue} as it was when `rally:parallel` was added (at `2026-12-01T10:00:00Z`), "
            "from the label's event.") in body
    assert (f"> #{issue} was edited after `rally:parallel` was added (last at `2026-12-01T10:05:00Z`): this run "
            "did not see the edit.") in body
    report = json.loads((tmp_path / "publish-job" / ".git" / "rally" / "runs" / f"issue-{issue}-{RUN_ID}"
                         / "report.json").read_text())
    assert report["issue_origin"] == {"number": issue, "source": "event", "labelled_at": "2026-12-01T10:00:00Z",
                                      "edited_at": "2026-12-01T10:05:00Z"}


def _dispatched(fake: FakeGitHubServer, tmp_path: Path, issue_text: str, *, dry_run: bool = False,
                ) -> tuple[int, Path, dict[str, str]]:
    """A dispatch of the shop's issue, and the environment of its agents' job (no token; the issue's
    text as the admit job passed it on)."""
    issue, _ = _shop(fake, tmp_path)
    event = tmp_path / "dispatch.json"
    event.write_text(json.dumps({"inputs": {"issue": str(issue), "teammates": "", "dry-run": dry_run,
                                            "max-parallel": ""}, "sender": {"login": "alice", "type": "User"}}))
    return issue, event, {**_env(fake, event, token=False), "GITHUB_EVENT_NAME": "workflow_dispatch",
                          "RALLY_ISSUE_TEXT": issue_text}


def test_a_dispatchs_report_says_the_text_was_read_from_the_issue(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event, env = _dispatched(fake_github, tmp_path, "Shop\n\nBoth halves.")
    clone = _checkout(fake_github, tmp_path / "agents-job")
    results = tmp_path / "artifact"
    assert run_cmd.run(clone, read(env), io.StringIO(), options=RunOptions(results=results),
                       progress_stream=io.StringIO()) == 0
    publish_env = {**_env(fake_github, event, token=True), "GITHUB_EVENT_NAME": "workflow_dispatch"}
    code = publish_cmd.publish(_checkout(fake_github, tmp_path / "publish-job"), read(publish_env), io.StringIO(),
                               options=PublishOptions(results=results))
    assert code == 0
    (number,) = fake_github.pulls
    assert f"Issue text: #{issue} as GitHub had it when the run was admitted." in fake_github.issues[number]["body"]


def _tamper(clone: Path, results: Path, teammate: str, files: dict[str, str]) -> RunState:
    """What a hostile agents' job can do: a commit on ``teammate``'s branch, its record and bundle rewritten to match."""
    state = RunState.model_validate_json((results / RECORD_FILE).read_text())
    record = state.teammate(teammate)
    git(clone, "checkout", "-q", record.branch)
    commit(clone, files, f"{teammate}: more")
    head = git(clone, "rev-parse", "HEAD").strip()
    git(clone, "checkout", "-q", "main")
    state = state.with_teammate(record.model_copy(update={"head_sha": head}))
    write_results(clone, state, results)
    return state


def test_a_commit_writing_another_teammates_files_is_refused_and_the_rest_published_as_an_unverified_draft(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _shop(fake_github, tmp_path)
    clone, results = _agents_job(fake_github, tmp_path, event)
    _tamper(clone, results, "api", {"src/web/work.txt": "api was here\n"})
    code, out = _publish_job(fake_github, tmp_path, event, results)
    assert code == 1
    run = f"issue-{issue}-{RUN_ID}"
    refs = fake_github.refs()
    assert f"refs/heads/rally/{run}/api" not in refs  # a refused teammate's work is not pushed
    files = git(fake_github.bare_repo, "show", f"refs/heads/rally/{run}/_integration:src/web/work.txt")
    assert files == "web's work\n"
    assert "src/api/work.txt" not in git(fake_github.bare_repo, "ls-tree", "-r", "--name-only",
                                         f"refs/heads/rally/{run}/_integration")
    (number,) = fake_github.pulls
    body = fake_github.issues[number]["body"]
    assert fake_github.pulls[number]["draft"] is True and not body.startswith("Closes")
    assert "refused by the publish job" in body and "src/web/work.txt" in body
    assert "unverified" in body
    assert "api" in out and "violated" in out


def test_a_ref_outside_the_run_is_not_imported_and_not_pushed(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _shop(fake_github, tmp_path)
    clone, results = _agents_job(fake_github, tmp_path, event)
    main_before = git(fake_github.bare_repo, "rev-parse", "refs/heads/main").strip()
    commit(clone, {"README.md": "# owned now\n"}, "take over main")
    state = RunState.model_validate_json((results / RECORD_FILE).read_text())
    # A bundle that also carries main (and a tag), written with git itself.
    git(clone, "tag", "evil")
    refs = [f"refs/heads/{t.branch}" for t in state.teammates] + [f"refs/heads/{state.integration_branch}",
                                                                   "refs/heads/main", "refs/tags/evil"]
    assert rgit.write_bundle(clone, results / BUNDLE_FILE, refs, rgit.Sha(state.base_sha))
    code, out = _publish_job(fake_github, tmp_path, event, results)
    assert code == 0, out
    assert git(fake_github.bare_repo, "rev-parse", "refs/heads/main").strip() == main_before
    assert "refs/tags/evil" not in fake_github.refs()
    assert len(fake_github.pulls) == 1


def test_a_one_job_run_says_its_agents_shared_the_job_with_the_token(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _shop(fake_github, tmp_path)
    clone = _checkout(fake_github, tmp_path / "one-job")
    out = io.StringIO()
    code = run_cmd.run(clone, read(_env(fake_github, event, token=True)), out, progress_stream=io.StringIO())
    assert code == 0, out.getvalue()[-3000:]
    (number,) = fake_github.pulls
    assert "the agents shared this job with a GitHub token that can write" in fake_github.issues[number]["body"]


def test_a_dispatchs_agents_job_reads_the_issue_text_the_admit_job_passed_on(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event, env = _dispatched(fake_github, tmp_path, "Shop\n\nAs the admit job read it.", dry_run=True)
    clone = _checkout(fake_github, tmp_path / "agents-job")
    results = tmp_path / "artifact"
    assert run_cmd.run(clone, read(env), io.StringIO(), options=RunOptions(results=results, run_id="d1"),
                       progress_stream=io.StringIO()) == 0
    state = RunState.model_validate_json((results / RECORD_FILE).read_text())
    # The dispatch's own inputs (dry-run) and issue, read without the API; the text the admit job passed on.
    assert state.issue_text == "Shop\n\nAs the admit job read it." and state.dry_run
    assert state.run_id == "d1"
    assert not fake_github.requests


def test_a_re_run_in_a_self_hosted_runners_kept_workspace_leaves_one_pull_request_and_one_comment(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _shop(fake_github, tmp_path)
    clone = _checkout(fake_github, tmp_path / "self-hosted")  # the same workspace for both attempts
    codes = []
    for _ in (1, 2):
        out = io.StringIO()
        codes.append(run_cmd.run(clone, read(_env(fake_github, event, token=True)), out, progress_stream=io.StringIO()))
    assert codes == [0, 0], out.getvalue()[-2000:]
    assert len(fake_github.pulls) == 1
    assert len([c for c in fake_github.comments.values() if c["issue"] == issue]) == 1
    run = f"issue-{issue}-{RUN_ID}"
    assert (clone / ".git" / "rally" / "attempts" / f"{run}-1" / "run.json").exists()
    # The agents' job re-run in its kept workspace starts afresh too, with the id the admit job gives it.
    results = tmp_path / "again"
    assert run_cmd.run(clone, read(_env(fake_github, event, token=False)), io.StringIO(),
                       options=RunOptions(results=results, run_id=run), progress_stream=io.StringIO()) == 0
    assert RunState.model_validate_json((results / RECORD_FILE).read_text()).integrated == ("api", "web")


def test_an_agents_job_that_left_no_results_marks_the_run_failed_with_a_link_to_the_workflow_run(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    from rally_gh.commands import admit as admit_cmd
    from rally_gh.commands.admit import AdmitOptions

    issue, event = _shop(fake_github, tmp_path)
    env = {**_env(fake_github, event, token=True), "GITHUB_SERVER_URL": "https://github.example"}
    admitted = _checkout(fake_github, tmp_path / "admit-job")
    assert admit_cmd.admit(admitted, read(env), io.StringIO(), options=AdmitOptions()) == 0
    assert "rally:running" in fake_github.issues[issue]["labels"]
    # The agents' job failed before it wrote anything: the artifact's download found nothing.
    clone = _checkout(fake_github, tmp_path / "publish-job")
    with pytest.raises(RallyError, match="no records of a run"):
        publish_cmd.publish(clone, read(env), io.StringIO(), options=PublishOptions(results=tmp_path / "missing"))
    assert sorted(fake_github.issues[issue]["labels"]) == ["rally:failed", "rally:parallel"]
    [comment] = [c for c in fake_github.comments.values() if c["issue"] == issue]
    run = f"issue-{issue}-{RUN_ID}"
    assert comment["body"].startswith(f"<!-- rally-gh:run:{run} -->\n## rally-gh run `{run}`: failed\n")
    assert f"[the workflow run](https://github.example/owner/repo/actions/runs/{RUN_ID})" in comment["body"]
    assert not fake_github.pulls and not [r for r in fake_github.refs() if r.startswith("refs/heads/rally/")]


def test_a_re_run_of_the_whole_workflow_on_fresh_runners_leaves_one_pull_request_and_one_comment(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _shop(fake_github, tmp_path)
    for attempt in (1, 2):  # the agents' job makes new commits each time, then publishes over the first
        (tmp_path / f"attempt-{attempt}").mkdir()
        if attempt == 2:  # (the test pins commit dates: other work, so that the commits differ)
            (tmp_path / "agent.py").write_text(AGENT.replace("'s work", "'s second work"))
        _, results = _agents_job(fake_github, tmp_path / f"attempt-{attempt}", event)
        code, out = _publish_job(fake_github, tmp_path / f"attempt-{attempt}", event, results)
        assert code == 0, out
    assert len(fake_github.pulls) == 1
    assert len([c for c in fake_github.comments.values() if c["issue"] == issue]) == 1
