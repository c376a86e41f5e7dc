"""``rally-gh run`` in Actions, against the fake GitHub: what it refuses and how it says so."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rally_gh.commands import run as run_cmd
from rally_gh.commands.run import RunOptions
from rally_gh.errors import UsageError
from rally_gh.github.actions import read
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.state import RunState, load_state
from rally_gh.tasks import TasksRefused
from rally_gh.testing import RALLY_CLI, SHOP_FILES, git, init_repo


def _event(tmp_path: Path, issue: int, body: str) -> Path:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({
        "action": "labeled", "label": {"name": "rally:parallel"}, "sender": {"login": "alice", "type": "User"},
        "issue": {"number": issue, "title": "Pick", "body": body, "labels": [{"name": "rally:parallel"}]},
        "repository": {"default_branch": "main", "full_name": "owner/repo"},
    }))
    return event


def _env(server: FakeGitHubServer, event: Path) -> dict[str, str]:
    return {"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "test-token", "GITHUB_REPOSITORY": "owner/repo",
            "GITHUB_API_URL": server.api_url,
            "GITHUB_EVENT_NAME": "issues", "GITHUB_EVENT_PATH": str(event), "PATH": "/usr/bin:/bin"}


def test_a_rally_block_that_reaches_for_ownership_is_refused_with_a_comment(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    fake_github.set_permission("alice", "write")
    body = "Do it.\n\n```rally\napi:\n  task: Build it\n  exclusive_write: ['**']\n```\n"
    issue = fake_github.create_issue("Pick", body, user="alice", labels=("rally:parallel",))
    repo = init_repo(tmp_path / "repo", SHOP_FILES)
    with pytest.raises(TasksRefused) as refused:
        run_cmd.run(repo, read(_env(fake_github, _event(tmp_path, issue, body))), io.StringIO(),
                    progress_stream=io.StringIO())
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
    code = run_cmd.run(repo, read(_env(fake_github, _event(tmp_path, issue, "please"))), out,
                       progress_stream=io.StringIO())
    assert code == 1 and "refused" in out.getvalue()
    (comment,) = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert "alice" in comment["body"]
    assert not (repo / ".git" / "rally" / "runs").exists()


AGENT = """\
import os, pathlib, time
name = os.environ["RALLY_TEAMMATE"]
pathlib.Path(f"src/{name}").mkdir(parents=True, exist_ok=True)
# Different bytes on every attempt, as a real agent's would be.
pathlib.Path(f"src/{name}/work.txt").write_text(f"{name} at {time.time_ns()}\\n")
"""


def _team_map(agent: Path) -> str:
    lines = ["version: 1", "team: shop", "defaults: {timeout: 30s, retries: 0}", "teammates:"]
    for name in ("api", "web"):
        lines += [f"  - name: {name}", f"    exclusive_write: [src/{name}/**]",
                  f"    agent: {{preset: command, command: [{json.dumps(sys.executable)}, {json.dumps(str(agent))}]}}"]
    return "\n".join(lines) + "\n"


def _shop_on_github(fake: FakeGitHubServer, tmp_path: Path, agents: tuple[Path, Path] | None = None) -> tuple[int, Path]:
    """A labeled issue by a writer, and a two-teammate shop pushed to the fake's repository;
    the issue number and the event file. ``agents``: api's and web's scripts (default: AGENT)."""
    fake.set_permission("alice", "write")
    issue = fake.create_issue("Shop", "Both halves.", user="alice", labels=("rally:parallel",))
    if agents is None:
        agent = tmp_path / "agent.py"
        agent.write_text(AGENT)
        agents = (agent, agent)
    team = _team_map(agents[1]).replace(json.dumps(str(agents[1])), json.dumps(str(agents[0])), 1)
    origin = init_repo(tmp_path / "origin", {"README.md": "# shop\n", "rally.yml": team})
    git(origin, "remote", "add", "origin", fake.authenticated_git_url)
    git(origin, "push", "-q", "origin", "main")
    return issue, _event(tmp_path, issue, "Both halves.")


def test_a_re_run_of_the_same_workflow_run_keeps_one_pull_request_and_loses_nothing(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _shop_on_github(fake_github, tmp_path)
    env = {**_env(fake_github, event), "GITHUB_RUN_ID": "4242", "PATH": os.environ["PATH"]}
    codes = []
    first_heads = {}
    for attempt in (1, 2):  # a re-run starts on a fresh runner: a new clone, nothing local kept
        clone = tmp_path / f"attempt{attempt}"
        git(tmp_path, "clone", "-q", fake_github.authenticated_git_url, str(clone))
        out = io.StringIO()
        codes.append(run_cmd.run(clone, read(env), out, progress_stream=io.StringIO()))
        if attempt == 1:
            first_heads = {n: git(fake_github.bare_repo, "rev-parse", f"refs/heads/rally/issue-{issue}-4242/{n}").strip()
                           for n in ("api", "web")}
    assert len(fake_github.pulls) == 1
    assert len([c for c in fake_github.comments.values() if c["issue"] == issue]) == 1
    # Nothing of the first attempt is lost: its teammate commits are kept under a ref of the run,
    # and the branches (and the pull request) show the re-run's work.
    refs = fake_github.refs()
    for name, sha in first_heads.items():
        assert refs[f"refs/rally/superseded/rally/issue-{issue}-4242/{name}/{sha[:12]}"] == sha
        assert refs[f"refs/heads/rally/issue-{issue}-4242/{name}"] != sha
    assert codes == [0, 0], codes


def test_two_runs_racing_for_one_issue_each_finish_without_clobbering_the_other(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    """Without the workflow's concurrency group, two runs for one issue (two workflow runs) may
    overlap: each keeps its own branches, pull request and progress comment."""
    issue, event = _shop_on_github(fake_github, tmp_path)
    jobs = []
    for run in ("5001", "5002"):
        clone = tmp_path / f"run{run}"
        git(tmp_path, "clone", "-q", fake_github.authenticated_git_url, str(clone))
        env = {**os.environ, **_env(fake_github, event), "GITHUB_RUN_ID": run}
        jobs.append(subprocess.Popen([*RALLY_CLI, "run"], cwd=clone, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True))
    outputs = [job.communicate(timeout=180)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    refs = fake_github.refs()
    for run in ("5001", "5002"):
        for name in ("api", "web", "_integration"):
            assert f"refs/heads/rally/issue-{issue}-{run}/{name}" in refs
    heads = sorted(p["head"] for p in fake_github.pulls.values())  # the fake keeps the branch name
    assert heads == [f"rally/issue-{issue}-5001/_integration", f"rally/issue-{issue}-5002/_integration"]
    markers = sorted(c["body"].split("\n", 1)[0] for c in fake_github.comments.values() if c["issue"] == issue)
    assert markers == [f"<!-- rally-gh:run:issue-{issue}-5001 -->", f"<!-- rally-gh:run:issue-{issue}-5002 -->"]


PUSH_TO_MAIN = """\
import os, pathlib, subprocess, tempfile
# Someone lands a commit on the remote's main while the team works.
env = dict(os.environ, GIT_INDEX_FILE=os.path.join(tempfile.mkdtemp(), "index"),
           GIT_AUTHOR_NAME="Bo", GIT_AUTHOR_EMAIL="bo@example.com",
           GIT_COMMITTER_NAME="Bo", GIT_COMMITTER_EMAIL="bo@example.com")
