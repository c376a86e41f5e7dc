"""The hook's fast path (rally_gh.fasthook): the same answers as the full path,
from a compiled table and the git CLI, and never a "clean" the full path would refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import event, given, settings, strategies as st

from rally_gh import fasthook
from rally_gh.errors import PatternError
from rally_gh.ownership.globs import compile_glob
from rally_gh.ownership.rules import Grant, Ownership
from rally_gh.testing import RALLY_CLI, SHOP_FILES as FILES, git, git_env, init_repo

SEGMENTS = ["a", "b", "A", "x.py", "rally.yml", "CODEOWNERS", ".github", "*", "**", "*.py", "?", "x*", "a\\*"]
PATH_SEGMENTS = ["a", "b", "A", "x.py", "y.py", "rally.yml", "CODEOWNERS", ".github", "a*", "ab"]


@st.composite
def patterns(draw: st.DrawFn) -> str:
    body = "/".join(draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3)))
    return (draw(st.sampled_from(["", "!"])) + draw(st.sampled_from(["", "/"])) + body
            + draw(st.sampled_from(["", "/"])))


paths = st.lists(st.sampled_from(PATH_SEGMENTS), min_size=1, max_size=4).map("/".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(patterns(), min_size=1, max_size=4), min_size=1, max_size=3), st.lists(paths, max_size=8))
def test_table_owner_is_the_ownership_engines(teams: list[list[str]], some_paths: list[str]) -> None:
    names = [f"t{i}" for i in range(len(teams))]
    try:
        grants = [Grant(t, i, compile_glob(p)) for t, pats in enumerate(teams) for i, p in enumerate(pats)]
    except PatternError:
        return
    engine = Ownership(names, grants)
    _, table_names, rows = fasthook.load_table(fasthook.compile_table("rally", list(zip(names, teams))))
    for path in some_paths:
        assert fasthook.owner_of(table_names, rows, path) == engine.owner_of(path), (teams, path)


def test_common_forms_are_matched_with_string_tests() -> None:
    _, _, rows = fasthook.load_table(fasthook.compile_table("rally", [
        ("api", ["src/api/**", "/docs/api/", "Makefile", "src/app.py", "!src/api/gen/**"]),
    ]))
    assert [kind for _, _, kind, _, _ in rows] == [fasthook._INSIDE, fasthook._EXACT, fasthook._ANYWHERE,
                                                   fasthook._EXACT, fasthook._INSIDE]


def test_a_table_of_another_format_is_refused() -> None:
    with pytest.raises(ValueError):
        fasthook.load_table(b"not marshal")
    with pytest.raises(ValueError):
        fasthook.load_table(fasthook.compile_table("rally", []).replace(b"\x01", b"\x07", 1))


# --- Real repositories ------------------------------------------------------


def git_commit(d: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "commit", "-q", "-m", "change"], cwd=d, env=git_env(env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)


def write(d: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(content)
        git(d, "add", rel)


@pytest.fixture
def hooked(tmp_path: Path) -> Path:
    d = init_repo(tmp_path / "shop", FILES)
    subprocess.run([*RALLY_CLI, "hook", "install"], cwd=d, check=True, capture_output=True)
    git(d, "checkout", "-q", "-b", "rally/r1/api")
    write(d, {"src/api/app.py": "warm the table\n"})
    assert git_commit(d).returncode == 0  # the full path compiles and caches the map's table
    return d


def test_the_full_path_caches_the_table_by_map_blob(hooked: Path) -> None:
    blob = git(hooked, "rev-parse", "HEAD:rally.yml").strip()
    table = Path(fasthook.table_file(str(hooked / ".git"), blob))
    prefix, names, _ = fasthook.load_table(table.read_bytes())
    assert prefix == "rally" and "api" in names


def test_in_a_linked_worktree(hooked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = hooked.parent / "api-tree"
    git(hooked, "worktree", "add", "-q", "-b", "rally/r1/web", str(tree), "main")
    write(tree, {"src/web/app.js": "v2\n"})
    monkeypatch.chdir(tree)
    assert fasthook.is_clean({}) is True
    assert git_commit(tree).returncode == 0
    write(tree, {"src/api/app.py": "not mine\n"})
    assert fasthook.is_clean({}) is False
    proc = git_commit(tree)
    assert proc.returncode != 0 and "src/api/app.py: web modified it, but it is owned by api" in proc.stdout


def test_a_detached_head_goes_to_the_full_path_which_reads_the_jobs_branch(
        hooked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI checks a pull request out detached: only the job's environment (GITHUB_HEAD_REF, read by
    rally_gh/github/actions.py) says whose commit it is, so the fast path does not decide."""
    git(hooked, "checkout", "-q", "--detach")
    write(hooked, {"src/web/app.js": "not api's\n"})
    monkeypatch.chdir(hooked)
    assert fasthook.is_clean({"GITHUB_HEAD_REF": "rally/r1/api"}) is False
    proc = git_commit(hooked, {"GITHUB_HEAD_REF": "rally/r1/api"})
    assert proc.returncode != 0 and "src/web/app.js: api modified it, but it is owned by web" in proc.stdout


