"""process.py: one supervisor for every child rally-gh runs (agents, verify, merge.verify).

Every test runs real child processes: the scripted stand-ins of tests/agents/
or plain shell commands, with timeouts under a second. A test waits for a child
on something the child does (a pid file it wrote, a FIFO it opened), never on a
fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rally_gh.agents import AgentCommand, agent_command, verify_environment
from rally_gh.config import AgentSpec
from rally_gh.errors import AgentError
from rally_gh.process import (
    AgentRun,
    CancelToken,
    CommandRun,
    cancel_on_signals,
    interrupt_on_signals,
    run,
    run_agent,
    run_commands,
    supervise,
)
from rally_gh.testing import live_processes_with
from test_agents import environment

AGENTS = Path(__file__).parent / "agents"


def script(name: str, *args: str) -> AgentCommand:
    """A scripted stand-in as a ``command`` agent, run by this interpreter (no reliance on #!)."""
    path = AGENTS / name
    program = (sys.executable,) if name.endswith(".py") else ("/bin/sh",)
    return agent_command(AgentSpec(preset="command", command=(*program, str(path), *args)),
                         Path("unused"), Path("."), Path("unused"))


def run_one(cmd: AgentCommand, tmp_path: Path, prompt: bytes = b"Do the task.\n", timeout_s: float = 5,
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


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    # The stand-in has no event to offer for "has written its pid file": look at it.
    until = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < until, "condition never held"
        time.sleep(0.01)


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """``work`` started in a thread; its result lands in the list."""
    box: list[object] = []
    worker = threading.Thread(target=lambda: box.append(work()))
    worker.start()
    return worker, box


# --- the prompt: standard input, never a shell word --------------------------

HOSTILE = "$(touch pwned) `touch pwned2`; touch pwned3 && echo ${HOME} 'quote\" \\ \n"


def hostile_prompt() -> bytes:
    body = (HOSTILE * (65_536 // len(HOSTILE) + 1))[:65_536]
    return ("Issue body:\n" + body + "\0trailing after NUL\n").encode()


def test_agent_sees_exactly_the_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_must_not_leak")
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", "must_not_leak")
    result = run_one(script("well_behaved.py"), tmp_path)
    assert result.exit_code == 0, result.stderr_tail
    seen = json.loads((tmp_path / "work" / "env.json").read_text())
    assert "GITHUB_TOKEN" not in seen and "ACTIONS_RUNTIME_TOKEN" not in seen
    assert seen["RALLY_TEAMMATE"] == "api" and seen["HOME"] == str(tmp_path / "home-api")
    assert (tmp_path / "work" / "work.txt").read_text() == "done by api\n"
    assert json.loads((tmp_path / "report-api.json").read_text())["status"] == "done"


def test_prompt_arrives_on_stdin_byte_for_byte(tmp_path: Path) -> None:
    prompt = hostile_prompt()
    result = run_one(script("well_behaved.py"), tmp_path, prompt=prompt)
    assert result.exit_code == 0, result.stderr_tail
    assert (tmp_path / "work" / "prompt-received.bin").read_bytes() == prompt
    assert json.loads((tmp_path / "work" / "argv.json").read_text()) == []
    assert not list((tmp_path / "work").glob("pwned*"))


def test_shell_command_gets_the_prompt_as_data_only(tmp_path: Path) -> None:
    spec = AgentSpec(preset="command", command=('cat > got.bin; printf "%s" "$1" > arg1.txt',), shell=True,
                     args=("$(touch pwned-arg)",))
    cmd = agent_command(spec, tmp_path / "prompt.md", tmp_path, tmp_path / "home")
    assert cmd.shell and cmd.argv[:2] == ("/bin/sh", "-c") and cmd.stdin == "prompt"
    result = run_one(cmd, tmp_path, prompt=hostile_prompt())
    assert result.exit_code == 0, result.stderr_tail
    work = tmp_path / "work"
    assert (work / "got.bin").read_bytes() == hostile_prompt()
    assert (work / "arg1.txt").read_text() == "$(touch pwned-arg)"
    assert not list(work.glob("pwned*")) and not list(tmp_path.glob("pwned*"))


def test_argv_command_without_shell_does_not_interpret_anything(tmp_path: Path) -> None:
    cmd = agent_command(AgentSpec(preset="command", command=("echo", "$(touch pwned)", ";", "touch", "pwned2")),
                        tmp_path / "prompt.md", tmp_path, tmp_path / "home")
    result = run_one(cmd, tmp_path)
    assert result.stdout_tail == "$(touch pwned) ; touch pwned2\n"
    assert not list((tmp_path / "work").glob("pwned*"))


def test_a_missing_prompt_file_is_an_agent_error(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="cannot open the prompt file"):
        run_agent(script("well_behaved.py"), tmp_path, environment(tmp_path), tmp_path / "absent.md", 1,
                  log_path=tmp_path / "log")


def test_an_agent_that_cannot_start_is_an_agent_error(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("x")
    cmd = AgentCommand("command", (str(tmp_path / "no-such-program"),))
    with pytest.raises(AgentError, match="cannot start agent .*no-such-program"):
        run_agent(cmd, tmp_path, environment(tmp_path), tmp_path / "prompt.md", 1, log_path=tmp_path / "log")


# --- output, exit, timeouts, strays, cancellation ----------------------------


def test_megabytes_of_output_go_to_the_log_with_a_bounded_tail(tmp_path: Path) -> None:
    result = run_one(script("loud.py", "8"), tmp_path)
    assert result.exit_code == 0
    assert result.log_path.stat().st_size > 8 * 1024 * 1024
    assert len(result.stdout_tail) <= 512 * 1024 and result.stdout_tail.endswith("LAST LINE\n")
    assert len(result.stderr_tail) <= 64 * 1024 and "warning: noisy" in result.stderr_tail


def test_an_agent_that_exits_at_once(tmp_path: Path) -> None:
    result = run_one(agent_command(AgentSpec(preset="command", command=("true",)), tmp_path, tmp_path, tmp_path),
                     tmp_path)
    assert (result.exit_code, result.signal, result.timed_out, result.stray_processes) == (0, None, False, 0)
    assert result.duration_s < 2


def test_crash_keeps_its_exit_code_and_error_line(tmp_path: Path) -> None:
    result = run_one(script("crash.sh"), tmp_path)
    assert result.exit_code == 3 and not result.timed_out
    assert "connection refused" in result.stderr_tail
    assert "connection refused" in result.log_path.read_text()


def test_timeout_at_twice_the_timeout_kills_the_group_and_its_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    result = run_one(script("forker.py", str(pidfile), "hang"), tmp_path, timeout_s=0.4, grace_s=0.3)
    elapsed = time.monotonic() - started
    assert result.timed_out and result.exit_code is None and result.signal is not None
    assert result.timeout_s == 0.4
    assert 0.8 <= elapsed < 3, elapsed
    for pid in pids_in(pidfile, 2):
        assert not alive(pid), pid


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    result = run_one(script("hang.py", str(pidfile)), tmp_path, timeout_s=0.3, grace_s=0.2)
    assert result.timed_out and result.signal == 9
    assert not alive(pids_in(pidfile, 1)[0])
    assert "waiting forever" in result.stdout_tail


def test_children_that_outlive_an_exited_agent_are_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    result = run_one(script("forker.py", str(pidfile), "exit"), tmp_path, timeout_s=5, grace_s=0.2)
    assert result.exit_code == 0 and not result.timed_out
    assert result.stray_processes == 1
    assert result.duration_s < 3  # the grandchild held stdout open: the run did not wait for it
    grandchild, _ = pids_in(pidfile, 2)
    assert not alive(grandchild)


def test_cancellation_from_another_thread_stops_the_group_within_seconds(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    token = CancelToken()
    worker, outcome = in_thread(lambda: run_one(script("forker.py", str(pidfile), "hang"), tmp_path, timeout_s=60,
                                                grace_s=30, cancel=token))
    wait_for(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2)
    asked = time.monotonic()
    token.cancel()
    worker.join(10)
    assert not worker.is_alive()
    assert time.monotonic() - asked < 3  # the 30 s grace is cut short on cancellation
    ended = outcome[0]
    assert isinstance(ended, AgentRun) and ended.cancelled and not ended.timed_out
    for pid in pids_in(pidfile, 2):
        assert not alive(pid)


def test_the_supervisor_can_send_standard_error_with_standard_output(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with open(log, "wb") as out:
        ended = supervise(["/bin/sh", "-c", "echo one; echo two >&2; echo three; exit 4"], tmp_path, {}, out,
                          expected_s=5, merge_stderr=True, tails=(9, 0))
    assert (ended.ending, ended.exit_code, ended.signal, ended.stray_processes) == ("exited", 4, None, 0)
    assert log.read_text() == "one\ntwo\nthree\n"
    assert (ended.stdout_tail, ended.stderr_tail) == ("wo\nthree\n", "")  # the last 9 bytes


def test_an_interruption_of_the_supervisor_stops_the_whole_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (interrupt_on_signals) while a child runs: KeyboardInterrupt, and nothing is left running."""
    marker = f"interrupted-{os.getpid()}"
    fifo = tmp_path / "up"
    os.mkfifo(fifo)

    def interrupt() -> None:
        fifo.read_text()  # the child and its grandchild are up
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt).start()
    with open(tmp_path / "log", "wb") as out, interrupt_on_signals(), pytest.raises(KeyboardInterrupt):
        supervise(["/bin/sh", "-c", f"sleep 60 & echo up > {fifo}; exec sleep 60"], tmp_path,
                  {"PATH": os.environ["PATH"], "RALLY_TEST_MARKER": marker}, out, expected_s=60)
    assert live_processes_with(marker) == []


def test_a_signal_before_popen_knows_the_pid_is_handled_once_it_does(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Python runs a signal handler when a C call returns: Ctrl-C just as fork returns would
    raise before Popen stored the pid, and the child, in a session of its own, would be lost."""
    import subprocess

    marker = f"forked-{os.getpid()}"
    fork_exec = subprocess._fork_exec  # type: ignore[attr-defined]

    def interrupted(*args: object) -> int:
        pid: int = fork_exec(*args)
        signal.raise_signal(signal.SIGINT)  # its handler runs as this returns, before `self.pid = pid`
        return pid

    monkeypatch.setattr(subprocess, "_fork_exec", interrupted)
    with open(tmp_path / "log", "wb") as out, interrupt_on_signals(), pytest.raises(KeyboardInterrupt):
        supervise(["sleep", "60"], tmp_path, {"PATH": os.environ["PATH"], "RALLY_TEST_MARKER": marker}, out,
                  expected_s=60)
    assert live_processes_with(marker) == []


def test_a_cancel_token_closes_its_pipe_once() -> None:
    """close() then __del__ must not close the numbers again: another file may own them by then."""
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


def test_signals_cancel_the_token_and_are_given_back() -> None:
    token = CancelToken()
    before = signal.getsignal(signal.SIGTERM)
    with cancel_on_signals(token) as received:
        os.kill(os.getpid(), signal.SIGTERM)
        assert token.wait(5)
    assert received == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) is before


# --- verify commands ---------------------------------------------------------


def test_run_commands_with_and_without_a_shell(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("hello\n")
    runs = run_commands(["cat f.txt", "grep -q hello f.txt && echo found | tr a-z A-Z", "false",
                         "sleep 5", "no-such-program-xyz"], tmp_path, 0.25, env=os.environ)
    assert [r.passed for r in runs] == [True, True, False, False, False]
    assert runs[0].output_tail == "hello\n" and runs[1].output_tail == "FOUND\n"
    assert "stopped: expected 0.25s, stopped at 0.5s" in runs[3].output_tail


def test_run_commands_keep_all_of_the_output_in_the_log_and_its_tail_in_the_result(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "01-x.log"
    long_one, quiet, slow = run_commands(["seq 1 5000", "true", "sh -c 'echo started; sleep 5'"], tmp_path,
                                         0.25, env=os.environ, tail_chars=100, log=log)
    assert long_one.log == log and long_one.output_tail.endswith("4999\n5000\n") and len(long_one.output_tail) == 100
    assert quiet.output_tail == "" and slow.output_tail == "started\n[rally-gh] stopped: expected 0.25s, stopped at 0.5s"
    text = log.read_text()
    assert text.startswith("$ seq 1 5000\n1\n2\n3\n") and "\n5000\n[rally-gh] exit 0 after " in text
    assert "$ true\n[rally-gh] exit 0 after " in text
    assert text.endswith("$ sh -c 'echo started; sleep 5'\nstarted\n[rally-gh] stopped: expected 0.25s, stopped at 0.5s\n\n")


def test_an_interruption_while_a_command_starts_leaves_no_orphan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    marker = f"verify-orphan-{os.getpid()}"
    monkeypatch.setenv("RALLY_TEST_MARKER", marker)
    started = subprocess.Popen._close_pipe_fds  # type: ignore[attr-defined]

    def interrupted(self: subprocess.Popen[bytes], *fds: int) -> None:
        started(self, *fds)  # the child is forked: Ctrl-C now, before Popen returns it
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess.Popen, "_close_pipe_fds", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_commands(["sh -c 'sleep 30 & sleep 30'"], tmp_path, 30, env=os.environ)
    monkeypatch.undo()
    # SIGKILLed, the command's group ends as soon as the kernel schedules it: an orphan would live 30 s.
    wait_for(lambda: live_processes_with(marker) == [], timeout=2)


def test_verify_commands_cannot_reach_the_workflow_or_its_credentials(tmp_path: Path) -> None:
    runner = {name: str(tmp_path / name) for name in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY",
                                                      "GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN", "NPM_API_KEY")}
    runner.update(PATH=os.environ["PATH"], GITHUB_SHA="not passed", NPM_CONFIG_REGISTRY="passed by name")
    env = verify_environment(runner, ("NPM_CONFIG_REGISTRY",), tmp_path / "home")
    [ran] = run_commands(["env"], tmp_path, 5, env=env)
    seen = dict(line.split("=", 1) for line in ran.output_tail.splitlines() if "=" in line)
    assert seen["NPM_CONFIG_REGISTRY"] == "passed by name" and seen["HOME"] == str(tmp_path / "home")
    assert not {"GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY", "GITHUB_TOKEN",
                "ACTIONS_RUNTIME_TOKEN", "NPM_API_KEY", "GITHUB_SHA"} & set(seen)


def test_a_verify_command_leaves_nothing_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = f"verify-stray-{os.getpid()}"
    monkeypatch.setenv("RALLY_TEST_MARKER", marker)
    [ran] = run_commands(["sh -c '(trap \"\" TERM; exec sleep 60) > /dev/null & echo left'"], tmp_path, 5,
                         env=os.environ,
                         grace_s=0.2)
    assert ran.passed and ran.output_tail == "left\n"
    assert live_processes_with(marker) == []


def test_cancelling_a_long_verify_command_stops_it_at_once_and_says_so(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    marker = f"verify-cancel-{os.getpid()}"
    monkeypatch.setenv("RALLY_TEST_MARKER", marker)
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    log = tmp_path / "verify.log"
    token = CancelToken()
    worker, box = in_thread(lambda: run_commands([f"echo started > {fifo}; exec sleep 60", "touch ran-after"],
                                                 tmp_path, 60, env=os.environ, log=log, cancel=token, grace_s=30))
    assert fifo.read_text() == "started\n"  # blocks until the command is up
    asked = time.monotonic()
    token.cancel()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - asked < 3  # not its 120 s, nor the 30 s grace
    runs = box[0]
    assert isinstance(runs, list)
    [stopped] = runs  # the command after it never started
    assert isinstance(stopped, CommandRun)
    assert (stopped.passed, stopped.cancelled, stopped.exit_code) == (False, True, None)
    assert stopped.output_tail == "[rally-gh] stopped: the run was interrupted"
    assert log.read_text().endswith("exec sleep 60\n[rally-gh] stopped: the run was interrupted\n\n")
    assert not (tmp_path / "ran-after").exists() and live_processes_with(marker) == []


def test_commands_do_not_start_once_cancelled(tmp_path: Path) -> None:
    token = CancelToken()
    token.cancel()
    [first] = run_commands(["touch ran", "touch ran-too"], tmp_path, 5, env=os.environ, cancel=token)
    assert (first.passed, first.cancelled, first.output_tail) == (
        False, True, "[rally-gh] not started: the run was interrupted")
    assert not list(tmp_path.glob("ran*"))


# --- rally-gh's own short commands -------------------------------------------


def test_run_captures_both_streams_and_feeds_its_input(tmp_path: Path) -> None:
    done = run(["/bin/sh", "-c", "cat; echo err >&2; exit 3"], cwd=tmp_path, env={}, input=b"in\n")
    assert (done.returncode, done.stdout, done.stderr) == (3, b"in\n", b"err\n")
    with pytest.raises(OSError):
        run([str(tmp_path / "absent")])


def test_rally_gh_makes_itself_undumpable_and_its_children_are_not_affected(tmp_path: Path) -> None:
    """A token in rally-gh's environment must be out of reach of the user's other processes: a
    non-dumpable process's /proc/<pid>/environ and memory are root's alone."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import subprocess, sys\n"
        "from rally_gh import process\n"
        "print(process.is_dumpable(), process.undumpable(), process.is_dumpable())\n"
        "child = subprocess.run([sys.executable, '-c', 'from rally_gh import process; print(process.is_dumpable())'],"
        " capture_output=True, text=True)\n"
        "print(child.stdout.strip())\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.split() == ["True", "True", "False", "True"], done.stdout + done.stderr


def test_a_token_once_read_is_gone_from_the_process_and_all_it_starts(tmp_path: Path) -> None:
    """issue 16 item 5: unsetenv alone leaves the value in the block /proc/<pid>/environ shows
    (root reads it even from a non-dumpable process); forget_environment wipes it there too."""
    secret = "rally-forget-0123456789abcdef"
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "from rally_gh import process\n"
        "taken = process.forget_environment(['GITHUB_TOKEN', 'GH_TOKEN', 'ABSENT'])\n"
        "mine = open('/proc/self/environ', 'rb').read()\n"
        "child = subprocess.run(['cat', '/proc/self/environ'], capture_output=True).stdout\n"
        f"print(taken == {{'GITHUB_TOKEN': {secret!r}}}, {secret.encode()!r} in mine, {secret.encode()!r} in child,"
        " 'GITHUB_TOKEN' in os.environ, os.environ['KEPT'])\n")
    env = {"PATH": os.environ["PATH"], "GITHUB_TOKEN": secret, "KEPT": "yes"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.split() == ["True", "False", "False", "False", "yes"], done.stdout + done.stderr


def test_a_child_in_a_session_of_its_own_is_stopped_with_the_group(tmp_path: Path) -> None:
    """What an agent starts in a new session (`setsid`, or a sandbox's first process before bwrap
    has armed --die-with-parent) is out of the group's reach: it is stopped with the group all the same."""
    pidfile = tmp_path / "pids"
    escaper = tmp_path / "escaper.py"
    escaper.write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n")
    cmd = agent_command(AgentSpec(preset="command", command=(sys.executable, str(escaper))),
                        Path("unused"), Path("."), Path("unused"))
    result = run_one(cmd, tmp_path, timeout_s=0.5, grace_s=0.2)
    assert result.timed_out
    (child,) = pids_in(pidfile, 1)
    wait_for(lambda: not alive(child), timeout=3)
