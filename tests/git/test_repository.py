"""Opening a repository and reading it (rally_gh.git.repository), on real repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from rally_gh import git as rgit
from rally_gh.errors import GitError
from rally_gh.testing import git, init_repo


def test_a_clone_and_a_bare_repository_say_where_their_folders_are(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"README": "r\n"})
    git(tmp_path, "clone", "-q", "--bare", str(path), "bare.git")
    repo = rgit.open_repo(path / "README")  # found from inside
    assert not rgit.is_bare(repo)
    assert rgit.workdir(repo) == path and rgit.git_dir(repo) == path / ".git" == rgit.common_dir(repo)
    bare = rgit.open_repo(tmp_path / "bare.git", allow_bare=True)
    assert rgit.is_bare(bare) and rgit.git_dir(bare) == tmp_path / "bare.git"
    with pytest.raises(GitError, match="has no work tree"):
        rgit.workdir(bare)
    with pytest.raises(GitError, match="is a bare repository"):
        rgit.open_repo(tmp_path / "bare.git")


def test_entry_names_at_a_commit_name_a_directorys_entries_and_nothing_else(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"README": "r\n", "src/a.py": "a\n", "src/sub/b.py": "b\n"})
    repo = rgit.open_repo(path)
    names = rgit.entry_names_at(repo, rgit.resolve(repo, "HEAD"))
    assert names("") == ["README", "src"]
    assert names("src") == ["a.py", "sub"]
    assert names("src/a.py") == [] and names("nowhere") == []
    assert rgit.entry_names_at(repo, None)("") == []  # an unborn HEAD has nothing
