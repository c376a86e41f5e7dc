from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_check import github_openapi

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


def test_every_route_answers_in_github_s_shape(fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    """Raw HTTP over every modelled route; the fixture checks each exchange against the OpenAPI description."""
    work = push_main(fake_github, tmp_path)
    git(work, "checkout", "-q", "-b", "feature")
    sha = commit(work, {"f.txt": "f\n"}, "feature")
    git(work, "push", "-q", fake_github.authenticated_git_url, "feature")
    number = fake_github.create_issue("Issue", "body", labels=("bug",))
    fake_github.set_permission("tri", "triage")
    session = requests.Session()
    session.headers["Authorization"] = "token test-token"
    repo = f"{fake_github.api_url}/repos/owner/repo"

    def call(method: str, url: str, expected: int, body: Any = None) -> Any:
        answer = session.request(method, url, json=body, timeout=5)
        assert answer.status_code == expected, (method, url, answer.text)
        return answer.json() if answer.content else None

    call("GET", f"{fake_github.api_url}/user", 200)
    call("GET", repo, 200)
    call("GET", f"{repo}/collaborators/tri/permission", 200)
    call("GET", f"{repo}/collaborators/nobody/permission", 404)
    call("GET", f"{repo}/issues/{number}", 200)
    comment = call("POST", f"{repo}/issues/{number}/comments", 201, {"body": "hi"})
    assert isinstance(comment, dict)
    call("GET", f"{repo}/issues/{number}/comments", 200)
    call("GET", f"{repo}/issues/comments/{comment['id']}", 200)
    call("PATCH", f"{repo}/issues/comments/{comment['id']}", 200, {"body": "edited"})
    call("POST", f"{repo}/issues/{number}/comments", 422, {"body": "x" * 70_000})
    call("POST", f"{repo}/issues/{number}/reactions", 201, {"content": "rocket"})
    call("POST", f"{repo}/issues/{number}/reactions", 200, {"content": "rocket"})
    call("GET", f"{repo}/issues/{number}/labels", 200)
    call("POST", f"{repo}/issues/{number}/labels", 200, {"labels": ["a"]})
    call("PUT", f"{repo}/issues/{number}/labels", 200, {"labels": ["b"]})
    call("DELETE", f"{repo}/issues/{number}/labels/b", 200)
    call("DELETE", f"{repo}/issues/{number}/labels/b", 404)
    call("POST", f"{repo}/labels", 201, {"name": "new", "color": "ffffff", "description": "d"})
    call("POST", f"{repo}/labels", 422, {"name": "new", "color": "ffffff"})
    call("GET", f"{repo}/labels/new", 200)
    call("PATCH", f"{repo}/labels/new", 200, {"color": "000000"})
    run = call("POST", f"{repo}/check-runs", 201, {
        "name": "c", "head_sha": sha, "status": "in_progress",
        "output": {"title": "t", "summary": "s", "annotations": [
            {"path": "f.txt", "start_line": 1, "end_line": 1, "annotation_level": "warning", "message": "m"}]}})
    assert isinstance(run, dict)
    call("POST", f"{repo}/check-runs", 422, {"name": "c", "head_sha": "0" * 40})
    call("GET", f"{repo}/check-runs/{run['id']}", 200)
    call("PATCH", f"{repo}/check-runs/{run['id']}", 200, {"conclusion": "success"})
    call("GET", f"{repo}/check-runs/{run['id']}/annotations", 200)
    call("GET", f"{repo}/commits/{sha}/check-runs?check_name=c", 200)
    call("POST", f"{repo}/statuses/{sha}", 201, {"state": "success", "context": "c", "description": "d"})
    call("GET", f"{repo}/commits/feature/statuses", 200)
    pull = call("POST", f"{repo}/pulls", 201, {"head": "feature", "base": "main", "title": "t", "body": "b"})
    assert isinstance(pull, dict) and pull["number"] == 500
    call("POST", f"{repo}/pulls", 422, {"head": "feature", "base": "main", "title": "t"})
    call("POST", f"{repo}/pulls", 422, {"head": "missing", "base": "main", "title": "t"})
    call("GET", f"{repo}/pulls?head=owner:feature&base=main", 200)
    call("GET", f"{repo}/pulls/500", 200)
    call("PATCH", f"{repo}/pulls/500", 200, {"title": "t2", "state": "closed"})
    call("GET", f"{repo}/issues/500", 200)
    call("GET", f"{fake_github.api_url}/repos/other/repo", 404)


def test_the_openapi_check_catches_wrong_shapes() -> None:
    openapi = github_openapi()
    assert openapi.check("GET", "/repos/o/r/issues/1", None, 200, {"number": "one"})
    assert openapi.check("POST", "/repos/o/r/issues/1/labels", ["bare", "list"], 200, [])
    assert openapi.check("GET", "/repos/o/r/releases", None, 200, []) == [
        "GET /repos/o/r/releases: not an operation of the OpenAPI subset"]
    assert openapi.check("GET", "/repos/o/r/issues/1", None, 404,
                         {"message": "Not Found", "documentation_url": "http://x/docs"}) == []
