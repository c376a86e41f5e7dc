"""Child processes: the one module of rally_gh that starts them.

What rally-gh runs of someone else's (an agent, a teammate's ``verify``, ``merge.verify``)
goes through one supervisor, ``supervise``, whatever the caller:

- the child leads a process group of its own, so that stopping it stops
  everything it started, grandchildren included;
- its standard input is a file (the prompt, or ``/dev/null``), never a pipe we feed;
- its output goes to a log as it comes; only a bounded tail of it stays in memory;
- it is stopped at twice its expected duration, or at once when its ``CancelToken``
  is set: SIGTERM to the group, then SIGKILL after a grace;
- it leaves nothing behind: the group is stopped after a normal exit too.

Two front doors say what the caller gets back: ``run_agent`` (an ``AgentRun``)
and ``run_commands`` (a ``CommandRun`` per verify command). ``sandboxed`` is the
one place a command is wrapped in the sandbox: an agent's, and each verify command
``run_commands`` is given a ``Sandbox`` for. ``run`` runs rally-gh's own short
commands (git), which need no supervision. ``stop_strays`` stops what an
orchestrator that died left running. ``cancel_on_signals`` and
``interrupt_on_signals`` turn SIGINT and SIGTERM into cancellation.

Of rally_gh this module imports only its errors and the sandbox's description
(``rally_gh/sandbox.py``, which imports nothing; ``config`` only when a verify command
times out): git imports it, so it must stay light.
"""

from __future__ import annotations

import contextlib
import functools
import os
import selectors
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from rally_gh import sandbox
from rally_gh.errors import AgentError

if TYPE_CHECKING:
    from rally_gh.agents import AgentCommand

STDOUT_TAIL_BYTES = 512 * 1024  # Claude's result object is the end of stdout: keep enough of it
STDERR_TAIL_BYTES = 64 * 1024
DEFAULT_GRACE_S = 5.0  # between SIGTERM and SIGKILL
CANCEL_GRACE_S = 1.5  # an interrupted orchestrator must stop within seconds, whatever grace was asked
_READ_CHUNK = 64 * 1024


# --- cancellation ------------------------------------------------------------


class CancelToken:
    """Set once, from any thread (a signal handler included), to stop everything that watches it.

    It is also a file descriptor that becomes readable when set, so that a
    supervisor waiting in ``selectors`` wakes at once instead of polling a flag.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)

    def cancel(self) -> None:
        if not self._event.is_set():
            self._event.set()
            try:
                os.write(self._write_fd, b"x")  # never read back: stays readable for every watcher
            except (BlockingIOError, OSError):
                pass

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def fileno(self) -> int:
        return self._read_fd

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def close(self) -> None:
        """Close the pipe, once: a second close of the same numbers (``close()`` and then
        ``__del__``) would close whatever file took those numbers meanwhile."""
        fds, self._read_fd, self._write_fd = (self._read_fd, self._write_fd), -1, -1
        for fd in fds:
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()


class Cancelled(KeyboardInterrupt):
    """A verdict was needed from a child that cancellation stopped (``merge.verify`` cut short):
    there is none, so the caller is interrupted, as by Ctrl-C, and handled the same way."""


@contextmanager
def cancel_on_signals(token: CancelToken,
                      signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[list[int]]:
    """While inside, SIGINT and SIGTERM cancel ``token`` instead of raising; yields the signals received.

    Children lead their own sessions, so a Ctrl-C in the terminal does not reach
    them: stopping them is the supervisor's job, through the token. The handlers are
    installed whatever the inherited disposition (SIG_IGN under ``rally-gh run &``).
    Main thread only.
    """
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        token.cancel()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def interrupt_on_signals(token: CancelToken | None = None,
                         signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM raise KeyboardInterrupt (and cancel ``token``), so that
    the code in ``finally`` blocks (scratch worktrees, process groups, the run's state) runs
    instead of the process dying midway. Installed whatever the inherited disposition: a
    ``rally-gh run &`` in a shell without job control starts with SIGINT ignored, and a
    verify that nothing can interrupt would run to its end. Main thread only."""
    def handler(signum: int, frame: object) -> None:
        if token is not None:
            token.cancel()
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --- the sandbox -------------------------------------------------------------
#
# Agents are programs we do not control (docs/security.md). Each runs in a bubblewrap sandbox
# (rally_gh/sandbox.py): its checkout, the git directory, its home and /tmp writable, the user's
# home, the other checkouts and rally-gh's state out of sight, no capabilities, a PID namespace of
# its own that dies with rally-gh.


