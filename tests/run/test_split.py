"""Runs split across CI jobs (SPEC section 7), played the way docs/workflows/rally-matrix.yml plays them.

Every job is its own process (``python -m rally_gh ...``) in its own clone of
one remote, the fake GitHub's bare repository served over HTTP with token
auth. The jobs share nothing else but the artifacts they hand on (a folder of
the test stands for the workflow run's artifact store: one folder per
artifact, as actions/download-artifact leaves them). They run in the
workflow's order: the plan job, the teammate jobs of wave 1 side by side,
those of wave 2, the merge job, the publish job; only the publish job writes
to the remote. The faults are the ones a CI system produces (a job cancelled
before it reported) and the ones an agent can produce: an artifact it forged.
The act run of the workflow itself is in tests/github/test_action_act.py.
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
    # merge.verify: it passes; the merge job runs it in its sandbox.
    "verify": """
        import sys
        sys.exit(0)
    """,
}

OWNS = {"api": "[src/api/**]", "web": "[src/web/**]", "stray": "[src/stray/**]"}


def _map(scripts: Path) -> str:
    def command(name: str) -> str:
        return f"[{json.dumps(sys.executable)}, {json.dumps(str(scripts / f'{name}.py'))}]"

    verify = json.dumps(f"{sys.executable} {scripts / 'verify.py'}")
    lines = ["version: 1", "team: split", "max_parallel: 4", "defaults: {timeout: 20s, retries: 0}",
             f"merge: {{verify: [{verify}]}}", "teammates:"]
    for name in ("api", "stray", "web"):
        # web's agent is passed a runner variable by name: where its job has it, a risk of that job.
        passed = ", env: [WEB_PASSED]" if name == "web" else ""
        lines += [f"  - name: {name}", f"    task: Do the {name} work.", f"    exclusive_write: {OWNS[name]}",
                  f"    agent: {{preset: command, command: {command(name)}{passed}}}"]
        if name == "web":
            lines.append("    blocked_by: [api]")
    return "\n".join(lines) + "\n"


@dataclass
class Jobs:
    """The remote, a fresh clone per job (a CI runner's view of the repository), and the workflow
    run's artifact store."""

    server: FakeGitHubServer
    root: Path
    scripts: Path
    count: itertools.count[int]

    @property
    def store(self) -> Path:
        return self.root / "artifacts"

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

    def teammate(self, name: str, *options: str, run_id: str = RUN, **extra: str) -> subprocess.Popen[str]:
        """A teammate job: the earlier jobs' artifacts downloaded, its result uploaded as its own."""
        return self.start(name, "teammate", name, "--run", run_id, "--results", str(self.artifact(name)),
                          "--from", str(self.store), *options, **extra)

    def wave(self, names: Sequence[str], run_id: str = RUN, **extra: str) -> dict[str, tuple[int, str]]:
        """A matrix job: its teammate jobs side by side."""
        started = {n: self.teammate(n, run_id=run_id, **extra) for n in names}
        return {n: finish(p) for n, p in started.items()}

    def merge(self, **extra: str) -> tuple[int, str]:
        """The merge job: every teammate's artifact downloaded, the run's results uploaded."""
        return self.run("merge", "merge", "--run", RUN, "--from", str(self.store),
                        "--results", str(self.store / "rally-results"), **extra)

    def publish(self, **extra: str) -> tuple[int, str]:
        """The publish job: the merge job's results checked and pushed (no GitHub here: RALLY_REMOTE)."""
        return self.run("publish", "publish", "--results", str(self.store / "rally-results"), "--run-id", RUN,
                        RALLY_REMOTE="origin", **extra)

    def artifact(self, name: str) -> Path:
        return self.store / f"rally-teammate-{name}"

    def refs(self) -> dict[str, str]:
        return self.server.refs()

    def tree(self, ref: str) -> str:
        return git(self.server.bare_repo, "rev-parse", f"{ref}^{{tree}}").strip()

    def show(self, ref: str, path: str) -> str:
        return git(self.server.bare_repo, "show", f"{ref}:{path}")

    def record(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.artifact(name) / "teammate.json").read_text())["record"]
        return data

    def write_record(self, name: str, record: Mapping[str, Any]) -> None:
        """What an agent could do to its job's artifact: rewrite its record."""
        path = self.artifact(name) / "teammate.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "record": record}))


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


def _plan(jobs: Jobs, **extra: str) -> dict[str, str]:
    """The plan job: what it writes to $GITHUB_OUTPUT, as the workflow's later jobs read it."""
    output = jobs.root / "plan-output"
    output.unlink(missing_ok=True)
    code, text = jobs.run("plan", "plan", "--format", "matrix", GITHUB_OUTPUT=str(output), **extra)
    assert code == 0, text
    return step_outputs(output.read_text())


