"""The map's `approval` rules: a run they hold for is refused before anything starts, unless approved."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rally_gh.config import ConfigInvalid, load_config_text
from rally_gh.errors import RallyError
from rally_gh.plan import approval_needed
from rally_gh.run import pipeline
from rally_gh.testing import RALLY_CLI, init_repo

MAP = """\
version: 1
team: shop
defaults: {{timeout: 10s, retries: 0}}
approval:
{approval}
teammates:
  - name: api
    exclusive_write: [src/api/**, migrations/api/]
    agent: {{preset: command, command: ["{python}", "-c", "import os; os.makedirs('src/api', exist_ok=True); open('src/api/a', 'w').write('a')"]}}
  - name: web
    exclusive_write: [src/web/**]
    agent: {{preset: command, command: ["{python}", "-c", "import os; os.makedirs('src/web', exist_ok=True); open('src/web/w', 'w').write('w')"]}}
  - name: infra
    exclusive_write: [deploy/**]
    agent: {{preset: command, command: ["true"]}}
"""


def _map(approval: str) -> str:
    return MAP.format(approval=approval, python=sys.executable)


@pytest.mark.parametrize(("approval", "selected", "reasons"), [
    ("  teammates: 3", None, ["3 teammates run (approval from 3)"]),
    ("  teammates: 3", {"api", "web"}, []),
    ("  high_risk: [infra]", None, ["infra is marked high-risk"]),
    ("  high_risk: [infra]", {"api", "web"}, []),
    ("  paths: [migrations/**]", None, ["api may write migrations/api/a ('migrations/**' in approval.paths)"]),
    ("  paths: [src/**/*.sql]", {"web"}, ["web may write src/web/a.sql ('src/**/*.sql' in approval.paths)"]),
    ("  paths: [docs/**]", None, []),
    ("  {}", None, []),
])
def test_each_rule_holds_only_for_the_teammates_that_run(approval: str, selected: set[str] | None,
                                                         reasons: list[str]) -> None:
    config = load_config_text(_map(approval), "rally.yml").config
    assert approval_needed(config, selected) == reasons


def test_a_high_risk_name_not_in_the_map_is_refused_where_it_is_written() -> None:
    with pytest.raises(ConfigInvalid) as refused:
        load_config_text(_map("  high_risk: [infar]"), "rally.yml")
    assert "rally.yml:5:15:" in str(refused.value) and "unknown teammate 'infar'" in str(refused.value)


def test_a_run_that_needs_approval_starts_nothing_until_approved(tmp_path: Path) -> None:
    rally_yml = _map("  paths: [migrations/**]")
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "rally.yml": rally_yml})
    loaded = load_config_text(rally_yml, "rally.yml")
    with pytest.raises(RallyError, match="needs a person's approval before agents start") as refused:
        pipeline.run(repo, loaded, "a1", None, time.time, {"PATH": "/usr/bin:/bin"}, sandbox=False)
    assert "api may write migrations/api/a" in str(refused.value) and "--approved" in (refused.value.hint or "")
    assert not (repo / ".git" / "rally" / "runs" / "a1").exists()  # nothing started, nothing recorded
    state = pipeline.run(repo, loaded, "a2", None, time.time, {"PATH": "/usr/bin:/bin"}, sandbox=False,
                         approved=True)
    assert {t.name: t.outcome for t in state.teammates}["api"] == "done"


def test_the_command_line_says_what_needs_approval_and_how_to_give_it(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "rally.yml": _map("  high_risk: [infra]")})
    plan = subprocess.run([*RALLY_CLI, "plan"], cwd=repo, capture_output=True, text=True, timeout=60)
    assert "needs approval before agents start: infra is marked high-risk" in plan.stdout
    run = subprocess.run([*RALLY_CLI, "run", "--no-sandbox"], cwd=repo, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "needs a person's approval" in run.stderr and "--approved" in run.stderr
