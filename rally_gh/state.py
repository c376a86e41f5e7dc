"""The state of a run, kept in ``<git common dir>/rally/runs/<run>/run.json``.

The file is rewritten atomically after every step so that an interrupted or
crashed run can be resumed (``run --resume RUN``) and reported on without
redoing anything that finished. Records are frozen pydantic models: a step
produces a new state, and ``save_state`` persists it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from rally_gh.config import Config
from rally_gh.errors import RallyError, UsageError
from rally_gh.ownership.enforce import Violation
from rally_gh.words import possessive

STATE_FILE = "run.json"
STATE_VERSION = 1

Outcome = Literal[
    "pending", "running",  # not final: a resumed run starts these again
    "done", "failed", "timed_out", "violated", "unverified", "incomplete", "no_changes", "skipped", "conflicted",
]
FINAL_OUTCOMES: frozenset[str] = frozenset(
    {"done", "failed", "timed_out", "violated", "unverified", "incomplete", "no_changes", "skipped", "conflicted"}
)
PHASES: tuple[str, ...] = ("assess", "plan", "spawn", "run", "reconcile", "integrate", "verify", "publish", "cleanup")

RunStatus = Literal["planned", "running", "interrupted", "waiting", "finished"]
"""``waiting``: the plans of its teammates in plan mode are written; it goes on once approved (``--resume RUN --approved``)."""

Clock = Callable[[], float]  # seconds since the epoch (time.time), injectable for tests

# A run id and a teammate name end up as ref components and directory names:
# keep them to characters that are safe in both, whatever git's own rules allow.
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerifyResult(_Record):
    command: str
    passed: bool
    exit_code: int | None = None  # None: could not be started, or stopped by a timeout
    duration_s: float = 0.0
    output_tail: str = ""  # the last lines of its output, for the report
    log: str | None = None  # its whole output: a file in the run's folder (verify/NN-<label>.log)


class VerifyRunRecord(_Record):
    """One run of merge.verify on an integration commit (the bisection makes several)."""

    sha: str
    teammates: tuple[str, ...]  # whose work that commit holds
    passed: bool
    commands: tuple[VerifyResult, ...] = ()
    blamed: tuple[str, ...] = ()  # the teammates dropped from the integration because this run failed


class ConflictCause(_Record):
    """Whose change some of a conflict's paths meet."""

    paths: tuple[str, ...]
    teammate: str | None = None  # a teammate integrated before it
    base_commit: str | None = None  # or a commit that landed on the base during the run


class Conflict(_Record):
    teammate: str
    paths: tuple[str, ...]
    action: str = "skipped"  # what was done about it: skipped | stopped
    commit: str | None = None  # the teammate's commit that could not be replayed
    causes: tuple[ConflictCause, ...] = ()  # empty: the paths meet nothing changed since it started

    def describe(self, base_ref: str) -> str:
        """What it met, by whom: ``conflicts with main @ 1a2b3c4d5e, committed during the run: x``."""
        def listed(found: Sequence[str]) -> str:
            return ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")

        parts = []
        for cause in self.causes:
            if cause.teammate is not None:
                parts.append(f"conflicts with {possessive(cause.teammate)} work, integrated before it: {listed(cause.paths)}")
            else:
                parts.append(f"conflicts with {base_ref} @ {(cause.base_commit or '')[:10]}, committed during the "
                             f"run: {listed(cause.paths)}")
        blamed = {p for c in self.causes for p in c.paths}
        rest = [p for p in self.paths if p not in blamed]
        if rest:
            parts.append(f"conflicts with work integrated before it: {listed(rest)}")
        return "; ".join(parts)


class ConvergenceGroup(_Record):
    """Teammates that failed the same way: one shared blocker, named once."""

    signature: str
    teammates: tuple[str, ...]


