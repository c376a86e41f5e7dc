"""``rally-gh check``: every kind of write, through every route git allows, on real repositories."""

from __future__ import annotations

import json
import os
import subprocess
import unicodedata
from pathlib import Path

import pytest

from rally_gh import git as g
from rally_gh.ownership.enforce import check_commits, require_map_at, teammate_from_branch
from rally_gh.testing import RALLY_CLI, SHOP_FILES as FILES, SHOP_MAP as MAP, commit, git, init_repo

@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    d = init_repo(tmp_path / "shop", FILES)
    git(d, "checkout", "-q", "-b", "rally/r1/api")
    return d


def run_check(d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RALLY_TEAMMATE"}
    return subprocess.run([*RALLY_CLI, "check", "--base", "main", *args], cwd=d, env=env,
                          capture_output=True, text=True, check=False)


def violations(d: Path, head: str = "HEAD", teammate: str = "api") -> list[tuple[str, str, str | None]]:
    repo = g.open_repo(d)
    loaded = require_map_at(repo, "main")
    result = check_commits(repo, loaded, teammate, g.resolve(repo, "main"), head)
    return [(v.path, v.kind, v.owner) for v in result.violations]


def test_own_writes_pass(repo_dir: Path) -> None:
    commit(repo_dir, {"src/api/app.py": "print('v2')\n", "src/api/new.py": "x\n", "tests/api/t2.py": "y\n"}, "api work")
    assert violations(repo_dir) == []


@pytest.mark.parametrize("change, expected", [
    ({"src/web/app.js": "hacked\n"}, [("src/web/app.js", "modified", "web")]),
    ({"src/web/new.js": "new\n"}, [("src/web/new.js", "added", "web")]),
    ({"src/web/app.js": None}, [("src/web/app.js", "deleted", "web")]),
    ({"README.md": "mine now\n"}, [("README.md", "modified", None)]),
    ({"src/api/generated/schema.py": "edited\n"}, [("src/api/generated/schema.py", "modified", None)]),
    ({".github/workflows/ci.yml": "on: push\n"}, [(".github/workflows/ci.yml", "control-file", None)]),
    ({"rally.yml": MAP.replace("src/api/**", "src/**")}, [("rally.yml", "control-file", None)]),
])
def test_writes_outside_ownership(repo_dir: Path, change: dict[str, str | None],
                                  expected: list[tuple[str, str, str | None]]) -> None:
    commit(repo_dir, change, "stray")
    assert violations(repo_dir) == expected


def test_rename_counts_both_sides(repo_dir: Path) -> None:
    git(repo_dir, "mv", "src/api/app.py", "src/web/app2.js")
    git(repo_dir, "commit", "-q", "-m", "move out")
    assert violations(repo_dir) == [("src/web/app2.js", "added", "web")]
    git(repo_dir, "mv", "src/web/app.js", "src/api/app.js")
    git(repo_dir, "commit", "-q", "-m", "move in")
    assert ("src/web/app.js", "deleted", "web") in violations(repo_dir)


def test_mode_change_outside_ownership(repo_dir: Path) -> None:
    git(repo_dir, "update-index", "--chmod=+x", "src/web/app.js")
    git(repo_dir, "commit", "-q", "-m", "chmod")
    assert violations(repo_dir) == [("src/web/app.js", "mode", "web")]


def test_mode_change_inside_ownership_is_fine(repo_dir: Path) -> None:
    git(repo_dir, "update-index", "--chmod=+x", "src/api/app.py")
    git(repo_dir, "commit", "-q", "-m", "chmod")
    assert violations(repo_dir) == []


@pytest.mark.parametrize("target, ok", [
    ("app.py", True),
    ("../web/app.js", False),
    ("../../../etc/passwd", False),
    ("/etc/passwd", False),
])
def test_symlink_targets(repo_dir: Path, target: str, ok: bool) -> None:
    os.symlink(target, repo_dir / "src/api/link")
    git(repo_dir, "add", "src/api/link")
    git(repo_dir, "commit", "-q", "-m", "link")
    found = violations(repo_dir)
    assert (found == []) is ok
    if not ok:
        assert found[0][:2] == ("src/api/link", "symlink")


def _commit_gitlink(d: Path, path: str) -> None:
    git(d, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},{path}")
    git(d, "commit", "-q", "-m", "submodule")


def test_gitlink_refused_unless_gitmodules_is_owned(repo_dir: Path) -> None:
    _commit_gitlink(repo_dir, "src/api/sub")
    assert violations(repo_dir) == [("src/api/sub", "gitlink", "api")]


def test_gitlink_allowed_for_owner_of_gitmodules(repo_dir: Path) -> None:
    git(repo_dir, "checkout", "-q", "-b", "rally/r1/infra", "main")
    _commit_gitlink(repo_dir, "vendor/lib")
    assert violations(repo_dir, teammate="infra") == []


def _commit_tree_with(d: Path, name: str) -> str:
    """A commit on top of HEAD whose tree adds a file called ``name`` under src/api
    (git's porcelain refuses such names, so the tree is built with plumbing)."""
    blob = git(d, "hash-object", "-w", "--stdin", input="x\n").strip()
    api = git(d, "rev-parse", "HEAD:src/api").strip()
    entries = git(d, "ls-tree", api)
    api_tree = git(d, "mktree", input=entries + f"100644 blob {blob}\t{name}\n").strip()
    src = git(d, "ls-tree", "HEAD:src").replace(api, api_tree)
    src_tree = git(d, "mktree", input=src).strip()
    root = git(d, "ls-tree", "HEAD").replace(git(d, "rev-parse", "HEAD:src").strip(), src_tree)
    root_tree = git(d, "mktree", input=root).strip()
    sha = git(d, "commit-tree", root_tree, "-p", "HEAD", "-m", "plumbing").strip()
    git(d, "update-ref", "HEAD", sha)
    return sha


@pytest.mark.parametrize("name", [".GIT", ".git", "..", "a\x01b",
                                  # what `git fsck` calls hasDotgit: .git on Windows or macOS
                                  ".git ", ".git.", "git~1", "GIT~1", ".g\u200cit", ".gi\u200dt", "\ufeff.git"])
def test_hostile_paths_refused_even_when_owned(repo_dir: Path, name: str) -> None:
    _commit_tree_with(repo_dir, name)
    found = violations(repo_dir)
    assert [k for _, k, _ in found] == ["hostile"]


def test_case_collision(repo_dir: Path) -> None:
    _commit_tree_with(repo_dir, "readme.md")
    assert violations(repo_dir) == [("src/api/readme.md", "collision", None)]


def test_unicode_normalization_collision(repo_dir: Path) -> None:
    nfc, nfd = unicodedata.normalize("NFC", "café.py"), unicodedata.normalize("NFD", "café.py")
    commit(repo_dir, {f"src/api/{nfc}": "1\n"}, "nfc")
    _commit_tree_with(repo_dir, nfd)
    assert [(k) for _, k, _ in violations(repo_dir)] == ["collision"]


def test_violation_reverted_inside_range_is_still_reported(repo_dir: Path) -> None:
    commit(repo_dir, {"src/web/app.js": "hacked\n"}, "stray")
    commit(repo_dir, {"src/web/app.js": FILES["src/web/app.js"]}, "revert")
    assert [k for _, k, _ in violations(repo_dir)] == ["modified", "modified"]


def test_no_verify_cherry_pick_and_commit_tree_are_all_caught(repo_dir: Path) -> None:
    git(repo_dir, "checkout", "-q", "-b", "elsewhere", "main")
    stray = commit(repo_dir, {"src/web/app.js": "via cherry-pick\n"}, "stray")
    git(repo_dir, "checkout", "-q", "rally/r1/api")
    git(repo_dir, "cherry-pick", stray)
    tree = git(repo_dir, "write-tree").strip()
    sha = git(repo_dir, "commit-tree", tree, "-p", "HEAD", "-m", "empty via plumbing").strip()
    git(repo_dir, "update-ref", "HEAD", sha)
    commit(repo_dir, {"src/web/other.js": "x\n"}, "no verify")  # testing.commit uses --no-verify
    assert [p for p, _, _ in violations(repo_dir)] == ["src/web/app.js", "src/web/other.js"]


def test_merge_commit_blames_only_what_the_merge_itself_wrote(repo_dir: Path) -> None:
    git(repo_dir, "checkout", "-q", "main")
    commit(repo_dir, {"src/web/app.js": "web moved on\n"}, "web on main")
    git(repo_dir, "checkout", "-q", "rally/r1/api")
    commit(repo_dir, {"src/api/app.py": "api v2\n"}, "api")
    git(repo_dir, "merge", "-q", "--no-edit", "main")
    assert violations(repo_dir) == []


def test_map_comes_from_the_base_commit(repo_dir: Path) -> None:
    # The teammate grants itself everything on its branch: the grant itself is refused,
    # and the wider ownership is not used.
    commit(repo_dir, {"rally.yml": MAP.replace("src/api/**", "src/**")}, "grant")
    commit(repo_dir, {"src/web/app.js": "mine\n"}, "use it")
    assert [p for p, _, _ in violations(repo_dir)] == ["rally.yml", "src/web/app.js"]


def test_teammate_from_branch_name() -> None:
    assert teammate_from_branch("rally/r1/api", "rally") == "api"
    assert teammate_from_branch("refs/heads/rally/r1/api", "rally") == "api"
    assert teammate_from_branch("rally/api", "rally") is None
    assert teammate_from_branch("feature/x", "rally") is None
    assert teammate_from_branch(None, "rally") is None


# --- The command line ------------------------------------------------------


def test_cli_text_names_owner_rule_and_commit(repo_dir: Path) -> None:
    sha = commit(repo_dir, {"src/web/app.js": "hacked\n"}, "stray")
    proc = run_check(repo_dir)
    assert proc.returncode == 1, proc.stderr
    assert "src/web/app.js: api modified it, but it is owned by web" in proc.stdout
    assert f"in commit {sha[:10]}" in proc.stdout
    assert "rally.yml@" in proc.stdout and ":8:" in proc.stdout  # web's rule, line 8


def test_cli_json_and_github_formats(repo_dir: Path) -> None:
    commit(repo_dir, {"src/web/a,b:c.js": "x\n"}, "stray")
    data = json.loads(run_check(repo_dir, "--format", "json").stdout)
    assert data["ok"] is False and data["teammate"] == "api"
    assert data["violations"][0]["path"] == "src/web/a,b:c.js"
    assert data["violations"][0]["owner"] == "web"
    # The one Violation record, as check's JSON has always written it.
    assert list(data["violations"][0]) == ["teammate", "path", "kind", "owner", "commit", "reason", "rule"]
    assert data["violations"][0]["reason"] == "api added it, but it is owned by web"
    assert data["violations"][0]["rule"] == f"rally.yml@{git(repo_dir, 'rev-parse', 'main').strip()[:10]}:8:23"
    gh = run_check(repo_dir, "--format", "github").stdout
    assert gh.startswith("::error file=src/web/a%2Cb%3Ac.js,title=rally-gh ownership%3A added::")


def test_cli_clean_range_exits_0(repo_dir: Path) -> None:
    commit(repo_dir, {"src/api/x.py": "x\n"}, "fine")
    proc = run_check(repo_dir)
    assert proc.returncode == 0 and "wrote only what it owns" in proc.stdout


def test_cli_teammate_option_and_unknown_teammate(repo_dir: Path) -> None:
    git(repo_dir, "checkout", "-q", "-b", "feature", "main")
    commit(repo_dir, {"src/web/app.js": "x\n"}, "web work")
    assert run_check(repo_dir, "--teammate", "web").returncode == 0
    assert run_check(repo_dir).returncode == 0  # not a teammate's branch: nothing to check
    bad = run_check(repo_dir, "--teammate", "nobody")
    assert bad.returncode == 2 and "teammates are: api, web, infra" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_head_branch_names_the_teammate(repo_dir: Path) -> None:
    commit(repo_dir, {"src/web/app.js": "x\n"}, "stray")
    git(repo_dir, "checkout", "-q", "main")
    assert run_check(repo_dir, "--head", "rally/r1/api").returncode == 1


def test_cli_works_on_a_bare_repository(repo_dir: Path, tmp_path: Path) -> None:
    commit(repo_dir, {"src/web/app.js": "x\n"}, "stray")
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo_dir), str(bare))
    proc = run_check(bare, "--head", "rally/r1/api")
    assert proc.returncode == 1 and "owned by web" in proc.stdout