def step_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: ``name=value`` lines, and ``name<<DELIMITER`` heredocs."""
    outputs: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and "<<" not in name:
            outputs[name] = value
            continue
        name, _, delimiter = line.partition("<<")
        outputs[name] = "\n".join(iter(lambda: next(lines), delimiter))
    return outputs


def _wave_names(outputs: Mapping[str, str], wave: int) -> list[str]:
    return [entry["teammate"] for entry in json.loads(outputs[f"wave-{wave}"])["include"]]


def _plan_and_waves(jobs: Jobs) -> None:
    """The jobs before the merge: the plan, then each wave's teammate jobs."""
    outputs = _plan(jobs)
    for wave in range(1, int(outputs["waves"]) + 1):
        jobs.wave(_wave_names(outputs, wave))


# --- The jobs in the workflow's order --------------------------------------------


def test_the_plan_job_gives_the_workflow_one_matrix_per_wave(jobs: Jobs) -> None:
    outputs = _plan(jobs)
    assert outputs["waves"] == "2" and outputs["max-parallel"] == "4"
    assert _wave_names(outputs, 1) == ["api", "stray"] and _wave_names(outputs, 2) == ["web"]
    assert "wave-3" not in outputs  # the workflow skips a wave job whose output is empty


def test_a_split_run_integrates_the_same_tree_as_a_single_job_run(jobs: Jobs) -> None:
    refs_before = jobs.refs()
    _plan_and_waves(jobs)
    code, report = jobs.merge()
    assert code == 1, report  # stray wrote README.md: partial, in both kinds of run
    assert f"## rally-gh run `{RUN}`: Partial" in report
    assert jobs.refs() == refs_before, "only the publish job writes to the repository"
    code, report = jobs.publish()
    assert code == 1 and f"## rally-gh run `{RUN}`: Partial" in report, report
    # merge.verify passed on the very tree the publish job re-derived: nothing unverified.
    assert "unverified" not in report

    single = jobs.clone("single")
    proc = subprocess.run([*RALLY_CLI, "run", "--run-id", RUN], cwd=single, env=job_env(),
                          capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    integration = f"refs/heads/rally/{RUN}/_integration"
    assert jobs.tree(integration) == git(single, "rev-parse", f"{integration}^{{tree}}").strip()
    assert "src/web/app.js" in git(jobs.server.bare_repo, "ls-tree", "-r", "--name-only", integration)

    # The publish job pushed the teammates' branches; the records travelled as artifacts, not refs.
    refs = jobs.refs()
    for name in ("api", "web"):
        assert f"refs/heads/rally/{RUN}/{name}" in refs
    assert not [r for r in refs if r.startswith("refs/rally/") and "/results/" in r]
    assert (jobs.record("api")["outcome"], jobs.record("stray")["outcome"]) == ("done", "violated")
    assert jobs.show(integration, "README.md") == "# split\n"


# --- Faults ----------------------------------------------------------------------


def test_a_teammate_job_that_never_reported_is_an_outcome_not_a_hang(jobs: Jobs) -> None:
    # api's job was cancelled before it uploaded anything; stray's crashed after writing its bundle only.
    jobs.artifact("stray").mkdir(parents=True)
    (jobs.artifact("stray") / "teammate.bundle").write_bytes(b"")
    started = time.monotonic()
    (web_code, web_out), = jobs.wave(["web"]).values()
    assert web_code == 1 and "web: skipped (blocker api is not done (pending))" in web_out
    code, report = jobs.merge()
    assert time.monotonic() - started < JOB_TIMEOUT_S
    assert code == 1, report
    assert "no result from its job (no rally-teammate-api/teammate.json)" in report
    assert "no result from its job (no rally-teammate-stray/teammate.json)" in report
    code, report = jobs.publish()
    assert code == 1, report
    assert f"refs/heads/rally/{RUN}/_integration" not in jobs.refs()


def test_results_of_another_run_are_ignored(jobs: Jobs) -> None:
    jobs.wave(["api"], run_id="s0")
    other = jobs.record("api")
    assert other["outcome"] == "done" and other["branch"] == "rally/s0/api"
    # Its artifact, taken for this run's: its bundle holds the other run's branch, not this one's.
    code, report = jobs.merge()
    assert code == 1, report
    assert f"its bundle does not hold rally/{RUN}/api at {other['head_sha'][:10]}" in report
    assert "no result from its job (no rally-teammate-stray/teammate.json)" in report
    jobs.publish()
    assert not [r for r in jobs.refs() if r.startswith(f"refs/heads/rally/{RUN}/")]


def test_a_forged_result_is_checked_again_by_the_merge_and_the_publish_jobs(jobs: Jobs) -> None:
    _plan_and_waves(jobs)
    main_before = jobs.refs()["refs/heads/main"]
    honest = jobs.record("stray")
    assert honest["outcome"] == "violated"
    # stray's agent rewrites its result: done, nothing violated, and its branch named as main.
    jobs.write_record("stray", {**honest, "outcome": "done", "reason": "", "violations": [], "branch": "main"})
    code, report = jobs.merge()
    assert code == 1, report
    assert "its result said done; the merge job found 1 path it does not own: README.md" in report
    # The merge job's own results, rewritten as code merge.verify ran could: stray done and integrated.
    results = jobs.store / "rally-results" / "run.json"
    claimed = json.loads(results.read_text())
    for record in claimed["teammates"]:
        if record["name"] == "stray":
            record.update(outcome="done", reason="", violations=[], integrated=True)
    results.write_text(json.dumps(claimed))
    code, report = jobs.publish()
    assert code == 1, report
    assert "refused by the publish job: it wrote 1 path it does not own under the map of the base commit: " \
           "README.md" in report, report
    integration = f"refs/heads/rally/{RUN}/_integration"
    assert "src/stray/x.py" not in git(jobs.server.bare_repo, "ls-tree", "-r", "--name-only", integration)
    assert jobs.show(integration, "README.md") == "# split\n"
    assert jobs.refs()["refs/heads/main"] == main_before  # the record's branch name is never believed


def test_a_blocker_rerun_alone_leaves_its_dependents_old_result_out_until_it_runs_again(jobs: Jobs) -> None:
    """api's job re-run by itself (by hand, or a workflow of one's own) replaces the work web's job was
    built on: the merge job leaves web's old result out, says whose job ran again and what to re-run,
    and integrates the others; web's job re-run on api's new work is integrated as usual."""
    _plan_and_waves(jobs)
    old_start = jobs.record("web")["start_sha"]
    (jobs.scripts / "api-version").write_text("v2")
    (api_code, api_out), = jobs.wave(["api"]).values()
    assert api_code == 0, api_out
    code, report = jobs.merge()
    assert code == 1, report
    reason = ("left out of the integration: its job started from the work of its blocker api as it was before "
              "that job ran again, and was not made or checked on api's current work; re-run web's job, then "
              "the merge and publish jobs")
    assert reason in report, report
    merged = json.loads((jobs.store / "rally-results" / "run.json").read_text())
    records = {t["name"]: t for t in merged["teammates"]}
    assert (records["web"]["outcome"], records["web"]["integrated"]) == ("skipped", False)
    assert records["api"]["integrated"] and merged["integrated"] == ["api"]
    # The publish job publishes the tree merge.verify passed: api's new work, without web's stale result.
    code, report = jobs.publish()
    assert code == 1 and "unverified" not in report, report
    # The report the issue and the pull request show says it as the merge job did, then the publish job's check.
    assert f"{reason}; refused by the publish job too: it started from" in report, report
    integration = f"refs/heads/rally/{RUN}/_integration"
    assert jobs.show(integration, "src/api/orders.py") == "VERSION = 'v2'\n"
    assert "src/web/app.js" not in git(jobs.server.bare_repo, "ls-tree", "-r", "--name-only", integration)

    # web's job re-run on api's new work: integrated as usual.
    (web_code, web_out), = jobs.wave(["web"]).values()
    assert web_code == 0, web_out
    assert jobs.record("web")["start_sha"] != old_start
    code, report = jobs.merge()
    assert "left out of the integration" not in report, report
    merged = json.loads((jobs.store / "rally-results" / "run.json").read_text())
    assert merged["integrated"] == ["api", "web"], report


def test_a_result_whose_start_is_no_commit_is_an_outcome_not_the_merge_jobs_failure(jobs: Jobs) -> None:
    # api's agent rewrites its record: its start names the base's tree, not a commit.
    jobs.wave(["api"])
    honest = jobs.record("api")
    tree = git(jobs.server.bare_repo, "rev-parse", "main^{tree}").strip()
    jobs.write_record("api", {**honest, "start_sha": tree})
    code, report = jobs.merge()
    assert code == 1 and "error" not in report, report
    assert f"its result names {tree[:10]} as its start, not a commit its head {honest['head_sha'][:10]} " \
           "descends from" in report, report
    # The publish job finds the same in the merge job's results: refused, and the run published.
    code, report = jobs.publish()
    assert code == 1 and "unexpected error" not in report, report
    assert f"refused by the publish job too: it says it started from {tree[:10]}, which is not between the base " \
           "and its head" in report, report


def test_an_unreadable_result_is_an_outcome(jobs: Jobs) -> None:
    jobs.artifact("api").mkdir(parents=True)
    (jobs.artifact("api") / "teammate.json").write_text("not json")
    code, report = jobs.merge()
    assert code == 1 and "Traceback" not in report, report
    assert "its job's result (rally-teammate-api): its record cannot be read" in report


def test_a_teammate_jobs_risks_are_risks_of_the_published_report(jobs: Jobs) -> None:
    """Each teammate job's risks (no sandbox, a runner variable passed to its agent) travel with its
    result through the merge job into the report."""
    jobs.wave(["api", "stray"])
    code, out = finish(jobs.teammate("web", "--no-sandbox", WEB_PASSED="x"))
    assert code == 0, out
    jobs.merge()
    code, report = jobs.publish()
    assert "web's job: agents, their verify commands and merge.verify ran without a sandbox" in report, report
    assert "web's job: web's agent receives runner variables WEB\\_PASSED (env passthrough)" in report, report



def test_one_teammate_jobs_many_risks_push_out_no_other_jobs_nor_the_merge_jobs_own() -> None:
    """A teammate job's result is untrusted: claiming the 20 risks a result may carry, it still cannot
    push another job's first risk (its sandbox) out of the 50 the publish job shows, nor the merge job's."""
    from rally_gh.run.split import teammate_jobs_risks

    risks = teammate_jobs_risks({"api": [f"noise {i}" for i in range(20)], "db": [f"noise {i}" for i in range(20)],
                                 "web": ["agents ... ran without a sandbox", "its agent receives runner variables X"]},
                                limit=10)
    assert risks[:3] == ["api's job: noise 0", "db's job: noise 0", "web's job: agents ... ran without a sandbox"]
    assert "web's job: its agent receives runner variables X" in risks
    assert len(risks) == 10 and risks[-1].startswith("33 more risks of the jobs of api, db are not shown here"), risks
    assert teammate_jobs_risks({"web": ["a", "b"]}) == ["web's job: a", "web's job: b"]


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
        assert run_step["run"] == ('rally-gh teammate "$TEAMMATE" --run "$RUN_ID" --results "$RUNNER_TEMP/rally-teammate" '
                                   '--from "$RUNNER_TEMP/rally-teammates"')
        assert run_step["env"]["TEAMMATE"] == "${{ matrix.teammate }}"  # the key plan's matrix uses
        # A dispatch names the issue without its text: the plan job reads it, this job holds no token.
        assert run_step["env"]["RALLY_ISSUE_TEXT"] == "${{ needs.plan.outputs.issue-text }}"
        assert job["permissions"] == {"contents": "read"}
        uses = [str(s.get("uses", "")).split("@")[0] for s in job["steps"]]
        # Its result is its artifact, named as rally-gh reads it; later waves download the earlier ones.
        upload = job["steps"][uses.index("actions/upload-artifact")]
        assert upload["with"]["name"] == "rally-teammate-${{ matrix.teammate }}" and upload["with"]["overwrite"] is True
        assert upload["with"]["path"] == "${{ runner.temp }}/rally-teammate"
        assert ("actions/download-artifact" in uses) == (i > 1)
        if i > 1:
            download = job["steps"][uses.index("actions/download-artifact")]
            assert download["with"] == {"pattern": "rally-teammate-*", "path": "${{ runner.temp }}/rally-teammates"}
        # The sandbox the agents run in, set up as the action does (refused on ubuntu-latest otherwise).
        assert [s["run"] for s in job["steps"] if "bwrap" in s.get("run", "")] == [_action_bwrap_script()]


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


def _action_bwrap_script() -> str:
    action = YAML(typ="safe", pure=True).load((WORKFLOW.parents[2] / "action.yml").read_text())
    (script,) = [s["run"] for s in action["runs"]["steps"] if "bwrap" in s.get("run", "")]
    return str(script)


def test_the_merge_job_runs_after_every_wave_whatever_their_outcome() -> None:
    workflow = _workflow()
    merge = _jobs_of(workflow)["merge"]
    assert merge["needs"] == ["plan", *_wave_jobs(workflow)]
    assert "always()" in str(merge["if"]) and "needs.plan.result == 'success'" in str(merge["if"])
    (step,) = [s for s in merge["steps"] if "rally-gh merge" in s.get("run", "")]
    assert step["run"] == ('rally-gh merge --run "$RUN_ID" --from "$RUNNER_TEMP/rally-teammates" '
                           '--results "$RUNNER_TEMP/rally-results"')
    assert merge["permissions"] == {"contents": "read"}
    assert [s["run"] for s in merge["steps"] if "bwrap" in s.get("run", "")] == [_action_bwrap_script()]
    uses = [str(s.get("uses", "")).split("@")[0] for s in merge["steps"]]
    assert merge["steps"][uses.index("actions/upload-artifact")]["with"]["name"] == "rally-results"


def test_the_publish_job_publishes_the_merge_jobs_results_and_runs_nothing_else() -> None:
    workflow = _workflow()
    publish = _jobs_of(workflow)["publish"]
    assert publish["needs"] == ["plan", "merge"]
    # After a merge job that failed too (a partial run fails it): its results are still published.
    assert "!cancelled()" in str(publish["if"]) and "needs.plan.result == 'success'" in str(publish["if"])
    steps = publish["steps"]
    assert [str(s.get("uses", "")).split("@")[0] for s in steps] == [
        "actions/checkout", "actions/download-artifact", "rally-gh/rally-gh"]
    assert steps[1]["with"]["name"] == "rally-results"
    assert steps[2]["with"] == {"command": "publish", "run-id": "${{ needs.plan.outputs.run-id }}"}


def test_the_workflow_grants_least_privilege_and_keeps_tokens_out_of_checkouts() -> None:
    workflow = _workflow()
    assert workflow["permissions"] == {}
    concurrency = workflow["concurrency"]
    assert "inputs.issue" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False
    jobs = _jobs_of(workflow)
    assert jobs["plan"]["permissions"] == {"contents": "read", "issues": "write"}  # reads the issue, announces the run
    # tests/github/test_workflow_lint.py checks every job against the least its kind needs.
    for job in jobs.values():
        checkout = job["steps"][0]
        assert checkout["uses"].startswith("actions/checkout@")
        # An agent's worktree shares .git/config: a persisted token there would be the agent's too.
        assert checkout["with"]["persist-credentials"] is False


def test_the_issues_rally_block_chooses_who_runs_in_every_job(jobs: Jobs, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    body = "```rally\napi: Build the API\nstray: Tidy up\n```\n"
    event.write_text(json.dumps({"action": "labeled", "issue": {"number": 3, "title": "Pick", "body": body}}))
    env = {"GITHUB_EVENT_PATH": str(event)}
    code, out = jobs.run("plan", "plan", "--format", "matrix", **env)
    assert code == 0 and json.loads(out.splitlines()[0]) == {
        "wave-1": {"include": [{"teammate": "api"}, {"teammate": "stray"}]}}
    done = jobs.wave(["api", "stray", "web"], **env)
    assert done["web"][0] == 0 and "web: not in this run (the issue's rally block names api, stray)" in done["web"][1]
    assert not jobs.artifact("web").exists()
    code, report = jobs.merge(**env)
    assert "| web |" not in report and "web: skipped" not in report, report
    code, report = jobs.publish(**env)
    assert "| web |" not in report and "web: skipped" not in report, report
    assert f"refs/heads/rally/{RUN}/api" in jobs.refs() and f"refs/heads/rally/{RUN}/web" not in jobs.refs()


def test_a_dispatch_reads_the_issue_so_its_rally_block_chooses_who_runs_in_every_job(jobs: Jobs, tmp_path: Path) -> None:
    # The matrix workflow starts only on workflow_dispatch, whose payload names the issue but carries
    # none of its text: the plan job asks GitHub for it and passes it on to the jobs that hold no token.
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
    issue_text = _plan(jobs, **env)["issue-text"]
    assert issue_text.startswith("Ship orders") and issue_text.endswith(body.rstrip("\n")), issue_text
    # The teammate and merge jobs: no token, the issue's text as the plan job read it.
    tokenless = {**{k: v for k, v in env.items() if k != "GITHUB_TOKEN"}, "RALLY_ISSUE_TEXT": issue_text}
    done = jobs.wave(["api", "web"], **tokenless)
    assert done["api"][0] == 0, done["api"][1]
    assert "web: not in this run (the issue's rally block names api, stray)" in done["web"][1]
    code, report = jobs.merge(**tokenless)
    assert "| web |" not in report and "web: skipped" not in report, report
    assert jobs.record("api")["task_title"] == "Build the orders API"  # the rally block's task, not the map's


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
