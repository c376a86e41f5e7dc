"""run/teammate.py: a teammate's outcome, decided once (from what reconciliation found, or from what its job
went through when its agent never finished well); its sandbox."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rally_gh import git
from rally_gh.config import load_config_text
from rally_gh.run import scheduler
from rally_gh.run.context import RunContext, no_events
from rally_gh.run.teammate import paths_it_does_not_own, reconciled, sandbox_spec, stopped
from rally_gh.ownership.enforce import Violation
from rally_gh.state import VerifyResult
from rally_gh.testing import init_repo

OK = scheduler.Attempt("ok", "all done", agent_status="done")


def _violation(path: str) -> Violation:
    return Violation(teammate="api", path=path, owner="web", kind="added", commit="c" * 40)


def _verify(command: str, passed: bool) -> VerifyResult:
    return VerifyResult(command=command, passed=passed, exit_code=0 if passed else 1)


def test_a_teammate_that_changed_its_files_and_met_its_criteria_is_done() -> None:
    assert reconciled(["src/api/a.py"], [], [_verify("pytest", True)], [], OK) == ("done", "")


def test_what_reconciliation_found_decides_in_order_violations_first() -> None:
    files, bad = ["src/api/a.py"], [_verify("pytest", True), _verify("ruff", False)]
    partial = scheduler.Attempt("ok", "half of it", agent_status="partial")
    assert reconciled(files, [_violation("src/web/x.js")], bad, ["a"], partial) == (
        "violated", "wrote 1 path it does not own: src/web/x.js")
    assert reconciled([], [], [], [], partial) == ("no_changes", "the agent finished without changing any file")
    assert reconciled(files, [], bad, ["tests/t.py"], partial) == ("unverified", "`ruff` failed")
    assert reconciled(files, [], [], ["tests/t.py"], partial) == (
        "incomplete", "done_when not met: tests/t.py not created or changed")
    assert reconciled(files, [], [], [], partial) == ("incomplete", "the agent reported partial work: half of it")


def _job(attempts: int, status: str | None, message: str = "", skipped: str | None = None) -> scheduler.JobResult:
    last = None if status is None else scheduler.Attempt(status, message)  # type: ignore[arg-type]
    return scheduler.JobResult("api", attempts, last=last, skipped=skipped)


def test_a_teammate_whose_agent_never_finished_well_gets_its_outcome_from_what_its_job_went_through() -> None:
    assert stopped(_job(2, "timed_out", "expected 0.3s, stopped at 0.6s")) == (
        "timed_out", "expected 0.3s, stopped at 0.6s (after 2 attempts)")
    assert stopped(_job(1, "crashed", "exited with code 3")) == ("failed", "exited with code 3")
    assert stopped(_job(3, "failed", "blocked: needs the schema")) == ("failed", "blocked: needs the schema")
    assert stopped(_job(1, "error", "internal error")) == ("failed", "internal error")
    assert stopped(_job(0, None, skipped="budget: $3.00 spent of $2.00")) == (
        "skipped", "budget: $3.00 spent of $2.00")
    assert stopped(_job(1, "crashed", "refused", skipped="blocker web failed")) == ("skipped", "blocker web failed")


def test_a_teammate_stopped_by_an_interruption_is_pending_for_resume() -> None:
    assert stopped(_job(1, "cancelled", "stopped: the run was interrupted")) == (
        "pending", "stopped: the run was interrupted")
    assert stopped(_job(0, None, skipped="cancelled")) == ("pending", "cancelled")


def test_paths_it_does_not_own_are_named_five_at_most() -> None:
    violations = [_violation(f"src/web/{i}.js") for i in range(7)] + [_violation("src/web/0.js")]
    assert paths_it_does_not_own(violations) == (
        "7 paths it does not own: src/web/0.js, src/web/1.js, src/web/2.js, src/web/3.js, src/web/4.js and 2 more")


def test_an_agent_may_write_its_checkout_its_own_repository_and_its_files_never_the_users_repository(
        tmp_path: Path) -> None:
    repo_path = init_repo(tmp_path / "repo", {"README.md": "# r\n"})
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    repo = git.open_repo(repo_path)
    common = git.common_dir(repo)
    loaded = load_config_text("version: 1\nteam: t\nteammates:\n  - {name: api, exclusive_write: [src/**]}\n", "rally.yml")
    ctx = RunContext(repo_path, common, loaded, "r1", None, time.time, {"HOME": str(home)}, no_events)
    own = git.rally_worktrees_root(repo) / "r1" / "api"
    files = common / "rally" / "runs" / "r1" / "teammates" / "api"
    for folder in (own, files / "home"):
        folder.mkdir(parents=True)
    agent = tmp_path / "agents" / "api.py"
    agent.parent.mkdir()
    agent.write_text("")
    spec = sandbox_spec(ctx, own, files, [sys.executable, str(agent)], "/usr/bin:/bin")
    real = Path.resolve
    assert (spec.checkout, spec.git_dir, spec.home, spec.writable) == (
        real(own), real(own / ".git"), real(files / "home"), (real(files),))
    # The user's home, checkout and git directory (its refs, config, hooks, rally-gh's state and
    # cache), the other checkouts: out of sight.
    assert set(spec.hidden) == {real(home), real(repo_path), real(common), real(git.rally_worktrees_root(repo))}
    # The user's objects, which its repository borrows, and its program: read-only.
    assert set(spec.read_only) == {real(common / "objects"), real(agent.parent)}