def test_cli_missing_base_in_shallow_clone_is_a_clear_error(repo_dir: Path, tmp_path: Path) -> None:
    commit(repo_dir, {"src/api/x.py": "x\n"}, "one")
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "rally/r1/api", f"file://{repo_dir}", str(clone))
    proc = subprocess.run([*RALLY_CLI, "check", "--base", "deadbeef"], cwd=clone, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no such commit" in proc.stderr and "fetch-depth" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("at_base", "code", "says"), [
    ({"a.txt": "a\n"}, 2, "no ownership map"),
    ({"rally.yml": "version: 1\nteam: x\nteammates: [\n"}, 1, "rally.yml@"),  # the line of the map at base
], ids=["no map", "broken map"])
def test_cli_without_a_usable_map_at_base(tmp_path: Path, at_base: dict[str, str], code: int, says: str) -> None:
    d = init_repo(tmp_path / "r", at_base)
    git(d, "checkout", "-q", "-b", "rally/r1/api")
    commit(d, {"b.txt": "b\n"}, "b")
    proc = run_check(d)
    assert proc.returncode == code and says in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_run_uses_the_committed_map_never_the_work_tree(repo_dir: Path) -> None:
    from rally_gh.ownership.enforce import map_for_run

    (repo_dir / "rally.yml").write_text(MAP.replace("src/api/**", "src/**"))  # an uncommitted grant
    loaded, note = map_for_run(g.open_repo(repo_dir))
    assert loaded.config.teammate("api").exclusive_write[0] == "src/api/**"
    assert note is not None and "not committed" in note


