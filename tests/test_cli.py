"""``rally-gh``'s exit codes, as the README's table gives them: 2 for the user's
mistake (a missing file, an unknown revision or run, a bad option), 1 when what
was checked is not right, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from rally_gh.testing import RALLY_CLI, SHOP_FILES, SHOP_MAP, commit, git, init_repo


def rally(d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RALLY_CLI, *args], cwd=d, capture_output=True, text=True, check=False)


USER_MISTAKES_WITHOUT_A_MAP = [
    ("validate",),
    ("validate", "--config", "nope.yml"),
    ("owner", "a.txt"),
    ("plan",),
    ("codeowners", "export"),
    ("check", "--base", "main", "--teammate", "api"),  # no map in the base commit
    ("run", "--dry-run"),
]


@pytest.mark.parametrize("args", USER_MISTAKES_WITHOUT_A_MAP, ids=" ".join)
def test_a_missing_map_is_a_usage_error_whichever_command(tmp_path: Path, args: tuple[str, ...]) -> None:
    d = init_repo(tmp_path / "r", {"a.txt": "a\n"})
    proc = rally(d, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no ownership map" in proc.stderr or "nope.yml: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


USER_MISTAKES_WITH_A_MAP = [
    (("check", "--base", "nosuch"), "--base nosuch: 'nosuch': no such commit"),
    (("check", "--base", "main", "--head", "nosuch"), "--head nosuch: 'nosuch': no such commit"),
    (("check", "--base", "main", "--teammate", "nobody"), "names teammate 'nobody'"),
    (("report", "--run", "nosuch"), "no run 'nosuch'"),
    (("run", "--resume", "nosuch"), "no run 'nosuch'"),
    (("plan", "--tasks", "nope.yml"), "--tasks nope.yml"),
    (("plan", "--from-handoff", "nope.yml"), "--from-handoff nope.yml"),
    (("plan", "--format", "nope"), "Invalid value for '--format'"),
    (("plan", "--issue", "0"), "Invalid value for '--issue': 0 is not in the range x>=1"),
    (("run", "--dry-run", "--issue=-5"), "Invalid value for '--issue': -5 is not in the range x>=1"),
    (("owner", "--codeowners", "nope", "a.txt"), "nope"),
    (("owner",), "no paths given"),
    (("teammate", "nobody", "--run", "r1"), "no teammate 'nobody'"),
]


@pytest.mark.parametrize(("args", "said"), USER_MISTAKES_WITH_A_MAP, ids=lambda a: " ".join(a) if isinstance(a, tuple) else "")
def test_user_mistakes_exit_2(tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    d = init_repo(tmp_path / "r", SHOP_FILES)
    proc = rally(d, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert said in proc.stderr
    assert "Traceback" not in proc.stderr


HOSTILE_EVENTS = [
    ({"issue": {"number": "7; rm -rf ~", "title": "t", "body": "b"}}, {}, "`issue.number` must be a whole number"),
    ({"issue": {"number": 7, "body": "x" * 70_000}}, {}, "must be text of at most 65,536 characters"),
    ({"action": "labeled", "sender": ["alice"]}, {"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "t",
                                                  "GITHUB_REPOSITORY": "owner/repo", "GITHUB_EVENT_NAME": "issues",
                                                  "GITHUB_API_URL": "http://127.0.0.1:9"},
     "the event's `sender` must be a JSON object"),
    ({}, {"GITHUB_HEAD_REF": "rally/r1/api\x1b[2J"}, "GITHUB_HEAD_REF is not a branch name git allows"),
]


@pytest.mark.parametrize(("payload", "env", "said"), HOSTILE_EVENTS, ids=lambda a: str(a)[:30])
def test_a_hostile_event_or_environment_is_a_usage_error(tmp_path: Path, payload: dict[str, object],
                                                          env: dict[str, str], said: str) -> None:
    d = init_repo(tmp_path / "r", SHOP_FILES)
    (tmp_path / "event.json").write_text(json.dumps(payload))
    proc = subprocess.run([*RALLY_CLI, "run", "--dry-run", "--event", str(tmp_path / "event.json")], cwd=d,
                          env={**os.environ, **env}, capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert said in proc.stderr and "Traceback" not in proc.stderr
    assert not (d / ".git" / "rally" / "runs").exists()


def test_what_was_checked_is_not_right_exits_1(tmp_path: Path) -> None:
    d = init_repo(tmp_path / "r", SHOP_FILES)
    git(d, "checkout", "-q", "-b", "rally/r1/api")
    commit(d, {"src/web/x.ts": "x\n"}, "web's file")
    assert rally(d, "check", "--base", "main").returncode == 1
    bad = SHOP_MAP.replace("exclusive_write: [src/web/**]", "exclusive_write: [src/**]")
    (d / "bad.yml").write_text(bad)
    assert rally(d, "validate", "--config", "bad.yml").returncode == 1
    assert rally(d, "check", "--base", "main", "--teammate", "web").returncode == 0


def test_readme_table_matches(tmp_path: Path) -> None:
    """The README's table names each code as these tests use it."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = dict(re.findall(r"^\| `(\d+)` \| (.+?) \|", readme, flags=re.M))
    assert set(table) == {"0", "1", "2", "3", "130"}
    assert "unknown revision" in table["2"] and "missing file" in table["2"]
    assert "violations" in table["1"] and "invalid map" in table["1"]
