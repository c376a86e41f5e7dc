"""Running teammates' agents: a clean environment, one process group each, a scheduler.

This layer knows processes, not git: it is handed a working directory, a
prompt file and a command, and gives back what happened. Three parts:

- ``agent_environment``: the variables an agent sees (SPEC section 3), and no others.
- ``run_agent``: one attempt, in its own process group, logged to a file,
  stopped at twice its timeout (the expected duration) or on cancellation, with nothing left behind.
- ``run_teammates``: many attempts, at most ``max_parallel`` at once, in
  dependency order, with retries, a budget and convergence detection. Its
  decisions are pure functions (``plan_starts``, ``budget_spent``,
  ``failure_signature``, ``find_convergence``); the loop only applies them.
"""

from __future__ import annotations

import functools
import os
import queue
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Literal

from rally_gh.agents import AgentCommand, AgentOutput, last_error_line, parse_outcome
from rally_gh.config import Budget, Teammate, stop_words
from rally_gh.errors import AgentError, RallyError

STDOUT_TAIL_BYTES = 512 * 1024  # Claude's result object is the end of stdout: keep enough of it
STDERR_TAIL_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024
CANCEL_GRACE_S = 1.5

# Runner variables an agent gets: the shell basics, nothing that can hold a
# credential. Anything else passes only when the map names it.
_KEPT_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TERM", "TMPDIR", "TZ", "USER", "LOGNAME")
# Identity (not credentials) so that an agent's own ``git commit`` has an author.
_KEPT_GIT_IDENTITY = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")


# --- cancellation ------------------------------------------------------------


class CancelToken:
    """Set once, from any thread (a signal handler included), to stop everything that watches it.

    It is also a file descriptor that becomes readable when set, so that a
    runner waiting in ``selectors`` wakes at once instead of polling a flag.
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


@contextmanager
def cancel_on_signals(token: CancelToken,
                      signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[list[int]]:
    """While inside, SIGINT and SIGTERM cancel ``token`` instead of raising; yields the signals received.

    Agents lead their own sessions, so a Ctrl-C in the terminal does not reach
    them: stopping them is the runner's job, through the token. The handlers are
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


# --- the environment ---------------------------------------------------------


def default_identity(teammate: str) -> tuple[str, str]:
    """Who an agent's commits are by when the user has no git identity: recognisably rally-gh's."""
    return f"rally-gh ({teammate})", f"rally-gh+{teammate}@users.noreply.github.com"


