"""run/scheduler.py: the scheduler, its pure decisions and its loop with real agents.

Agents are the scripted stand-ins of tests/agents/ (test_process.py tests how
one of them is run); decisions of the scheduler are tested as pure functions.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from rally_gh.agents import AgentCommand, agent_command
from rally_gh.config import AgentSpec, Budget
from rally_gh.process import CancelToken, cancel_on_signals
from rally_gh.run.scheduler import (
    Attempt,
    Job,
    JobResult,
    Skip,
    Start,
    agent_attempt,
    budget_spent,
    failure_signature,
    find_convergence,
    plan_starts,
    run_teammates,
)

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: the scripted agents' helpers live beside them
from test_agents import environment  # noqa: E402
from test_process import alive, pids_in, script, wait_for  # noqa: E402


# --- scheduler decisions (pure) ----------------------------------------------


def _job(name: str, after: tuple[str, ...] = ()) -> Job:
    return Job(name, run=lambda attempt, cancel: Attempt("ok"), after=frozenset(after))


def _result(name: str, status: str = "ok", signature: str | None = None) -> JobResult:
    return JobResult(name, 1, last=Attempt(status), signature=signature)  # type: ignore[arg-type]


def _ok(name: str, result: JobResult | None) -> bool:
    return result is not None and result.ok


def _ended(result: JobResult) -> str:
    """How a job ended, as the scheduler tells it: skipped, or its last attempt's status."""
    if result.skipped is not None:
        return "skipped"
    assert result.last is not None
    return result.last.status


def _why(result: JobResult) -> str:
    """Why it was skipped, or what its last attempt said."""
    if result.skipped is not None:
        return result.skipped
    assert result.last is not None
    return result.last.message


def test_plan_starts_fills_free_slots_in_order() -> None:
    jobs = [_job("a"), _job("b"), _job("c")]
    assert plan_starts(jobs, {}, 1, 3, frozenset("abc"), _ok, None) == [Start("a"), Start("b")]
    assert plan_starts(jobs, {}, 3, 3, frozenset("abc"), _ok, None) == []


def test_plan_starts_waits_for_prerequisites_and_skips_after_a_failed_one() -> None:
    jobs = [_job("web", after=("api",)), _job("docs", after=("schema",)), _job("cli")]
    known = frozenset({"api", "schema", "web", "docs", "cli"})
    results = {"schema": _result("schema", "failed")}
    assert plan_starts(jobs, results, 0, 4, known, _ok, None) == [Skip("docs", "blocker schema failed"), Start("cli")]
    results["api"] = _result("api")
    assert plan_starts(jobs[:1], results, 0, 4, known, _ok, None) == [Start("web")]


def test_plan_starts_lets_the_orchestrator_judge_prerequisites() -> None:
    # "schema" ran in an earlier invocation (a resumed run): only the predicate knows.
    jobs = [_job("web", after=("schema",))]
    assert plan_starts(jobs, {}, 0, 2, frozenset({"web"}), lambda n, r: n == "schema", None) == [Start("web")]
    assert plan_starts(jobs, {}, 0, 2, frozenset({"web"}), _ok, None) == [Skip("web", "blocker schema failed")]


def test_plan_starts_skips_everything_once_stopped() -> None:
    jobs = [_job("a"), _job("b", after=("a",))]
    assert plan_starts(jobs, {}, 0, 4, frozenset("ab"), _ok, "budget: $3.00 spent of $2.00") == [
        Skip("a", "budget: $3.00 spent of $2.00"), Skip("b", "budget: $3.00 spent of $2.00")]


def test_budget_spent() -> None:
    assert budget_spent(Budget(), 1e9, 1e9) is None
    assert budget_spent(Budget(max_cost_usd=2), 1.99, 0) is None
    assert budget_spent(Budget(max_cost_usd=2), 2.0, 0) == "budget: $2.00 spent of $2.00"
    assert budget_spent(Budget(max_minutes=1.5), 89, 89) is None
    assert budget_spent(Budget(max_minutes=1.5), 0, 90) == "budget: 1.5 of 1.5 minutes spent"


def test_failure_signature_ignores_numbers_paths_ids_and_names() -> None:
    one = failure_signature("progress 10%\nError: cannot reach http://127.0.0.1:4001/v1 (request 0x3fa9c2) "
                            "for api while writing /tmp/wt/api/src/x.py: connection refused after 3 tries",
                            ["api", "web"])
    two = failure_signature("Error: cannot reach http://127.0.0.1:4377/v1 (request 0xdeadbeef) "
                            "for web while writing /tmp/wt/web/src/y.py: connection refused after 5 tries",
                            ["api", "web"])
    assert one == two == ("error: cannot reach <url> (request <hex>) for <teammate> while writing <path>: "
                          "connection refused after <n> tries")
    assert failure_signature("commit 3f2a9bc1d is missing in src/api", []) == "commit <hex> is missing in <path>"
    assert failure_signature("\n\n", []) is None


