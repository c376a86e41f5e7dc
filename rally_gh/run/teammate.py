"""One teammate from spawn to its final record (SPEC sections 3 and 4, steps 3 to 5).

Spawn: a repository and checkout of its own (git.create_private_repo: the user's objects
borrowed, nothing else of the user's repository in reach), from the base or from an integration
tip holding its blockers' work. Run: its agent's command, environment and sandbox, one attempt at
a time as the scheduler asks. Reconcile: what it left uncommitted is committed for it, its head
exported into the user's repository (git.export_result) and recorded, then ownership of every
commit, ``verify``, ``done_when`` and an empty change decide its outcome; integration replays that
recorded commit. The user's git directory is guarded meanwhile (agents run with --no-sandbox can
write it): what an agent changed among its controls is put back before any git command of ours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rally_gh import agents, egress, git, plan, process, sandbox
from rally_gh.config import Teammate
from rally_gh.errors import GitError, RallyError
from rally_gh.ownership import enforce
from rally_gh.ownership.enforce import Violation
from rally_gh.run import fanin, scheduler
from rally_gh.run.context import RunContext
from rally_gh.run.ledger import Ledger
from rally_gh.state import Outcome, TeammateRecord, VerifyResult, runs_dir
from rally_gh.words import plural

RALLY_AUTHOR = ("rally-gh", "rally-gh@users.noreply.github.com")

# Outcomes that say why a teammate stopped: a violation found on its branch is listed beside them.
STOPPED = ("failed", "timed_out", "skipped", "pending", "running")


@dataclass
class GitDirGuard:
    """The user's git directory's controls as they were before the agents started (see
    git.git_dir_controls). A sandboxed agent cannot reach them (its repository is its own); one run
    with --no-sandbox can, and what it changed there is put back before rally-gh's git runs.

    Its lock serializes putting them back across the job threads.
    """

    repo_path: Path
    controls: git.GitDirControls
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def taken(cls, ctx: RunContext) -> GitDirGuard:
        return cls(ctx.repo_path, git.git_dir_controls(ctx.repo()))

    def restore(self, ledger: Ledger) -> None:
        """Undo what agents changed among the git directory's controls, before any git
        command of ours (and at the end, for the user's own git); the report says so."""
        with self.lock:
            try:
                changed = git.restore_git_dir_controls(git.open_repo(self.repo_path), self.controls)
            except OSError as err:  # best effort: the run goes on, the report says what could not be done
                ledger.add_risk(f"the git directory's controls could not be checked or put back: {err}")
                return
        if changed:
            ledger.add_risk(
                f"an agent changed {', '.join(changed)} in the git directory while the agents ran: put back as "
                "it was before rally-gh ran any git command (a planted filter, alias, helper or hook would have "
                "run outside the sandbox); look for the agent that did it in the logs")


@dataclass(frozen=True)
class TeammateJob:
    """One teammate's job: ``attempt`` is what the scheduler runs, ``settle`` folds in how it ended."""

    ctx: RunContext
    ledger: Ledger
    guard: GitDirGuard
    teammate: Teammate
    identity: tuple[str | None, str | None]  # the user's user.name and user.email, for the agent's own commits

    @property
    def name(self) -> str:
        return self.teammate.name

    def attempt(self, number: int, cancel: process.CancelToken) -> scheduler.Attempt:
        record = self.ledger.record(self.name)
        path = Path(record.worktree) if record.worktree else None
        if path is None or not path.is_dir():
            path = self.spawn()
        result = self._agent(path)(number, cancel)
        self.ledger.update(self.name, attempts=number)
        if result.status == "ok":
            # Reconciled here, in the job's thread, so that dependents can start the moment it is done.
            self.reconcile(result, cancel)
            if not self.ledger.record(self.name).finished:  # its verify was interrupted: --resume starts it again
                result = replace(result, status="cancelled", message="stopped: the run was interrupted")
        return result

    def _agent(self, worktree: Path) -> Callable[[int, process.CancelToken], scheduler.Attempt]:
        """The agent, ready to run: its prompt written, its command, environment and sandbox built."""
        ctx, t = self.ctx, self.teammate
        config = ctx.config
        record = self.ledger.record(t.name)
        files = teammate_dir(ctx, t.name)
        files.mkdir(parents=True, exist_ok=True)
        prompt_file = files / "prompt.md"
        in_run = [r.name for r in self.ledger.state.teammates]
        prompt_file.write_text(plan.prompt_for(config, t, ctx.issue_text, ctx.run_id, in_run, approved_plan=record.plan),
                               encoding="utf-8")
        report_file, home = files / "report.json", files / "home"
        home.mkdir(exist_ok=True)
        spec = config.agent_of(t)
        cmd = agents.agent_command(spec, prompt_file, worktree, home, search_path=ctx.environ.get("PATH"),
                                   external_sandbox=ctx.sandbox is not None)
        env = agents.agent_environment(
            ctx.environ, t, ctx.run_id, config.team, record.start_sha or "", prompt_file, report_file,
            t.exclusive_write, (*spec.env, *cmd.passthrough), home, self.identity,
            sparse=config.checkout_of(t) == "sparse")
        if ctx.sandbox is not None:
            # Its program is seen where it is installed, whatever starts it.
            sandboxed = sandbox_spec(ctx, worktree, files, cmd.argv, env.get("PATH"),
                                     network=config.network_of(t) is True)
            proxy = ctx.egress.get(t.name)
            if proxy is not None:  # network: [hosts]: its forwarder to the proxy is its only way out
                forwarder = egress.forwarded((), proxy)
                sandboxed = replace(sandboxed, read_only=tuple(dict.fromkeys(
                    (*sandboxed.read_only, *sandbox.program_paths(forwarder[:4], env.get("PATH"))))))
                cmd = replace(cmd, argv=egress.forwarded(cmd.argv, proxy))
            cmd = process.sandboxed(cmd, ctx.sandbox, sandboxed)
        return scheduler.agent_attempt(cmd, worktree, env, prompt_file, report_file, config.timeout_of(t),
                                    files / "logs", model=spec.model)

    def spawn(self) -> Path:
        """Its own repository and checkout (git.create_private_repo), outside the user's repository:
        on its branch as the user's repository holds it when resumed (what it committed before is
        kept), else at its start point."""
        ctx, t = self.ctx, self.teammate
        started = ctx.clock()
        ctx.emit(t.name, "spawning", "")
        repo = ctx.repo()
        record = self.ledger.record(t.name)
        kept = git.ref_sha(repo, f"refs/heads/{record.branch}") if record.start_sha else None
        start = record.start_sha if kept is not None else None
        if start is None:
            start = start_point(ctx, self.ledger, repo, t)
        sparse = None
        if ctx.config.checkout_of(t) == "sparse":
            # The agent's own program too, when the checkout holds it: without it the agent cannot start.
            program = agents.checkout_program(ctx.config.agent_of(t))
            own = ("/" + program,) if program is not None and not program.startswith("../") else ()
            sparse = plan.sparse_directories((*t.exclusive_write, *t.read, *t.done_when, *own))
        path = git.rally_worktrees_root(repo) / ctx.run_id / t.name
        git.create_private_repo(repo, path, record.branch, kept or start)
        git.populate_worktree(path, sparse)
        self.ledger.update(t.name, start_sha=start, worktree=str(path), outcome="running")
        self.ledger.add_phase("spawn", ctx.clock() - started)
        return path

    def reconcile(self, attempt: scheduler.Attempt, cancel: process.CancelToken | None = None) -> None:
        ctx, t = self.ctx, self.teammate
        started = ctx.clock()
        ctx.emit(t.name, "reconciling", "")
        self.guard.restore(self.ledger)  # the verify commands below may run git
        record = self.ledger.record(t.name)
        head = commit_leftovers(ctx, record)
        start = record.start_sha or self.ledger.state.base_sha
        repo = ctx.repo()
        files = tuple(git.changed_files(repo, start, head))
        violations = find_violations(ctx, repo, t.name, start, head)
        verify: tuple[VerifyResult, ...] = ()
        missing: list[str] = []
        if files and not violations:
            log = self.ledger.verify_log(t.name) if t.verify else None
            worktree = Path(record.worktree or "")
            env, box = self.verify_sandbox(worktree) if t.verify else ({}, None)
            runs = process.run_commands(t.verify, worktree, ctx.config.timeout_of(t), env=env, in_sandbox=box,
                                        log=log, cancel=cancel)
            if any(r.cancelled for r in runs):
                return
            verify = tuple(self.ledger.verify_result(r) for r in runs)
            missing = [p for p in t.done_when if p not in files or git.read_blob(repo, head, p) is None]
        outcome, reason = reconciled(files, violations, verify, missing, attempt)
        self.ledger.update(t.name, head_sha=head, files_changed=files, violations=violations, verify=verify,
                           outcome=outcome, reason=reason, summary=attempt.message if outcome == "done" else "",
                           finished_at=ctx.clock())
        self.ledger.add_phase("reconcile", ctx.clock() - started)
        ctx.emit(t.name, outcome, reason)

    def verify_sandbox(self, worktree: Path) -> tuple[dict[str, str], process.Sandbox | None]:
        """Where its ``verify`` runs (docs/security.md): in its agent's sandbox (None: --no-sandbox), with
        an environment built from the run's as its agent's is, its home, the variables its map passes."""
        ctx, t = self.ctx, self.teammate
        files = teammate_dir(ctx, t.name)
        env = agents.verify_environment(ctx.environ, ctx.config.agent_of(t).env, files / "home")
        if ctx.sandbox is None:
            return env, None
        search_path = env.get("PATH")
        programs = sandbox.command_paths(t.verify, search_path)
        # A list of hosts is for the agent: its verify, like every test, gets loopback alone.
        return env, process.Sandbox(ctx.sandbox, sandbox_spec(ctx, worktree, files, (), search_path, programs,
                                                              network=ctx.config.network_of(t) is True))

    def settle(self, result: scheduler.JobResult) -> None:
        """What the job went through, folded into the teammate's record: what it spent, always; its
        outcome only when reconciliation did not decide it (its agent never finished well)."""
        ctx, name = self.ctx, self.name
        record = self.ledger.record(name)
        spent = {"attempts": max(result.attempts, record.attempts), "cost_usd": result.cost_usd,
                 "tokens": result.tokens, "duration_s": round(result.duration_s, 3)}
        if record.finished:  # reconciled in its job: that outcome stands
            self.ledger.update(name, **spent)
            return
        outcome, reason = stopped(result)
        head, files = keep_leftovers(ctx, record)
        # Its branch is kept and pushed whatever the outcome: what it holds is checked too, and a
        # violation is listed while the outcome stays what stopped the teammate.
        violations = record.violations
        if head and record.start_sha and head != record.start_sha:
            violations = find_violations(ctx, ctx.repo(), name, record.start_sha, head)
        if violations and outcome != "pending":
            reason = f"{reason}; its branch also holds {paths_it_does_not_own(violations)}"
        finished_at = ctx.clock() if record.started_at is not None else None
        self.ledger.update(name, outcome=outcome, reason=reason, head_sha=head, files_changed=files,
                           violations=violations, finished_at=finished_at, **spent)
        ctx.emit(name, outcome, reason)


def stopped(result: scheduler.JobResult) -> tuple[Outcome, str]:
    """The outcome of a teammate whose agent never finished well, and why, from what its job went
    through: stopped by an interruption (pending, for --resume), not started, failed or timed out."""
    last = result.last
    if result.skipped is not None or last is None:  # not started (again): the scheduler says why
        why = result.skipped or ""
        return ("pending" if why == "cancelled" else "skipped"), why
    if last.status == "cancelled":
        return "pending", last.message
    reason = last.message
    if last.status in scheduler.RETRYABLE and result.attempts > 1:
        reason = f"{reason} (after {result.attempts} attempts)"
    return ("timed_out" if last.status == "timed_out" else "failed"), reason


def reconciled(files: Sequence[str], violations: Sequence[Violation], verify: Sequence[VerifyResult],
               missing: Sequence[str], attempt: scheduler.Attempt) -> tuple[Outcome, str]:
    """A finished agent's outcome and its reason, decided once from what reconciliation found."""
    if violations:
        return "violated", f"wrote {paths_it_does_not_own(violations)}"
    if not files:
        return "no_changes", "the agent finished without changing any file"
    failed = [v for v in verify if not v.passed]
    if failed:
        return "unverified", f"`{failed[0].command}` failed"
    if missing:
        return "incomplete", "done_when not met: " + ", ".join(f"{p} not created or changed" for p in missing)
    if attempt.agent_status == "partial":
        return "incomplete", f"the agent reported partial work: {attempt.message}"
    return "done", ""


def teammate_dir(ctx: RunContext, name: str) -> Path:
    """The teammate's files of this run: its prompt, its report, its agent's home and logs."""
    return runs_dir(ctx.common) / ctx.run_id / "teammates" / name


def sandbox_spec(ctx: RunContext, worktree: Path, files: Path, argv: Sequence[str],
                 search_path: str | None, programs: Sequence[Path] = (), *, network: bool = True) -> sandbox.SandboxSpec:
    """What an agent and its ``verify`` see (docs/security.md): its own checkout and repository, its
    files of the run (its home, the report it may write) writable; the user's object database
    read-only (its repository borrows those objects); the user's home, checkout and git directory
    (refs, config, hooks, rally-gh's state and cache), the other teammates' checkouts hidden; its
    program (``argv``'s, and ``programs``) where it is installed, read-only; the network unless
    the map turns it off for the teammate (``network: false``: loopback only)."""
    repo = ctx.repo()
    user_home = Path(ctx.environ.get("HOME") or Path.home())
    return sandbox.teammate_spec(
        checkout=worktree, git_dir=git.private_git_dir(worktree), home=files / "home", files=files, env={},
        hidden=(user_home, git.workdir(repo), git.common_dir(repo), git.rally_worktrees_root(repo)),
        read_only=(git.objects_dir(repo), *sandbox.program_paths(argv, search_path), *programs), network=network)


def start_point(ctx: RunContext, ledger: Ledger, repo: git.Repository, t: Teammate) -> str:
    """The base commit, or an integration tip holding the work of everyone ``t`` waits for."""
    blockers = [n for n in plan.blockers_closure(ctx.config, t.name) if fanin.integrable(ledger, n)]
    if not blockers:
        return ledger.state.base_sha
    _, result = fanin.integration_of(ledger, repo, blockers, "stop")
    missing = [o for o in result.outcomes if o.status != "integrated"]
    if missing:
        raise RallyError(f"{t.name}: the work of its blocker {missing[0].teammate} cannot be combined with "
                         f"the others': {missing[0].detail or missing[0].reason}")
    return result.tip


def keep_leftovers(ctx: RunContext, record: TeammateRecord) -> tuple[str | None, tuple[str, ...]]:
    """Commit what a stopped or failed agent left, so its branch keeps everything it produced."""
    if not record.worktree or not Path(record.worktree).is_dir() or not record.start_sha:
        # The worktree is gone (a resumed run): the branch holds what it produced.
        head = record.head_sha or git.ref_sha(ctx.repo(), f"refs/heads/{record.branch}")
        if head is None or record.start_sha is None or head == record.head_sha:
            return head, record.files_changed
        return head, tuple(git.changed_files(ctx.repo(), record.start_sha, head))
    try:
        head = commit_leftovers(ctx, record)
    except GitError:  # its repository cannot be read back (its agent broke it): its branch as last exported
        head = git.ref_sha(ctx.repo(), f"refs/heads/{record.branch}") or record.start_sha
    return head, tuple(git.changed_files(ctx.repo(), record.start_sha, head))


def commit_leftovers(ctx: RunContext, record: TeammateRecord) -> str:
    """What the agent left uncommitted, committed for it in its repository, and the head of that
    repository exported into the user's (its objects, its branch set there by rally-gh): the exact
    commit the teammate's record holds and integration replays."""
    path = Path(record.worktree or "")
    message = f"rally({record.name}): {record.task_title or 'work in progress'}"
    scratch = agents.PRESET_SCRATCH.get(ctx.config.agent_of(ctx.config.teammate(record.name)).preset, ())
    repo = ctx.repo()
    head = (git.commit_all(repo, path, message, RALLY_AUTHOR, scratch) or git.private_head(git.private_git_dir(path))
            or git.ref_sha(repo, f"refs/heads/{record.branch}") or record.start_sha or "")
    # An agent that switched branches or detached HEAD still produced this work for its branch.
    git.export_result(repo, path, head, record.branch)
    return head


def find_violations(ctx: RunContext, repo: git.Repository, name: str, start: str,
                    head: str) -> tuple[Violation, ...]:
    """Every path that ``name``'s commits from ``start`` to ``head`` wrote without owning it."""
    return enforce.check_commits(repo, ctx.loaded, name, start, head).violations


def paths_it_does_not_own(violations: Sequence[Violation]) -> str:
    paths = sorted({v.path for v in violations})
    return f"{plural(paths, 'path')} it does not own: " + ", ".join(paths[:5]) + (
        f" and {len(paths) - 5} more" if len(paths) > 5 else "")
