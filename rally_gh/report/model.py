"""The report of a run (SPEC section 6): one typed value, built once from the run's state.

``build_report`` decides everything a reader is told (status, score, risks, the
next step) from ``RunState`` alone, so ``rally-gh report`` can render any run,
finished or not, long after it ran. Every rendering reads the ``Report``, never
the state: its JSON is the model's dump (``report.json`` beside ``run.json``,
read back with ``Report.model_validate``), and the Markdown, the terminal's
text, the ``_STEP_COMPLETE`` block, the handoff and the history record are
drawn from the same value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from rally_gh.ownership.enforce import Violation
from rally_gh.state import (
    PHASES,
    Conflict,
    ConvergenceGroup,
    IssueOrigin,
    RunState,
    RunStatus,
    TeammateRecord,
    VerifyResult,
    VerifyRunRecord,
    integration_branch,
)

ReportStatus = Literal["done", "partial", "failed"]

# Team efficiency score: (part, weight), and what each part measures. docs/report.md
# says the same at more length; ``report --format json`` carries both with each part's inputs.
TES_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("parallel_efficiency", 0.30),
    ("task_economy", 0.20),
    ("conflict_prevention", 0.20),
    ("integration_quality", 0.20),
    ("autonomy", 0.10),
)
TES_DEFINITIONS: dict[str, str] = {
    "parallel_efficiency": "teammates' busy time over the run phase's wall time times the teammates that could "
                           "run at once (min(max_parallel, teammates that ran)), at most 1",
    "task_economy": "teammates done over agent attempts started (a retry costs an attempt)",
    "conflict_prevention": "teammates offered to integration that had no conflict and no ownership violation, "
                           "over teammates offered to integration",
    "integration_quality": "teammates whose work passed verification (their own verify, and merge.verify without "
                           "being dropped by bisection) over teammates whose work was verified, times the final "
                           "merge.verify commands passed over those run; with no verify command anywhere, 1 when "
                           "something was integrated",
    "autonomy": "1 when no person had to step in during the run, else 0",
}

# Outcomes whose work never reached integration for reasons of its own.
_NEVER_INTEGRATED = frozenset({"pending", "running", "failed", "timed_out", "skipped", "no_changes"})


@dataclass(frozen=True)
class Score:
    parts: dict[str, float]  # each 0..1
    total: int  # 0..100
    inputs: dict[str, dict[str, Any]]  # per part: the counts it was computed from

    def breakdown(self) -> dict[str, dict[str, Any]]:
        """Each part's value, weight, points towards the total, definition and inputs."""
        return {name: {"value": round(self.parts[name], 3), "weight": weight,
                       "points": round(100 * weight * self.parts[name], 1),
                       "definition": TES_DEFINITIONS[name], "inputs": self.inputs[name]}
                for name, weight in TES_WEIGHTS}


def run_status(state: RunState) -> ReportStatus:
    """done: every teammate done and integrated; failed: nothing integrated; partial otherwise."""
    if state.teammates and all(t.outcome == "done" and t.integrated for t in state.teammates) \
            and all(v.passed for v in state.verification):
        return "done"
    if not state.integrated:
        return "failed"
    return "partial"


def team_efficiency(state: RunState) -> Score:
    ran = [t for t in state.teammates if t.attempts > 0]
    wall = state.phases.get("run", 0.0)
    used = min(state.max_parallel, len(ran)) or 1
    busy = sum(t.duration_s for t in ran)
    parallel = min(1.0, busy / (wall * used)) if wall > 0 else 0.0

    attempts = sum(t.attempts for t in state.teammates)
    done = sum(t.outcome == "done" for t in state.teammates)
    economy = done / attempts if attempts else 0.0

    candidates = [t for t in state.teammates if t.outcome not in _NEVER_INTEGRATED]
    clean = [t for t in candidates if t.outcome not in ("conflicted", "violated")]
    prevention = len(clean) / len(candidates) if candidates else 0.0

    quality, quality_inputs = _integration_quality(state)
    autonomy = 0.0 if state.manual_steps else 1.0
    parts = {"parallel_efficiency": parallel, "task_economy": economy, "conflict_prevention": prevention,
             "integration_quality": quality, "autonomy": autonomy}
    inputs: dict[str, dict[str, Any]] = {
        "parallel_efficiency": {"busy_s": round(busy, 3), "run_wall_s": round(wall, 3), "parallel_used": used,
                                "max_parallel": state.max_parallel, "teammates_ran": len(ran)},
        "task_economy": {"done": done, "attempts": attempts},
        "conflict_prevention": {"offered": [t.name for t in candidates],
                                "conflicted": [t.name for t in candidates if t.outcome == "conflicted"],
                                "violated": [t.name for t in candidates if t.outcome == "violated"]},
        "integration_quality": quality_inputs,
        "autonomy": {"manual_steps": list(state.manual_steps)},
    }
    total = round(100 * sum(parts[name] * weight for name, weight in TES_WEIGHTS))
    return Score(parts, total, inputs)


