"""A team's first day, as the click trial saw it, replayed on a generated project.

A user with their identity in ``~/.gitconfig`` (and none in the repository)
runs a team on a small click-like package whose real pytest suite is
``merge.verify``. The agents commit with the git CLI (``commit -a``, ``add``
then ``commit``), one teammate works in a sparse checkout, one is blocked by
another, and the integration goes onto the commit the run started from. Then the user checks a
teammate's branch and tries ``git commit -a`` on it with the hook installed.
Each step is a command a user types; each assertion is something the trial
saw go wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rally_gh.testing import RALLY_CLI, git, init_repo

pytestmark = pytest.mark.slow

PACKAGE: dict[str, str] = {
    "README.md": "# clicky\n\nA tiny command-line toolkit.\n",
    "CHANGES.md": "# Changes\n\n## 1.0\n\n- First release.\n",
    "pyproject.toml": '[project]\nname = "clicky"\nversion = "1.0"\n',
    "src/clicky/__init__.py": "",
    "src/clicky/utils.py": "def echo(text: str) -> str:\n    return text\n",
    "src/clicky/core.py": "from clicky.utils import echo\n\n\ndef greet(name: str) -> str:\n    return echo(f'hello {name}')\n",
    "tests/conftest.py": "import sys, pathlib\nsys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'src'))\n",
    "tests/test_core.py": "from clicky.core import greet\n\n\ndef test_greet():\n    assert greet('ada') == 'hello ada'\n",
    ".gitignore": "__pycache__/\n.pytest_cache/\n",
    # Enough documentation that a sparse checkout leaves most of the project out.
    **{f"docs/page{i:02}.md": f"# Page {i}\n" for i in range(30)},
    **{f"examples/ex{i:02}.py": f"print({i})\n" for i in range(30)},
}

# Each agent is a script run in its teammate's checkout; each commits the way agents do.
AGENTS: dict[str, str] = {
    "utils": """
        import pathlib, subprocess
        p = pathlib.Path("src/clicky/utils.py")
        p.write_text(p.read_text() + "\\n\\ndef shout(text: str) -> str:\\n    return text.upper()\\n")
        subprocess.run(["git", "commit", "-qam", "utils: shout"], check=True)
    """,
    "core": """
        import pathlib, subprocess, sys
        # Blocked by utils: its checkout starts from an integration tip that holds shout().
        if "def shout" not in pathlib.Path("src/clicky/utils.py").read_text():
            sys.exit("utils' shout() is missing")
        core = pathlib.Path("src/clicky/core.py")
        core.write_text(core.read_text().replace("import echo", "import echo, shout")
                        + "\\n\\ndef yell(name: str) -> str:\\n    return shout(greet(name))\\n")
        test = pathlib.Path("tests/test_core.py")
        test.write_text(test.read_text().replace("import greet", "import greet, yell")
                        + "\\n\\ndef test_yell():\\n    assert yell('ada') == 'HELLO ADA'\\n")
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-qm", "core: yell"], check=True)
    """,
    "docs": """
        import pathlib, subprocess
        # The sparse checkout holds the docs, not the examples.
        assert not pathlib.Path("examples").exists(), "a sparse checkout holds only owned and read paths"
        pathlib.Path("docs/page00.md").write_text("# Page 0\\n\\nUse shout() to shout.\\n")
        pathlib.Path("docs/shout.md").write_text("# shout\\n")
        subprocess.run(["git", "add", "docs"], check=True)
        subprocess.run(["git", "commit", "-qam", "docs: shout"], check=True)
    """,
    "changes": """
        import pathlib
        # Left uncommitted: rally-gh commits it for the teammate.
        p = pathlib.Path("CHANGES.md")
        p.write_text(p.read_text() + "\\n## 1.1\\n\\n- shout() and yell().\\n")
    """,
}

OWNS = {
    "utils": "[src/clicky/utils.py]",
    "core": "[src/clicky/core.py, tests/test_core.py]",
    "docs": "[/docs/]",
    "changes": "[/CHANGES.md]",
}


def _map(scripts: Path) -> str:
    lines = [
        "version: 1", "team: clicky", "max_parallel: 4",
        "defaults: {timeout: 30s, retries: 1}",
        "merge:",
        f"  verify: [{json.dumps(f'{sys.executable} -m pytest -q -p no:cacheprovider tests')}]",
        "teammates:",
    ]
    for name in AGENTS:
        lines += [
            f"  - name: {name}",
            f"    role: {name}",
            f"    task: Do the {name} work.",
            f"    exclusive_write: {OWNS[name]}",
            f"    agent: {{preset: command, command: [{json.dumps(sys.executable)}, "
            f"{json.dumps(str(scripts / (name + '.py')))}]}}",
        ]
        if name == "core":
            lines.append("    blocked_by: [utils]")
        if name == "docs":
            lines += ["    checkout: sparse", "    read: [src/clicky/**]"]
    return "\n".join(lines) + "\n"


def _rally(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith("GIT_CONFIG")}
    proc = subprocess.run([*RALLY_CLI, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=240)
    if check:
        assert proc.returncode == 0, f"rally-gh {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_a_first_day_on_a_real_project_runs_clean(tmp_path: Path) -> None:
    scripts = tmp_path / "agents"
    scripts.mkdir()
    for name, body in AGENTS.items():
        (scripts / f"{name}.py").write_text(textwrap.dedent(body))
    repo = init_repo(tmp_path / "clicky", {**PACKAGE, "rally.yml": _map(scripts)})
    # The identity lives only in ~/.gitconfig (tests/conftest.py writes one), as on a normal machine.
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    started_on = git(repo, "rev-parse", "main").strip()

    _rally(repo, "validate")
    _rally(repo, "hook", "install")
    ran = _rally(repo, "run", "--run-id", "day1", check=False)
    report = json.loads(_rally(repo, "report", "--run", "day1", "--format", "json").stdout)
    outcomes = {t["name"]: t["outcome"] for t in report["teammates"]}
    assert outcomes == dict.fromkeys(AGENTS, "done"), (outcomes, ran.stdout, ran.stderr)
    assert ran.returncode == 0 and report["status"] == "done"
    assert report["violations"] == [] and report["conflicts"] == []
    assert report["verification"] and all(v["passed"] for v in report["verification"])

    # The agents' commits carry the user's identity from ~/.gitconfig.
    authors = set(git(repo, "log", "--format=%an <%ae>", f"{started_on}..rally/day1/_integration").splitlines())
    assert "Ada Tester <ada@example.com>" in authors

    # The sparse teammate's branch touches its docs and nothing else.
    changed = git(repo, "diff", "--name-only", f"{started_on}...rally/day1/docs").split()
    assert changed and all(p.startswith("docs/") for p in changed), changed

    # The integration sits on the commit the run started from, and the report names that commit.
    assert git(repo, "rev-parse", "main").strip() == started_on
    assert subprocess.run(["git", "merge-base", "--is-ancestor", started_on, "rally/day1/_integration"],
                          cwd=repo).returncode == 0
    md = _rally(repo, "report", "--run", "day1", "--format", "md").stdout
    assert started_on[:7] in md

    # check on the blocked teammate's branch judges only its own commits, not utils'.
    checked = _rally(repo, "check", "--base", "main", "--head", "rally/day1/core", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # git commit -a on a teammate branch, outside what it owns, is refused by the hook.
    wt = tmp_path / "docs-wt"
    git(repo, "worktree", "add", "-q", str(wt), "rally/day1/docs")
    (wt / "src/clicky/utils.py").write_text("oops = 1\n")
    refused = subprocess.run(["git", "commit", "-qam", "x"], cwd=wt, capture_output=True, text=True)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert "src/clicky/utils.py" in refused.stdout + refused.stderr
