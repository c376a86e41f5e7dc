"""runner.py: the agent's environment, one attempt as a process group, the scheduler.

Process tests run the scripted stand-ins in tests/agents/ with timeouts under
a second; decisions of the scheduler are tested as pure functions.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rally_gh.agents import AgentCommand, agent_command
from rally_gh.config import AgentSpec, Budget, Teammate
from rally_gh.errors import AgentError
from rally_gh.runner import (
    AgentRun,
    Attempt,
    CancelToken,
    Job,
    JobResult,
    Skip,
    Start,
    agent_attempt,
    agent_environment,
    cancel_on_signals,
    budget_spent,
    failure_signature,
    find_convergence,
    plan_starts,
    run_agent,
    run_teammates,
)

AGENTS = Path(__file__).parent / "agents"
TEAMMATE = Teammate(name="api", role="Backend", task="Build it.", exclusive_write=("src/api/**",))


def script(name: str, *args: str) -> AgentCommand:
    """A scripted stand-in as a ``command`` agent, run by this interpreter (no reliance on #!)."""
    path = AGENTS / name
    program = (sys.executable,) if name.endswith(".py") else ("/bin/sh",)
    return agent_command(AgentSpec(preset="command", command=(*program, str(path), *args)),
                         Path("unused"), Path("."), Path("unused"))


def environment(tmp_path: Path, base: dict[str, str] | None = None, passthrough: tuple[str, ...] = (),
                name: str = "api") -> dict[str, str]:
    teammate = TEAMMATE.model_copy(update={"name": name})
    return agent_environment(base if base is not None else dict(os.environ), teammate, "run-7", "checkout",
                             "a" * 40, tmp_path / "prompt.md", tmp_path / f"report-{name}.json",
                             ["src/api/**", "tests/api/"], passthrough, tmp_path / f"home-{name}")


def run(cmd: AgentCommand, tmp_path: Path, prompt: bytes = b"Do the task.\n", timeout_s: float = 5,
        grace_s: float = 0.3, cancel: CancelToken | None = None) -> AgentRun:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    (tmp_path / "prompt.md").write_bytes(prompt)
    return run_agent(cmd, workdir, environment(tmp_path), tmp_path / "prompt.md", timeout_s, grace_s,
                     log_path=tmp_path / "logs" / "agent.log", cancel=cancel)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped by whoever inherited it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def pids_in(path: Path, count: int) -> list[int]:
    """The pids a stand-in wrote before doing anything else (it writes them before its output)."""
    pids = [int(line) for line in path.read_text().split()]
    assert len(pids) == count, pids
    return pids


# --- the environment ---------------------------------------------------------


def test_environment_is_clean_and_carries_the_contract(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm", "TMPDIR": "/tmp",
        "HOME": "/root", "GITHUB_TOKEN": "ghs_secret", "GH_TOKEN": "gho_secret", "ACTIONS_RUNTIME_TOKEN": "x",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://x", "GITHUB_REPOSITORY": "o/r", "AWS_SECRET_ACCESS_KEY": "k",
        "ANTHROPIC_API_KEY": "sk-ant", "GIT_DIR": "/elsewhere/.git", "GIT_INDEX_FILE": "/x/index",
        "RALLY_TEAMMATE": "intruder", "SSH_AUTH_SOCK": "/tmp/agent.sock", "MY_SETTING": "1",
    }
    env = environment(tmp_path, base)
    assert env["PATH"] == "/usr/bin:/bin" and env["LANG"] == env["LC_ALL"] == "C.UTF-8"
    assert env["TERM"] == "xterm" and env["TMPDIR"] == "/tmp"
    assert env["HOME"] == str(tmp_path / "home-api")
    assert env["RALLY_RUN_ID"] == "run-7" and env["RALLY_TEAM"] == "checkout"
    assert env["RALLY_TEAMMATE"] == "api" and env["RALLY_ROLE"] == "Backend"
    assert env["RALLY_BASE_SHA"] == "a" * 40
    assert env["RALLY_PROMPT_FILE"] == str(tmp_path / "prompt.md")
    assert env["RALLY_REPORT_FILE"] == str(tmp_path / "report-api.json")
    assert env["RALLY_OWNS"] == "src/api/**\ntests/api/"
    for secret in ("GITHUB_TOKEN", "GH_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL",
                   "GITHUB_REPOSITORY", "AWS_SECRET_ACCESS_KEY", "ANTHROPIC_API_KEY", "GIT_DIR",
                   "GIT_INDEX_FILE", "SSH_AUTH_SOCK", "MY_SETTING"):
        assert secret not in env, secret


def test_passthrough_names_variables_and_never_overrides_the_contract(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-ant", "HOME": "/root", "RALLY_TEAMMATE": "intruder"}
    env = environment(tmp_path, base, passthrough=("ANTHROPIC_API_KEY", "HOME", "RALLY_TEAMMATE", "NOT_SET"))
    assert env["ANTHROPIC_API_KEY"] == "sk-ant"
    assert env["HOME"] == str(tmp_path / "home-api") and env["RALLY_TEAMMATE"] == "api"
    assert "NOT_SET" not in env


def test_agent_sees_exactly_the_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_must_not_leak")
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", "must_not_leak")
    result = run(script("well_behaved.py"), tmp_path)
    assert result.exit_code == 0, result.stderr_tail
    seen = json.loads((tmp_path / "work" / "env.json").read_text())
    assert "GITHUB_TOKEN" not in seen and "ACTIONS_RUNTIME_TOKEN" not in seen
    assert seen["RALLY_TEAMMATE"] == "api" and seen["HOME"] == str(tmp_path / "home-api")
    assert (tmp_path / "work" / "work.txt").read_text() == "done by api\n"
    assert json.loads((tmp_path / "report-api.json").read_text())["status"] == "done"


# --- the prompt: standard input, never a shell word --------------------------

HOSTILE = "$(touch pwned) `touch pwned2`; touch pwned3 && echo ${HOME} 'quote\" \\ \n"


def hostile_prompt() -> bytes:
    body = (HOSTILE * (65_536 // len(HOSTILE) + 1))[:65_536]
    return ("Issue body:\n" + body + "\0trailing after NUL\n").encode()


def test_prompt_arrives_on_stdin_byte_for_byte(tmp_path: Path) -> None:
    prompt = hostile_prompt()
    result = run(script("well_behaved.py"), tmp_path, prompt=prompt)
    assert result.exit_code == 0, result.stderr_tail
    assert (tmp_path / "work" / "prompt-received.bin").read_bytes() == prompt
    assert json.loads((tmp_path / "work" / "argv.json").read_text()) == []
    assert not list((tmp_path / "work").glob("pwned*"))


def test_shell_command_gets_the_prompt_as_data_only(tmp_path: Path) -> None:
    spec = AgentSpec(preset="command", command=('cat > got.bin; printf "%s" "$1" > arg1.txt',), shell=True,
                     args=("$(touch pwned-arg)",))
    cmd = agent_command(spec, tmp_path / "prompt.md", tmp_path, tmp_path / "home")
    assert cmd.shell and cmd.argv[:2] == ("/bin/sh", "-c") and cmd.stdin == "prompt"
    result = run(cmd, tmp_path, prompt=hostile_prompt())
    assert result.exit_code == 0, result.stderr_tail
    work = tmp_path / "work"
    assert (work / "got.bin").read_bytes() == hostile_prompt()
    assert (work / "arg1.txt").read_text() == "$(touch pwned-arg)"
    assert not list(work.glob("pwned*")) and not list(tmp_path.glob("pwned*"))


def test_argv_command_without_shell_does_not_interpret_anything(tmp_path: Path) -> None:
    cmd = agent_command(AgentSpec(preset="command", command=("echo", "$(touch pwned)", ";", "touch", "pwned2")),
                        tmp_path / "prompt.md", tmp_path, tmp_path / "home")
    result = run(cmd, tmp_path)
    assert result.stdout_tail == "$(touch pwned) ; touch pwned2\n"
    assert not list((tmp_path / "work").glob("pwned*"))


# --- output, exit, timeouts, strays, cancellation ----------------------------


def test_megabytes_of_output_go_to_the_log_with_a_bounded_tail(tmp_path: Path) -> None:
    result = run(script("loud.py", "8"), tmp_path)
    assert result.exit_code == 0
    assert result.log_path.stat().st_size > 8 * 1024 * 1024
    assert len(result.stdout_tail) <= 512 * 1024 and result.stdout_tail.endswith("LAST LINE\n")
    assert len(result.stderr_tail) <= 64 * 1024 and "warning: noisy" in result.stderr_tail


def test_an_agent_that_exits_at_once(tmp_path: Path) -> None:
    result = run(agent_command(AgentSpec(preset="command", command=("true",)), tmp_path, tmp_path, tmp_path),
                 tmp_path)
    assert (result.exit_code, result.signal, result.timed_out, result.stray_processes) == (0, None, False, 0)
    assert result.duration_s < 2


def test_crash_keeps_its_exit_code_and_error_line(tmp_path: Path) -> None:
    result = run(script("crash.sh"), tmp_path)
    assert result.exit_code == 3 and not result.timed_out
    assert "connection refused" in result.stderr_tail
    assert "connection refused" in result.log_path.read_text()


def test_timeout_at_twice_the_timeout_kills_the_group_and_its_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    result = run(script("forker.py", str(pidfile), "hang"), tmp_path, timeout_s=0.4, grace_s=0.3)
    elapsed = time.monotonic() - started
    assert result.timed_out and result.exit_code is None and result.signal is not None
    assert 0.8 <= elapsed < 3, elapsed
    for pid in pids_in(pidfile, 2):
        assert not alive(pid), pid


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    result = run(script("hang.py", str(pidfile)), tmp_path, timeout_s=0.3, grace_s=0.2)
    assert result.timed_out and result.signal == 9
    assert not alive(pids_in(pidfile, 1)[0])
    assert "waiting forever" in result.stdout_tail


def test_children_that_outlive_an_exited_agent_are_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    result = run(script("forker.py", str(pidfile), "exit"), tmp_path, timeout_s=5, grace_s=0.2)
    assert result.exit_code == 0 and not result.timed_out
    assert result.stray_processes == 1
    assert result.duration_s < 3  # the grandchild held stdout open: the run did not wait for it
    grandchild, _ = pids_in(pidfile, 2)
    assert not alive(grandchild)


def test_cancellation_from_another_thread_stops_the_group_within_seconds(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    token = CancelToken()
    outcome: list[AgentRun] = []
    worker = threading.Thread(target=lambda: outcome.append(
        run(script("forker.py", str(pidfile), "hang"), tmp_path, timeout_s=60, grace_s=30, cancel=token)))
    worker.start()
    (tmp_path / "logs").mkdir(exist_ok=True)
    _wait_for(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2)
    asked = time.monotonic()
    token.cancel()
    worker.join(10)
    assert not worker.is_alive()
    assert time.monotonic() - asked < 3  # the 30 s grace is cut short on cancellation
    assert outcome[0].cancelled and not outcome[0].timed_out
    for pid in pids_in(pidfile, 2):
        assert not alive(pid)


def _wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    # The stand-in has no event to offer for "has written its pid file": look at it.
    until = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < until, "condition never held"
        time.sleep(0.01)


# --- scheduler decisions (pure) ----------------------------------------------


def _job(name: str, after: tuple[str, ...] = ()) -> Job:
    return Job(name, run=lambda attempt, cancel: Attempt("ok"), after=frozenset(after))


def _result(name: str, outcome: str = "done", signature: str | None = None) -> JobResult:
    return JobResult(name, outcome, signature=signature)  # type: ignore[arg-type]


def _ok(name: str, result: JobResult | None) -> bool:
    return result is not None and result.outcome == "done"


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
        "c": _result("c", "failed", "other"), "d": _result("d", "done"), "e": _result("e", "timed_out", "error: refused"),
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
    assert {n: r.outcome for n, r in results.items()} == {
        "api": "done", "web": "done", "cli": "done", "docs": "failed", "site": "skipped"}
    assert results["api"].cost_usd == 0.5 and results["api"].tokens == 1234
    assert results["api"].agent_status == "done"
    assert results["site"].reason == "blocker docs failed"
    assert "exited with code 3" in results["docs"].reason and "connection refused" in results["docs"].reason
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
    assert results["api"].outcome == "timed_out" and results["api"].attempts == 2
    assert results["api"].reason == "expected 0.3s, stopped at 0.6s (after 2 attempts)"
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
    assert (results["api"].outcome, results["api"].attempts) == ("done", 2)
    assert (results["web"].outcome, results["web"].attempts) == ("failed", 1)
    assert results["web"].reason == "blocked: needs the schema first" and results["web"].agent_status == "blocked"


def test_budget_stops_new_starts_and_lets_in_flight_finish(tmp_path: Path) -> None:
    # a and b start together; the first to finish spends the budget, the other still finishes.
    jobs = [agent_job(tmp_path, "a", script("well_behaved.py", "3")),
            agent_job(tmp_path, "b", script("well_behaved.py", "3")),
            agent_job(tmp_path, "c", script("well_behaved.py")),
            agent_job(tmp_path, "d", script("well_behaved.py"))]
    results = run_teammates(jobs, 2, Budget(max_cost_usd=2))
    assert [results[n].outcome for n in "abcd"] == ["done", "done", "skipped", "skipped"]
    assert results["c"].reason == results["d"].reason == "budget: $3.00 spent of $2.00"


def test_budget_counts_costs_of_finished_teammates(tmp_path: Path) -> None:
    jobs = [agent_job(tmp_path, n, script("well_behaved.py", "0.75")) for n in "abcd"]
    results = run_teammates(jobs, 1, Budget(max_cost_usd=2))
    assert [results[n].outcome for n in "abcd"] == ["done", "done", "done", "skipped"]
    assert results["d"].reason == "budget: $2.25 spent of $2.00"


def test_wall_clock_budget_uses_the_given_clock(tmp_path: Path) -> None:
    now = [0.0]

    def slow_job(attempt: int, cancel: CancelToken) -> Attempt:
        now[0] += 120  # each teammate "takes" two minutes
        return Attempt("ok")

    jobs = [Job(n, slow_job) for n in ("a", "b", "c")]
    results = run_teammates(jobs, 1, Budget(max_minutes=3), clock=lambda: now[0])
    assert [results[n].outcome for n in "abc"] == ["done", "done", "skipped"]
    assert results["c"].reason == "budget: 4.0 of 3 minutes spent"


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
    assert results["api"].outcome == "failed" and results["api"].attempts == 1
    assert "the claude preset needs the 'claude' program" in results["api"].reason
    assert "PATH; install it with `npm install -g @anthropic-ai/claude-code`" in results["api"].reason  # no ((...))
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
    _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    asked = time.monotonic()
    token.cancel()
    worker.join(10)
    assert time.monotonic() - asked < 3
    results = box[0]
    assert results["api"].outcome == "cancelled" and results["api"].attempts == 1
    assert (results["web"].outcome, results["web"].reason) == ("skipped", "cancelled")
    assert not alive(pids_in(pidfile, 1)[0])


def test_sigint_of_the_orchestrator_cancels_the_run(tmp_path: Path) -> None:
    token = CancelToken()
    pidfile = tmp_path / "pids"
    jobs = [agent_job(tmp_path, "api", script("hang.py", str(pidfile)), timeout_s=60)]

    def interrupt() -> None:
        _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt).start()
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite itself was started in the background
    with cancel_on_signals(token) as received:
        results = run_teammates(jobs, 1, Budget(), cancel=token)
    assert received == [signal.SIGINT] and results["api"].outcome == "cancelled"
    assert signal.getsignal(signal.SIGINT) is before
    assert not alive(pids_in(pidfile, 1)[0])


def test_a_missing_prompt_file_is_an_agent_error(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="cannot open the prompt file"):
        run_agent(script("well_behaved.py"), tmp_path, environment(tmp_path), tmp_path / "absent.md", 1,
                  log_path=tmp_path / "log")


def test_a_resumed_run_counts_what_it_already_spent() -> None:
    jobs = [Job("a", lambda attempt, cancel: Attempt("ok", cost_usd=0.5))]
    assert run_teammates(jobs, 1, Budget(max_cost_usd=2), spent_usd=2)["a"].reason == "budget: $2.00 spent of $2.00"
    assert run_teammates(jobs, 1, Budget(max_minutes=1), spent_s=61)["a"].outcome == "skipped"
    assert run_teammates(jobs, 1, Budget(max_cost_usd=2), spent_usd=1)["a"].cost_usd == 0.5


def test_a_failing_event_sink_stops_the_agents_before_raising(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    jobs = [agent_job(tmp_path, "api", script("hang.py", str(pidfile)), timeout_s=60),
            agent_job(tmp_path, "web", script("slow.sh", "0.1"))]

    def display(name: str, state: str, detail: str) -> None:
        if name == "web" and state == "finished":
            _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
            raise RuntimeError("display broke")

    with pytest.raises(RuntimeError, match="display broke"):
        run_teammates(jobs, 2, Budget(), on_event=display)
    assert not alive(pids_in(pidfile, 1)[0])


def test_a_cancel_token_closes_its_pipe_once() -> None:
    """close() then __del__ must not close the numbers again: another file may own them by then."""
    from rally_gh.runner import CancelToken

    token = CancelToken()
    token.close()
    read_end, write_end = os.pipe()  # likely the very numbers the token just gave back
    try:
        token.__del__()
        os.fstat(read_end)
        os.fstat(write_end)  # still open
    finally:
        os.close(read_end)
        os.close(write_end)



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
    assert (result.outcome, result.attempts) == ("failed", 1), result.reason
    assert f"not retried: {why}" in result.reason


def test_a_crash_that_a_retry_may_fix_is_still_retried(tmp_path: Path) -> None:
    cmd = agent_command(AgentSpec(preset="command", shell=True, command=('echo "Error: 502" >&2; exit 2',)),
                        tmp_path, tmp_path, tmp_path)
    result = run_teammates([agent_job(tmp_path, "api", cmd, retries=1)], 2, Budget())["api"]
    assert (result.outcome, result.attempts) == ("failed", 2) and "not retried" not in result.reason


def test_agents_commit_as_the_user_or_as_rally_gh(tmp_path: Path) -> None:
    env = environment(tmp_path, {"PATH": "/bin"})
    assert (env["GIT_AUTHOR_NAME"], env["GIT_COMMITTER_EMAIL"]) == (
        "rally-gh (api)", "rally-gh+api@users.noreply.github.com")
    teammate = TEAMMATE
    given = agent_environment({"PATH": "/bin"}, teammate, "r", "t", "a" * 40, tmp_path / "p", tmp_path / "r",
                              [], (), tmp_path / "home", ("Grace Hopper", "grace@example.com"))
    assert (given["GIT_AUTHOR_NAME"], given["GIT_AUTHOR_EMAIL"]) == ("Grace Hopper", "grace@example.com")
    assert (given["GIT_COMMITTER_NAME"], given["GIT_COMMITTER_EMAIL"]) == ("Grace Hopper", "grace@example.com")
    # Variables set around rally-gh win, as they do in git.
    around = agent_environment({"GIT_AUTHOR_NAME": "Ada"}, teammate, "r", "t", "a" * 40, tmp_path / "p",
                               tmp_path / "r", [], (), tmp_path / "home", ("Grace Hopper", "grace@example.com"))
    assert around["GIT_AUTHOR_NAME"] == "Ada" and around["GIT_COMMITTER_NAME"] == "Grace Hopper"
