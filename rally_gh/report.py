"""The report of a run (SPEC section 6), from its state alone.

One content, three renderings: JSON (``report_json``), Markdown (pull request
body, job summary, standard output) and the ``_STEP_COMPLETE`` block for agent
pipelines. Everything is read from ``RunState`` so that ``rally-gh report``
can render any run, finished or not, long after it ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rally_gh.state import PHASES, RunState, TeammateRecord, integration_branch
from rally_gh.words import aside, plural

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


def tes_measured(part: str, inputs: dict[str, Any]) -> str:
    """One line saying what a part of the score was computed from."""
    if part == "parallel_efficiency":
        return (f"{_dur(inputs['busy_s'])} of teammate work in {_dur(inputs['run_wall_s'])} "
                f"with {plural(inputs['parallel_used'], 'teammate')} at once")
    if part == "task_economy":
        return f"{inputs['done']} done in {plural(inputs['attempts'], 'attempt')}"
    if part == "conflict_prevention":
        bad = inputs["conflicted"] + inputs["violated"]
        return f"{len(inputs['offered']) - len(bad)} of {len(inputs['offered'])} offered clean" + (
            f" ({', '.join(bad)} not)" if bad else "")
    if part == "integration_quality":
        if not inputs["verified"] and not inputs["merge_verify_commands"]:
            return "no verify command"
        text = f"{len(inputs['verified']) - len(inputs['failed'])} of {len(inputs['verified'])} verified passed"
        if inputs["dropped_by_merge_verify"]:
            text += f" ({', '.join(inputs['dropped_by_merge_verify'])} dropped by merge.verify)"
        if inputs["merge_verify_commands"]:
            text += (f"; merge.verify {inputs['merge_verify_passed']} of "
                     f"{plural(inputs['merge_verify_commands'], 'command')} passed")
        return text
    steps = inputs["manual_steps"]
    return f"{plural(steps, 'manual step')}: {'; '.join(steps)}" if steps else "no manual step"


def step_status(state: RunState) -> str:
    """SUCCESS / PARTIAL / BLOCKED / FAILED for agent pipelines."""
    if state.status == "interrupted":
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
    if status == "partial":
        one = len(failed) == 1
        return (f"review `{branch}` (what worked); {names} did not make it: inspect "
                f"{'its branch' if one else 'their branches'} (`git log {failed[0].branch}`), "
                f"then rerun {'it' if one else 'them'} in a new run")
    return f"nothing was integrated: inspect the teammate branches ({names}) and the reasons above"


# --- JSON ----------------------------------------------------------------


def report_json(state: RunState) -> dict[str, Any]:
    score = team_efficiency(state)
    return {
        "run_id": state.run_id,
        "team": state.team,
        "status": run_status(state),
        "run_status": state.status,
        "dry_run": state.dry_run,
        "base_ref": state.base_ref,
        "base_sha": state.base_sha,
        "integrated_onto": state.integrated_onto,
        "integration_branch": state.integration_branch,
        "integration_sha": state.integration_sha,
        "tasks": {"done": _done_count(state), "total": len(state.teammates)},
        "teammates": [_teammate_json(t) for t in state.teammates],
        "integrated": list(state.integrated),
        "violations": [v.model_dump(mode="json") for t in state.teammates for v in t.violations],
        "conflicts": [c.model_dump() for c in state.conflicts],
        "convergence": [g.model_dump() for g in state.convergence],
        "verification": [v.model_dump() for v in state.verification],
        "verify_runs": [r.model_dump() for r in state.verify_runs],
        "phases": {p: round(state.phases.get(p, 0.0), 3) for p in PHASES},
        "wall_s": round(_wall(state), 3),
        "problems": list(state.problems),
        "risks": list(_risks(state)),
        "tes": score.total,
        "tes_parts": {name: round(value, 3) for name, value in score.parts.items()},
        "tes_breakdown": score.breakdown(),
        "next": next_step(state),
        "step_complete": step_status(state),
    }


def _teammate_json(t: TeammateRecord) -> dict[str, Any]:
    return {
        "name": t.name, "role": t.role, "agent": t.agent, "outcome": t.outcome, "branch": t.branch,
        "start_sha": t.start_sha, "head_sha": t.head_sha, "files_changed": list(t.files_changed),
        "duration_s": round(t.duration_s, 3), "cost_usd": round(t.cost_usd, 4), "tokens": t.tokens,
        "attempts": t.attempts, "reason": t.reason, "summary": t.summary, "integrated": t.integrated,
        "owns": list(t.owns), "blocked_by": list(t.blocked_by),
        "verify": [v.model_dump() for v in t.verify],
    }


def _done_count(state: RunState) -> int:
    return sum(t.outcome == "done" for t in state.teammates)


def _wall(state: RunState) -> float:
    end = state.finished_at if state.finished_at is not None else state.started_at + sum(state.phases.values())
    return max(0.0, end - state.started_at)


def _risks(state: RunState) -> list[str]:
    risks = list(state.risks)
    for t in state.teammates:
        if t.outcome in ("failed", "timed_out"):
            risks.append(f"{t.name} {t.outcome.replace('_', ' ')}: {t.reason or 'no reason recorded'}")
    return risks


# --- Markdown ---------------------------------------------------------------

_ICON = {"done": "✅", "failed": "❌", "timed_out": "⏱️", "violated": "🚫", "unverified": "⚠️",
         "incomplete": "🟡", "no_changes": "➖", "skipped": "⏭️", "conflicted": "💥",
         "pending": "⏳", "running": "🏃"}
_STATUS_WORD = {"done": "Done", "partial": "Partial", "failed": "Failed"}


def report_markdown(state: RunState, *, marker: bool = True) -> str:
    """The report; ``marker`` starts it with the hidden line that finds the run's GitHub comment again."""
    data = report_json(state)
    score = team_efficiency(state)
    status = data["status"]
    out: list[str] = [f"<!-- rally-gh:run:{state.run_id} -->"] if marker else []
    title = f"## rally-gh run `{state.run_id}`: {_STATUS_WORD[status]}"
    if state.status == "interrupted":
        title += " (interrupted)"
    if state.dry_run:
        title += " (dry run)"
    out += [title, ""]
    out.append(
        f"**Team** {state.team} · **tasks** {data['tasks']['done']}/{data['tasks']['total']} done · "
        f"**team efficiency** {score.total}/100 · **wall** {_dur(data['wall_s'])} · "
        f"**cost** ${sum(t.cost_usd for t in state.teammates):.2f}"
    )
    out.append("")
    base = f"from `{state.base_ref}` @ `{state.base_sha[:10]}`"
    if state.integrated_onto and state.integrated_onto != state.base_sha:
        base = (f"onto `{state.base_ref}` @ `{state.integrated_onto[:10]}`, where `{state.base_ref}` moved "
                f"during the run; started from `{state.base_sha[:10]}`")
    if state.integration_sha:
        out.append(f"Integration branch `{state.integration_branch}` @ `{state.integration_sha[:10]}` "
                   f"({base}), holding {', '.join(state.integrated) or 'nothing'}.")
    else:
        out.append(f"No integration branch ({base}).")
    out += ["", "### Team", "", "| teammate | role | agent | outcome | duration | cost | files changed |",
            "|---|---|---|---|---|---|---|"]
    for t in state.teammates:
        out.append(f"| {t.name} | {_cell(t.role)} | {t.agent} | {_ICON.get(t.outcome, '')} {t.outcome} | "
                   f"{_dur(t.duration_s)} | ${t.cost_usd:.2f} | {len(t.files_changed)} |")
    reasons = [t for t in state.teammates if t.reason and t.outcome != "done"]
    if reasons:
        out.append("")
        out += [f"- **{t.name}** ({t.outcome}): {t.reason}" for t in reasons]

    out += ["", "### Efficiency", "", "| part | weight | score | measured |", "|---|---|---|---|"]
    for name, weight in TES_WEIGHTS:
        out.append(f"| {name.replace('_', ' ')} | {int(weight * 100)}% | {score.parts[name] * 100:.0f} | "
                   f"{_cell(tes_measured(name, score.inputs[name]))} |")
    out.append(f"| **total** | | **{score.total}** | |")

    out += ["", "### Ownership map", "", "| teammate | owns |", "|---|---|"]
    for t in state.teammates:
        out.append(f"| {t.name} | {', '.join(f'`{p}`' for p in t.owns)} |")

    out += ["", "### Dependencies", "", "```mermaid", mermaid_dependencies(state).rstrip(), "```"]
    timeline = mermaid_timeline(state)
    if timeline:
        out += ["", "### Timeline", "", "```mermaid", timeline.rstrip(), "```"]

    out += ["", "### Changed files", ""]
    any_files = False
    for t in state.teammates:
        if t.files_changed:
            any_files = True
            shown = ", ".join(f"`{f}`" for f in t.files_changed[:20])
            more = f" and {len(t.files_changed) - 20} more" if len(t.files_changed) > 20 else ""
            out.append(f"- **{t.name}** (`{t.branch}`): {shown}{more}")
    if not any_files:
        out.append("None.")

    out += ["", "### Verification", ""]
    rows = [(t.name, v) for t in state.teammates for v in t.verify] + [("integration", v) for v in state.verification]
    if rows:
        out += ["| where | command | result |", "|---|---|---|"]
        for where, v in rows:
            failed = f"failed (exit {v.exit_code})" if v.exit_code is not None else "failed (timed out or not started)"
            out.append(f"| {where} | `{_cell(v.command)}` | {'passed' if v.passed else failed} |")
    else:
        out.append("No verification commands in the map.")
    if len(state.verify_runs) > 1:
        out += ["", f"merge.verify ran {len(state.verify_runs)} times to find whose work breaks it:", ""]
        out += [f"- `{r.sha[:10]}` ({', '.join(r.teammates) or 'the base'}): {'passed' if r.passed else 'failed'}"
                for r in state.verify_runs]
    out += _verify_failures(state)

    out += ["", "### Conflicts", ""]
    if state.conflicts:
        out += [f"- **{c.teammate}**" + (f" (commit `{c.commit[:10]}`)" if c.commit else "")
                + f": {c.describe(state.base_ref)} ({c.action})" for c in state.conflicts]
    else:
        out.append("None.")

    out += ["", "### Violations", ""]
    violations = [v for t in state.teammates for v in t.violations]
    if violations:
        out += ["| teammate | path | owner | kind | commit | reason | rule |", "|---|---|---|---|---|---|---|"]
        for bad in violations:
            rule = f"`{_cell(str(bad.rule))}`" if bad.rule else "none"
            out.append(f"| {bad.teammate} | `{_cell(bad.path)}` | {bad.owner or 'nobody'} | {bad.kind} | "
                       f"`{(bad.commit or '')[:10]}` | {_cell(bad.reason)} | {rule} |")
    else:
        out.append("None: every teammate wrote only what it owns.")

    if state.convergence:
        out += ["", "### Shared blockers", ""]
        out += [f"- {', '.join(g.teammates)} failed the same way: {g.signature}" for g in state.convergence]

    out += ["", "### Risks", ""]
    risks = data["risks"] + [f"plan: {p}" for p in state.problems]
    out += [f"- {r}" for r in risks] if risks else ["None noted."]

    out += ["", "### Next step", "", data["next"], "", step_complete_text(data)]
    return "\n".join(out) + "\n"