git = lambda *a, **k: subprocess.run(["git", *a], env=env, check=True, capture_output=True, text=True, **k).stdout.strip()
base = os.environ["RALLY_BASE_SHA"]  # the remote's main when the run started
git("read-tree", base)
blob = git("hash-object", "-w", "--stdin", input="landed during the run\\n")
git("update-index", "--add", "--cacheinfo", f"100644,{blob},LANDED.md")
commit = git("commit-tree", git("write-tree"), "-p", base, "-m", "landed on main")
git("push", "-q", REMOTE, f"{commit}:refs/heads/main")  # the teammate's own repository has no remote
name = os.environ["RALLY_TEAMMATE"]
pathlib.Path(f"src/{name}").mkdir(parents=True, exist_ok=True)
pathlib.Path(f"src/{name}/work.txt").write_text("work\\n")
"""


def test_in_actions_integration_goes_onto_the_remote_base_as_it_is_when_integrating(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    agent, lander = tmp_path / "agent.py", tmp_path / "lander.py"
    agent.write_text(AGENT)
    lander.write_text(PUSH_TO_MAIN.replace("REMOTE", repr(fake_github.authenticated_git_url)))
    issue, event = _shop_on_github(fake_github, tmp_path, (lander, agent))  # api lands a commit on main
    clone = tmp_path / "runner"
    git(tmp_path, "clone", "-q", fake_github.authenticated_git_url, str(clone))
    env = {**_env(fake_github, event), "GITHUB_RUN_ID": "77", "PATH": os.environ["PATH"]}
    out = io.StringIO()
    code = run_cmd.run(clone, read(env), out, progress_stream=io.StringIO())
    assert code == 0, out.getvalue()[-2500:]
    landed = git(fake_github.bare_repo, "rev-parse", "refs/heads/main").strip()
    integration = f"refs/heads/rally/issue-{issue}-77/_integration"
    files = git(fake_github.bare_repo, "ls-tree", "-r", "--name-only", integration).split()
    assert {"LANDED.md", "src/api/work.txt", "src/web/work.txt"} <= set(files)
    assert git(fake_github.bare_repo, "merge-base", integration, "refs/heads/main").strip() == landed


# --- The action's `teammates` and `max-parallel` inputs --------------------------


def _trio_on_github(fake: FakeGitHubServer, tmp_path: Path) -> tuple[int, Path]:
    """The shop with a third teammate, docs (a rally needs two at least): the issue and its labeled event."""
    fake.set_permission("alice", "write")
    issue = fake.create_issue("Shop", "All of it.", user="alice", labels=("rally:parallel",))
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    docs = _team_map(agent).split("  - name: web")[1].replace("web", "docs")
    origin = init_repo(tmp_path / "origin", {"README.md": "# shop\n", "rally.yml": _team_map(agent) + "  - name: docs" + docs})
    git(origin, "remote", "add", "origin", fake.authenticated_git_url)
    git(origin, "push", "-q", "origin", "main")
    return issue, _event(tmp_path, issue, "All of it.")


def _dispatch(tmp_path: Path, issue: int, **inputs: str) -> Path:
    event = tmp_path / "dispatch.json"
    event.write_text(json.dumps({"inputs": {"issue": str(issue), **inputs}, "sender": {"login": "alice", "type": "User"},
                                 "repository": {"default_branch": "main", "full_name": "owner/repo"}}))
    return event


def _dry_run(fake: FakeGitHubServer, tmp_path: Path, event_name: str, event: Path, **action: str) -> RunState:
    """A dry run in Actions with the action's inputs (``RALLY_*`` as action.yml sets them); its saved state."""
    env = {**_env(fake, event), "GITHUB_EVENT_NAME": event_name, "PATH": os.environ["PATH"], **action}
    run_id = f"inputs-{len(list(tmp_path.glob('origin/.git/rally/runs/*')))}"
    code = run_cmd.run(tmp_path / "origin", read(env), io.StringIO(), options=RunOptions(run_id=run_id, dry_run=True),
                       progress_stream=io.StringIO())
    assert code == 0  # a dry run that planned well succeeds, in Actions too
    return load_state(tmp_path / "origin" / ".git", run_id)


