"""run/fanin.py: integration's one verdict on each teammate; which verify run shows why one was dropped."""

from __future__ import annotations

from rally_gh import git, integrate
from rally_gh.integrate import VerifyRun
from rally_gh.run.fanin import Verdict, _blamed_runs, integration_verdicts
from rally_gh.state import Conflict, ConflictCause


def _run(teammates: str, passed: bool) -> VerifyRun:
    return VerifyRun(git.Sha("a" * 40), tuple(teammates.split()), passed)


def test_a_dropped_teammate_is_shown_by_the_run_that_failed_once_its_work_was_added() -> None:
    runs = [_run("api web db", False), _run("api", True), _run("api web", False), _run("api web db", False)]
    assert _blamed_runs(runs, ["web"]) == {"web": 2}


def test_without_such_a_run_the_last_failing_run_holding_it_shows_why() -> None:
    runs = [_run("api web", False), _run("api web db", False)]
    assert _blamed_runs(runs, ["api", "ops"]) == {"api": 1}


def _outcome(name: str, status: str, **extra: object) -> integrate.TeammateOutcome:
    return integrate.TeammateOutcome(name, status, **extra)  # type: ignore[arg-type]


def test_integration_gives_each_teammate_one_verdict_and_lists_the_conflicts() -> None:
    sha = git.Sha("c" * 40)
    conflict = integrate.Conflict("web", sha, ("src/shared.py",))
    result = integrate.IntegrationResult(
        git.Sha("b" * 40), git.Sha("d" * 40),
        (_outcome("api", "integrated"), _outcome("web", "conflicted", reason="conflict", conflict=conflict),
         _outcome("db", "skipped", reason="verify", detail="`pytest` failed on its work"),
         _outcome("ops", "refused", reason="merge-commit", detail="it holds a merge commit"),
         _outcome("docs", "skipped", reason="stopped")),
        (integrate.Applied("api", git.Sha("d" * 40)),))
    causes = {"web": (ConflictCause(paths=("src/shared.py",), teammate="api"),)}
    verdicts, conflicts = integration_verdicts(result, {"ui": "web"}, "stop", causes, "main")
    assert verdicts == {
        "ui": Verdict(False, "skipped", "not integrated: its blocker web was not, and its work builds on it"),
        "api": Verdict(True),
        "web": Verdict(False, "conflicted", "conflicts with api's work, integrated before it: src/shared.py",
                       "src/shared.py"),
        "db": Verdict(False, "unverified", "dropped from the integration: `pytest` failed on its work",
                      "`pytest` failed on its work"),
        "ops": Verdict(False, "skipped", "not integrated: it holds a merge commit"),
        "docs": Verdict(False, "skipped", "not integrated: integration stopped at web's conflict "
                                          "(merge.on_conflict: stop); its work is on its branch"),
    }
    assert conflicts == (Conflict(teammate="web", paths=("src/shared.py",), action="stopped", commit=sha,
                                  causes=causes["web"]),)
