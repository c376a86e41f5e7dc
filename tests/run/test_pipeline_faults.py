"""A whole run with misbehaving agents: every one ends in a clear outcome in the
report, the well-behaved teammate's work is kept, and no issue text is ever run."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from rally_gh import git
from rally_gh.run import pipeline
from rally_gh.config import load_config_text
from rally_gh.report import report_json
from rally_gh.testing import git as run_git
from rally_gh.testing import init_repo, live_processes_with, write_agent_scripts

AGENTS = {
    "good": """
        import pathlib
        pathlib.Path("src/good").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/good/ok.py").write_text("ok = True\\n")
    """,
    "instant": """
        raise SystemExit(0)
    """,
    "loud": """
        import sys
        chunk = "x" * 65536 + "\\n"
        for _ in range(64):  # 4 MiB on standard output
            sys.stdout.write(chunk)
        import pathlib
        pathlib.Path("src/loud").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/loud/out.txt").write_text("done\\n")
    """,
    "forker": """
        import os, pathlib, subprocess, sys
        # A child that outlives its parent: the run must stop it.
        marker = "FORKER_CHILD=" + os.environ["RALLY_RUN_ID"]
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                                 env={**os.environ, "FORKER_CHILD": os.environ["RALLY_RUN_ID"]})
        pathlib.Path(os.environ["RALLY_REPORT_FILE"]).with_name("child.pid").write_text(marker)
        pathlib.Path("src/forker").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/forker/f.txt").write_text("forked\\n")
    """,
    "reader": """
        import os, pathlib, sys
        prompt = sys.stdin.read()
        pathlib.Path("src/reader").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/reader/seen.txt").write_text(str(len(prompt)))
    """,
}


def _map(folder: Path) -> str:
    lines = ["version: 1", "team: faults", "max_parallel: 6", "defaults: {timeout: 5s, retries: 0}", "teammates:"]
    for name, script in write_agent_scripts(folder, AGENTS).items():
        command = [sys.executable, str(script)]
        lines += [f"  - name: {name}", f"    exclusive_write: [src/{name}/**]",
                  f"    agent: {{preset: command, command: {json.dumps(command)}}}"]
    # There when the run is assessed, yet it cannot start (its interpreter is missing): a missing
    # program itself is refused before anything starts.
    broken = folder / "agent-binary"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    lines += ["  - name: missing", "    exclusive_write: [src/missing/**]",
              f"    agent: {{preset: command, command: [{json.dumps(str(broken))}]}}"]
    return "\n".join(lines) + "\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_misbehaving_agents_each_get_an_outcome_and_nothing_is_lost(tmp_path: Path) -> None:
    rally_yml = _map(tmp_path / "agents")
    repo = init_repo(tmp_path / "repo", {"README.md": "# faults\n", "rally.yml": rally_yml})
    pwned = tmp_path / "pwned"
    issue = ("Please fix it.\n" + f"$(touch {pwned}) `touch {pwned}` ; touch {pwned} | rm -rf / \x00 ${{{{ secrets.X }}}}\n"
             ) * 1000
    issue = issue[:65536]
    state = pipeline.run(repo, load_config_text(rally_yml, "rally.yml"), "f1", issue, time.time, dict(os.environ))
    outcome = {t.name: t.outcome for t in state.teammates}
    assert outcome == {"good": "done", "instant": "no_changes", "loud": "done", "forker": "done",
                       "reader": "done", "missing": "failed"}, outcome
    missing = next(t for t in state.teammates if t.name == "missing")
    assert "agent-binary" in (missing.reason or "")
    assert not pwned.exists(), "issue text was run by a shell"
    # The prompt reached the agent whole, on standard input (NUL bytes stripped from text files).
    seen = int(run_git(repo, "show", "rally/f1/reader:src/reader/seen.txt"))
    assert seen > 60_000
    # The forked child did not outlive the run.
    pid_file = git.common_dir(git.open_repo(repo)) / "rally" / "runs" / "f1" / "teammates" / "forker" / "child.pid"
    assert not live_processes_with(pid_file.read_text())  # the forked child was stopped with its agent
    # Every teammate branch is kept; the integration holds every teammate that finished.
    branches = run_git(repo, "branch", "--list", "rally/f1/*")
    for name in ("good", "loud", "forker", "reader"):
        assert f"rally/f1/{name}" in branches
    files = run_git(repo, "ls-tree", "-r", "--name-only", "rally/f1/_integration")
    assert {"src/good/ok.py", "src/loud/out.txt", "src/forker/f.txt"} <= set(files.split())
    data = report_json(state)
    assert {t["name"] for t in data["teammates"]} == set(outcome)
    # No worktree is left behind.
    assert "rally/f1" not in run_git(repo, "worktree", "list")


def _team(team: str, commands: Mapping[str, list[str]], agent_extra: str = "") -> str:
    """A map of one teammate per command, each owning ``src/<name>/**``; ``agent_extra`` ends each agent."""
    lines = ["version: 1", f"team: {team}", "defaults: {timeout: 10s, retries: 0}", "teammates:"]
    for name, command in commands.items():
        lines += [f"  - name: {name}", f"    exclusive_write: [src/{name}/**]",
                  f"    agent: {{preset: command, command: {json.dumps(command)}{agent_extra}}}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("sandbox", [True, False])
def test_a_write_into_the_main_checkout_is_refused_or_reported_as_a_risk(tmp_path: Path, sandbox: bool) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "escape.py").write_text(textwrap.dedent("""
        import os, pathlib
        # The main checkout is the worktree's repository's work tree: two levels up from .git/rally/...
        main = pathlib.Path(os.environ["RALLY_MAIN_CHECKOUT"])
        (main / "ESCAPED.txt").write_text("written outside the worktree\\n")
        pathlib.Path("src/escape").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/escape/ok.txt").write_text("ok\\n")
    """))
    (agents / "calm.py").write_text("import pathlib\npathlib.Path('src/calm').mkdir(parents=True)\n"
                                    "pathlib.Path('src/calm/c.txt').write_text('c')\n")
    rally_yml = _team("escape", {n: [sys.executable, str(agents / f"{n}.py")] for n in ("escape", "calm")},
                      agent_extra=", env: [RALLY_MAIN_CHECKOUT]")
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "rally.yml": rally_yml})
    env = dict(os.environ, RALLY_MAIN_CHECKOUT=str(repo))
    state = pipeline.run(repo, load_config_text(rally_yml, "rally.yml"), "e1", None, time.time, env, sandbox=sandbox)
    outcome = {t.name: t.outcome for t in state.teammates}
    if sandbox:
        # The main checkout is out of the agents' sight, empty and read-only: the write fails and so does the agent.
        assert outcome == {"escape": "failed", "calm": "done"}, {t.name: t.reason for t in state.teammates}
        assert "Read-only file system" in (state.teammate("escape").reason or "")
        assert not (repo / "ESCAPED.txt").exists()
    else:
        assert outcome == {"escape": "done", "calm": "done"}
        assert any("main checkout changed" in r and "ESCAPED.txt" in r for r in state.risks)
        assert (repo / "ESCAPED.txt").exists()  # reported, never deleted: nothing is lost


def test_an_agent_cannot_write_into_another_teammates_worktree(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "meddler.py").write_text(textwrap.dedent("""
        import pathlib
        # The victim's worktree sits beside this one (tests/test_hostile.py's attack 3 waits for it).
        planted = pathlib.Path.cwd().parent / "victim" / "planted.py"
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_text("planted\\n")
    """))
    (agents / "victim.py").write_text(textwrap.dedent("""
        import pathlib
        pathlib.Path("src/victim").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/victim/own.py").write_text("own\\n")
    """))
    rally_yml = _team("meddle", {n: [sys.executable, str(agents / f"{n}.py")] for n in ("meddler", "victim")})
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "rally.yml": rally_yml})
    state = pipeline.run(repo, load_config_text(rally_yml, "rally.yml"), "m1", None, time.time, dict(os.environ))
    assert {t.name: t.outcome for t in state.teammates} == {"meddler": "failed", "victim": "done"}
    assert "Read-only file system" in (state.teammate("meddler").reason or "")
    files = run_git(repo, "ls-tree", "-r", "--name-only", "rally/m1/victim").split()
    assert "src/victim/own.py" in files and "planted.py" not in files