def agent_environment(base_env: Mapping[str, str], teammate: Teammate, run_id: str, team: str, base_sha: str,
                      prompt_file: Path, report_file: Path, owns: Sequence[str], passthrough: Sequence[str],
                      home: Path, identity: tuple[str | None, str | None] = (None, None), *,
                      sparse: bool = False) -> dict[str, str]:
    """The whole environment of a teammate's agent, built from nothing.

    From ``base_env`` only the shell basics and the names in ``passthrough``
    (the map's ``env`` and a preset's API key names) are copied; a GitHub
    token, ``ACTIONS_*``, cloud credentials or a ``GIT_DIR`` set around the
    orchestrator never reach the agent. The ``RALLY_*`` variables and the
    isolated ``HOME`` (created if missing) always win over a passed variable
    of the same name.

    The agent's own ``git commit`` needs an author, and its home is empty: the
    ``GIT_AUTHOR_*``/``GIT_COMMITTER_*`` variables carry ``identity`` (the user's
    ``user.name``/``user.email``, see ``git.user_identity``), else a default
    naming rally-gh and the teammate; variables set around rally-gh win, as in git.
    """
    env: dict[str, str] = {}
    for name, value in base_env.items():
        if name in _KEPT_VARIABLES or name.startswith("LC_") or name in _KEPT_GIT_IDENTITY:
            env[name] = value
    for name in passthrough:
        if name in base_env:
            env[name] = base_env[name]
    env.setdefault("PATH", os.defpath)
    # The agent's own git runs no hook: a pre-commit framework's hook would install its environments
    # again in every empty teammate home (about 30 s a commit, and fails offline), and reconciliation
    # checks every commit of the agent anyway. core.hooksPath=/dev/null holds no hook, ever.
    settings = [("core.hooksPath", os.devnull)]
    if sparse:
        # rally-gh checks a sparse worktree out without touching the repository's config, so the
        # agent's git learns here that it is sparse (`git sparse-checkout list` and `add` work,
        # instead of "this worktree is not sparse").
        settings += [("core.sparseCheckout", "true"), ("core.sparseCheckoutCone", "true")]
    env["GIT_CONFIG_COUNT"] = str(len(settings))
    for i, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    fallback = default_identity(teammate.name)
    name, email = identity[0] or fallback[0], identity[1] or fallback[1]
    for role in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{role}_NAME", name)
        env.setdefault(f"GIT_{role}_EMAIL", email)
    # Agents write transcripts and histories under HOME and expect it to exist.
    home.mkdir(parents=True, exist_ok=True)
    env.update({
        "HOME": str(home),
        # Tools that follow XDG would otherwise write next to the runner's files.
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "RALLY_RUN_ID": run_id,
        "RALLY_TEAM": team,
        "RALLY_TEAMMATE": teammate.name,
        "RALLY_ROLE": teammate.role,
        "RALLY_BASE_SHA": base_sha,
        "RALLY_PROMPT_FILE": str(prompt_file),
        "RALLY_OWNS": "\n".join(owns),
        "RALLY_REPORT_FILE": str(report_file),
    })
    return env


# --- one attempt -------------------------------------------------------------


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


# --- A sandbox of mounts --------------------------------------------------------------
#
# Agents are programs we do not control. Each runs in its own worktree, but
# nothing stops it writing into the main checkout or into another teammate's
# worktree, where the write would end up in someone else's commit. Where the
# machine allows it (root, util-linux's unshare: a CI runner, a container), the
# agent gets a private mount namespace in which everything but its own worktree
# and the git directory (commits write objects there) is read-only.

_SANDBOX_SCRIPT = """
while [ "$1" != "--" ]; do
    mode=$1; target=$2; shift 2
    mount --bind "$target" "$target" && mount -o "remount,$mode,bind" "$target" || {
        echo "rally-gh sandbox: cannot mount $target $mode" >&2; exit 97; }
done
shift
# In a PID namespace this shell is PID 1, and PID 1 ignores SIGTERM it has no handler for:
# it stays the agent's parent, so that the agent gets the runner's SIGTERM, and when it
# exits, whatever the agent left behind in the namespace ends with it.
if [ "$$" = 1 ]; then "$@"; exit $?; fi
exec "$@"
"""

Mount = tuple[str, Path]  # ("ro" | "rw", path), applied in order: later ones win below them