def _probe_run(argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, str]:
    done = run(argv, env=env, timeout_s=30)
    return done.returncode, done.stderr.decode(errors="replace")


@functools.lru_cache(maxsize=4)
def sandbox_probe(search_path: str | None) -> sandbox.Probe:
    """Whether bubblewrap builds the sandbox here (the one found on ``search_path`` after the
    system's), once per process: the bwrap to use, or why none works and what to do."""
    return sandbox.check(sandbox.find_bwrap(search_path), _probe_run)


def undumpable() -> bool:
    """Make this process non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``), as a process holding a
    token should be: another process of the same user, outside any sandbox, can then neither read
    its ``/proc/<pid>/environ`` and memory nor attach a debugger to it (root still can). Programs it
    starts are dumpable again (``execve`` resets it). False where it cannot be done (not Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(4, 0, 0, 0, 0)) == 0  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        return False


def forget_environment(names: Sequence[str]) -> dict[str, str]:
    """Take ``names`` out of this process's environment, once read, and return what they held.

    ``os.environ.pop`` alone is not enough: ``/proc/<pid>/environ`` shows the block the kernel
    gave the process at ``execve``, and ``unsetenv`` only drops the pointer into it. So each
    value is first overwritten in place (whatever block ``environ`` points into), then unset.
    Nothing started afterwards inherits it, and the process shows it to nobody, root included.
    The caller keeps the values (in memory, which ``undumpable`` keeps from the same user)."""
    taken = {name: os.environ[name] for name in names if name in os.environ}
    if not taken:
        return {}
    with contextlib.suppress(OSError, AttributeError, ValueError):
        import ctypes

        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(ctypes.CDLL(None), "environ")
        prefixes = tuple(f"{name}=".encode() for name in taken)
        i = 0
        while environ[i]:
            entry = ctypes.string_at(environ[i])
            prefix = next((p for p in prefixes if entry.startswith(p)), None)
            if prefix is not None:
                ctypes.memset(environ[i] + len(prefix), 0, len(entry) - len(prefix))
            i += 1
    for name in taken:
        os.environ.pop(name, None)
    return taken


def is_dumpable() -> bool:
    """``prctl(PR_GET_DUMPABLE)`` of this process (True where it cannot be asked)."""
    try:
        import ctypes

        return int(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)) != 0  # PR_GET_DUMPABLE = 3
    except (OSError, AttributeError):
        return True


def sandboxed(cmd: AgentCommand, bwrap: sandbox.Bwrap, spec: sandbox.SandboxSpec) -> AgentCommand:
    """``cmd`` run by ``bwrap`` in the sandbox ``spec`` describes: the one place a command is
    wrapped in it. The variables of ``spec`` (the private /tmp as TMPDIR) go with the command's
    own, which win: the supervisor starts bwrap with them, and bwrap passes them on. bwrap leads
    the process group the supervisor made; stopping it stops the sandbox, whose processes get
    SIGKILL when bwrap goes (``--die-with-parent``), whatever session they made."""
    argv, env = _wrapped(cmd.argv, cmd.env, bwrap, spec)
    return replace(cmd, argv=argv, env=env)


def _wrapped(argv: Sequence[str], env: Sequence[tuple[str, str]], bwrap: sandbox.Bwrap,
             spec: sandbox.SandboxSpec) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    wrapped = sandbox.bwrap_command(bwrap.path, spec, argv)
    own = dict(env)
    return wrapped.argv, (*((k, v) for k, v in wrapped.env.items() if k not in own), *env)


@dataclass(frozen=True)
class Sandbox:
    """Where verify commands run: the bwrap that builds the sandbox, and what it holds."""

    bwrap: sandbox.Bwrap
    spec: sandbox.SandboxSpec


# --- the supervisor ----------------------------------------------------------


Ending = Literal["exited", "timeout", "cancelled"]


@dataclass(frozen=True)
class Finished:
    """How a supervised child ended. ``returncode`` is negative when a signal ended it."""

    ending: Ending
    returncode: int
    duration_s: float
    stray_processes: int  # processes of its group still alive after it exited, then stopped
    stdout_tail: str
    stderr_tail: str  # empty when standard error went with standard output

    @property
    def exit_code(self) -> int | None:
        return self.returncode if self.returncode >= 0 else None

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None


def supervise(argv: Sequence[str], cwd: Path, env: Mapping[str, str], log: IO[bytes], *, expected_s: float,
              stdin: IO[bytes] | None = None, grace_s: float = DEFAULT_GRACE_S, cancel: CancelToken | None = None,
              merge_stderr: bool = False, tails: tuple[int, int] = (STDOUT_TAIL_BYTES, STDERR_TAIL_BYTES),
              ) -> Finished:
    """Run ``argv`` to its end, its stop at ``2 * expected_s``, or ``cancel``.

    The child leads a new process group. Its output is copied to ``log`` as it
    comes (standard error with standard output when ``merge_stderr``); only the
    last ``tails`` bytes of each stream stay in memory. Stopping means SIGTERM to
    the whole group, then SIGKILL after ``grace_s`` (at most ``CANCEL_GRACE_S`` on
    cancellation); the group is also stopped after a normal exit, so no child of
    the child outlives it. ``stdin`` None is ``/dev/null``. Raises OSError when
    the program cannot be started.
    """
    started = time.monotonic()
    proc: _Child | None = None
    try:
        with _signals_deferred():
            proc = _Child(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL if stdin is None else stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                          start_new_session=True, close_fds=True)
        streams = _Streams(proc, log, tails)
        try:
            ending = _watch(proc, streams, started + 2 * expected_s, cancel)
            if ending != "exited":
                _stop_group(proc.pid, min(grace_s, CANCEL_GRACE_S) if ending == "cancelled" else grace_s, proc)
            proc.wait()
            strays = _stop_group(proc.pid, grace_s, None)
            streams.drain(time.monotonic() + max(grace_s, 0.5))
        finally:
            streams.close()
            log.flush()
    except BaseException:  # an error of ours, or Ctrl-C: the whole group goes too
        if proc is not None:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
            _wait_group_empty(proc.pid, time.monotonic() + 1.0)
        raise
    return Finished(ending, proc.returncode, time.monotonic() - started, strays,
                    streams.tail("stdout"), streams.tail("stderr"))


@contextmanager
def _signals_deferred(signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside are handled on the way out, by the handlers
    they would have met. Python runs a handler when a C call returns: a Ctrl-C while
    the child is forked would raise between the fork and Popen learning the pid, and
    the child, in a session of its own, would run on unknown to anyone."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only: nothing to defer here
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in signals if signal.getsignal(sig) is not None}  # None: a handler not set from Python
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        for signum in received:
            signal.raise_signal(signum)


class _Child(subprocess.Popen[bytes]):
    """A child in a session of its own that an interruption (Ctrl-C, SIGTERM) while
    it is being started stops: the caller, never handed it, could not."""

    def __init__(self, argv: Sequence[str], **options: Any) -> None:
        try:
            super().__init__(argv, **options)
        except BaseException as err:
            if not isinstance(err, OSError) and self.pid is not None and self.returncode is None:
                for kill in (os.kill, os.killpg):  # the child itself, then its session once it has one
                    with contextlib.suppress(OSError):
                        kill(self.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self.pid, 0)
                self.returncode = -signal.SIGKILL
            raise


class _Streams:
    """The child's output pipes: copied to the log, a tail of each kept."""

    def __init__(self, proc: subprocess.Popen[bytes], log: IO[bytes], limits: tuple[int, int]) -> None:
        self.log = log
        self.files = [f for f in (proc.stdout, proc.stderr) if f is not None]
        self.open: dict[int, str] = {f.fileno(): name for f, name in zip((proc.stdout, proc.stderr),
                                                                          ("stdout", "stderr")) if f is not None}
        self.tails: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.limits = {"stdout": limits[0], "stderr": limits[1]}

    def read(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        if not data:
            del self.open[fd]
            return
        self.log.write(data)
        name = self.open[fd]
        tail = self.tails[name]
        tail += data
        if len(tail) > self.limits[name]:
            del tail[: len(tail) - self.limits[name]]

    def drain(self, until: float) -> None:
        """Read what is left. A process that escaped the group may hold a pipe open: stop at ``until``."""
        with selectors.DefaultSelector() as sel:
            for fd in self.open:
                sel.register(fd, selectors.EVENT_READ)
            while self.open:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return
                for key, _ in sel.select(remaining):
                    self.read(key.fd)
                    if key.fd not in self.open:
                        sel.unregister(key.fd)

    def tail(self, name: str) -> str:
        return self.tails[name].decode("utf-8", errors="replace")

    def close(self) -> None:
        for handle in self.files:
            handle.close()


def _watch(proc: subprocess.Popen[bytes], streams: _Streams, deadline: float, cancel: CancelToken | None) -> Ending:
    """Copy output until the child exits, the deadline passes or ``cancel`` is set."""
    pidfd = _pidfd(proc.pid)
    try:
        with selectors.DefaultSelector() as sel:
            for fd in streams.open:
                sel.register(fd, selectors.EVENT_READ, "stream")
            if pidfd is not None:
                sel.register(pidfd, selectors.EVENT_READ, "exit")
            if cancel is not None:
                sel.register(cancel, selectors.EVENT_READ, "cancel")
            while True:
                if cancel is not None and cancel.cancelled:
                    return "cancelled"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout"
                if pidfd is None:
                    # No pidfd (not Linux): the exit has no descriptor, so look at it between reads.
                    if proc.poll() is not None:
                        return "exited"
                    remaining = min(remaining, 0.05)
                for key, _ in sel.select(remaining):
                    if key.data == "exit":
                        return "exited"
                    if key.data == "cancel":
                        return "cancelled"
                    streams.read(key.fd)
                    if key.fd not in streams.open:
                        sel.unregister(key.fd)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _stop_group(pgid: int, grace_s: float, leader: subprocess.Popen[bytes] | None) -> int:
    """SIGTERM the group, SIGKILL what is left after ``grace_s``; the number of processes it found."""
    alive = _group_members(pgid)
    if leader is not None and leader.poll() is None:
        alive = max(alive, 1)
    if not alive:
        return 0
    # What the group started in sessions of its own (a sandbox's first process, a `setsid` child)
    # is out of the group's reach: held by pidfd now, while it is still known as a child, and
    # killed with the group. A sandbox stopped before bwrap armed --die-with-parent would
    # otherwise live on.
    escaped = _pidfds(_descendants_outside(pgid))
    _kill_group(pgid, signal.SIGTERM)
    until = time.monotonic() + grace_s
    if leader is not None:
        try:
            leader.wait(timeout=grace_s)  # a real wait for the one process that is our child
        except subprocess.TimeoutExpired:
            pass
    _wait_group_empty(pgid, until)
    _kill_group(pgid, signal.SIGKILL)
    for fd in escaped:
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass  # gone already
        finally:
            os.close(fd)
    # SIGKILL takes effect when the process is next scheduled: return once it has.
    _wait_group_empty(pgid, time.monotonic() + 1.0)
    return alive


def _descendants_outside(pgid: int) -> list[int]:
    """The descendants of group ``pgid``'s members that are in another group (Linux's
    ``/proc/<pid>/task/<tid>/children``; none where it cannot tell)."""
    groups = dict(_process_groups())
    members = [pid for pid, group in groups.items() if group == pgid]
    found: list[int] = []
    todo = list(members)
    seen = set(todo)
    while todo:
        pid = todo.pop()
        for child in _children(pid):
            if child in seen:
                continue
            seen.add(child)
            todo.append(child)
            if groups.get(child) != pgid:
                found.append(child)
    return found


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def _process_groups() -> list[tuple[int, int]]:
    """(pid, process group) of every live process /proc shows."""
    found: list[tuple[int, int]] = []
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return found
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X"):
            found.append((int(entry.name), int(fields[2])))
    return found


def _pidfds(pids: Sequence[int]) -> list[int]:
    fds = []
    for pid in pids:
        fd = _pidfd(pid)
        if fd is not None:
            fds.append(fd)
    return fds


def stop_strays(prompt_dir: Path, grace_s: float = CANCEL_GRACE_S) -> int:
    """Stop the agents an orchestrator that died (SIGKILL, a lost machine session)
    left running: every process group holding a process whose RALLY_PROMPT_FILE
    lies under ``prompt_dir`` (a run's own folder, so no other run or repository
    is touched). The number of groups stopped; 0 where /proc cannot tell."""
    marker = b"RALLY_PROMPT_FILE=" + os.fsencode(prompt_dir) + b"/"
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return 0
    own = os.getpgrp()
    groups: set[int] = set()
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            pgid = os.getpgid(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
        if pgid != own and any(v.startswith(marker) for v in environ.split(b"\0")):
            groups.add(pgid)
    for pgid in groups:
        _stop_group(pgid, grace_s, None)
    return len(groups)


def _wait_group_empty(pgid: int, until: float) -> None:
    # The members are not our children (or already reaped): no wait exists for them, so look.
    while _group_members(pgid) and time.monotonic() < until:
        time.sleep(0.02)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_members(pgid: int) -> int:
    """Live (non-zombie) processes in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return 0
    except PermissionError:
        return 1
    if not Path("/proc").is_dir():
        return 1
    return sum(1 for _, group in _process_groups() if group == pgid)


# --- agents ------------------------------------------------------------------


@dataclass(frozen=True)
class AgentRun:
    """How one agent process ended. ``exit_code`` is None when a signal ended it."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    cancelled: bool
    duration_s: float
    log_path: Path
    stdout_tail: str
    stderr_tail: str
    stray_processes: int = 0  # processes of its group still alive after it exited, then stopped
    timeout_s: float = 0.0  # the expected duration it was given; it is stopped at twice this


def run_agent(cmd: AgentCommand, workdir: Path, env: Mapping[str, str], prompt_file: Path, timeout_s: float,
              grace_s: float = DEFAULT_GRACE_S, *, log_path: Path, cancel: CancelToken | None = None) -> AgentRun:
    """Run one agent, supervised: its output in ``log_path``, stopped at ``2 * timeout_s`` or on ``cancel``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with _stdin_for(cmd, prompt_file) as stdin, open(log_path, "wb") as log:
        try:
            ended = supervise(cmd.argv, workdir, {**env, **cmd.env_dict()}, log, expected_s=timeout_s, stdin=stdin,
                              grace_s=grace_s, cancel=cancel)
        except OSError as err:
            raise AgentError(f"cannot start agent '{cmd.argv[0]}' in {workdir}: {err.strerror}",
                             hint="check the agent's command and that the program is installed") from err
    return AgentRun(
        exit_code=ended.exit_code,
        signal=ended.signal,
        timed_out=ended.ending == "timeout",
        cancelled=ended.ending == "cancelled",
        duration_s=ended.duration_s,
        log_path=log_path,
        stdout_tail=ended.stdout_tail,
        stderr_tail=ended.stderr_tail,
        stray_processes=ended.stray_processes,
        timeout_s=timeout_s,
    )


@contextmanager
def _stdin_for(cmd: AgentCommand, prompt_file: Path) -> Iterator[IO[bytes]]:
    # A file, not a pipe we feed: no writer thread, no deadlock, any size.
    path = prompt_file if cmd.stdin == "prompt" else Path(os.devnull)
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise AgentError(f"cannot open the prompt file {path}: {err.strerror}") from err
    with handle:
        yield handle


# --- verify commands ---------------------------------------------------------


@dataclass(frozen=True)
class CommandRun:
    command: str
    passed: bool
    output_tail: str  # the last few kilobytes of standard output and error together
    exit_code: int | None = None  # None: could not be started, or stopped
    duration_s: float = 0.0
    log: Path | None = None  # where its whole output is kept
    cancelled: bool = False  # stopped (or never started) because the run was interrupted: no verdict


INTERRUPTED = "the run was interrupted"


def run_commands(commands: Sequence[str], cwd: Path, expected_s: float, *, env: Mapping[str, str],
                 in_sandbox: Sandbox | None = None, tail_chars: int = 4000, log: Path | None = None,
                 cancel: CancelToken | None = None, grace_s: float = DEFAULT_GRACE_S) -> list[CommandRun]:
    """Run each command in ``cwd``, supervised (all of them, so the report shows every
    failure). ``expected_s`` is how long a command is expected to take, as a map's
    ``timeout`` is: one past twice it is stopped with its whole process group and
    counts as failed. Standard input is empty. The code under test comes from agents:
    ``env`` is the whole environment (``agents.verify_environment``: no token), and
    ``in_sandbox`` (its spec's checkout ``cwd``) the sandbox each command runs in, a
    new one for each, so that nothing one starts (a server, a ``setsid`` daemon) lives
    on to the next. ``cancel`` stops the command in flight, which is then the last,
    ``cancelled``.

    The output goes to ``log`` as it is written, each command under a ``$ command``
    line and followed by how it ended, so that nothing of a failure is lost
    however long it is; without a ``log`` it goes to a temporary file. Each
    ``CommandRun`` keeps the last ``tail_chars`` of its own output."""
    runs: list[CommandRun] = []
    with contextlib.ExitStack() as stack:
        out: IO[bytes]
        if log is None:
            out = stack.enter_context(tempfile.TemporaryFile())
        else:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(open(log, "ab"))
        for command in commands:
            runs.append(_run_command(command, cwd, expected_s, env, in_sandbox, out, tail_chars, log, cancel,
                                     grace_s))
            if runs[-1].cancelled:
                break
    return runs


def _run_command(command: str, cwd: Path, expected_s: float, env: Mapping[str, str], in_sandbox: Sandbox | None,
                 out: IO[bytes], tail_chars: int, log: Path | None, cancel: CancelToken | None,
                 grace_s: float) -> CommandRun:
    out.write(f"$ {command}\n".encode())

    def note(output: str, what: str) -> str:
        """``what`` in the log after the command's output; the output's tail with it when stopped."""
        out.write(f"{'' if not output or output.endswith(chr(10)) else chr(10)}[rally-gh] {what}\n\n".encode())
        out.flush()
        if not what.startswith(("stopped", "not started")):
            return output[-tail_chars:]
        return (output + ("" if not output or output.endswith("\n") else "\n") + f"[rally-gh] {what}")[-tail_chars:]

    if cancel is not None and cancel.cancelled:
        return CommandRun(command, False, note("", f"not started: {INTERRUPTED}"), log=log, cancelled=True)
    argv = ["/bin/sh", "-c", command] if _needs_shell(command) else shlex.split(command)
    if in_sandbox is not None:
        # As ``sandboxed`` wraps an agent's command; the sandbox's variables (the private /tmp as
        # TMPDIR) win over the run's, as over an agent's environment.
        wrapped, own = _wrapped(argv, (), in_sandbox.bwrap, in_sandbox.spec)
        argv, env = list(wrapped), {**env, **dict(own)}
    try:
        ended = supervise(argv, cwd, env, out, expected_s=expected_s, grace_s=grace_s, cancel=cancel,
                          merge_stderr=True, tails=(tail_chars, 0))
    except OSError as err:
        note("", f"could not start: {err}")
        return CommandRun(command, False, f"could not start: {err}", log=log)
    duration = round(ended.duration_s, 3)
    if ended.ending == "timeout":
        from rally_gh.config import stop_words  # config imports pydantic: not at the top, where git reads this

        return CommandRun(command, False, note(ended.stdout_tail, f"stopped: {stop_words(expected_s)}"),
                          None, duration, log)
    if ended.ending == "cancelled":
        return CommandRun(command, False, note(ended.stdout_tail, f"stopped: {INTERRUPTED}"), None, duration, log,
                          cancelled=True)
    tail = note(ended.stdout_tail, f"exit {ended.returncode} after {ended.duration_s:.1f}s")
    return CommandRun(command, ended.returncode == 0, tail, ended.returncode, duration, log)


_SHELL_CHARS = frozenset("|&;<>()$`*?[]{}~#\n")


def _needs_shell(command: str) -> bool:
    """True when ``command`` uses shell syntax (pipes, &&, globs, variables,
    redirections, a leading VAR=value). The verify commands come from the map on
    the base commit, so they are trusted with a shell; a plain command still runs
    without one, so that what runs is exactly what is written."""
    try:
        words = shlex.split(command)
    except ValueError:
        return True
    return not words or any(ch in _SHELL_CHARS for ch in command) or "=" in words[0]


# --- rally-gh's own short commands ---------------------------------------------


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes


def run(argv: Sequence[str], *, cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
        input: bytes | None = None, timeout_s: float | None = None) -> Completed:
    """Run one of rally-gh's own commands (git, a probe) to its end, its output captured,
    ``input`` (else nothing) on its standard input. Not supervised: it is ours, short,
    and stops with rally-gh on Ctrl-C. Raises OSError when the program cannot be
    started, and TimeoutError (an OSError) when it runs past ``timeout_s``: it is killed."""
    try:
        proc = subprocess.run(list(argv), cwd=cwd, env=None if env is None else dict(env),
                              input=input if input is not None else b"", stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise TimeoutError(f"`{argv[0]}` did not finish in {timeout_s:g}s") from err
    return Completed(proc.returncode, proc.stdout, proc.stderr)
