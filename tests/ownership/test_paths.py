"""Hostile path names (rally_gh.ownership.paths): every name that `git fsck` reports as
``hasDotgit`` is refused, and names that only look alike are not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rally_gh.ownership.paths import HFS_IGNORED, hostile_reason, is_dotgit_elsewhere
from rally_gh.testing import git, git_env, init_repo

# What issue 14 saw pass `check`, and the rest of git's list.
DOTGIT_ELSEWHERE = [
    ".git ", ".git.", ".git. .", ".GIT  ", "git~1", "GIT~1", "Git~1.", ".git::$INDEX_ALLOCATION", ".git:stream",
    "docs\\.git", "x\\git~1 ", ".g\u200cit", ".gi\u200dt", "\ufeff.git", ".git\ufeff", ".\u202eGIT",
    *(f".g{c}it" for c in sorted(HFS_IGNORED)),
]
LOOKALIKES = [".gitignore", ".github", ".gitattributes", "git~2", "git~10", "git~1x", ".git x", "x.git", ".gi t",
              "git", ".git\u00a0", ".g\u00edt", "\u200c.git\\x", ".git\u200c ", "git\u200c~1"]


@pytest.mark.parametrize("name", DOTGIT_ELSEWHERE)
def test_a_name_that_is_dotgit_on_windows_or_macos_is_hostile(name: str) -> None:
    for path in (name, f"src/{name}", f"src/{name}/x.py"):
        reason = hostile_reason(path)
        assert reason is not None and "'.git' on Windows or macOS" in reason, (path, reason)


@pytest.mark.parametrize("name", LOOKALIKES)
def test_a_name_that_only_looks_like_dotgit_is_fine(name: str) -> None:
    assert hostile_reason(f"src/{name}") is None


# --- git fsck is the oracle ---------------------------------------------------

NAME_PARTS = st.sampled_from([".git", "git~1", ".GiT", "GIT~1", "git", ".gi", "t", "~", "1", "2", ".", " ", ":",
                              "\\", "x", "a", "\u00a0", *sorted(HFS_IGNORED)])


def fsck_flags(repo: Path, names: list[str]) -> list[bool]:
    """Whether `git fsck` reports ``hasDotgit`` for a tree holding each name."""
    blob = git(repo, "hash-object", "-w", "--stdin", input="x\n").strip()
    batch = "\n\n".join(f"100644 blob {blob}\t{name}" for name in names) + "\n"
    trees = git(repo, "mktree", "--batch", input=batch).split()
    assert len(trees) == len(names)
    proc = subprocess.run(["git", "fsck", "--no-dangling", "--no-progress"], cwd=repo, env=git_env(),
                          capture_output=True, text=True, check=False)
    flagged = {line.split()[3].rstrip(":") for line in (proc.stdout + proc.stderr).splitlines()
               if "hasDotgit" in line}
    return [tree in flagged for tree in trees]


@pytest.fixture(scope="module")
def fsck_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_repo(tmp_path_factory.mktemp("fsck") / "r")


def test_the_named_lists_agree_with_git_fsck(fsck_repo: Path) -> None:
    assert fsck_flags(fsck_repo, DOTGIT_ELSEWHERE) == [True] * len(DOTGIT_ELSEWHERE)
    assert fsck_flags(fsck_repo, LOOKALIKES) == [False] * len(LOOKALIKES)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(NAME_PARTS, min_size=1, max_size=5).map("".join), min_size=1, max_size=60, unique=True))
def test_a_name_is_dotgit_exactly_when_git_fsck_says_so(fsck_repo: Path, names: list[str]) -> None:
    names = [n for n in names if n not in (".", "..")]  # fsck reports those as hasDot, hasDotdot
    if not names:
        return
    expected = fsck_flags(fsck_repo, names)
    got = [n.lower() == ".git" or is_dotgit_elsewhere(n) for n in names]
    assert got == expected, [(n, g, e) for n, g, e in zip(names, got, expected) if g != e]


# --- Reconciliation: a teammate that commits such a name is violated -------------

PLUMBER = """
    import subprocess
    def git(*args, input=None):
        return subprocess.run(["git", *args], input=input, capture_output=True, text=True, check=True).stdout.strip()
    # The porcelain refuses these names; a teammate's own plumbing does not.
    blob = git("hash-object", "-w", "--stdin", input="[core]\\n\\thooksPath = /tmp\\n")
    inner = git("mktree", input=f"100644 blob {blob}\\tconfig\\n")
    docs = git("mktree", input=git("ls-tree", "HEAD:docs") + f"\\n040000 tree {inner}\\t{NAME}\\n")
    root = git("mktree", input=git("ls-tree", "HEAD").replace(git("rev-parse", "HEAD:docs"), docs))
    commit = git("-c", "user.name=Agent", "-c", "user.email=agent@example.com",
                 "commit-tree", root, "-p", "HEAD", "-m", "docs: plumbing")
    git("update-ref", "HEAD", commit)
"""


@pytest.mark.parametrize("name", ["git~1", ".git.", ".g\u200cit"])
def test_reconciliation_finds_a_teammate_that_committed_such_a_name(tmp_path: Path, name: str) -> None:
    import json
    import os
    import sys
    import textwrap
    import time

    from rally_gh.run import pipeline
    from rally_gh.config import load_config_text

    script = tmp_path / "plumber.py"
    script.write_text(f"NAME = {name!r}\n" + textwrap.dedent(PLUMBER))
    rally_yml = textwrap.dedent(f"""\
        version: 1
        team: hostile
        defaults: {{timeout: 30s, retries: 0}}
        teammates:
          - name: docs
            exclusive_write: [docs/**]
            agent: {{preset: command, command: [{json.dumps(sys.executable)}, {json.dumps(str(script))}]}}
          - name: idle
            exclusive_write: [src/**]
            agent: {{preset: command, command: [{json.dumps(sys.executable)}, "-c", "pass"]}}
    """)
    repo = init_repo(tmp_path / "repo", {"rally.yml": rally_yml, "docs/guide.md": "guide\n", "src/a.py": "a\n"})
    state = pipeline.run(repo, load_config_text(rally_yml, "rally.yml"), "r1", None, time.time, dict(os.environ))
    docs = state.teammate("docs")
    assert docs.outcome == "violated", docs.reason
    assert {(v.path, v.kind) for v in docs.violations} == {(f"docs/{name}/config", "hostile")}
    if state.integration_sha:  # nothing of it was integrated
        assert name not in git(repo, "ls-tree", "--name-only", f"{state.integration_sha}:docs")
