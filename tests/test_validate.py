"""``rally-gh validate``: what a map's authors are told, as text and JSON."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

from rally_gh.testing import RALLY_CLI, SHOP_FILES, SHOP_MAP, git, init_repo


def validate(d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RALLY_CLI, "validate", *args], cwd=d, capture_output=True, text=True, check=False)


def test_valid_map_with_warnings(tmp_path: Path) -> None:
    d = init_repo(tmp_path / "r", {**SHOP_FILES, "docs/guide.md": "x\n"})
    proc = validate(d)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rally.yml: 3 teammates" in proc.stdout and "valid" in proc.stdout
    assert "'/vendor/' (infra) matches no tracked file" in proc.stdout
    assert "tracked files are owned by no teammate" in proc.stdout


def test_json_lists_every_problem_with_its_position(tmp_path: Path) -> None:
    overlapping = SHOP_MAP.replace("exclusive_write: [src/web/**]", "exclusive_write: [src/**]")
    d = init_repo(tmp_path / "r", {**SHOP_FILES, "rally.yml": overlapping})
    proc = validate(d, "--format", "json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["valid"] is False
    overlaps = [p for p in data["problems"] if p["code"] == "overlap"]
    assert overlaps and overlaps[0]["severity"] == "error"
    first = overlaps[0]
    assert first["teammates"] == ["api", "web"] and first["file"] == "rally.yml"
    assert first["line"] == 8 and first["column"] > 1
    assert first["example"].startswith("src/api/")


def test_schema_errors_come_as_problems_in_json(tmp_path: Path) -> None:
    d = init_repo(tmp_path / "r", {"rally.yml": "version: 1\nteam: x\nteammates:\n  - name: Bad Name\n    exclusive_write: [a/]\n    colour: red\n"})
    proc = validate(d, "--format", "json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    problems = json.loads(proc.stdout)["problems"]
    assert {p["line"] for p in problems} >= {4, 6}
    assert all(p["severity"] == "error" for p in problems)


def test_text_error_points_at_file_line_col(tmp_path: Path) -> None:
    d = init_repo(tmp_path / "r", {"rally.yml": "version: 1\nteam: x\nteammates:\n  - name: a\n    exclusive_write: [../x]\n"})
    proc = validate(d)
    assert proc.returncode == 1
    assert "rally.yml:5:23: error: teammates[0].exclusive_write[0]" in proc.stdout
    assert "INVALID" in proc.stdout


def test_control_file_grant_is_a_warning(tmp_path: Path) -> None:
    text = SHOP_MAP.replace("exclusive_write: [src/web/**]", "exclusive_write: [src/web/**, .github/workflows/ci.yml]")
    d = init_repo(tmp_path / "r", {**SHOP_FILES, "rally.yml": text})
    data = json.loads(validate(d, "--format", "json").stdout)
    grants = [p for p in data["problems"] if p["code"] == "control-file"]
    assert grants and grants[0]["severity"] == "warning" and grants[0]["teammates"] == ["web"]


def test_no_map_says_where_it_looked(tmp_path: Path) -> None:
    d = init_repo(tmp_path / "r", {"a.txt": "a\n"})
    proc = validate(d)
    assert proc.returncode == 2 and "rally.yml" in proc.stderr and ".github/rally.yml" in proc.stderr


def test_outside_a_repository_the_map_is_still_checked(tmp_path: Path) -> None:
    (tmp_path / "rally.yml").write_text(SHOP_MAP)
    proc = validate(tmp_path)
    assert proc.returncode == 0 and "valid" in proc.stdout


def test_large_imported_team_validates_with_a_warning(tmp_path: Path) -> None:
    mates = "".join(f"  - name: t{i}\n    exclusive_write: [/d{i}/]\n" for i in range(12))
    d = init_repo(tmp_path / "r", {"rally.yml": f"version: 1\nteam: big\nteammates:\n{mates}"})
    proc = validate(d, "--format", "json")
    assert proc.returncode == 0
    assert any(p["code"] == "team-size" for p in json.loads(proc.stdout)["problems"])


def test_text_output_orders_problems_by_line_as_numbers(tmp_path: Path) -> None:
    from rally_gh.commands.validate import _emit
    from rally_gh.config import Location, Problem

    problems = [Problem("error", "schema", "late", Location("rally.yml", 12, 3)),
                Problem("error", "schema", "early", Location("rally.yml", 9, 5))]
    out = io.StringIO()
    _emit(problems, "text", out, tmp_path / "rally.yml", None)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("rally.yml:9:5") and lines[1].startswith("rally.yml:12:3")


def test_a_branch_prefix_that_is_a_branch_is_refused_where_it_is_written(tmp_path: Path) -> None:
    text = SHOP_MAP.replace("team: shop\n", "team: shop\nbranch_prefix: main\n")
    d = init_repo(tmp_path / "r", {**SHOP_FILES, "rally.yml": text})
    proc = validate(d)
    assert proc.returncode == 1, proc.stdout
    assert "rally.yml:3:1: error: branch_prefix: 'main' collides with the existing branch main" in proc.stdout
    # Under a branch: `team` is a branch, so refs/heads/team/rally/... cannot exist.
    git(d, "branch", "team")
    (d / "rally.yml").write_text(SHOP_MAP.replace("team: shop\n", "team: shop\nbranch_prefix: team/rally\n"))
    assert "collides with the existing branch team" in validate(d).stdout
    # Branches under the prefix are what runs make: fine.
    (d / "rally.yml").write_text(SHOP_MAP)
    git(d, "branch", "rally/r1/api")
    proc = validate(d, "--format", "json")
    assert proc.returncode == 0 and "branch-prefix" not in proc.stdout


def test_a_branch_prefix_that_is_a_remote_branch_is_refused(tmp_path: Path) -> None:
    origin = init_repo(tmp_path / "origin", {"a.txt": "a\n"})
    git(origin, "branch", "release")
    d = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(d))
    (d / "rally.yml").write_text(SHOP_MAP.replace("team: shop\n", "team: shop\nbranch_prefix: release\n"))
    data = json.loads(validate(d, "--format", "json").stdout)
    found = [p for p in data["problems"] if p["code"] == "branch-prefix"]
    assert found and found[0]["severity"] == "error" and "origin/release" in found[0]["message"]


def test_a_pattern_that_its_own_exclusion_takes_back_is_a_warning(tmp_path: Path) -> None:
    text = SHOP_MAP.replace("exclusive_write: [src/web/**]", 'exclusive_write: [src/web/app.ts, "!src/web/*.ts"]')
    d = init_repo(tmp_path / "r", {**SHOP_FILES, "rally.yml": text})
    data = json.loads(validate(d, "--format", "json").stdout)
    [dead] = [p for p in data["problems"] if p["code"] == "owns-nothing"]
    assert dead["severity"] == "warning" and dead["teammates"] == ["web"]
    assert "'src/web/app.ts' (web) owns nothing: the later '!src/web/*.ts' takes back every path" in dead["message"]