def test_from_a_subdirectory(hooked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(hooked, {"src/api/app.py": "v3\n"})
    monkeypatch.chdir(hooked / "src" / "api")
    assert fasthook.is_clean({}) is True


def test_a_broken_table_goes_to_the_full_path(hooked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = git(hooked, "rev-parse", "HEAD:rally.yml").strip()
    Path(fasthook.table_file(str(hooked / ".git"), blob)).write_bytes(b"\x00garbage")
    write(hooked, {"src/api/app.py": "v3\n"})
    monkeypatch.chdir(hooked)
    with pytest.raises(ValueError):
        fasthook.is_clean({})
    assert git_commit(hooked).returncode == 0  # the full path decides
    write(hooked, {"src/web/app.js": "not mine\n"})
    assert git_commit(hooked).returncode != 0


def test_no_teammate_and_a_staged_map(hooked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(hooked, "checkout", "-q", "main")
    monkeypatch.chdir(hooked)
    write(hooked, {"src/web/app.js": "anyone\n"})
    assert fasthook.is_clean({}) is True
    write(hooked, {"rally.yml": (hooked / "rally.yml").read_text() + "\n"})
    assert fasthook.is_clean({}) is False  # the full path validates it


def test_a_planted_rally_gh_package_cannot_answer_for_the_hook(hooked: Path) -> None:
    """The working directory is a teammate's checkout: its files never run as the hook."""
    for top in ("rally_gh/__init__.py", "rally_gh/__main__.py", "rally_gh/fasthook.py"):
        (hooked / top).parent.mkdir(exist_ok=True)
        (hooked / top).write_text("raise SystemExit(0)\n")  # untracked: the hook runs at the top
    write(hooked, {"src/web/app.js": "not mine\n"})
    proc = git_commit(hooked)
    assert proc.returncode != 0 and "owned by web" in proc.stdout


def test_the_installed_hook_becomes_the_full_path_when_rally_gh_moved(hooked: Path) -> None:
    hook = hooked / ".git" / "hooks" / "pre-commit"
    text = hook.read_text()
    bootstrap_args = text.split("main()' ", 1)[1].split(" || exit", 1)[0]
    hook.write_text(text.replace(bootstrap_args, "/nonexistent"))
    write(hooked, {"src/web/app.js": "not mine\n"})
    proc = git_commit(hooked)
    assert proc.returncode != 0 and "owned by web" in proc.stdout


def test_the_index_is_the_one_git_names_in_git_index_file(hooked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`git commit -a` and `git commit PATH` commit a temporary index: the fast path
    judges that one, whatever the repository's own index holds."""
    monkeypatch.chdir(hooked)
    temporary = hooked / ".git" / "next-index-test.lock"
    in_temporary = {"GIT_INDEX_FILE": str(temporary)}
    git(hooked, "read-tree", "HEAD", env=in_temporary)
    (hooked / "src/web/app.js").write_text("not mine\n")
    git(hooked, "add", "src/web/app.js", env=in_temporary)
    assert fasthook.is_clean({}) is True  # the real index is clean
    assert fasthook.is_clean(in_temporary) is False
    assert fasthook.is_clean({"GIT_INDEX_FILE": ".git/next-index-test.lock"}) is False  # relative to the top
    git(hooked, "read-tree", "HEAD", env=in_temporary)
    git(hooked, "add", "src/web/app.js")  # now only the real index writes outside api's paths
    assert fasthook.is_clean(in_temporary) is True
    assert fasthook.is_clean({}) is False


def test_map_files_are_the_config_candidates() -> None:
    from rally_gh.config import CONFIG_CANDIDATES

    assert fasthook.MAP_FILES == tuple(CONFIG_CANDIDATES)


def test_the_fast_path_imports_only_the_standard_library() -> None:
    """What makes it fast: no site, no subprocess, no pygit2, no pydantic, no re."""
    code = ("import sys; import rally_gh.fasthook; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'subprocess', 'pygit2', 'pydantic', 're', 're2', 'json', 'typing', 'dataclasses', 'pathlib'}))")
    root = str(Path(fasthook.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.append({root!r}); {code}"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- Never "clean" where the full path refuses ------------------------------

STAGEABLE = ["src/api/app.py", "src/api/new.py", "src/api/App.py", "src/api/readme.md", "SRC/api/x.py",
             "src/api/generated/schema.py", "src/api/generated/new.py", "src/web/app.js", "src/web/new.js",
             "tests/api/test_app.py", "tests/api/new.py", "tests/api", "README.md", "rally.yml", ".gitmodules",
             "vendor/lib", "src/api/e\u0301.py", "src/api/\u00e9.py", "src/api/link", "top.txt"]
MODES = ["100644", "100755", "120000", "160000", "delete"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(STAGEABLE), st.sampled_from(MODES)), max_size=4,
                unique_by=lambda c: c[0]),
       st.sampled_from(["api", "web", "infra", None]))
def test_the_fast_path_never_passes_what_the_full_path_refuses(
        shop_for_staging: Path, changes: list[tuple[str, str]], teammate: str | None) -> None:
    from rally_gh import git as rally_git
    from rally_gh.hook import pre_commit

    d = shop_for_staging
    git(d, "read-tree", "HEAD")  # a clean index
    blob = git(d, "hash-object", "-w", "--stdin", input="../web/app.js").strip()
    head = git(d, "rev-parse", "HEAD").strip()
    for path, mode in changes:
        if mode == "delete":
            git(d, "update-index", "--force-remove", "--", path)
        else:
            target = head if mode == "160000" else blob
            subprocess.run(["git", "update-index", "--add", "--cacheinfo", f"{mode},{target},{path}"],
                           cwd=d, env=git_env(), capture_output=True, check=False)  # 'tests/api' may be refused
    environ = {"RALLY_TEAMMATE": teammate} if teammate else {}
    cwd = os.getcwd()
    os.chdir(d)
    try:
        fast = fasthook.is_clean(environ)
    finally:
        os.chdir(cwd)
    full = pre_commit(rally_git.open_repo(d), None, environ)
    event(f"fast path: {'clean' if fast else 'asks the full path'}; full path: {'ok' if full.ok else 'refused'}")
    assert not fast or full.ok, (changes, teammate, full)


@pytest.fixture(scope="module")
def shop_for_staging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rally_gh import git as rally_git
    from rally_gh.hook import pre_commit

    d = init_repo(tmp_path_factory.mktemp("staging") / "shop", FILES)
    assert pre_commit(rally_git.open_repo(d), None, {"RALLY_TEAMMATE": "api"}).ok  # compiles the table
    return d
