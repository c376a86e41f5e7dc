from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from rally_gh.commands import demo as demo_cmd
from rally_gh.github.actions import read
from rally_gh.errors import UsageError
from rally_gh.testing import git


def test_the_demo_runs_as_scripted_and_keeps_its_repository(tmp_path: Path) -> None:
    kept = tmp_path / "shop"
    proc = subprocess.run([sys.executable, "-m", "rally_gh", "demo", "--keep", str(kept)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.startswith("rally-gh demo: a tiny shop")
    for line in ("| models | Data model | command | ✅ done |", "| api | Backend | command | ✅ done |",
                 "| docs | Technical writer | command | 🚫 violated |", "| perf | Performance | command | ⏱️ timed_out |",
                 "| docs | `README.md` | nobody | modified |", "Status: PARTIAL", f"kept in {kept.resolve()}"):
        assert line in out
    assert "traceback" not in proc.stderr.lower()
    files = git(kept, "ls-tree", "-r", "--name-only", "rally/demo/_integration").split()
    assert {"src/models/order.py", "src/api/orders.py", "src/web/index.html"} <= set(files)
    assert "docs/orders.md" not in files
    assert git(kept, "worktree", "list", "--porcelain").count("worktree ") == 1
    report = subprocess.run([sys.executable, "-m", "rally_gh", "report", "--run", "demo", "--format", "json"],
                            cwd=kept, capture_output=True, text=True, timeout=60)
    assert report.returncode == 0 and '"status": "partial"' in report.stdout


def test_the_demo_refuses_a_folder_with_something_in_it(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(UsageError, match="not empty"):
        demo_cmd.run(read({}), io.StringIO(), keep=tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "precious"
