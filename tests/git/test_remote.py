"""Talking to a remote (rally_gh.git.remote): pushes under a lease, never a blind
force, and the token kept out of command lines. A real bare repository as the remote."""

from __future__ import annotations

from pathlib import Path

from rally_gh import git as rgit
from rally_gh.git import HttpCredentials, RefPush, Sha
from rally_gh.git.remote import _credential_env, _remote_env
from rally_gh.testing import commit, git, init_repo


def test_push_credentials_go_in_a_header_not_the_command_line() -> None:
    creds = HttpCredentials("tok123")
    env = _credential_env(creds)
    assert "tok123" not in repr(creds)
    assert any(v.startswith("Authorization: Basic ") for k, v in env.items() if k.startswith("GIT_CONFIG_VALUE_"))


def test_the_token_goes_to_the_remote_s_url_alone(tmp_path: Path) -> None:
    """Scoped to the URL git resolves the remote to: not sent to a host the remote redirects to,
    nor to a submodule's (found by review); a path remote gets none."""
    repo = init_repo(tmp_path / "repo", {"a.txt": "a"})
    git(repo, "remote", "add", "origin", "https://git.example/owner/repo.git")
    git(repo, "remote", "add", "disk", str(tmp_path / "elsewhere.git"))
    env = _remote_env(repo, rgit.Remote("origin", HttpCredentials("tok123")))
    keys = [k for k, v in env.items() if k.startswith("GIT_CONFIG_VALUE_") and v.startswith("Authorization: ")]
    assert [env[k.replace("VALUE", "KEY")] for k in keys] == ["http.https://git.example/owner/repo.git.extraHeader"]
    assert not any(v.startswith("Authorization: ") for v in _remote_env(
        repo, rgit.Remote("disk", HttpCredentials("tok123"))).values())


def test_a_push_under_a_lease_lands_only_while_the_remote_ref_is_where_we_saw_it(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    path = init_repo(tmp_path / "repo", {"README": "r\n"})
    git(path, "remote", "add", "origin", str(remote))
    first = Sha(git(path, "rev-parse", "HEAD").strip())
    second = Sha(commit(path, {"a": "1\n"}, "second"))
    ref = "refs/heads/integration/r1"
    assert rgit.remote_ref_shas(path, rgit.Remote("origin"), [ref]) == {ref: None}

    (created,) = rgit.push_refs(path, rgit.Remote("origin"), [RefPush(ref, first, None)])
    assert created.ok and rgit.remote_ref_shas(path, rgit.Remote("origin"), [ref]) == {ref: first}
    (stale,) = rgit.push_refs(path, rgit.Remote("origin"), [RefPush(ref, second, None)])  # we think it is absent: it is not
    assert not stale.ok and "stale info" in stale.message
    (moved,) = rgit.push_refs(path, rgit.Remote("origin"), [RefPush(ref, second, first)])
    assert moved.ok and git(remote, "rev-parse", ref).strip() == second