VERIFY_TAIL_LINES = 20
_TAIL_LINE_CHARS = 300


def _verify_failures(state: RunState) -> list[str]:
    """The last lines of every failing verify that decided an outcome: each teammate's own,
    the merge.verify run that dropped a teammate, and the final integration's."""
    failures = [(f"**{t.name}**: `{v.command}` failed", v) for t in state.teammates for v in t.verify if not v.passed]
    for r in state.verify_runs:
        for name in r.blamed:
            failures += [(f"**{name}** dropped from the integration: merge.verify `{v.command}` failed on "
                          f"`{r.sha[:10]}`, holding the work of {', '.join(r.teammates)}", v)
                         for v in r.commands if not v.passed]
    failures += [(f"**integration**: merge.verify `{v.command}` failed", v) for v in state.verification if not v.passed]
    out: list[str] = []
    for title, v in failures:
        lines = [line[:_TAIL_LINE_CHARS] for line in v.output_tail.splitlines()[-VERIFY_TAIL_LINES:]]
        where = f" (all of it in `.git/rally/runs/{state.run_id}/{v.log}`)" if v.log else ""
        if not lines:
            out += ["", f"{title}, with no output{where}."]
            continue
        fence = "`" * max(3, _longest_backtick_run(lines) + 1)
        out += ["", f"{title}. The last lines{where}:", "", f"{fence}text", *lines, fence]
    return out