class TeammateRecord(_Record):
    name: str
    role: str = ""
    agent: str = ""  # preset name, for the report
    task_title: str = ""  # the task's first line
    owns: tuple[str, ...] = ()  # exclusive_write, for the ownership map of the report
    blocked_by: tuple[str, ...] = ()
    branch: str
    start_sha: str | None = None
    head_sha: str | None = None
    worktree: str | None = None  # while it exists
    outcome: Outcome = "pending"
    attempts: int = 0
    started_at: float | None = None  # epoch seconds
    finished_at: float | None = None
    duration_s: float = 0.0
    cost_usd: float = 0.0
    tokens: int = 0
    files_changed: tuple[str, ...] = ()
    reason: str = ""
    summary: str = ""  # what the agent said it did (RALLY_REPORT_FILE)
    plan: str = ""  # mode: plan: the plan its agent wrote read-only, which a person approves and it then carries out
    plan_cost_usd: float = 0.0  # what writing that plan cost (cost_usd is its attempts' at the work)
    plan_tokens: int = 0
    verify: tuple[VerifyResult, ...] = ()
    violations: tuple[Violation, ...] = ()
    integrated: bool = False

    @property
    def finished(self) -> bool:
        return self.outcome in FINAL_OUTCOMES


class IssueOrigin(_Record):
    """Which text of its issue a run worked from (SPEC section 5: the report says so)."""

    number: int
    source: Literal["event", "issue"]
    """``event``: the copy the label's event carried, the issue as it was when the label was added;
    ``issue``: read from the issue itself (a dispatch names its issue without its text)."""
    labelled_at: str | None = None
    """When the label was added: the issue's ``updated_at`` in the event's copy."""
    edited_at: str | None = None
    """Set when the issue's text was changed after the label was added: its ``updated_at`` when the
    run was published. The run worked from the text before that edit."""


class RunState(_Record):
    version: int = STATE_VERSION
    run_id: str
    team: str
    branch_prefix: str = "rally"
    base_ref: str
    base_sha: str
    # The base tip integration replayed onto: base_sha, or where the base branch moved during the run.
    integrated_onto: str | None = None
    config_digest: str
    status: RunStatus = "running"
    dry_run: bool = False
    started_at: float
    finished_at: float | None = None
    pid: int | None = None  # the orchestrating process while it runs
    issue_text: str | None = None
    max_parallel: int = 1
    waves: tuple[tuple[str, ...], ...] = ()
    problems: tuple[str, ...] = ()  # assessment warnings, as shown to the user
    risks: tuple[str, ...] = ()  # control-file grants, environment passthrough: what a reviewer must know
    teammates: tuple[TeammateRecord, ...] = ()
    phases: dict[str, float] = {}
    integration_branch: str | None = None
    integration_sha: str | None = None
    integrated: tuple[str, ...] = ()  # in the order they were applied
    conflicts: tuple[Conflict, ...] = ()
    verification: tuple[VerifyResult, ...] = ()  # merge.verify on the integrated result
    verify_runs: tuple[VerifyRunRecord, ...] = ()  # every merge.verify run, bisection included, in order
    convergence: tuple[ConvergenceGroup, ...] = ()
    manual_steps: tuple[str, ...] = ()  # anything a person had to do (lowers autonomy)
    split: bool = False  # kept by a job of a run split across CI jobs (`teammate`, `merge`)
    issue_origin: IssueOrigin | None = None  # which text of the issue the run used (set when it is published)

    def teammate(self, name: str) -> TeammateRecord:
        for rec in self.teammates:
            if rec.name == name:
                return rec
        raise KeyError(name)

    def with_teammate(self, record: TeammateRecord) -> RunState:
        """This state with ``record`` replacing the teammate of the same name."""
        return self.model_copy(
            update={"teammates": tuple(record if r.name == record.name else r for r in self.teammates)}
        )

    def with_phase(self, phase: str, seconds: float) -> RunState:
        phases = dict(self.phases)
        phases[phase] = round(phases.get(phase, 0.0) + seconds, 3)
        return self.model_copy(update={"phases": phases})


# --- Names -----------------------------------------------------------------


def check_ref_component(value: str, what: str) -> str:
    """``value`` if it is safe as one component of a git ref and a directory name."""
    if (
        not _SAFE_COMPONENT.fullmatch(value)
        or ".." in value
        or value.endswith((".", ".lock"))
    ):
        raise UsageError(
            f"{what} {value!r} cannot be used in a branch name",
            hint="use letters, digits, '.', '_' and '-' (at most 100, starting with a letter or digit)",
        )
    return value


