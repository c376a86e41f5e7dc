"""The scheduler: teammates' attempts, at most ``max_parallel`` at once, in dependency order.

It knows neither processes (``process.py`` runs each agent) nor git: a job is
a function that runs one attempt and says how it went. ``run_teammates`` runs
the jobs with retries, a budget and convergence detection. Its decisions are
pure functions (``plan_starts``, ``budget_spent``, ``failure_signature``,
``find_convergence``, ``unfixable``, ``classify_attempt``); the loop only
applies them.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from rally_gh.agents import AgentCommand, AgentOutput, last_error_line, parse_outcome
from rally_gh.config import Budget, stop_words
from rally_gh.errors import RallyError
from rally_gh.process import AgentRun, CancelToken, run_agent


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


@dataclass(frozen=True)
class JobResult:
    """What happened to one job, and only that: its attempts, what they cost, how long it ran, how
    its last attempt ended or why it was not started (again), and the failure that ended it. What
    that means for the teammate is decided once, by whoever gave the job (``run.teammate``)."""

    name: str
    attempts: int = 0
    cost_usd: float = 0.0  # over all attempts; unknown costs count as 0
    tokens: int = 0
    duration_s: float = 0.0
    last: Attempt | None = None  # the last attempt that ran, if any did
    skipped: str | None = None  # why it was not started, or not again: "budget: ...", "blocker api failed", "cancelled"
    signature: str | None = None  # the normalized failure that ended it
    shared_blocker: bool = False  # its signature is shared with another teammate

    @property
    def ok(self) -> bool:
        """Its last attempt succeeded."""
        return self.skipped is None and self.last is not None and self.last.status == "ok"


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
    """A prerequisite counts when it ran here and succeeded; one not run here does not."""
    return result is not None and result.ok


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
        if result.signature:
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

    Each attempt runs in its own thread (the agent is a child process; the thread
    only waits for it). ``cancel`` stops the agents in flight and starts
    nothing more; the shared blockers are ``find_convergence(result)``.
    ``spent_usd`` and ``spent_s`` carry what earlier invocations of a resumed
    run already spent of the budget.
    """
    _check(jobs, max_parallel)
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
            emit(name, "finished", f"{attempt.status}: {attempt.message}" if attempt.message else attempt.status)
    except BaseException:
        # A display that raised, or Ctrl-C without cancel_on_signals: stop the agents before leaving.
        token.cancel()
        for _ in range(running):
            done_queue.get()
        raise

    return {job.name: _mark_shared(results[job.name], results) for job in jobs}


def _check(jobs: Sequence[Job], max_parallel: int) -> None:
    if max_parallel < 1:
        raise RallyError(f"max_parallel must be at least 1, got {max_parallel}")
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise RallyError(f"teammate names must be unique, got {', '.join(names)}")


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


FAILED: frozenset[str] = frozenset({"failed", "crashed", "error", "timed_out"})  # an attempt that ends a job badly


def _finished(state: _Progress, clock: Callable[[], float]) -> JobResult:
    attempt = state.last
    assert attempt is not None and state.started is not None
    signature = state.signatures[-1] if attempt.status in FAILED and state.signatures else None
    return JobResult(state.job.name, state.attempts, state.cost_usd, state.tokens, clock() - state.started,
                     last=attempt, signature=signature)


def _skipped(state: _Progress, reason: str) -> JobResult:
    return JobResult(state.job.name, state.attempts, state.cost_usd, state.tokens, last=state.last, skipped=reason)


def _mark_shared(result: JobResult, results: Mapping[str, JobResult]) -> JobResult:
    shared = {c.signature for c in find_convergence(results)}
    return replace(result, shared_blocker=True) if result.signature in shared else result
