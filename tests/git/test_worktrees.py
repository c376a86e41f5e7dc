"""Worktrees (rally_gh.git.worktrees): sparse ones included, on real repositories; a sparse
teammate's whole run. Committing what an agent left: tests/git/test_private.py."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rally_gh import git
from rally_gh.run import pipeline
from rally_gh.config import load_config_text
from rally_gh.testing import git as run_git
from rally_gh.testing import init_repo, tree_files

FILES: dict[str, str | bytes | None] = {
    "README.md": "# shop\n",
    "src/api/a.py": "a\n",
    "src/api/b.py": "b\n",
    "src/web/w.js": "w\n",
    "docs/guide.md": "guide\n",
    "docs/deep/more.md": "more\n",
}
# --- A sparse teammate's whole run ------------------------------------------------

AGENT = """
    import os, pathlib, subprocess
    def git(*args):
        subprocess.run(["git", "-c", "user.name=Agent", "-c", "user.email=agent@example.com", *args], check=True)
    assert not pathlib.Path("src/web").exists(), "the checkout is not sparse"
    guide = pathlib.Path("docs/guide.md")
    guide.write_text("guide, first pass\\n")
    git("commit", "-q", "-a", "-m", "docs: first pass")  # what an agent types: every tracked change
    pathlib.Path("docs/faq.md").write_text("faq\\n")
    git("add", "-A")
    git("commit", "-q", "-m", "docs: faq")
    # The agent's own git knows its checkout is sparse, and what it holds.
    listed = subprocess.run(["git", "sparse-checkout", "list"], capture_output=True, text=True)
    assert listed.returncode == 0 and "docs" in listed.stdout.split(), listed.stderr
    guide.write_text("guide, left uncommitted\\n")  # rally-gh commits the rest
    pathlib.Path("docs/deep/new.md").write_text("new\\n")
"""


def test_a_sparse_teammates_commits_and_leftovers_change_only_its_own_paths(tmp_path: Path) -> None:
    script = tmp_path / "docs_agent.py"
    script.write_text(textwrap.dedent(AGENT))
    command = json.dumps([sys.executable, str(script)])
    rally_yml = textwrap.dedent(f"""\
        version: 1
        team: sparse
        defaults: {{timeout: 30s, retries: 0, checkout: sparse}}
        teammates:
          - name: docs
            exclusive_write: [docs/**]
            agent: {{preset: command, command: {command}}}
          - name: idle
            exclusive_write: [src/web/**]
            agent: {{preset: command, command: [{json.dumps(sys.executable)}, "-c", "pass"]}}
    """)
    repo = init_repo(tmp_path / "repo", {**FILES, "rally.yml": rally_yml})
    start = run_git(repo, "rev-parse", "HEAD").strip()
    state = pipeline.run(repo, load_config_text(rally_yml, "rally.yml"), "r1", None, time.time, dict(os.environ))
    docs = state.teammate("docs")
    assert (docs.outcome, docs.violations) == ("done", ()), docs.reason
    assert docs.files_changed == ("docs/deep/new.md", "docs/faq.md", "docs/guide.md")
    branch = "rally/r1/docs"
    messages = run_git(repo, "log", "--format=%s", f"{start}..{branch}").splitlines()
    assert messages[1:] == ["docs: faq", "docs: first pass"] and messages[0].startswith("rally(docs)")
    before, after = tree_files(repo, start), tree_files(repo, branch)
    assert {p: b for p, b in before.items() if not p.startswith("docs/")} == \
        {p: b for p, b in after.items() if not p.startswith("docs/")}
    assert run_git(repo, "show", f"{branch}:docs/guide.md") == "guide, left uncommitted\n"


def test_a_sparse_checkout_leaves_the_repositorys_config_alone(tmp_path: Path) -> None:
    """A run guards the git directory's config against agents and puts it back while
    other teammates are spawned: a sparse checkout must not need any of it."""
    repo = init_repo(tmp_path / "repo", FILES)
    config = (repo / ".git/config").read_text()
    handle = git.open_repo(repo)
    wt = tmp_path / "wt"
    git.create_private_repo(handle, wt, "rally/r/api", git.resolve(handle, "HEAD"))
    git.populate_worktree(wt, ["src/api"])
    assert (repo / ".git/config").read_text() == config
    assert not (repo / ".git/worktrees").exists()
    assert not (wt / "src/web").exists()
    (wt / "src/api/a.py").write_text("a2\n")
    run_git(wt, "commit", "-q", "-a", "-m", "the agent's own commit -a")
    assert run_git(wt, "show", "--name-status", "--format=", "HEAD") == "M\tsrc/api/a.py\n"


@pytest.mark.parametrize("dirs", [["src/api"], ["src/api", "src/api/x", "tests/api", "docs"], ["we*ird/sp ace", "a[b]"],
                                  ["a/b/c/d", "a/e"]])
def test_cone_patterns_are_the_ones_git_writes(tmp_path: Path, dirs: list[str]) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    run_git(repo, "sparse-checkout", "set", "--cone", "--skip-checks", *dirs)
    assert git.cone_patterns(dirs) == (repo / ".git/info/sparse-checkout").read_text()