def _longest_backtick_run(lines: Sequence[str]) -> int:
    longest = 0
    for line in lines:
        run = 0
        for ch in line:
            run = run + 1 if ch == "`" else 0
            longest = max(longest, run)
    return longest


def step_complete_block(state: RunState) -> str:
    return step_complete_text(report_json(state))


def step_complete_text(data: Mapping[str, Any]) -> str:
    """The ``_STEP_COMPLETE`` block for agent pipelines, from a run's report JSON (``report_json``,
    or the ``report.json`` written beside ``run.json``): one text whichever a reader has."""
    fields = step_complete_fields(data)
    return "\n".join(["```", "_STEP_COMPLETE", "Agent: rally-gh", *(f"{k}: {v}" for k, v in fields.items()), "```"])


def step_complete_fields(data: Mapping[str, Any]) -> dict[str, str]:
    teammates = data.get("teammates", [])
    not_done = [t for t in teammates if t.get("outcome") != "done"]
    validations = [f"{v['command']}: {'passed' if v['passed'] else 'failed'}" for v in data.get("verification", [])]
    validations.append(f"ownership: {plural(data.get('violations', []), 'violation')}")
    reason = "; ".join(f"{t['name']} {t['outcome']}{aside(t.get('reason') or '')}" for t in not_done)
    return {
        "Status": str(data.get("step_complete", "FAILED")),
        "Output": str(data["integration_branch"]) if data.get("integration_sha") else "none",
        "Validations": "; ".join(validations),
        "Next": str(data.get("next", "")),
        "Reason": reason or "every teammate done and integrated",
    }