def test_the_map_comes_from_the_configured_base_branch(repo_dir: Path) -> None:
    from rally_gh.ownership.enforce import map_for_run

    git(repo_dir, "checkout", "-q", "main")
    commit(repo_dir, {"rally.yml": MAP.replace("team: shop", "team: shop\nbase: trunk")}, "base: trunk")
    git(repo_dir, "branch", "trunk", "HEAD~1")  # trunk still has the map without `base:`
    loaded, _ = map_for_run(g.open_repo(repo_dir))
    assert loaded.config.base is None and "@" in loaded.source.file


def test_the_integration_branch_is_not_a_teammate() -> None:
    assert teammate_from_branch("rally/r1/_integration", "rally") is None


@pytest.mark.parametrize("name", [".git ", "GIT~1", ".g\u200cit"])
def test_check_refuses_a_name_that_is_dotgit_on_windows_or_macos(repo_dir: Path, name: str) -> None:
    _commit_tree_with(repo_dir, name)
    proc = run_check(repo_dir)
    assert proc.returncode == 1, proc.stdout
    assert f"src/api/{name}: a hostile path (has a segment that is '.git' on Windows or macOS" in proc.stdout


# --- A blocked_by teammate's branch: only its own commits are its -----------------

BLOCKED_RUN_MAP = """\
version: 1
team: trial
defaults: {{timeout: 20s, retries: 0}}
teammates:
  - name: utils
    task: Write the helpers.
    exclusive_write: [/src/utils/]
    agent: {{preset: command, command: [{python}, -c, "{utils}"]}}
  - name: docs
    task: Document the helpers.
    exclusive_write: [/docs/]
    blocked_by: [utils]
    agent: {{preset: command, command: [{python}, -c, "{docs}"]}}
"""


