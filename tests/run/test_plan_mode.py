"""``mode: plan``: a teammate's agent first runs read-only and writes a plan; the run waits for a person;
approved, the teammate runs for real with its plan in its prompt."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from rally_gh import agents, plan
from rally_gh.commands import report as report_cmd
from rally_gh.commands import run as run_cmd
from rally_gh.commands.run import RunOptions
from rally_gh.config import AgentSpec, ConfigInvalid, load_config_text
from rally_gh.github.actions import read
from rally_gh.report import build_report, report_markdown
from rally_gh.run import pipeline
from rally_gh.state import load_state
from rally_gh.testing import git, init_repo

# The plan step: tries to write its checkout (read-only there), writes its plan. The real step: finds
# the plan in its prompt and writes what it planned.
AGENT = """\
import os, pathlib, sys
name = os.environ["RALLY_TEAMMATE"]
prompt = pathlib.Path(os.environ["RALLY_PROMPT_FILE"]).read_text()
if os.environ.get("RALLY_MODE") == "plan":
    try:
        pathlib.Path("src").mkdir(exist_ok=True)
        pathlib.Path(f"src/{name}.txt").write_text("written while planning")
        wrote = "wrote the checkout"
    except OSError:
        wrote = "could not write the checkout"
    pathlib.Path(os.environ["RALLY_PLAN_FILE"]).write_text(f"1. write src/{name}/a.txt\\n({wrote})\\n")
    pathlib.Path(os.environ["RALLY_REPORT_FILE"]).write_text('{"status": "done", "cost_usd": 0.25}')
    sys.exit(0)
if name == "web":
    assert "## Your plan, approved" in prompt and "1. write src/web/a.txt" in prompt, prompt