def mermaid_dependencies(state: RunState) -> str:
    return mermaid_flowchart([(t.name, f"{t.name}: {t.outcome}", t.blocked_by) for t in state.teammates])


def mermaid_flowchart(teammates: Sequence[tuple[str, str, Sequence[str]]]) -> str:
    """``graph TD`` from (name, label, blocked_by) per teammate: an edge from each blocker to who waits for it
    (a blocker that is not listed, because it does not run, is no node)."""
    lines = ["graph TD"]
    for name, label, _ in teammates:
        lines.append(f'  {_node(name)}["{label.replace(chr(34), "#quot;")}"]')
    listed = {name for name, _, _ in teammates}
    for name, _, blocked_by in teammates:
        for blocker in blocked_by:
            if blocker in listed:
                lines.append(f"  {_node(blocker)} --> {_node(name)}")
    return "\n".join(lines) + "\n"


# Mermaid's gantt tags give six looks; each names what happened to the work, and the
# label's icon and word tell apart the outcomes that share one.
_GANTT_TAGS = {"done": "done", "no_changes": "", "incomplete": "active", "unverified": "active", "failed": "crit",
               "timed_out": "crit, active", "violated": "crit, done", "conflicted": "crit, done"}

# The timeline's axis, by the run's length: (the longest span it suits in seconds,
# the unit's length in seconds, the axis label's format, the tick steps in that unit).
# Mermaid formats ticks with d3 in the viewer's local time, so only the formats that
# count from the epoch are the same in every time zone: %Q (milliseconds) and %s
# (seconds). The chart's time therefore starts at 0, and a longer run is drawn with
# one chart second per minute or hour, labelled "min" or "h". Second steps divide 60
# (d3 aligns them within the minute), millisecond steps divide 1000.
_AXES: tuple[tuple[float, float, str, tuple[int, ...]], ...] = (
    (2.0, 0.001, "%Q ms", (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500)),
    (180.0, 1.0, "%s s", (1, 2, 5, 10, 15, 20, 30)),
    (3 * 3600.0, 60.0, "%s min", (1, 2, 5, 10, 15, 20, 30)),
    (float("inf"), 3600.0, "%s h", (1, 2, 5, 10, 15, 20, 30)),
)
_MAX_TICKS = 10