@pytest.fixture
def blocked_run(tmp_path: Path) -> Path:
    """A real run: docs, blocked by utils, starts from an integration tip holding utils' commit."""
    import sys
    import time

    from rally_gh.run import pipeline
    from rally_gh.config import load_config_text

    utils = ("import pathlib; pathlib.Path('src/utils').mkdir(parents=True, exist_ok=True); "
             "pathlib.Path('src/utils/a.py').write_text('x = 1')")
    docs = ("import pathlib, sys; pathlib.Path('src/utils/a.py').exists() or sys.exit('no utils'); "
            "pathlib.Path('docs').mkdir(exist_ok=True); pathlib.Path('docs/utils.md').write_text('# utils')")
    text = BLOCKED_RUN_MAP.format(python=json.dumps(sys.executable), utils=utils, docs=docs)
    d = init_repo(tmp_path / "repo", {"README.md": "# r\n", "rally.yml": text})
    state = pipeline.run(d, load_config_text(text, "rally.yml"), "r1", None, time.time, dict(os.environ),
                         lambda *e: None)
    assert {t.name: t.outcome for t in state.teammates} == {"utils": "done", "docs": "done"}
    return d


def test_check_of_a_blocked_teammate_judges_only_its_own_commits(blocked_run: Path) -> None:
    # Its branch holds utils' work (replayed) under its own: that is utils', not docs'.
    assert "src/utils/a.py" in git(blocked_run, "ls-tree", "-r", "--name-only", "rally/r1/docs")
    proc = run_check(blocked_run, "--head", "rally/r1/docs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "docs wrote only what it owns (1 commit after " in proc.stdout
    assert "where it started (from the run's records)" in proc.stdout
    data = json.loads(run_check(blocked_run, "--head", "rally/r1/docs", "--format", "json").stdout)
    assert data["start"]["source"] == "from the run's records" and data["commits_checked"] == 1

    # A write of its own outside docs/ is still its violation, and the only one.
    git(blocked_run, "checkout", "-q", "rally/r1/docs")
    commit(blocked_run, {"src/utils/a.py": "x = 2\n"}, "docs edits utils")
    proc = run_check(blocked_run, "--head", "rally/r1/docs", "--format", "json")
    assert proc.returncode == 1
    assert [(v["path"], v["owner"]) for v in json.loads(proc.stdout)["violations"]] == [("src/utils/a.py", "utils")]


def test_check_in_ci_finds_the_start_from_the_blockers_branches(blocked_run: Path, tmp_path: Path) -> None:
    """A CI checkout has refs only (no run records): the replays of utils' commits say where docs began."""
    clone = tmp_path / "ci"
    git(tmp_path, "clone", "-q", f"file://{blocked_run}", str(clone))
    assert not (clone / ".git" / "rally").exists()
    head = git(clone, "rev-parse", "origin/rally/r1/docs").strip()
    git(clone, "checkout", "-q", "--detach", head)  # as actions/checkout leaves a pull request's head
    env = {**os.environ, "GITHUB_HEAD_REF": "rally/r1/docs"}
    env.pop("RALLY_TEAMMATE", None)
    proc = subprocess.run([*RALLY_CLI, "check", "--base", "origin/main", "--head", head], cwd=clone, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "docs wrote only what it owns (1 commit after " in proc.stdout
    assert "(on the work of utils, replayed)" in proc.stdout

    # Without utils' branch, nothing proves whose those commits are: they are docs'.
    git(clone, "update-ref", "-d", "refs/remotes/origin/rally/r1/utils")
    proc = subprocess.run([*RALLY_CLI, "check", "--base", "origin/main", "--head", head], cwd=clone, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "src/utils/a.py" in proc.stdout


def test_a_teammate_cannot_pass_its_own_write_off_as_its_blockers(blocked_run: Path) -> None:
    """A commit with utils' author, date and message but another change is not utils' replayed work."""
    start = g.resolve(g.open_repo(blocked_run), "rally/r1/docs~1")
    git(blocked_run, "checkout", "-q", "-b", "rally/r2/docs", start)
    commit(blocked_run, {"src/utils/b.py": "y\n"}, "rally(utils): Write the helpers.",
           env={"GIT_AUTHOR_NAME": "rally-gh", "GIT_AUTHOR_EMAIL": "rally-gh@users.noreply.github.com"})
    (blocked_run / ".git" / "rally" / "runs" / "r1" / "run.json").unlink()
    git(blocked_run, "branch", "rally/r2/utils", "rally/r1/utils")
    proc = run_check(blocked_run, "--head", "rally/r2/docs", "--format", "json")
    assert proc.returncode == 1
    assert [v["path"] for v in json.loads(proc.stdout)["violations"]] == ["src/utils/b.py"]


def test_check_of_a_blocked_teammate_holds_after_the_base_moved(blocked_run: Path, tmp_path: Path) -> None:
    """main moved during or after the run: the teammate's start no longer descends from it,
    and its blockers' replayed commits are still not its own (from the records, and in CI)."""
    git(blocked_run, "checkout", "-q", "main")
    commit(blocked_run, {"SECURITY.md": "policy\n"}, "landed on main")
    proc = run_check(blocked_run, "--base", "main", "--head", "rally/r1/docs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "where it started (from the run's records)" in proc.stdout

    clone = tmp_path / "ci-moved"
    git(tmp_path, "clone", "-q", f"file://{blocked_run}", str(clone))
    head = git(clone, "rev-parse", "origin/rally/r1/docs").strip()
    git(clone, "checkout", "-q", "--detach", head)
    env = {**os.environ, "GITHUB_HEAD_REF": "rally/r1/docs"}
    proc = subprocess.run([*RALLY_CLI, "check", "--base", "origin/main", "--head", head], cwd=clone, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(on the work of utils, replayed)" in proc.stdout