def test_find_convergence_names_each_shared_failure_once() -> None:
    results = {
        "a": _result("a", "failed", "error: refused"), "b": _result("b", "failed", "error: refused"),
        "c": _result("c", "failed", "other"), "d": _result("d", "ok"), "e": _result("e", "timed_out", "error: refused"),
    }
    assert [(c.signature, c.teammates) for c in find_convergence(results)] == [("error: refused", ("a", "b", "e"))]


# --- the scheduler with real agents ------------------------------------------


class Events:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, state: str, detail: str) -> None:
        with self.lock:
            self.lines.append((name, state, detail))

    def states(self, name: str) -> list[str]:
        return [state for n, state, _ in self.lines if n == name]


def agent_job(tmp_path: Path, name: str, cmd: AgentCommand, *, timeout_s: float = 5, retries: int = 0,
              after: tuple[str, ...] = ()) -> Job:
    workdir = tmp_path / name
    workdir.mkdir()
    (tmp_path / "prompt.md").write_text("Do the task.\n")
    env = environment(tmp_path, name=name)
    return Job(name, agent_attempt(cmd, workdir, env, tmp_path / "prompt.md", tmp_path / f"report-{name}.json",
                                   timeout_s, tmp_path / "logs" / name, grace_s=0.2),
               retries=retries, after=frozenset(after))


def test_scheduler_runs_a_team_with_dependencies(tmp_path: Path) -> None:
    events = Events()
    jobs = [agent_job(tmp_path, "api", script("well_behaved.py", "0.5")),
            agent_job(tmp_path, "web", script("well_behaved.py"), after=("api",)),
            agent_job(tmp_path, "cli", script("slow.sh", "0.2")),
            agent_job(tmp_path, "docs", script("crash.sh")),
            agent_job(tmp_path, "site", script("well_behaved.py"), after=("docs",))]
    results = run_teammates(jobs, 2, Budget(), on_event=events)
    assert {n: _ended(r) for n, r in results.items()} == {
        "api": "ok", "web": "ok", "cli": "ok", "docs": "crashed", "site": "skipped"}
    assert results["api"].cost_usd == 0.5 and results["api"].tokens == 1234
    assert results["api"].last is not None and results["api"].last.agent_status == "done"
    assert results["site"].skipped == "blocker docs failed"
    assert "exited with code 3" in _why(results["docs"]) and "connection refused" in _why(results["docs"])
    assert events.states("web") == ["queued", "running", "finished"]
    assert events.states("site") == ["queued", "skipped"]
    # web started only once api had finished
    order = [(n, s) for n, s, _ in events.lines if s in ("running", "finished")]
    assert order.index(("api", "finished")) < order.index(("web", "running"))


def test_scheduler_never_runs_more_than_max_parallel(tmp_path: Path) -> None:
    events = Events()
    jobs = [agent_job(tmp_path, f"t{i}", script("slow.sh", "0.15")) for i in range(5)]
    run_teammates(jobs, 2, Budget(), on_event=events)
    in_flight = peak = 0
    for _, state, _ in events.lines:
        in_flight += {"running": 1, "finished": -1}.get(state, 0)
        peak = max(peak, in_flight)
    assert peak == 2


def test_a_timeout_is_retried_then_given_up(tmp_path: Path) -> None:
    events = Events()
    pidfile = tmp_path / "pids"
    jobs = [agent_job(tmp_path, "api", script("hang.py", str(pidfile)), timeout_s=0.3, retries=1)]
    results = run_teammates(jobs, 2, Budget(), on_event=events)
    assert _ended(results["api"]) == "timed_out" and results["api"].attempts == 2
    assert _why(results["api"]) == "expected 0.3s, stopped at 0.6s"
    assert events.states("api") == ["queued", "running", "retrying", "running", "finished"]
    assert (tmp_path / "logs" / "api" / "attempt-2.log").exists()
    assert not any(alive(pid) for pid in pids_in(pidfile, 2))


