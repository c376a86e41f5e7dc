"""Whole runs (``pipeline.run``, as ``rally-gh run`` does it) with a real CLI as a teammate.

test_real_clis.py drives one attempt in a worktree of its own; these go
through everything a run does around it: the worktree under
``$RALLY_WORKTREES`` (a folder of the test's), the preset's command in the
run's sandbox, the commit of what the agent left, reconciliation against its
``exclusive_write``, and the report. The real CLI is teammate ``api`` and owns
``src/**``; a scripted ``lib`` teammate (``preset: command``) makes the plan's
second. Same network namespace and model stub as test_real_clis.py (drive.py).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from netns import preset, run_scenario, unshare_prefix
from test_real_clis import CLAUDE_PRICE_PER_TOKEN, CODEX_MODEL, SETUPS, WRITES_ITS_FILE, Scenario, cli_params

from rally_gh.agents import CODEX_PRICES_PER_MTOK
from rally_gh.state import STATE_FILE, runs_dir
from rally_gh.testing import git, init_repo

pytestmark = pytest.mark.slow

WRITES_A_FILE_IT_DOES_NOT_OWN: Scenario = [{"write": "NOTES.md", "content": "not mine\n"},
                                           {"answer": "Wrote NOTES.md."}]

LIB_SCRIPT = "import pathlib; pathlib.Path('lib').mkdir(); pathlib.Path('lib/new.txt').write_text('lib\\n')"


class Run:
    """One ``rally-gh run`` of a two-teammate map whose ``api`` is the real CLI; what it reported."""

    def __init__(self, tmp_path: Path, cli: str, scenario: Scenario, run_id: str = "r1") -> None:
        setup = SETUPS[preset(cli)](tmp_path)
        api_agent = {"preset": preset(cli), "model": setup["model"], "args": setup["args"], "env": sorted(setup["env"])}
        rally = {"version": 1, "team": "real", "max_parallel": 2, "defaults": {"timeout": "60s", "retries": 0},
                 "teammates": [
                     {"name": "api", "role": "api role", "task": "Create src/hello.txt saying hello.",
                      "exclusive_write": ["src/**"], "agent": api_agent},
                     {"name": "lib", "role": "lib role", "task": "Create lib/new.txt.",
                      "exclusive_write": ["lib/**"],
                      "agent": {"preset": "command", "command": [sys.executable, "-c", LIB_SCRIPT]}}]}
        rally_yml = json.dumps(rally, indent=1)  # JSON is YAML; the {url} in it is filled in drive.py
        self.repo = init_repo(tmp_path / "repo", {"README.md": "# demo\n", "src/__init__.py": "",
                                                  "rally.yml": rally_yml})
        self.worktrees = tmp_path / "worktrees"
        self.run_id = run_id
        job = {"repo": str(self.repo), "rally_yml": rally_yml, "run_id": run_id, "model": setup["model"],
               "scenario": scenario, "env": {**setup["env"], "RALLY_WORKTREES": str(self.worktrees)}}
        self.result = run_scenario(cli, job)
        self.report: dict[str, Any] = self.result["report"]
        self.requests: list[dict[str, Any]] = self.result["requests"]

    def teammate(self, name: str) -> dict[str, Any]:
        return next(t for t in self.report["teammates"] if t["name"] == name)

    def files_on(self, branch: str) -> list[str]:
        return git(self.repo, "ls-tree", "-r", "--name-only", branch).split()

    def logs(self, name: str = "api") -> str:
        """What the run kept of the agent's output, for an assertion's message."""
        return "\n".join(f"--- {log}\n{text}" for log, text in self.result["logs"].get(name, {}).items())


def assert_ran_as_a_run(run: Run) -> None:
    """Offline, no worktree left behind, the main checkout untouched."""
    assert run.result["netns"] or not unshare_prefix(), "the run went outside its network namespace"
    assert [r["path"] for r in run.requests if not r["protocol"] and r["path"] != "/"] == []
    assert git(run.repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(run.repo, "status", "--porcelain") == ""
    assert not run.worktrees.exists() or not any(run.worktrees.rglob("hello.txt"))


def expected_cost_and_tokens(cli: str, run: Run) -> tuple[float, int]:
    """What the preset must have reported: the usage the stub served at the CLI's prices, or for
    aider what it printed (its own token count, rounded to 0.1k; its own session cost)."""
    if preset(cli) == "aider":
        log = run.logs()
        calls = re.findall(r"^Tokens: ([\d.]+)(k?) sent, ([\d.]+)(k?) received\.", log, re.M)
        costs = re.findall(r"\$([\d.]+) session\.", log)
        assert calls and costs, log
        tokens = sum(int(float(n) * (1000 if k else 1)) for call in calls for n, k in (call[:2], call[2:]))
        return float(costs[-1]), tokens
    sent, received = run.result["usage_served"]
    per_input, per_output = CLAUDE_PRICE_PER_TOKEN if preset(cli) == "claude" else (
        CODEX_PRICES_PER_MTOK[CODEX_MODEL][0] / 1e6, CODEX_PRICES_PER_MTOK[CODEX_MODEL][2] / 1e6)
    return sent * per_input + received * per_output, sent + received


# A known fault of the aider preset, not of these tests: aider writes its repo-map cache into the
# worktree, the run commits it with the agent's work, and reconciliation finds a path api does not own.
# `--map-tokens 0` in the preset's argv (rally_gh/agents.py) keeps aider from writing it.
AIDER_TAGS_CACHE = ".aider.tags.cache.v4/cache.db"  # aider's repository map cache: left out of the commit


@pytest.mark.parametrize("cli", cli_params("claude", "codex", "aider"))
def test_a_real_cli_teammate_is_done_with_its_file_on_its_branch_and_its_cost(tmp_path: Path, cli: str) -> None:
    run = Run(tmp_path, cli, WRITES_ITS_FILE)
    api = run.teammate("api")
    assert "src/hello.txt" in api["files_changed"], f"{api['outcome']}: {api['reason']}\n{run.logs()}"
    assert git(run.repo, "show", f"{api['branch']}:src/hello.txt") == "Hello from the model\n"
    # What the preset parsed from the CLI reaches the run's state (run.json) and its report.
    cost, tokens = expected_cost_and_tokens(cli, run)
    assert api["cost_usd"] == pytest.approx(cost, abs=1e-4) and api["cost_usd"] > 0
    assert api["tokens"] == tokens and tokens > 0
    saved = json.loads((runs_dir(run.repo / ".git") / run.run_id / STATE_FILE).read_text())
    record = next(t for t in saved["teammates"] if t["name"] == "api")
    assert record["tokens"] == tokens and record["cost_usd"] == pytest.approx(cost, abs=1e-4)
    if preset(cli) != "aider":  # the CLI worked in the run's worktree, under $RALLY_WORKTREES
        assert str(run.worktrees) in json.dumps(run.requests[-1]["body"])
    assert api["outcome"] == "done", f"{api['outcome']}: {api['reason']}\n{run.logs()}"
    assert api["files_changed"] == ["src/hello.txt"] and record["outcome"] == "done"
    assert AIDER_TAGS_CACHE not in run.files_on(api["branch"])
    assert run.teammate("lib")["outcome"] == "done"
    assert sorted(run.report["integrated"]) == ["api", "lib"] and run.report["violations"] == []
    assert "src/hello.txt" in run.files_on(run.report["integration_branch"])
    assert_ran_as_a_run(run)


@pytest.mark.parametrize("cli", cli_params("codex"))  # the fastest of the three
def test_a_real_cli_writing_outside_its_exclusive_write_is_violated(tmp_path: Path, cli: str) -> None:
    run = Run(tmp_path, cli, WRITES_A_FILE_IT_DOES_NOT_OWN)
    api = run.teammate("api")
    assert api["outcome"] == "violated", f"{api['outcome']}: {api['reason']}\n{run.logs()}"
    assert [(v["teammate"], v["path"], v["kind"]) for v in run.report["violations"]] == [
        ("api", "NOTES.md", "added")]
    assert "NOTES.md" in api["reason"]
    assert "NOTES.md" in run.files_on(api["branch"])  # kept on its branch, for a person to look at
    assert "NOTES.md" not in run.files_on(run.report["integration_branch"])
    assert run.report["integrated"] == ["lib"] and run.teammate("lib")["outcome"] == "done"
    assert_ran_as_a_run(run)
