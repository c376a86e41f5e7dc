from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from rally_gh.github.fake import FakeGitHubServer, FakeGitHubError
from rally_gh.testing import commit, git, git_env, init_repo


def push_main(server: FakeGitHubServer, tmp_path: Path) -> Path:
    work = init_repo(tmp_path / "work", {"README.md": "hello\n"})
    git(work, "push", "-q", server.authenticated_git_url, "main")
    return work


def test_push_with_the_token_lands_in_the_bare_repository(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    work = push_main(fake_github, tmp_path)
    sha = commit(work, {"a.txt": "a\n"}, "add a")
    git(work, "push", "-q", fake_github.authenticated_git_url, "main:rally/r1")
    assert fake_github.refs()["refs/heads/rally/r1"] == sha
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", fake_github.authenticated_git_url, str(clone))
    assert (clone / "README.md").read_text() == "hello\n"


def test_push_without_the_token_is_refused(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    work = push_main(fake_github, tmp_path)
    commit(work, {"b.txt": "b\n"}, "add b")
    wrong = fake_github.authenticated_git_url.replace("test-token", "wrong-token")
    for url in (fake_github.git_url, wrong):
        push = subprocess.run(["git", "push", url, "main:sneaky"], cwd=work, env=git_env(),
                              capture_output=True, text=True)
        assert push.returncode != 0
        assert "Authentication failed" in push.stderr or "could not read Username" in push.stderr
    assert "refs/heads/sneaky" not in fake_github.refs()


def test_a_large_push_goes_through_chunked(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    work = push_main(fake_github, tmp_path)
    # Past git's 1 MiB http.postBuffer the pack is sent with chunked transfer encoding.
    sha = commit(work, {"blob.bin": os.urandom(3 * 1024 * 1024)}, "big")
    git(work, "push", "-q", fake_github.authenticated_git_url, "main")
    assert fake_github.refs()["refs/heads/main"] == sha


def test_api_requires_the_token(fake_github: FakeGitHubServer) -> None:
    answer = requests.get(f"{fake_github.api_url}/repos/owner/repo", timeout=5)
    assert answer.status_code == 401
    assert answer.json()["message"] == "Bad credentials"


def test_anything_not_modelled_fails_loudly(fake_github: FakeGitHubServer) -> None:
    answer = requests.get(f"{fake_github.api_url}/repos/owner/repo/releases", timeout=5,
                          headers={"Authorization": "token test-token"})
    assert answer.status_code == 501
    assert answer.json()["message"] == "GET /repos/owner/repo/releases not implemented in FakeGitHub"


def test_issues_count_from_one_and_pull_requests_from_500(fake_github: FakeGitHubServer) -> None:
    assert fake_github.create_issue("first") == 1
    assert fake_github.create_issue("second") == 2
    fake_github._next["issue"] = 500
    with pytest.raises(FakeGitHubError, match="pull requests start there"):
        fake_github.create_issue("too many")


def test_state_renders_the_world(fake_github: FakeGitHubServer) -> None:
    number = fake_github.create_issue("Add orders", "Please", user="alice", labels=("bug",))
    assert fake_github.state() == (
        "repository owner/repo (default branch main)\n"
        "label bug #ededed\n"
        f"issue #{number} [open] 'Add orders' by alice labels=['bug']\n"
    )