def test_a_crash_is_retried_and_a_refusal_is_not(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    flaky = AgentSpec(preset="command", shell=True, command=(
        f'echo x >> {counter}; [ $(wc -l < {counter}) -ge 2 ] || {{ echo "Error: flaky" >&2; exit 1; }}',))
    blocked = AgentSpec(preset="command", shell=True, command=(
        'echo \'{"status": "blocked", "blocker": "needs the schema first"}\' > "$RALLY_REPORT_FILE"',))
    jobs = [agent_job(tmp_path, "api", agent_command(flaky, tmp_path, tmp_path, tmp_path), retries=2),
            agent_job(tmp_path, "web", agent_command(blocked, tmp_path, tmp_path, tmp_path), retries=2)]
    results = run_teammates(jobs, 2, Budget())
    assert (_ended(results["api"]), results["api"].attempts) == ("ok", 2)
    assert (_ended(results["web"]), results["web"].attempts) == ("failed", 1)
    assert _why(results["web"]) == "blocked: needs the schema first"
    assert results["web"].last is not None and results["web"].last.agent_status == "blocked"


def test_budget_stops_new_starts_and_lets_in_flight_finish(tmp_path: Path) -> None:
    # a and b start together; the first to finish spends the budget, the other still finishes.
    jobs = [agent_job(tmp_path, "a", script("well_behaved.py", "3")),
            agent_job(tmp_path, "b", script("well_behaved.py", "3")),
            agent_job(tmp_path, "c", script("well_behaved.py")),
            agent_job(tmp_path, "d", script("well_behaved.py"))]
    results = run_teammates(jobs, 2, Budget(max_cost_usd=2))
    assert [_ended(results[n]) for n in "abcd"] == ["ok", "ok", "skipped", "skipped"]
    assert results["c"].skipped == results["d"].skipped == "budget: $3.00 spent of $2.00"


def test_budget_counts_costs_of_finished_teammates(tmp_path: Path) -> None:
    jobs = [agent_job(tmp_path, n, script("well_behaved.py", "0.75")) for n in "abcd"]
    results = run_teammates(jobs, 1, Budget(max_cost_usd=2))
    assert [_ended(results[n]) for n in "abcd"] == ["ok", "ok", "ok", "skipped"]
    assert results["d"].skipped == "budget: $2.25 spent of $2.00"


def test_wall_clock_budget_uses_the_given_clock(tmp_path: Path) -> None:
    now = [0.0]

    def slow_job(attempt: int, cancel: CancelToken) -> Attempt:
        now[0] += 120  # each teammate "takes" two minutes
        return Attempt("ok")

    jobs = [Job(n, slow_job) for n in ("a", "b", "c")]
    results = run_teammates(jobs, 1, Budget(max_minutes=3), clock=lambda: now[0])
    assert [_ended(results[n]) for n in "abc"] == ["ok", "ok", "skipped"]
    assert results["c"].skipped == "budget: 4.0 of 3 minutes spent"


def test_convergence_names_a_shared_blocker_and_stops_retrying_it(tmp_path: Path) -> None:
    events = Events()
    jobs = [agent_job(tmp_path, n, script("crash.sh"), retries=3) for n in ("api", "web")]
    results = run_teammates(jobs, 1, Budget(), on_event=events)
    convergence = find_convergence(results)
    assert len(convergence) == 1 and convergence[0].teammates == ("api", "web")
    assert "connection refused" in convergence[0].signature and "<teammate>" in convergence[0].signature
    assert all(r.shared_blocker for r in results.values())
    # One slot: api failed alone and used its retries; web then met the same failure and stopped at once.
    assert (results["api"].attempts, results["web"].attempts) == (4, 1)


def test_an_agent_that_cannot_start_fails_without_retries(tmp_path: Path) -> None:
    def missing(attempt: int, cancel: CancelToken) -> Attempt:
        return agent_attempt(agent_command(AgentSpec(preset="claude"), tmp_path, tmp_path, tmp_path,
                                           search_path=str(tmp_path)),
                             tmp_path, {}, tmp_path, tmp_path / "r.json", 1, tmp_path)(attempt, cancel)

    results = run_teammates([Job("api", missing, retries=3)], 1, Budget())
    assert _ended(results["api"]) == "error" and results["api"].attempts == 1
    assert "the claude preset needs the 'claude' program" in _why(results["api"])
    assert "PATH; install it with `npm install -g @anthropic-ai/claude-code`" in _why(results["api"])  # no ((...))
    assert results["api"].last is not None and results["api"].last.error is not None


def test_cancelling_the_scheduler_stops_agents_and_skips_the_rest(tmp_path: Path) -> None:
    events = Events()
    token = CancelToken()
    pidfile = tmp_path / "pids"
    jobs = [agent_job(tmp_path, "api", script("hang.py", str(pidfile)), timeout_s=60, retries=2),
            agent_job(tmp_path, "web", script("well_behaved.py"), after=("api",))]
    box: list[dict[str, JobResult]] = []
    worker = threading.Thread(target=lambda: box.append(run_teammates(jobs, 2, Budget(), on_event=events,
                                                                     cancel=token)))
    worker.start()
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    asked = time.monotonic()
    token.cancel()
    worker.join(10)
    assert time.monotonic() - asked < 3
    results = box[0]
    assert _ended(results["api"]) == "cancelled" and results["api"].attempts == 1
    assert (_ended(results["web"]), results["web"].skipped) == ("skipped", "cancelled")
    assert not alive(pids_in(pidfile, 1)[0])


def test_sigint_of_the_orchestrator_cancels_the_run(tmp_path: Path) -> None:
    token = CancelToken()
    pidfile = tmp_path / "pids"
    jobs = [agent_job(tmp_path, "api", script("hang.py", str(pidfile)), timeout_s=60)]

    def interrupt() -> None:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt).start()
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite itself was started in the background
    with cancel_on_signals(token) as received:
        results = run_teammates(jobs, 1, Budget(), cancel=token)
    assert received == [signal.SIGINT] and _ended(results["api"]) == "cancelled"
    assert signal.getsignal(signal.SIGINT) is before
    assert not alive(pids_in(pidfile, 1)[0])


