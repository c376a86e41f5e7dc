"""``rally-gh owner``: paths are read as git reads pathspecs, relative to the
current folder; a path outside the repository is the user's mistake."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rally_gh.testing import RALLY_CLI, init_repo

MAP = """\
version: 1
team: t
teammates:
  - name: core
    exclusive_write: [src/click/*.py]
  - name: docs
    exclusive_write: [docs/]
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "r", {"rally.yml": MAP, "src/click/utils.py": "x\n", "docs/index.md": "x\n"})


def owner(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RALLY_CLI, "owner", *args], cwd=cwd, input=stdin, capture_output=True, text=True,
                          check=False)


def test_paths_are_read_like_git_pathspecs(repo: Path) -> None:
    proc = owner(repo, "./src/click/utils.py", str(repo / "src/click/utils.py"), "docs/../src/click/x.py",
                 "src//click/./y.py", "docs/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"./src/click/utils.py\tcore\n{repo}/src/click/utils.py\tcore\n"
                           "docs/../src/click/x.py\tcore\nsrc//click/./y.py\tcore\ndocs/\t-\n")


def test_paths_are_relative_to_the_current_folder(repo: Path) -> None:
    inside = repo / "src" / "click"
    proc = owner(inside, "utils.py", "../../docs/index.md", "-", stdin="a.py\n./b.py\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "utils.py\tcore\n../../docs/index.md\tdocs\na.py\tcore\n./b.py\tcore\n"


def test_an_absolute_path_through_a_symlink_is_the_repository_path(repo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(repo)
    proc = owner(repo, str(link / "src/click/utils.py"))
    assert proc.returncode == 0 and proc.stdout.endswith("\tcore\n"), proc.stderr


@pytest.mark.parametrize(("where", "path", "said"), [
    (".", "/etc/passwd", "'/etc/passwd' is outside the repository"),
    (".", "../x", "'../x' escapes the repository"),
    ("src/click", "../../../x", "'../../../x' escapes the repository"),
    ("src", "..", "'..' is the repository's root folder"),
])
def test_a_path_outside_the_repository_is_a_usage_error(repo: Path, where: str, path: str, said: str) -> None:
    proc = owner(repo / where, "src/click/utils.py", path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert said in proc.stderr and "Traceback" not in proc.stderr


def test_standard_input_too(repo: Path) -> None:
    proc = owner(repo, "-", stdin="src/click/utils.py\n../outside\n")
    assert proc.returncode == 2 and "'../outside' escapes the repository" in proc.stderr


def test_with_codeowners_too(repo: Path) -> None:
    (repo / "CODEOWNERS").write_text("/src/ @core\n")
    proc = owner(repo / "src", "--codeowners", "../CODEOWNERS", "click/utils.py")
    assert proc.returncode == 0 and proc.stdout == "click/utils.py\t@core\n", proc.stderr