@functools.lru_cache(maxsize=1)
def _unshare_flags() -> tuple[str, ...] | None:
    """The unshare flags that give a private mount namespace here: as root, a mount
    namespace; otherwise a user namespace too (where the kernel allows it
    unprivileged). None: no sandbox (set RALLY_SANDBOX=0 to opt out).

    Not a PID namespace (yet): with ``-p -f --mount-proc`` an agent could no longer
    read a token from the orchestrator's /proc/<pid>/environ, but a trivial agent
    failed now and then under a loaded test suite, for a reason not found in time."""
    if os.environ.get("RALLY_SANDBOX") == "0" or shutil.which("unshare") is None:
        return None
    candidates: list[tuple[str, ...]] = [("-m",)] if os.geteuid() == 0 else []
    candidates.append(("-r", "-m"))
    for flags in candidates:
        probe = subprocess.run(["unshare", *flags, "--propagation", "private", "/bin/sh", "-c",
                                "mount --bind / / && mount -o remount,ro,bind /"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if probe.returncode == 0:
            return flags
    return None


def sandbox_available() -> bool:
    """Whether agents can get a private mount namespace here."""
    return _unshare_flags() is not None


def sandboxed(cmd: AgentCommand, mounts: Sequence[Mount]) -> AgentCommand:
    """``cmd`` run in a private mount namespace with ``mounts`` applied first. Every
    process ``unshare`` starts (a forked PID 1 in a PID namespace, then the agent)
    stays in the process group the runner made, so stopping the group stops them."""
    flags = _unshare_flags() or ("-m",)
    args: list[str] = []
    for mode, path in mounts:
        args += [mode, str(path)]
    prefix = ("unshare", *flags, "--propagation", "private", "/bin/sh", "-c", _SANDBOX_SCRIPT, "rally-sandbox",
              *args, "--")
    return replace(cmd, argv=(*prefix, *cmd.argv))


def run_agent(cmd: AgentCommand, workdir: Path, env: Mapping[str, str], prompt_file: Path, timeout_s: float,
              grace_s: float = 5, *, log_path: Path, cancel: CancelToken | None = None) -> AgentRun:
    """Run one agent to its end, its stop at ``2 * timeout_s``, or ``cancel``.

    The agent leads a new process group. Its output goes to ``log_path`` as it
    comes; only a bounded tail of each stream stays in memory. Stopping means
    SIGTERM to the whole group, then SIGKILL after ``grace_s``; the group is
    also stopped after a normal exit, so no child of the agent outlives it.
    """
    full_env = {**env, **cmd.env_dict()}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = started + 2 * timeout_s
    with _stdin_for(cmd, prompt_file) as stdin, open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                list(cmd.argv), cwd=workdir, env=full_env, stdin=stdin,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
            )
        except OSError as err:
            raise AgentError(f"cannot start agent '{cmd.argv[0]}' in {workdir}: {err.strerror}",
                             hint="check the agent's command and that the program is installed") from err
        streams = _Streams(proc, log)
        try:
            ending = _watch(proc, streams, deadline, cancel)
            if ending != "exited":
                # An interrupted orchestrator must be stopped within seconds, whatever grace was asked.
                _stop_group(proc.pid, min(grace_s, CANCEL_GRACE_S) if ending == "cancelled" else grace_s, proc)
            proc.wait()
            strays = _stop_group(proc.pid, grace_s, None)
            streams.drain(time.monotonic() + max(grace_s, 0.5))
        finally:
            if proc.poll() is None:  # only on an exception of our own: leave nothing running
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
            streams.close()
    code = proc.returncode
    return AgentRun(
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        timed_out=ending == "timeout",
        cancelled=ending == "cancelled",
        duration_s=time.monotonic() - started,
        log_path=log_path,
        stdout_tail=streams.tail("stdout"),
        stderr_tail=streams.tail("stderr"),
        stray_processes=strays,
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


class _Streams:
    """The agent's stdout and stderr: copied to the log, a tail of each kept."""

    def __init__(self, proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.log = log
        self.open: dict[int, str] = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        self.files = [proc.stdout, proc.stderr]
        self.tails: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.limits = {"stdout": STDOUT_TAIL_BYTES, "stderr": STDERR_TAIL_BYTES}

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


Ending = Literal["exited", "timeout", "cancelled"]


def _watch(proc: subprocess.Popen[bytes], streams: _Streams, deadline: float, cancel: CancelToken | None) -> Ending:
    """Copy output until the agent exits, the deadline passes or ``cancel`` is set."""
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
    _kill_group(pgid, signal.SIGTERM)
    until = time.monotonic() + grace_s
    if leader is not None:
        try:
            leader.wait(timeout=grace_s)  # a real wait for the one process that is our child
        except subprocess.TimeoutExpired:
            pass
    _wait_group_empty(pgid, until)
    _kill_group(pgid, signal.SIGKILL)
    # SIGKILL takes effect when the process is next scheduled: return once it has.
    _wait_group_empty(pgid, time.monotonic() + 1.0)
    return alive


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
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return 1
    count = 0
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            count += 1
    return count


# --- an attempt as the scheduler sees it -------------------------------------


AttemptStatus = Literal["ok", "failed", "crashed", "timed_out", "cancelled", "error"]
RETRYABLE: frozenset[str] = frozenset({"crashed", "timed_out"})


@dataclass(frozen=True)
class Attempt:
    """One try at a job. ``error`` holds an exception raised while starting it (not retried)."""

    status: AttemptStatus
    message: str = ""
    cost_usd: float | None = None
    tokens: int | None = None
    agent_status: str | None = None  # done | partial | blocked | failed, from the agent's output
    run: AgentRun | None = None
    error: BaseException | None = None


_GIT_IDENTITY = re.compile(r"unable to auto-detect email address|Please tell me who you are|empty ident name", re.I)
_USAGE = re.compile(r"^\s*usage:|unrecognized arguments?|unknown (?:option|argument|flag|command)"
                    r"|invalid (?:option|argument)|unexpected argument", re.I | re.M)


def unfixable(run: AgentRun) -> str | None:
    """Why a failed attempt would fail the same way again, or None when a retry may help.

    A crash is retried because a flaky model server or network may recover; a
    program that cannot start, a command line its CLI refuses or a commit git
    refuses for want of an author fail the same way every time.
    """
    if run.exit_code in (None, 0):
        return None
    text = run.stderr_tail[-16384:] + "\n" + run.stdout_tail[-16384:]
    if _GIT_IDENTITY.search(text):
        return ("git has no author for the agent's commit: set user.name and user.email "
                "(`git config --global user.email you@example.com`)")
    if run.exit_code == 127:
        return "exit 127: the program, or a command it runs, was not found"
    if run.exit_code == 126:
        return "exit 126: the program, or a command it runs, is not executable"
    if run.exit_code == 2 and _USAGE.search(text):
        return "exit 2 with usage text: the agent's command line is wrong (check its args in rally.yml)"
    return None


def classify_attempt(run: AgentRun, output: AgentOutput) -> Attempt:
    """A crash (non-zero exit, a signal) or a timeout may be retried; an agent that said no is not,
    nor a failure no retry can fix (``unfixable``): its reason says why it was not retried."""
    why = None if output.ok or run.cancelled or run.timed_out else unfixable(run)
    if run.cancelled:
        status: AttemptStatus = "cancelled"
    elif run.timed_out:
        status = "timed_out"
    elif output.ok:
        status = "ok"
    elif run.exit_code != 0 and why is None:
        status = "crashed"
    else:
        status = "failed"
    message = output.message if why is None else f"{output.message}; not retried: {why}"
    if status == "timed_out":
        message = stop_words(run.timeout_s)
    elif status == "cancelled":
        message = "stopped: the run was interrupted"
    return Attempt(status, message, output.cost_usd, output.tokens, output.status, run)


def agent_attempt(cmd: AgentCommand, workdir: Path, env: Mapping[str, str], prompt_file: Path, report_file: Path,
                  timeout_s: float, log_dir: Path, *, grace_s: float = 5, model: str | None = None,
                  ) -> Callable[[int, CancelToken], Attempt]:
    """A job's ``run`` for a ready command: run it, read its outcome. Attempt ``n`` logs to ``attempt-n.log``."""

    def run(attempt: int, cancel: CancelToken) -> Attempt:
        report_file.unlink(missing_ok=True)  # a report left by an earlier attempt says nothing about this one
        result = run_agent(cmd, workdir, env, prompt_file, timeout_s, grace_s,
                           log_path=log_dir / f"attempt-{attempt}.log", cancel=cancel)
        output = parse_outcome(cmd.preset, result.exit_code, result.stdout_tail, result.stderr_tail,
                               model=model, report_file=report_file)
        return classify_attempt(result, output)

    return run


# --- the scheduler: data and pure decisions ----------------------------------


@dataclass(frozen=True)
class Job:
    """A teammate to run. ``run(attempt, cancel)`` blocks for one attempt (attempts count from 1)."""

    name: str
    run: Callable[[int, CancelToken], Attempt]
    retries: int = 0
    after: frozenset[str] = frozenset()  # names that must finish, and succeed, first


Outcome = Literal["done", "failed", "timed_out", "skipped", "cancelled"]


@dataclass(frozen=True)
class JobResult:
    name: str
    outcome: Outcome
    reason: str = ""
    attempts: int = 0
    cost_usd: float = 0.0  # over all attempts; unknown costs count as 0
    tokens: int = 0
    duration_s: float = 0.0
    agent_status: str | None = None
    signature: str | None = None  # the normalized failure, when it failed
    shared_blocker: bool = False  # its signature is shared with another teammate
    last: Attempt | None = None


@dataclass(frozen=True)
class Convergence:
    """Two or more teammates that failed the same way: one shared blocker."""

    signature: str
    teammates: tuple[str, ...]


@dataclass(frozen=True)
class Start:
    name: str


@dataclass(frozen=True)
class Skip:
    name: str
    reason: str


ReadyOk = Callable[[str, "JobResult | None"], bool]


def default_ready_ok(name: str, result: JobResult | None) -> bool:
    """A prerequisite counts when it ran here and is done; one not run here does not."""
    return result is not None and result.outcome == "done"


def budget_spent(budget: Budget, cost_usd: float, elapsed_s: float) -> str | None:
    """Why no new agent may start, or None while the budget lasts."""
    if budget.max_cost_usd is not None and cost_usd >= budget.max_cost_usd:
        return f"budget: ${cost_usd:.2f} spent of ${budget.max_cost_usd:.2f}"
    if budget.max_minutes is not None and elapsed_s >= budget.max_minutes * 60:
        return f"budget: {elapsed_s / 60:.1f} of {budget.max_minutes:g} minutes spent"
    return None


def plan_starts(waiting: Sequence[Job], results: Mapping[str, JobResult], running: int, max_parallel: int,
                known: frozenset[str], ready_ok: ReadyOk, stop_reason: str | None) -> list[Start | Skip]:
    """What to do now with the jobs that wait, in their order.

    A job whose prerequisite ended badly is skipped at once; one whose
    prerequisites are all good starts if a slot is free; the others wait. When
    ``stop_reason`` is set (budget spent, run cancelled) nothing starts and every
    job that waits is skipped with that reason.
    """
    actions: list[Start | Skip] = []
    free = max_parallel - running
    for job in waiting:
        if stop_reason is not None:
            actions.append(Skip(job.name, stop_reason))
            continue
        pending = [p for p in sorted(job.after) if p in known and p not in results]
        failed = [p for p in sorted(job.after) if p not in pending and not ready_ok(p, results.get(p))]
        if failed:
            actions.append(Skip(job.name, f"blocker {failed[0]} failed"))
        elif not pending and free > 0:
            actions.append(Start(job.name))
            free -= 1
    return actions


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I)
_PATH = re.compile(r"(?:~|\.{1,2})?(?:/[\w.@+-]+)+/?|\b[\w.-]+(?:/[\w.@+-]+)+/?")
_HEX = re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{4,}\b", re.I)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def failure_signature(message: str, names: Sequence[str] = ()) -> str | None:
    """A failure reduced to its kind: paths, URLs, ids, numbers and teammate names taken out.

    ``connect to http://127.0.0.1:8080 refused after 3 tries`` from two
    teammates becomes the same ``connect to <url> refused after <n> tries``.
    """
    line = last_error_line(_ANSI.sub("", message))
    if not line:
        return None
    line = _URL.sub("<url>", line)
    line = _PATH.sub("<path>", line)
    for name in sorted(names, key=len, reverse=True):
        if name:
            line = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", "<teammate>", line)
    line = _HEX.sub("<hex>", line)
    line = _NUMBER.sub("<n>", line)
    return " ".join(line.split()).lower()[:300]


def find_convergence(results: Mapping[str, JobResult]) -> list[Convergence]:
    """Failures shared by two or more teammates, each named once, in first-seen order."""
    by_signature: dict[str, list[str]] = {}
    for name, result in results.items():
        if result.outcome in ("failed", "timed_out") and result.signature:
            by_signature.setdefault(result.signature, []).append(name)
    return [Convergence(sig, tuple(names)) for sig, names in by_signature.items() if len(names) > 1]


# --- the scheduler: the loop -------------------------------------------------


EventSink = Callable[[str, str, str], None]


@dataclass
class _Progress:
    """What the loop knows about one job between attempts (mutable: the loop's own state)."""

    job: Job
    attempts: int = 0
    cost_usd: float = 0.0
    tokens: int = 0
    started: float | None = None
    last: Attempt | None = None
    signatures: list[str] = field(default_factory=list)


def run_teammates(jobs: Sequence[Job], max_parallel: int, budget: Budget, clock: Callable[[], float] = time.monotonic,
                  on_event: EventSink | None = None, *, ready_ok: ReadyOk = default_ready_ok,
                  cancel: CancelToken | None = None, spent_usd: float = 0.0, spent_s: float = 0.0,
                  ) -> dict[str, JobResult]:
    """Run ``jobs`` to their ends; the result of each, keyed by name, in job order.

    Each attempt runs in its own thread (the agent is a subprocess; the thread
    only waits for it). ``cancel`` stops the agents in flight and starts
    nothing more; the shared blockers are ``find_convergence(result)``.
    ``spent_usd`` and ``spent_s`` carry what earlier invocations of a resumed
    run already spent of the budget.
    """
    if max_parallel < 1:
        raise RallyError(f"max_parallel must be at least 1, got {max_parallel}")
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise RallyError(f"teammate names must be unique, got {', '.join(names)}")
    emit = on_event or (lambda name, state, detail: None)
    token = cancel or CancelToken()
    known = frozenset(job.name for job in jobs)
    progress = {job.name: _Progress(job) for job in jobs}
    waiting: list[Job] = list(jobs)
    results: dict[str, JobResult] = {}
    done_queue: queue.Queue[tuple[str, Attempt]] = queue.Queue()
    running = 0
    started_at = clock()

    def stop_reason() -> str | None:
        if token.cancelled:
            return "cancelled"
        cost = spent_usd + sum(p.cost_usd for p in progress.values())
        return budget_spent(budget, cost, spent_s + clock() - started_at)

    for job in jobs:
        emit(job.name, "queued", "")

    try:
        while waiting or running:
            for action in plan_starts(waiting, results, running, max_parallel, known, ready_ok, stop_reason()):
                waiting.remove(progress[action.name].job)
                if isinstance(action, Skip):
                    results[action.name] = _skipped(progress[action.name], action.reason)
                    emit(action.name, "skipped", action.reason)
                else:
                    _start(progress[action.name], token, done_queue, clock)
                    running += 1
                    emit(action.name, "running", f"attempt {progress[action.name].attempts}")
            if not running:
                # Nothing runs and nothing could start: only jobs waiting on names that never finish.
                for job in waiting:
                    results[job.name] = _skipped(progress[job.name], "its blockers never finished")
                    emit(job.name, "skipped", "its blockers never finished")
                break
            name, attempt = done_queue.get()
            running -= 1
            state = progress[name]
            _record(state, attempt, known)
            if _should_retry(state, attempt, progress, stop_reason()):
                waiting.insert(_position(jobs, waiting, state.job), state.job)
                emit(name, "retrying", f"{attempt.status}: {attempt.message}")
                continue
            results[name] = _finished(state, clock)
            result = results[name]
            emit(name, "finished", f"{result.outcome}: {result.reason}" if result.reason else result.outcome)
    except BaseException:
        # A display that raised, or Ctrl-C without cancel_on_signals: stop the agents before leaving.
        token.cancel()
        for _ in range(running):
            done_queue.get()
        raise

    return {job.name: _mark_shared(results[job.name], results) for job in jobs}


def _start(state: _Progress, token: CancelToken, done_queue: queue.Queue[tuple[str, Attempt]],
           clock: Callable[[], float]) -> None:
    state.attempts += 1
    if state.started is None:
        state.started = clock()
    number = state.attempts

    def work() -> None:
        try:
            attempt = state.job.run(number, token)
        except BaseException as err:  # reported as this job's failure; the loop must always hear back
            if isinstance(err, RallyError):
                message = f"{err.message}; {err.hint}" if err.hint else err.message
            else:  # a bug of ours: say where, so that the report alone can be acted on
                import traceback

                where = [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in traceback.extract_tb(err.__traceback__)]
                message = f"internal error: {err!r} ({' < '.join(reversed(where[-3:]))})"
            attempt = Attempt("error", message, error=err)
        done_queue.put((state.job.name, attempt))

    threading.Thread(target=work, name=f"rally-agent-{state.job.name}", daemon=True).start()


def _record(state: _Progress, attempt: Attempt, known: frozenset[str]) -> None:
    state.last = attempt
    state.cost_usd += attempt.cost_usd or 0.0
    state.tokens += attempt.tokens or 0
    if attempt.status in ("failed", "crashed", "error"):
        # The message already ends with the agent's last meaningful error line.
        signature = failure_signature(attempt.message, sorted(known))
    elif attempt.status == "timed_out" and attempt.run is not None:
        # A timeout is only a shared blocker when the agents said why they were stuck.
        signature = failure_signature(attempt.run.stderr_tail[-4096:], sorted(known))
    else:
        signature = None
    if signature:
        state.signatures.append(signature)


def _should_retry(state: _Progress, attempt: Attempt, progress: Mapping[str, _Progress], stop: str | None) -> bool:
    """A replacement is a new start: it needs a crash or timeout, retries left, and budget."""
    if attempt.status not in RETRYABLE or state.attempts > state.job.retries or stop is not None:
        return False
    # A failure another teammate met too is a shared blocker: retrying would meet it again.
    signature = state.signatures[-1] if state.signatures else None
    return not (signature and _shared(signature, state.job.name, progress))


def _shared(signature: str, name: str, progress: Mapping[str, _Progress]) -> bool:
    return any(signature in p.signatures for other, p in progress.items() if other != name)


def _position(jobs: Sequence[Job], waiting: Sequence[Job], job: Job) -> int:
    """Where a retried job goes back: its place in the listed order."""
    order = {j.name: i for i, j in enumerate(jobs)}
    return sum(1 for w in waiting if order[w.name] < order[job.name])


_OUTCOMES: dict[str, Outcome] = {"ok": "done", "failed": "failed", "crashed": "failed", "error": "failed",
                                 "timed_out": "timed_out", "cancelled": "cancelled"}


def _finished(state: _Progress, clock: Callable[[], float]) -> JobResult:
    attempt = state.last
    assert attempt is not None and state.started is not None
    outcome = _OUTCOMES[attempt.status]
    reason = attempt.message if outcome != "done" else ""
    if attempt.status in RETRYABLE and state.attempts > 1:
        reason = f"{reason} (after {state.attempts} attempts)"
    signature = state.signatures[-1] if outcome in ("failed", "timed_out") and state.signatures else None
    return JobResult(state.job.name, outcome, reason, state.attempts, state.cost_usd, state.tokens,
                     clock() - state.started, attempt.agent_status, signature, False, attempt)


def _skipped(state: _Progress, reason: str) -> JobResult:
    return JobResult(state.job.name, "skipped", reason, state.attempts, state.cost_usd, state.tokens)


def _mark_shared(result: JobResult, results: Mapping[str, JobResult]) -> JobResult:
    shared = {c.signature for c in find_convergence(results)}
    return replace(result, shared_blocker=True) if result.signature in shared else result