def timeline_axis(span_s: float) -> tuple[float, str, str]:
    """For a run of ``span_s`` seconds: the chart milliseconds per real second, the
    ``axisFormat`` and the ``tickInterval``, so that the axis has at most ten ticks."""
    for longest, unit_s, fmt, steps in _AXES:
        if span_s < longest:
            break
    in_units = span_s / unit_s
    step = next((s for s in steps if in_units / s <= _MAX_TICKS), steps[-1])
    if unit_s < 1:
        return 1000.0, fmt, f"{step}millisecond"
    return 1000.0 / unit_s, fmt, f"{step}second"


def mermaid_timeline(state: RunState) -> str:
    """A gantt chart of when each teammate ran, from the run's start."""
    ran = [t for t in state.teammates if t.started_at is not None]
    if not ran:
        return ""
    spans = []
    for t in ran:
        start = (t.started_at or 0.0) - state.started_at
        end = (t.finished_at or state.finished_at or t.started_at or 0.0) - state.started_at
        spans.append((t, start, max(start, end)))
    scale, fmt, tick = timeline_axis(max(end for _, _, end in spans) - min(start for _, start, _ in spans))
    # dateFormat x reads milliseconds from the epoch: the run starts at 0.
    lines = ["gantt", "  dateFormat x", f"  axisFormat {fmt}", f"  tickInterval {tick}", "  todayMarker off",
             "  section teammates"]
    for t, start, end in spans:
        begin = int(start * scale)
        tag = _GANTT_TAGS.get(t.outcome, "")
        lines.append(f"  {_gantt_label(t)} :{tag + ', ' if tag else ''}{_node(t.name)}, {begin}, "
                     f"{max(begin + 1, int(end * scale))}")
    return "\n".join(lines) + "\n"


def _gantt_label(t: TeammateRecord) -> str:
    # The icon first: a line that starts with a word such as click, section, title or
    # excludes is a gantt statement, not a bar, and a teammate may be named so.
    return f"{_ICON.get(t.outcome, '•')} {t.name} ({t.outcome})"


def _node(name: str) -> str:
    # Mermaid reads some bare words (end, graph) as keywords; a prefix avoids every one.
    return "t_" + name.replace("-", "_")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _dur(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"



# --- For the other renderers (the terminal's report and live table) ----------


def outcome_icon(outcome: str) -> str:
    return _ICON.get(outcome, "")


def duration_text(seconds: float) -> str:
    """``8.4s`` under a minute, else ``80m30s``: how every renderer writes a duration."""
    return _dur(seconds)
