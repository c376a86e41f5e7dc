"""The pre-commit hook, installed for real and run by ``git commit``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rally_gh.hook import HOOK_MARKER, hook_script
from rally_gh.testing import RALLY_CLI, SHOP_FILES as FILES, SHOP_MAP as MAP, commit, git, git_env, init_repo

ROOT = Path(__file__).resolve().parents[1]


def git_commit(d: Path, message: str = "change", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``git commit`` with hooks enabled, as a user runs it."""
    # git hands a hook's standard output to its own standard error: merge them.
    return subprocess.run(["git", "commit", "-q", "-m", message], cwd=d, env=git_env(env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)


def stage(d: Path, files: dict[str, str | None]) -> None:
    for rel, content in files.items():
        p = d / rel
        if content is None:
            git(d, "rm", "-q", rel)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
            git(d, "add", rel)


@pytest.fixture
def hooked(tmp_path: Path) -> Path:
    d = init_repo(tmp_path / "shop", FILES)
    proc = subprocess.run([*RALLY_CLI, "hook", "install"], cwd=d, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "pre-commit hook installed" in proc.stdout
    return d


def test_installed_hook_refuses_a_write_outside_ownership(hooked: Path) -> None:
    git(hooked, "checkout", "-q", "-b", "rally/r1/api")
    stage(hooked, {"src/web/app.js": "hacked\n"})
    proc = git_commit(hooked)
    assert proc.returncode != 0
    assert "src/web/app.js: api modified it, but it is owned by web" in proc.stdout
    assert "git restore --staged" in proc.stdout


@pytest.mark.parametrize("how", ["env", "branch", "config"])
def test_teammate_sources(hooked: Path, how: str) -> None:
    env = None
    if how == "env":
        env = {"RALLY_TEAMMATE": "api"}
    elif how == "branch":
        git(hooked, "checkout", "-q", "-b", "rally/r1/api")
    else:
        git(hooked, "config", "rally.teammate", "api")
    stage(hooked, {"src/web/app.js": None})  # a deletion: the framework would hide it
    assert git_commit(hooked, env=env).returncode != 0
    git(hooked, "reset", "-q", "--hard")
    stage(hooked, {"src/api/app.py": "v2\n"})
    assert git_commit(hooked, env=env).returncode == 0


def test_rename_out_of_ownership_is_refused(hooked: Path) -> None:
    git(hooked, "checkout", "-q", "-b", "rally/r1/web")
    git(hooked, "mv", "src/api/app.py", "src/web/app.py")
    proc = git_commit(hooked)
    assert proc.returncode != 0 and "src/api/app.py: web deleted it, but it is owned by api" in proc.stdout


def test_without_a_teammate_only_a_staged_map_is_validated(hooked: Path) -> None:
    stage(hooked, {"src/web/app.js": "anyone may\n"})
    assert git_commit(hooked).returncode == 0
    stage(hooked, {"rally.yml": MAP.replace("src/web/**", "src/**")})
    proc = git_commit(hooked)
    assert proc.returncode != 0 and "both own" in proc.stdout
    stage(hooked, {"rally.yml": "version: 1\nteam: [\n"})
    proc = git_commit(hooked)
    assert proc.returncode != 0 and "rally.yml:" in proc.stdout


def test_a_teammate_cannot_grant_itself_paths_in_the_same_commit(hooked: Path) -> None:
    git(hooked, "checkout", "-q", "-b", "rally/r1/api")
    stage(hooked, {"rally.yml": MAP.replace("src/api/**", "src/**"), "src/web/app.js": "mine\n"})
    out = git_commit(hooked).stdout
    assert "rally.yml" in out and "src/web/app.js" in out


def test_first_commit_with_unborn_head(tmp_path: Path) -> None:
    d = init_repo(tmp_path / "new")
    subprocess.run([*RALLY_CLI, "hook", "install"], cwd=d, check=True, capture_output=True)
    stage(d, {"rally.yml": MAP, "src/web/app.js": "x\n"})
    assert git_commit(d, env={"RALLY_TEAMMATE": "api"}).returncode == 0


def test_detached_head_uses_env_or_config(hooked: Path) -> None:
    git(hooked, "checkout", "-q", "--detach")
    stage(hooked, {"src/web/app.js": "x\n"})
    assert git_commit(hooked).returncode == 0
    assert git_commit(hooked, env={"RALLY_TEAMMATE": "api"}).returncode != 0


def test_merge_in_progress_blames_only_this_sides_writes(hooked: Path) -> None:
    git(hooked, "checkout", "-q", "-b", "rally/r1/api")
    commit(hooked, {"src/api/app.py": "api side\n"}, "api")
    git(hooked, "checkout", "-q", "main")
    commit(hooked, {"src/web/app.js": "web side\n"}, "web on main")
    git(hooked, "checkout", "-q", "rally/r1/api")
    git(hooked, "merge", "--no-commit", "--no-ff", "main")
    assert git_commit(hooked, "merge main").returncode == 0


def test_unknown_teammate_is_a_usage_error(hooked: Path) -> None:
    stage(hooked, {"src/api/app.py": "v2\n"})
    proc = git_commit(hooked, env={"RALLY_TEAMMATE": "ghost"})
    assert proc.returncode != 0
    assert "RALLY_TEAMMATE names teammate 'ghost'" in proc.stdout and "Traceback" not in proc.stdout


def test_install_never_overwrites_a_foreign_hook_without_force(tmp_path: Path) -> None:
    d = init_repo(tmp_path / "r", FILES)
    hook = d / ".git/hooks/pre-commit"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho foreign-hook-ran\n")
    hook.chmod(0o755)
    proc = subprocess.run([*RALLY_CLI, "hook", "install"], cwd=d, capture_output=True, text=True)
    assert proc.returncode == 1 and "--force" in proc.stderr
    assert "foreign-hook-ran" in hook.read_text()
    proc = subprocess.run([*RALLY_CLI, "hook", "install", "--force"], cwd=d, capture_output=True, text=True)
    assert proc.returncode == 0 and "pre-commit.orig" in proc.stdout
    assert HOOK_MARKER in hook.read_text()
    stage(d, {"src/api/app.py": "v2\n"})
    done = git_commit(d, env={"RALLY_TEAMMATE": "api"})
    assert done.returncode == 0 and "foreign-hook-ran" in done.stdout  # chained
    again = subprocess.run([*RALLY_CLI, "hook", "install"], cwd=d, capture_output=True, text=True)
    assert again.returncode == 0 and "updated" in again.stdout


def test_install_honours_core_hooks_path(tmp_path: Path) -> None:
    d = init_repo(tmp_path / "r", FILES)
    git(d, "config", "core.hooksPath", ".githooks")
    subprocess.run([*RALLY_CLI, "hook", "install"], cwd=d, check=True, capture_output=True)
    assert (d / ".githooks/pre-commit").is_file()


def test_hook_in_a_bare_repository_is_a_clear_error(tmp_path: Path) -> None:
    d = init_repo(tmp_path / "r", FILES)
    bare = tmp_path / "b.git"
    git(tmp_path, "clone", "-q", "--bare", str(d), str(bare))
    proc = subprocess.run([*RALLY_CLI, "hook", "pre-commit"], cwd=bare, capture_output=True, text=True)
    assert proc.returncode == 1 and "bare repository" in proc.stderr and "Traceback" not in proc.stderr


def test_shipped_hook_script_is_current() -> None:
    assert (ROOT / "hooks/pre-commit").read_text() == hook_script(None)
    assert os.access(ROOT / "hooks/pre-commit", os.X_OK)


@pytest.mark.slow
def test_pre_commit_framework_try_repo(tmp_path: Path) -> None:
    """The framework installs rally-gh from this checkout and runs the hook: deletions,
    which the framework itself does not pass to hooks, are still caught."""
    src = tmp_path / "rally-src"
    # try-repo wants a git repository with the hook manifest; use a snapshot of this tree.
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "__pycache__"))
    init_repo(src, {"placeholder": ""})
    d = init_repo(tmp_path / "shop", FILES)
    git(d, "checkout", "-q", "-b", "rally/r1/api")
    stage(d, {"src/web/app.js": None})
    env = git_env({"PRE_COMMIT_HOME": str(tmp_path / "pc-cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(src), "rally-ownership", "--verbose"],
                          cwd=d, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "src/web/app.js: api deleted it, but it is owned by web" in proc.stdout


@pytest.mark.parametrize("files, fast_ok", [
    ({"src/api/app.py": "v2\n"}, True),
    ({"src/api/new/deep.py": "new\n"}, True),
    ({"src/web/app.js": "x\n"}, False),  # a violation: the full path words it
    ({"src/api/readme.md": "x\n"}, False),  # collides with README.md by case
    ({"Src/api/x.py": "x\n"}, False),  # collides with src/ at the root
    ({"top.txt": "x\n"}, False),  # owned by nobody
])
def test_fast_path_answers_only_clean(hooked: Path, files: dict[str, str], fast_ok: bool,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from rally_gh.fasthook import is_clean

    git(hooked, "checkout", "-q", "-b", "rally/r1/api")
    stage(hooked, {"src/api/app.py": "warm the cache\n"})
    assert git_commit(hooked).returncode == 0  # the full path writes the map cache
    stage(hooked, files)
    monkeypatch.chdir(hooked)
    assert is_clean({}) is fast_ok
    assert (git_commit(hooked).returncode == 0) is fast_ok


def test_during_a_rebase_the_branch_being_rebased_names_the_teammate(hooked: Path) -> None:
    git(hooked, "checkout", "-q", "-b", "rally/r1/api")
    stage(hooked, {"src/api/app.py": "api side\n"})
    assert git_commit(hooked, "api").returncode == 0  # through the hook: the fast path's cache is warm
    git(hooked, "checkout", "-q", "main")
    commit(hooked, {"src/api/app.py": "main side\n"}, "main moved")
    git(hooked, "checkout", "-q", "rally/r1/api")
    rebase = subprocess.run(["git", "rebase", "main"], cwd=hooked, env=git_env(), capture_output=True, text=True)
    assert rebase.returncode != 0  # a conflict stops it half-way: HEAD is detached
    stage(hooked, {"src/api/app.py": "resolved\n", "src/web/app.js": "sneaked in\n"})
    proc = git_commit(hooked, "resolve")
    assert proc.returncode != 0 and "src/web/app.js: api modified it, but it is owned by web" in proc.stdout


# --- Commits that hand the hook a temporary index (GIT_INDEX_FILE) ----------
#
# `git commit -a`, `--only`, `--include` and `git commit PATH` build the commit in
# a temporary index and name it to the hook in GIT_INDEX_FILE; the real index
# may say something else entirely.

COMMIT_FORMS = {
    "-a": lambda path: ["-a"],
    "--only": lambda path: ["--only", path],
    "--include": lambda path: ["--include", path],
    "PATH": lambda path: ["--", path],
    "--amend -a": lambda path: ["--amend", "-a"],
    "--amend PATH": lambda path: ["--amend", "--", path],
}


def git_commit_with(d: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "commit", "-q", "-m", "change", *args], cwd=d, env=git_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)


@pytest.fixture
def api_branch(hooked: Path) -> Path:
    git(hooked, "checkout", "-q", "-b", "rally/r1/api")
    stage(hooked, {"src/api/app.py": "warm the fast path's table\n"})
    assert git_commit(hooked).returncode == 0
    return hooked


@pytest.mark.parametrize("form", COMMIT_FORMS)
def test_a_commit_from_a_temporary_index_is_refused_outside_the_teammates_paths(api_branch: Path, form: str) -> None:
    (api_branch / "src/web/app.js").write_text("written but not staged\n")
    head = git(api_branch, "rev-parse", "HEAD")
    proc = git_commit_with(api_branch, COMMIT_FORMS[form]("src/web/app.js"))
    assert proc.returncode != 0, proc.stdout
    assert "src/web/app.js: api modified it, but it is owned by web" in proc.stdout
    assert git(api_branch, "rev-parse", "HEAD") == head


@pytest.mark.parametrize("form", COMMIT_FORMS)
def test_a_commit_from_a_temporary_index_is_accepted_inside_the_teammates_paths(api_branch: Path, form: str) -> None:
    (api_branch / "src/api/app.py").write_text("written but not staged\n")
    proc = git_commit_with(api_branch, COMMIT_FORMS[form]("src/api/app.py"))
    assert proc.returncode == 0, proc.stdout
    assert git(api_branch, "show", "HEAD:src/api/app.py") == "written but not staged\n"


def test_a_partial_commit_is_judged_by_what_it_commits_not_by_the_whole_index(api_branch: Path) -> None:
    """`git commit PATH` leaves what else is staged out of the commit, so it is no write."""
    stage(api_branch, {"src/web/app.js": "staged, not committed\n"})
    (api_branch / "src/api/app.py").write_text("committed\n")
    proc = git_commit_with(api_branch, ["--", "src/api/app.py"])
    assert proc.returncode == 0, proc.stdout
    assert git(api_branch, "show", "--name-only", "--format=", "HEAD").split() == ["src/api/app.py"]


def test_an_index_file_that_is_not_there_is_a_clear_error(hooked: Path) -> None:
    git(hooked, "checkout", "-q", "-b", "rally/r1/api")
    env = git_env({"GIT_INDEX_FILE": "no/such/index"})
    proc = subprocess.run([*RALLY_CLI, "hook", "pre-commit"], cwd=hooked, env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "GIT_INDEX_FILE names no/such/index, which is not a file" in proc.stderr


@pytest.mark.parametrize("name", [".git ", ".git.", "git~1", "GIT~1", ".g\u200cit", "\ufeff.git"])
def test_the_hook_refuses_a_name_that_is_dotgit_on_windows_or_macos(api_branch: Path, name: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from rally_gh.fasthook import is_clean

    blob = git(api_branch, "hash-object", "-w", "--stdin", input="x\n").strip()
    # git's own checks would refuse the name; a teammate's git need not have them on.
    git(api_branch, "-c", "core.protectNTFS=false", "-c", "core.protectHFS=false",
        "update-index", "--add", "--cacheinfo", f"100644,{blob},src/api/{name}/config")
    monkeypatch.chdir(api_branch)
    assert is_clean({}) is False
    proc = git_commit(api_branch)
    assert proc.returncode != 0, proc.stdout
    assert "a hostile path (has a segment that is '.git' on Windows or macOS" in proc.stdout


@pytest.mark.parametrize("python", [None, "/nonexistent/python3"])
def test_a_hook_that_cannot_run_refuses_with_the_fix_unless_the_user_opted_out(tmp_path: Path,
                                                                              python: str | None) -> None:
    """Neither the Python the hook was installed with nor rally-gh on PATH: the commit is
    refused (a hook that cannot check must not pass what it exists to refuse)."""
    from rally_gh import git as g
    from rally_gh.hook import install_hook

    d = init_repo(tmp_path / "shop", FILES)
    install_hook(g.open_repo(d), False, python)
    git(d, "checkout", "-q", "-b", "rally/r1/api")
    stage(d, {"src/web/app.js": "x\n"})
    no_rally = {"PATH": "/usr/bin:/bin"}
    assert shutil.which("rally-gh", path=no_rally["PATH"]) is None
    proc = git_commit(d, env=no_rally)
    assert proc.returncode == 1, proc.stdout
    assert "rally-gh hook: cannot check ownership:" in proc.stdout
    assert "rally-gh hook install" in proc.stdout and "git config rally.hookOptional true" in proc.stdout
    if python is not None:
        assert "/nonexistent/python3" in proc.stdout

    git(d, "config", "rally.hookOptional", "true")
    proc = git_commit(d, env=no_rally)
    assert proc.returncode == 0, proc.stdout
    assert "ownership not checked (rally.hookOptional is true)" in proc.stdout
