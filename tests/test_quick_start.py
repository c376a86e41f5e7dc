"""The README's quick start, followed to the letter by a newcomer on a fresh repository.

Every command of the quick start's block runs as written (but the install line:
the test runs from this checkout's environment), with a stand-in ``claude`` on
PATH that behaves as Claude Code's print mode does: it writes a file under
what its teammate owns and prints a result object.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rally_gh.testing import git, init_repo

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

CLAUDE_STAND_IN = """\
#!{python}
import json, os, pathlib
owned = os.environ["RALLY_OWNS"].splitlines()[0].strip("/")
folder = owned[:-1].rstrip("/") if owned.endswith("*") else owned
note = pathlib.Path(folder or ".") / ("notes-" + os.environ["RALLY_TEAMMATE"] + ".md")
note.write_text("# notes\\n")
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False,
                  "result": "wrote " + str(note), "total_cost_usd": 0.01}}))
"""


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^## Quick start\n.*?```sh\n(.*?)```", text, re.S | re.M)
    assert block, "README.md has a Quick start section with a sh block"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and "pip install" not in line]


def test_the_quick_start_is_what_the_readme_says() -> None:
    commands = quick_start_commands()
    assert [c.split()[:2] for c in commands if c.startswith("rally-gh")] == [
        ["rally-gh", "init"], ["rally-gh", "validate"], ["rally-gh", "run"], ["rally-gh", "run"]]


def test_a_newcomer_following_the_quick_start_gets_a_run(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "project", {
        "README.md": "# project\n", "src/app.py": "print('hi')\n", "docs/index.md": "# docs\n",
    })
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    claude = stand_ins / "claude"
    claude.write_text(CLAUDE_STAND_IN.format(python=sys.executable))
    claude.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith("GIT_CONFIG")}
    env["PATH"] = os.pathsep.join([str(stand_ins), str(Path(sys.executable).parent), env.get("PATH", "")])
    for command in quick_start_commands():
        proc = subprocess.run(command, shell=True, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"$ {command}\n{proc.stdout}\n{proc.stderr}"
    runs = json.loads(subprocess.run(["rally-gh", "runs", "--format", "json"], cwd=repo, env=env,
                                     capture_output=True, text=True, check=True).stdout)
    real = [r for r in runs if not r.get("dry_run")]
    assert len(real) == 1
    report = json.loads(subprocess.run(["rally-gh", "report", "--format", "json"], cwd=repo, env=env,
                                       capture_output=True, text=True, check=True).stdout)
    assert report["status"] == "done", report
    files = git(repo, "ls-tree", "-r", "--name-only", report["integration_branch"]).split()
    assert {"docs/notes-docs.md", "src/notes-src.md", "notes-root.md"} <= set(files)