def _integration_quality(state: RunState) -> tuple[float, dict[str, Any]]:
    """The share of verified teammates that passed, times the share of the final
    ``merge.verify`` commands that passed.

    A teammate's work is verified by its own ``verify`` and, once offered to
    integration, by ``merge.verify``: a teammate that bisection dropped failed,
    even though the final run (without it) passed.
    """
    own_failed = {t.name for t in state.teammates if any(not v.passed for v in t.verify)}
    verified = {t.name for t in state.teammates if t.verify}
    # Dropped: blamed by a failing run (or, in a state from before runs named whom they blamed,
    # left unverified and out of the integration). A teammate that conflicted when replayed
    # after a culprit was dropped counts under conflict prevention, not here.
    offered = set().union(*(r.teammates for r in state.verify_runs))
    dropped = set().union(*(r.blamed for r in state.verify_runs)) | {
        t.name for t in state.teammates if t.name in offered and t.outcome == "unverified" and not t.integrated}
    if state.verification or state.verify_runs:
        verified |= set(state.integrated) | dropped
    failed = own_failed | dropped
    commands = len(state.verification)
    passed = sum(v.passed for v in state.verification)
    order = [t.name for t in state.teammates]
    inputs: dict[str, Any] = {"verified": [n for n in order if n in verified],
                              "failed": [n for n in order if n in failed],
                              "dropped_by_merge_verify": [n for n in order if n in dropped],
                              "merge_verify_commands": commands, "merge_verify_passed": passed}
    if not verified and not commands:
        return (1.0 if state.integrated else 0.0), inputs
    teammates = (len(verified) - len(failed & verified)) / len(verified) if verified else 1.0
    return teammates * (passed / commands if commands else 1.0), inputs


def step_status(state: RunState) -> str:
    """SUCCESS / PARTIAL / BLOCKED / FAILED for agent pipelines."""
    if state.status in ("interrupted", "waiting"):
        return "BLOCKED"
    status = run_status(state)
    if status == "done":
        return "SUCCESS"
    if status == "partial":
        return "PARTIAL"
    return "BLOCKED" if state.convergence else "FAILED"


def next_step(state: RunState) -> str:
    """The one thing to do next, as a command or an action."""
    branch = state.integration_branch or integration_branch(state.branch_prefix, state.run_id)
    if state.status == "waiting":
        return (f"read the plans, then let the run go on: `rally-gh run --resume {state.run_id} --approved` "
                "(on GitHub: `/rally approve` on the issue)")
    if state.status == "interrupted" or any(not t.finished for t in state.teammates):
        return f"resume the run: `rally-gh run --resume {state.run_id}`"
    if state.dry_run:
        return "run it for real: `rally-gh run`"
    status = run_status(state)
    if status == "done":
        onto = state.integrated_onto or state.base_sha
        return f"review and merge `{branch}` (`git diff {onto[:10]}...{branch}`)"
    if state.convergence:
        group = state.convergence[0]
        return (f"fix the shared blocker of {', '.join(group.teammates)} ({group.signature}), "
                "then start a new run")
    failed = [t for t in state.teammates if t.outcome != "done" or not t.integrated]
    names = ", ".join(t.name for t in failed)
    if status == "partial" and not failed:
        # Every teammate is in it, but what they make together did not pass (or was not) verified.
        return f"review `{branch}`: every teammate's work is in it, but it is not verified (see Verification)"
    if status == "partial":
        one = len(failed) == 1
        again = (f"re-run {'its job' if one else 'their jobs'}, then the merge and publish jobs" if state.split
                 else f"rerun {'it' if one else 'them'} in a new run")
        return (f"review `{branch}` (what worked); {names} did not make it: inspect "
                f"{'its branch' if one else 'their branches'} (`git log {failed[0].branch}`), then {again}")
    return f"nothing was integrated: inspect the teammate branches ({names}) and the reasons above"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tasks(_Frozen):
    done: int
    total: int


class TesPart(_Frozen):
    """One part of the team efficiency score: its value (0..1), weight, points towards the
    total, what it measures and the counts it was computed from."""
    value: float
    weight: float
    points: float
    definition: str
    inputs: dict[str, Any]