def test_a_resumed_run_counts_what_it_already_spent() -> None:
    jobs = [Job("a", lambda attempt, cancel: Attempt("ok", cost_usd=0.5))]
    assert run_teammates(jobs, 1, Budget(max_cost_usd=2), spent_usd=2)["a"].skipped == "budget: $2.00 spent of $2.00"
    assert _ended(run_teammates(jobs, 1, Budget(max_minutes=1), spent_s=61)["a"]) == "skipped"
    assert run_teammates(jobs, 1, Budget(max_cost_usd=2), spent_usd=1)["a"].cost_usd == 0.5


def test_a_failing_event_sink_stops_the_agents_before_raising(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    jobs = [agent_job(tmp_path, "api", script("hang.py", str(pidfile)), timeout_s=60),
            agent_job(tmp_path, "web", script("slow.sh", "0.1"))]

    def display(name: str, state: str, detail: str) -> None:
        if name == "web" and state == "finished":
            wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
            raise RuntimeError("display broke")

    with pytest.raises(RuntimeError, match="display broke"):
        run_teammates(jobs, 2, Budget(), on_event=display)
    assert not alive(pids_in(pidfile, 1)[0])


@pytest.mark.parametrize("command, why", [
    ("echo x > f && git init -q . && git add f && git commit -qm x", "git has no author for the agent's commit"),
    ("no-such-program-xyz", "exit 127: the program, or a command it runs, was not found"),
    (": > tool && ./tool", "exit 126: the program, or a command it runs, is not executable"),
    ('echo "usage: agent [--fast] PROMPT" >&2; echo "agent: error: unrecognized arguments: --fsat" >&2; exit 2',
     "exit 2 with usage text: the agent's command line is wrong"),
])
def test_a_failure_no_retry_can_fix_is_not_retried_and_says_why(tmp_path: Path, command: str, why: str) -> None:
    workdir = tmp_path / "api"
    workdir.mkdir()
    (tmp_path / "prompt.md").write_text("Do the task.\n")
    # As an agent whose identity was left in ~/.gitconfig: an empty home, no GIT_AUTHOR_* given.
    env = {k: v for k, v in environment(tmp_path).items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    cmd = agent_command(AgentSpec(preset="command", shell=True, command=(command,)), tmp_path, tmp_path, tmp_path)
    job = Job("api", agent_attempt(cmd, workdir, env, tmp_path / "prompt.md", tmp_path / "report.json", 5,
                                   tmp_path / "logs", grace_s=0.2), retries=2)
    result = run_teammates([job], 2, Budget())["api"]
    assert (_ended(result), result.attempts) == ("failed", 1), _why(result)
    assert f"not retried: {why}" in _why(result)


def test_a_crash_that_a_retry_may_fix_is_still_retried(tmp_path: Path) -> None:
    cmd = agent_command(AgentSpec(preset="command", shell=True, command=('echo "Error: 502" >&2; exit 2',)),
                        tmp_path, tmp_path, tmp_path)
    result = run_teammates([agent_job(tmp_path, "api", cmd, retries=1)], 2, Budget())["api"]
    assert (_ended(result), result.attempts) == ("crashed", 2) and "not retried" not in _why(result)