def test_the_actions_teammates_and_max_parallel_inputs_choose_who_runs_and_how_many_at_once(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    _, event = _trio_on_github(fake_github, tmp_path)
    state = _dry_run(fake_github, tmp_path, "issues", event, RALLY_TEAMMATES="web,docs", RALLY_MAX_PARALLEL="1")
    assert state.waves == (("web", "docs"),) and state.max_parallel == 1


def test_a_dispatch_chooses_who_runs_and_the_lowest_max_parallel_given_wins(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, _ = _trio_on_github(fake_github, tmp_path)
    event = _dispatch(tmp_path, issue, teammates="api web", **{"max-parallel": "3"})
    state = _dry_run(fake_github, tmp_path, "workflow_dispatch", event, RALLY_TEAMMATES="web docs", RALLY_MAX_PARALLEL="2")
    assert state.waves == (("api", "web"),) and state.max_parallel == 2
    # A dispatch that leaves them empty gets the action's.
    event = _dispatch(tmp_path, issue, teammates="", **{"max-parallel": ""})
    state = _dry_run(fake_github, tmp_path, "workflow_dispatch", event, RALLY_TEAMMATES="web docs", RALLY_MAX_PARALLEL="2")
    assert state.waves == (("web", "docs"),) and state.max_parallel == 2


def test_max_parallel_never_exceeds_the_maps(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, _ = _trio_on_github(fake_github, tmp_path)  # the map's max_parallel: the default 4
    event = _dispatch(tmp_path, issue, **{"max-parallel": "9"})
    state = _dry_run(fake_github, tmp_path, "workflow_dispatch", event, RALLY_MAX_PARALLEL="8")
    assert state.max_parallel == 4


@pytest.mark.parametrize(("action", "message"), [
    ({"RALLY_TEAMMATES": "api ../web"}, "`teammates`: '../web' is not a teammate name"),
    ({"RALLY_MAX_PARALLEL": "0"}, "`max-parallel` must be a whole number from 1"),
    ({"RALLY_MAX_PARALLEL": "two"}, "`max-parallel` must be a whole number from 1"),
])
def test_a_bad_action_input_is_refused_before_anything_runs(
        fake_github: FakeGitHubServer, tmp_path: Path, action: dict[str, str], message: str) -> None:
    _, event = _trio_on_github(fake_github, tmp_path)
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        _dry_run(fake_github, tmp_path, "issues", event, **action)
    assert not fake_github.comments


def test_a_run_refused_in_assess_says_so_on_the_issue_and_stops_showing_as_running(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    from rally_gh.errors import RallyError

    issue, event = _shop_on_github(fake_github, tmp_path, agents=(tmp_path / "gone.py", tmp_path / "gone.py"))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", fake_github.authenticated_git_url, str(clone))
    # The teammates' program is not installed on the runner: nothing may start.
    team = _team_map(tmp_path / "gone.py").replace(json.dumps(sys.executable), '"./tools/agent.sh"')
    (clone / "rally.yml").write_text(team.replace(f", {json.dumps(str(tmp_path / 'gone.py'))}", ""))
    git(clone, "commit", "-qam", "agents from the repository")
    git(clone, "push", "-q", "origin", "main")
    env = {**_env(fake_github, event), "PATH": os.environ["PATH"]}
    with pytest.raises(RallyError, match="tools/agent.sh"):
        run_cmd.run(clone, read(env), io.StringIO(), progress_stream=io.StringIO())
    (comment,) = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert "rally-gh did not start" in comment["body"] and "./tools/agent.sh" in comment["body"]
    assert "rally:running" not in fake_github.issues[issue]["labels"]
    assert not fake_github.pulls
