"""run/fanin.py: which verify run shows why a teammate was dropped."""

from __future__ import annotations

from rally_gh import git
from rally_gh.integrate import VerifyRun
from rally_gh.run.fanin import _blamed_runs


def _run(teammates: str, passed: bool) -> VerifyRun:
    return VerifyRun(git.Sha("a" * 40), tuple(teammates.split()), passed)


def test_a_dropped_teammate_is_shown_by_the_run_that_failed_once_its_work_was_added() -> None:
    runs = [_run("api web db", False), _run("api", True), _run("api web", False), _run("api web db", False)]
    assert _blamed_runs(runs, ["web"]) == {"web": 2}


def test_without_such_a_run_the_last_failing_run_holding_it_shows_why() -> None:
    runs = [_run("api web", False), _run("api web db", False)]
    assert _blamed_runs(runs, ["api", "ops"]) == {"api": 1}