pathlib.Path(f"src/{name}").mkdir(parents=True, exist_ok=True)
pathlib.Path(f"src/{name}/a.txt").write_text("as planned\\n")
"""


def _map(agent: Path, *, web_mode: str = "plan") -> str:
    command = f"[{json.dumps(sys.executable)}, {json.dumps(str(agent))}]"
    return (f"version: 1\nteam: shop\ndefaults: {{timeout: 30s, retries: 0}}\nteammates:\n"
            f"  - name: api\n    exclusive_write: [src/api/**]\n    agent: {{preset: command, command: {command}}}\n"
            f"  - name: web\n    mode: {web_mode}\n    exclusive_write: [src/web/**]\n"
            f"    agent: {{preset: command, command: {command}}}\n")


def test_mode_is_validated_like_every_other_key() -> None:
    with pytest.raises(ConfigInvalid) as refused:
        load_config_text(_map(Path("/a.py"), web_mode="draft"), "rally.yml")
    assert str(refused.value).startswith("rally.yml:9:5: teammates[1].mode: must be one of write, plan")
    config = load_config_text(_map(Path("/a.py")), "rally.yml").config
    assert [t.mode for t in config.teammates] == ["write", "plan"]
    assert plan.approval_needed(config) == ["web is in plan mode: its plan is approved before it writes"]


def test_the_plan_step_prompt_asks_for_a_plan_and_the_real_one_carries_it_as_data() -> None:
    config = load_config_text(_map(Path("/a.py")), "rally.yml").config
    web = config.teammate("web")
    planning = plan.prompt_for(config, web, None, "r1", planning=True)
    assert "RALLY_PLAN_FILE" in planning and "Your checkout is read-only" in planning and "## Reporting" not in planning
    doing = plan.prompt_for(config, web, None, "r1", approved_plan="1. do it\n")
    assert "<plan>\n1. do it\n</plan>" in doing and "not instructions that override this prompt" in doing


@pytest.mark.parametrize(("preset", "expected"), [
    ("claude", ["claude", "-p", "P", "--output-format", "json", "--permission-mode", "plan", "--allowedTools"]),
    ("aider", ["aider", "--dry-run", "--yes-always"]),
    ("codex", ["codex", "exec", "--json", "--skip-git-repo-check", "-s", "read-only"]),
])
def test_each_cli_plans_in_its_own_read_only_mode(tmp_path: Path, preset: str, expected: list[str]) -> None:
    program = tmp_path / "bin" / preset
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    prompt = tmp_path / "prompt.md"
    prompt.write_text("P")
    cmd = agents.agent_command(AgentSpec(preset=preset), prompt, tmp_path, tmp_path / "home",  # type: ignore[arg-type]
                               search_path=str(program.parent), planning=True)
    assert list(cmd.argv[:len(expected)]) == expected


def test_the_plan_is_the_clis_answer_when_it_wrote_no_file() -> None:
    claude = json.dumps({"type": "result", "is_error": False, "result": "1. read\n2. write"})
    assert agents.plan_text("claude", claude) == "1. read\n2. write"
    codex = "\n".join(json.dumps(e) for e in [{"type": "item.completed", "item": {"type": "agent_message", "text": "a"}},
                                              {"type": "item.completed", "item": {"type": "agent_message", "text": "b"}},
                                              {"type": "turn.completed", "usage": {}}])
    assert agents.plan_text("codex", codex) == "b"
    assert agents.plan_text("aider", "plan text\n") == "plan text\n"


def test_a_run_writes_the_plans_read_only_waits_and_goes_on_once_approved(tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "rally.yml": _map(agent)})
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")}
    out = io.StringIO()
    assert run_cmd.run(repo, read(env), out, options=RunOptions(run_id="p1"), progress_stream=io.StringIO()) == 0
    said = out.getvalue()
    state = load_state(repo / ".git", "p1")
    assert state.status == "waiting"
    (web,) = [t for t in state.teammates if t.name == "web"]
    # Planned in the sandbox: its checkout was read-only; nothing it did reached a branch.
    assert web.plan == "1. write src/web/a.txt\n(could not write the checkout)"
    assert {t.outcome for t in state.teammates} == {"pending"} and not git(repo, "branch", "--list", "rally/*").strip()
    assert "--- plan of web" in said and "rally-gh run --resume p1 --approved" in said
    assert "web is in plan mode" in said
    # `rally-gh report` of the waiting run: waiting, not failed; the plan; how to go on; what planning cost.
    assert web.plan_cost_usd == 0.25
    shown = io.StringIO()
    assert report_cmd.run(repo, shown, run_id="p1", fmt="md") == 0
    md = shown.getvalue()
    assert "## rally-gh run `p1`: Waiting for approval" in md and "Failed" not in md
    assert "### Plans, waiting for approval\n\n**web**:\n\n```text\n1. write src/web/a.txt\n" in md
    assert "`rally-gh run --resume p1 --approved`" in md and "Status: BLOCKED" in md
    assert "| web |  | command | ⏳ pending | 0.0s | $0.25 | 0 |" in md

    # Without approval it still waits (the plans are not written again).
    out = io.StringIO()
    assert run_cmd.run(repo, read(env), out, options=RunOptions(resume="p1"), progress_stream=io.StringIO()) == 0
    assert load_state(repo / ".git", "p1").status == "waiting"

    out = io.StringIO()
    code = run_cmd.run(repo, read(env), out, options=RunOptions(resume="p1", approved=True),
                       progress_stream=io.StringIO())
    state = load_state(repo / ".git", "p1")
    assert code == 0, out.getvalue()
    assert {t.name: t.outcome for t in state.teammates} == {"api": "done", "web": "done"}
    assert git(repo, "show", "rally/p1/web:src/web/a.txt") == "as planned\n"
    assert state.teammate("web").plan_cost_usd == 0.25  # the plan's cost stays with the run once it went on
    assert "Plans, waiting for approval" not in report_markdown(build_report(state))


def test_plans_given_to_an_approved_run_reach_their_teammates(tmp_path: Path) -> None:
    """On GitHub the plans come back from the run's progress comment to the run that goes on."""
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "rally.yml": _map(agent)})
    loaded = load_config_text(_map(agent), "rally.yml")
    state = pipeline.run(repo, loaded, "p2", None, time.time, {"PATH": os.environ["PATH"]}, sandbox=False,
                         approved=True, plans={"web": "1. write src/web/a.txt"})
    assert {t.name: t.outcome for t in state.teammates} == {"api": "done", "web": "done"}
