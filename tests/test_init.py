"""``rally-gh init``: a starter map that validates as written, from CODEOWNERS or the layout."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rally_gh.cli import cli
from rally_gh.commands import init as init_cmd
from rally_gh.commands import validate as validate_cmd
from rally_gh.config import load_config
from rally_gh.errors import UsageError
from rally_gh.testing import init_repo

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RALLY_SHARED", REPO_ROOT.parent / "shared"))
DATA = SHARED / "data" / "codeowners"
# The smaller real files: a map of a few hundred teammates validates in seconds.
REAL = [name for name in ("terraform", "esphome", "dd-trace-py", "home-assistant")
        if (DATA / f"{name}.CODEOWNERS").is_file()]

LAYOUTS: dict[str, dict[str, str]] = {
    "python project": {"src/shop/__init__.py": "", "tests/test_shop.py": "", "docs/index.md": "# shop\n",
                       "README.md": "# shop\n", "pyproject.toml": "[project]\n", ".gitignore": "*.pyc\n",
                       ".github/dependabot.yml": "version: 2\n", "AGENTS.md": "be nice\n"},
    "root files only": {"README.md": "x\n", "main.go": "package main\n", "go.mod": "module x\n"},
    "directories only": {"a/x": "", "b/y/z": "", "2024/x": "", "null/y": ""},  # names YAML reads as others
    "awkward names": {"Web App/x.js": "", "a*b/c": "", "root/r.txt": "", "UPPER/u": "", "1x/y": "",
                      "web-app/z": "", "Makefile": "all:\n", ".vscode/settings.json": "{}\n"},
}


def validate(repo: Path) -> str:
    out = io.StringIO()
    code = validate_cmd.run(repo, out)
    assert code == 0, out.getvalue()
    assert "valid (0 errors" in out.getvalue(), out.getvalue()
    return out.getvalue()


def init(repo: Path, workflows: bool = False, force: bool = False) -> str:
    out = io.StringIO()
    assert init_cmd.run(repo, out, workflows=workflows, force=force) == 0
    return out.getvalue()


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_init_then_validate_passes_on_a_layout(tmp_path: Path, layout: str) -> None:
    repo = init_repo(tmp_path / "repo", LAYOUTS[layout])
    out = init(repo)
    assert out.startswith("wrote rally.yml: ") and "from the top-level layout" in out
    validate(repo)
    text = (repo / "rally.yml").read_text()
    assert text.startswith("# rally.yml: ") and "# What to change before a run:" in text
    teammates = load_config(repo / "rally.yml").config.teammates
    owned = {t.name: t.exclusive_write for t in teammates}
    if layout == "python project":
        assert owned == {"docs": ("/docs/",), "src": ("/src/",), "tests": ("/tests/",), "root": ("/*",)}
    if layout == "awkward names":
        assert owned["web-app"] == ("/Web\\ App/",) and owned["web-app-2"] == ("/web-app/",)
        assert owned["a-b"] == ("/a\\*b/",) and owned["root"] == ("/root/",) and owned["root-2"] == ("/*",)
        assert "vscode" not in " ".join(owned)


def test_init_in_an_empty_repository_makes_a_map_that_validates(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    init(repo)
    validate(repo)
    assert [t.name for t in load_config(repo / "rally.yml").config.teammates] == ["root", "src"]


@pytest.mark.skipif(not REAL, reason=f"no CODEOWNERS datasets in {DATA}")
@pytest.mark.parametrize("name", REAL)
def test_init_then_validate_passes_on_a_real_codeowners_file(tmp_path: Path, name: str) -> None:
    text = (DATA / f"{name}.CODEOWNERS").read_text()
    repo = init_repo(tmp_path / "repo", {".github/CODEOWNERS": text, "README.md": "x\n"})
    out = init(repo)
    assert "from .github/CODEOWNERS" in out
    started = time.monotonic()
    validate(repo)
    assert time.monotonic() - started < 60
    loaded = load_config(repo / "rally.yml")
    assert all(t.codeowners for t in loaded.config.teammates)  # the owners are kept for export
    assert all(t.agent is None for t in loaded.config.teammates)  # defaults.agent, not a placeholder


def test_init_refuses_to_overwrite_a_map_unless_forced(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {".github/rally.yml": "version: 1\n", "src/a": ""})
    with pytest.raises(UsageError, match=r"rally\.yml already exists: init leaves a map alone"):
        init(repo)
    assert (repo / ".github" / "rally.yml").read_text() == "version: 1\n"
    init(repo, force=True)
    assert "/src/" in (repo / ".github" / "rally.yml").read_text() and not (repo / "rally.yml").exists()


def test_init_workflows_writes_the_ready_workflows_shipped_with_the_package(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"src/a": "", ".github/workflows/rally-issue.yml": "mine\n"})
    out = init(repo, workflows=True)
    folder = repo / ".github" / "workflows"
    assert "kept .github/workflows/rally-issue.yml: it exists (--force replaces it)" in out
    assert (folder / "rally-issue.yml").read_text() == "mine\n"
    for name in ("rally-dispatch.yml", "rally-pr-check.yml"):
        assert (folder / name).read_text() == (REPO_ROOT / "docs" / "workflows" / name).read_text()
    init(repo, workflows=True, force=True)
    assert (folder / "rally-issue.yml").read_text() == (REPO_ROOT / "docs" / "workflows" / "rally-issue.yml").read_text()


def test_init_through_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = init_repo(tmp_path / "repo", {"CODEOWNERS": "* @acme/leads\n/docs/ @acme/docs\n"})
    monkeypatch.chdir(repo)
    runner = CliRunner()
    result = runner.invoke(cli, ["init"])
    assert (result.exit_code, result.output.splitlines()[0]) == (0, "wrote rally.yml: 2 teammates from CODEOWNERS")
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 2 and "already exists" in result.output and "Traceback" not in result.output
    assert runner.invoke(cli, ["validate"]).exit_code == 0