class TeammateReport(_Frozen):
    name: str
    role: str
    agent: str
    outcome: str
    branch: str
    start_sha: str | None
    head_sha: str | None
    files_changed: tuple[str, ...]
    duration_s: float
    cost_usd: float
    tokens: int
    attempts: int
    reason: str
    summary: str
    integrated: bool
    owns: tuple[str, ...]
    blocked_by: tuple[str, ...]
    verify: tuple[VerifyResult, ...]
    ran: tuple[float, float] | None = None
    """When it ran, in seconds from the run's start (start, end); None when it never started."""
    plan: str = ""
    """What a teammate in plan mode plans to do (its agent's text), while the run waits for approval."""


class Report(_Frozen):
    """What a run's report says, every field decided once by ``build_report``."""
    run_id: str
    team: str
    status: ReportStatus
    run_status: RunStatus
    dry_run: bool
    base_ref: str
    base_sha: str
    integrated_onto: str | None
    integration_branch: str | None
    integration_sha: str | None
    tasks: Tasks
    teammates: tuple[TeammateReport, ...]
    integrated: tuple[str, ...]
    violations: tuple[Violation, ...]
    conflicts: tuple[Conflict, ...]
    convergence: tuple[ConvergenceGroup, ...]
    verification: tuple[VerifyResult, ...]
    verify_runs: tuple[VerifyRunRecord, ...]
    phases: dict[str, float]
    wall_s: float
    problems: tuple[str, ...]
    risks: tuple[str, ...]
    tes: int
    tes_parts: dict[str, float]
    tes_breakdown: dict[str, TesPart]
    next: str
    step_complete: str
    issue_origin: IssueOrigin | None = None

    @property
    def cost_usd(self) -> float:
        return sum(t.cost_usd for t in self.teammates)

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def build_report(state: RunState) -> Report:
    """The report of ``state``: built once, then rendered as often as needed."""
    score = team_efficiency(state)
    return Report(
        run_id=state.run_id,
        team=state.team,
        status=run_status(state),
        run_status=state.status,
        dry_run=state.dry_run,
        base_ref=state.base_ref,
        base_sha=state.base_sha,
        integrated_onto=state.integrated_onto,
        integration_branch=state.integration_branch,
        integration_sha=state.integration_sha,
        tasks=Tasks(done=sum(t.outcome == "done" for t in state.teammates), total=len(state.teammates)),
        teammates=tuple(_teammate(state, t) for t in state.teammates),
        integrated=state.integrated,
        violations=tuple(v for t in state.teammates for v in t.violations),
        conflicts=state.conflicts,
        convergence=state.convergence,
        verification=state.verification,
        verify_runs=state.verify_runs,
        phases={p: round(state.phases.get(p, 0.0), 3) for p in PHASES},
        wall_s=round(_wall(state), 3),
        problems=state.problems,
        risks=tuple(_risks(state)),
        tes=score.total,
        tes_parts={name: round(value, 3) for name, value in score.parts.items()},
        tes_breakdown={name: TesPart(**part) for name, part in score.breakdown().items()},
        next=next_step(state),
        step_complete=step_status(state),
        issue_origin=state.issue_origin,
    )


def report_json(state: RunState) -> dict[str, Any]:
    """The report's JSON (``build_report(state).as_json()``)."""
    return build_report(state).as_json()


def _teammate(state: RunState, t: TeammateRecord) -> TeammateReport:
    ran = None
    if t.started_at is not None:
        start = t.started_at - state.started_at
        end = (t.finished_at or state.finished_at or t.started_at) - state.started_at
        ran = (start, max(start, end))
    return TeammateReport(
        name=t.name, role=t.role, agent=t.agent, outcome=t.outcome, branch=t.branch, start_sha=t.start_sha,
        head_sha=t.head_sha, files_changed=t.files_changed, duration_s=round(t.duration_s, 3),
        cost_usd=round(t.cost_usd + t.plan_cost_usd, 4), tokens=t.tokens + t.plan_tokens, attempts=t.attempts, reason=t.reason, summary=t.summary,
        integrated=t.integrated, owns=t.owns, blocked_by=t.blocked_by, verify=t.verify, ran=ran,
        plan=t.plan or "")


def _wall(state: RunState) -> float:
    end = state.finished_at if state.finished_at is not None else state.started_at + sum(state.phases.values())
    return max(0.0, end - state.started_at)


def _risks(state: RunState) -> list[str]:
    risks = list(state.risks)
    for t in state.teammates:
        if t.outcome in ("failed", "timed_out"):
            risks.append(f"{t.name} {t.outcome.replace('_', ' ')}: {t.reason or 'no reason recorded'}")
    return risks
