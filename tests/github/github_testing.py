"""Helpers shared by the GitHub tests (importable; fixtures stay in conftest)."""

from __future__ import annotations

from rally_gh.github.endpoint import RequestLimits

TEST_LIMITS = RequestLimits(write_interval_s=0.01, max_attempts=4, backoff_s=0.01, max_wait_s=5.0, timeout_s=1)
"""Waits shrunk for tests; ``timeout_s`` is PyGithub's minimum (whole seconds)."""
