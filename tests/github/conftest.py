from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from github_testing import TEST_LIMITS, Shop, open_shop
from openapi_check import github_openapi

from rally_gh.github import real
from rally_gh.github.fake import FakeGitHubServer


@pytest.fixture(autouse=True)
def _never_the_real_github(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that builds a client aimed at api.github.com."""
    original = real.RealGitHub.__init__

    def guarded(self: real.RealGitHub, token: str, repo_full_name: str, base_url: str = real.DEFAULT_API_URL,
                **kwargs: Any) -> None:
        if base_url.rstrip("/") == real.DEFAULT_API_URL:
            pytest.fail("a test built RealGitHub against the real api.github.com; use the fake_github fixture")
        original(self, token, repo_full_name, base_url, **kwargs)

    monkeypatch.setattr(real.RealGitHub, "__init__", guarded)


@contextmanager
def _checked_fake(actor: str) -> Iterator[FakeGitHubServer]:
    """A running fake whose every exchange is checked against GitHub's OpenAPI description."""
    problems: list[str] = []
    openapi = github_openapi()
    with FakeGitHubServer("owner/repo", "test-token", actor=actor) as server:
        server.observers.append(lambda *exchange: problems.extend(openapi.check(*exchange)))
        yield server
    assert not problems, "exchanges that break GitHub's OpenAPI description:\n" + "\n".join(problems)


@pytest.fixture
def fake_github() -> Iterator[FakeGitHubServer]:
    """The fake, writing as a workflow's token does (``github-actions[bot]``)."""
    with _checked_fake("github-actions[bot]") as server:
        yield server


@pytest.fixture
def fake_app_github() -> Iterator[FakeGitHubServer]:
    """The fake, writing as a GitHub App's installation token does (``rally-app[bot]``), which GitHub
    refuses ``GET /user``."""
    with _checked_fake("rally-app[bot]") as server:
        server.inject("GET", r"/user$", 403, times=1_000)
        yield server


@pytest.fixture
def gh(fake_github: FakeGitHubServer) -> real.RealGitHub:
    return real.RealGitHub(fake_github.token, "owner/repo", base_url=fake_github.api_url, limits=TEST_LIMITS)


@pytest.fixture
def shop(fake_github: FakeGitHubServer, tmp_path: Path) -> Shop:
    """The run of issue 1 in workflow run 4242 has ended: api done and in a draft pull request, web failed
    (``github_testing.open_shop``)."""
    return open_shop(fake_github, tmp_path)