def new_run_id(issue: int | None, ci_run: str | None, clock: Clock, common: Path | None = None) -> str:
    """A run id from the issue number and the CI run, else from the time: readable in a branch name.

    A CI run's id is the same however often its jobs are re-run (one pull request per
    run); a time-made one is new each time, so with ``common`` a second run within the
    same second (``run --dry-run`` then ``run`` from a script) gets ``-2``, ``-3``, ...
    instead of being refused as one that exists."""
    stamp = datetime.fromtimestamp(clock(), tz=timezone.utc).strftime("%Y%m%d-%H%M%S")
    parts = []
    if issue is not None:
        parts.append(f"issue-{issue}")
    parts.append(re.sub(r"[^A-Za-z0-9._-]", "-", ci_run) if ci_run else stamp)
    made = check_ref_component("-".join(parts), "run id")
    if ci_run or common is None:
        return made
    candidates = (made if n == 1 else f"{made}-{n}" for n in itertools.count(1))
    return next(c for c in candidates if not (runs_dir(common) / c).exists())


def config_digest(config: Config) -> str:
    """A digest of the map's meaning (not its formatting): a resumed run must use the same map."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def teammate_branch(prefix: str, run_id: str, teammate: str) -> str:
    return f"{prefix}/{run_id}/{teammate}"


def integration_branch(prefix: str, run_id: str) -> str:
    """The branch holding the integrated result.

    SPEC names it ``<prefix>/<run>``, but git cannot hold a ref ``rally/r1`` next
    to ``rally/r1/api`` (one would be a file, the other a directory of the same
    name), and the teammate branches' form is what ``check`` and the hook parse.
    So it lives beside them, under a name no teammate can have (names start
    with a letter or digit).
    """
    return f"{prefix}/{run_id}/{INTEGRATION_NAME}"


INTEGRATION_NAME = "_integration"


# --- Storage -------------------------------------------------------------


def runs_dir(common_dir: Path) -> Path:
    return common_dir / "rally" / "runs"


def state_path(common_dir: Path, run_id: str) -> Path:
    return run_dir(common_dir, run_id) / STATE_FILE


def run_dir(common_dir: Path, run_id: str) -> Path:
    """The folder of one run: its state, and every file kept with it."""
    return runs_dir(common_dir) / check_ref_component(run_id, "run id")


VERIFY_LOGS = "verify"
_log_lock = threading.Lock()


def new_verify_log(common_dir: Path, run_id: str, label: str) -> Path:
    """A new, empty file for one verify run's output, ``verify/NN-<label>.log`` in the
    run's folder, numbered in the order they ran (a resumed run goes on counting)."""
    folder = run_dir(common_dir, run_id) / VERIFY_LOGS
    with _log_lock:  # teammates verify in threads of their own
        folder.mkdir(parents=True, exist_ok=True)
        taken = [int(m.group(1)) for p in folder.iterdir() if (m := re.match(r"(\d+)-", p.name))]
        number = max(taken, default=0) + 1
        while True:
            path = folder / f"{number:02d}-{check_ref_component(label, 'log label')}.log"
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                return path
            except FileExistsError:  # another process of the same run (never ours: the lock)
                number += 1


def save_state(common_dir: Path, state: RunState) -> Path:
    """Write ``state`` so that a reader (or a crash) only ever sees a whole file."""
    path = state_path(common_dir, state.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = state.model_dump_json(indent=2).encode()
    fd, tmp = tempfile.mkstemp(prefix=".run-", suffix=".json.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must survive a power cut too.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_state(common_dir: Path, run_id: str) -> RunState:
    path = state_path(common_dir, run_id)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        known = ", ".join(list_runs(common_dir)[-5:]) or "none"
        raise UsageError(
            f"no run {run_id!r}: {path} does not exist (recent runs: {known})",
            hint="check the id with `ls " + str(runs_dir(common_dir)) + "`",
        ) from None
    try:
        return RunState.model_validate_json(raw)
    except ValidationError as err:
        raise RallyError(
            f"{path}: not a run state this version of rally-gh can read: {err.errors()[0]['msg']}",
            hint="start a new run; the branches of the old one are kept",
        ) from None


def list_runs(common_dir: Path) -> list[str]:
    """Run ids with a state file, oldest first."""
    root = runs_dir(common_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / STATE_FILE).is_file()]
    return [p.name for p in sorted(found, key=lambda p: (p / STATE_FILE).stat().st_mtime)]


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

