"""The report in Markdown: the pull request's body, the job summary, ``report --format md``,
and the ``_STEP_COMPLETE`` block for agent pipelines; all drawn from one ``Report``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rally_gh.report.mermaid import mermaid_dependencies, mermaid_timeline, outcome_icon
from rally_gh.report.model import Report
from rally_gh.words import aside, code_fence, plural

_STATUS_WORD = {"done": "Done", "partial": "Partial", "failed": "Failed"}


def report_markdown(report: Report, *, marker: bool = True) -> str:
    """The report; ``marker`` starts it with the hidden line that finds the run's GitHub comment again."""
    out: list[str] = [f"<!-- rally-gh:run:{report.run_id} -->"] if marker else []
    out += _headline(report)
    for title, section in _SECTIONS:
        body = section(report)
        if body:
            out += ["", f"### {title}", "", *body]
    out += ["", step_complete_text(report)]
    return "\n".join(out) + "\n"


def _headline(report: Report) -> list[str]:
    word = "Waiting for approval" if report.run_status == "waiting" else _STATUS_WORD[report.status]
    title = f"## rally-gh run `{report.run_id}`: {word}"
    if report.run_status == "interrupted":
        title += " (interrupted)"
    if report.dry_run:
        title += " (dry run)"
    summary = (f"**Team** {report.team} · **tasks** {report.tasks.done}/{report.tasks.total} done · "
               f"**team efficiency** {report.tes}/100 · **wall** {duration_text(report.wall_s)} · "
               f"**cost** ${report.cost_usd:.2f}")
    base = f"from `{report.base_ref}` @ `{report.base_sha[:10]}`"
    if report.integrated_onto and report.integrated_onto != report.base_sha:
        base = (f"onto `{report.base_ref}` @ `{report.integrated_onto[:10]}`, where `{report.base_ref}` moved "
                f"during the run; started from `{report.base_sha[:10]}`")
    if report.integration_sha:
        where = (f"Integration branch `{report.integration_branch}` @ `{report.integration_sha[:10]}` "
                 f"({base}), holding {', '.join(report.integrated) or 'nothing'}.")
    else:
        where = f"No integration branch ({base})."
    return [title, "", summary, "", where, *_issue_text(report)]


def _issue_text(report: Report) -> list[str]:
    """Which text of the issue the run used, and a warning when the issue changed after it was labelled."""
    origin = report.issue_origin
    if origin is None:
        return []
    if origin.source == "issue":
        return ["", f"Issue text: #{origin.number} as GitHub had it when the run was admitted."]
    when = f" (at {_stamp(origin.labelled_at)})" if origin.labelled_at else ""
    lines = ["", f"Issue text: #{origin.number} as it was when `rally:parallel` was added{when}, "
                 "from the label's event."]
    if origin.edited_at:
        lines += ["", f"> [!WARNING]\n> #{origin.number} was edited after `rally:parallel` was added "
                      f"(last at {_stamp(origin.edited_at)}): this run did not see the edit. Add the label again "
                      "to run with the issue as it is now."]
    return lines


def _stamp(text: str) -> str:
    """A timestamp as GitHub wrote it, shown as code (it came from an event or the API, not from us)."""
    return "`" + text.replace("`", "'")[:40] + "`"


def _team(report: Report) -> list[str]:
    out = ["| teammate | role | agent | outcome | duration | cost | files changed |", "|---|---|---|---|---|---|---|"]
    out += [f"| {t.name} | {_cell(t.role)} | {t.agent} | {outcome_icon(t.outcome)} {t.outcome} | "
            f"{duration_text(t.duration_s)} | ${t.cost_usd:.2f} | {len(t.files_changed)} |" for t in report.teammates]
    reasons = [t for t in report.teammates
               if t.reason and (t.outcome != "done" or (report.integration_sha and not t.integrated))]
    if reasons:
        out += ["", *(f"- **{t.name}** ({t.outcome}): {_plain(t.reason)}" for t in reasons)]
    return out


def _efficiency(report: Report) -> list[str]:
    out = ["| part | weight | score | measured |", "|---|---|---|---|"]
    out += [f"| {name.replace('_', ' ')} | {int(part.weight * 100)}% | {part.value * 100:.0f} | "
            f"{_cell(tes_measured(name, part.inputs))} |" for name, part in report.tes_breakdown.items()]
    return [*out, f"| **total** | | **{report.tes}** | |"]


def _ownership_map(report: Report) -> list[str]:
    return ["| teammate | owns |", "|---|---|",
            *(f"| {t.name} | {', '.join(f'`{p}`' for p in t.owns)} |" for t in report.teammates)]


def _dependencies(report: Report) -> list[str]:
    return ["```mermaid", mermaid_dependencies(report).rstrip(), "```"]


def _timeline(report: Report) -> list[str]:
    timeline = mermaid_timeline(report)
    return ["```mermaid", timeline.rstrip(), "```"] if timeline else []


def _changed_files(report: Report) -> list[str]:
    out = []
    for t in report.teammates:
        if t.files_changed:
            shown = ", ".join(_code(f) for f in t.files_changed[:20])
            more = f" and {len(t.files_changed) - 20} more" if len(t.files_changed) > 20 else ""
            out.append(f"- **{t.name}** (`{t.branch}`): {shown}{more}")
    return out or ["None."]


def _verification(report: Report) -> list[str]:
    rows = [(t.name, v) for t in report.teammates for v in t.verify] + [("integration", v) for v in report.verification]
    out = ["| where | command | result |", "|---|---|---|"] if rows else ["No verification commands in the map."]
    for where, v in rows:
        failed = f"failed (exit {v.exit_code})" if v.exit_code is not None else "failed (timed out or not started)"
        out.append(f"| {where} | `{_cell(v.command)}` | {'passed' if v.passed else failed} |")
    if len(report.verify_runs) > 1:
        out += ["", f"merge.verify ran {len(report.verify_runs)} times to find whose work breaks it:", ""]
        out += [f"- `{r.sha[:10]}` ({', '.join(r.teammates) or 'the base'}): {'passed' if r.passed else 'failed'}"
                for r in report.verify_runs]
    return out + _verify_failures(report)


def _conflicts(report: Report) -> list[str]:
    return [f"- **{c.teammate}**" + (f" (commit `{c.commit[:10]}`)" if c.commit else "")
            + f": {_plain(c.describe(report.base_ref))} ({c.action})" for c in report.conflicts] or ["None."]


def _violations(report: Report) -> list[str]:
    if not report.violations:
        return ["None: every teammate wrote only what it owns."]
    out = ["| teammate | path | owner | kind | commit | reason | rule |", "|---|---|---|---|---|---|---|"]
    for bad in report.violations:
        rule = f"`{_cell(str(bad.rule))}`" if bad.rule else "none"
        out.append(f"| {bad.teammate} | {_cell(_code(bad.path))} | {bad.owner or 'nobody'} | {bad.kind} | "
                   f"`{(bad.commit or '')[:10]}` | {_cell(_plain(bad.reason))} | {rule} |")
    return out


def _shared_blockers(report: Report) -> list[str]:
    return [f"- {', '.join(g.teammates)} failed the same way: {_plain(g.signature)}" for g in report.convergence]


def _risks(report: Report) -> list[str]:
    risks = [*report.risks, *(f"plan: {p}" for p in report.problems)]
    return [f"- {r}" for r in risks] or ["None noted."]


def _plans(report: Report) -> list[str]:
    """The plans of the teammates in plan mode, while the run waits: the agent's text, shown as text
    in a fence it cannot close, never as Markdown."""
    out: list[str] = []
    for t in report.teammates:
        if t.plan and report.run_status == "waiting":
            lines = t.plan.splitlines()
            fence = code_fence("\n".join(lines))
            out += [*([""] if out else []), f"**{t.name}**:", "", f"{fence}text", *lines, fence]
    return out


def _next_step(report: Report) -> list[str]:
    return [report.next]


# The report's sections, in order; one whose body is empty is left out.
_SECTIONS: tuple[tuple[str, Callable[[Report], list[str]]], ...] = (
    ("Team", _team), ("Plans, waiting for approval", _plans), ("Efficiency", _efficiency), ("Ownership map", _ownership_map),
    ("Dependencies", _dependencies), ("Timeline", _timeline), ("Changed files", _changed_files),
    ("Verification", _verification), ("Conflicts", _conflicts), ("Violations", _violations),
    ("Shared blockers", _shared_blockers), ("Risks", _risks), ("Next step", _next_step),
)


VERIFY_TAIL_LINES = 20
_TAIL_LINE_CHARS = 300


def _verify_failures(report: Report) -> list[str]:
    """The last lines of every failing verify that decided an outcome: each teammate's own,
    the merge.verify run that dropped a teammate, and the final integration's."""
    failures = [(f"**{t.name}**: `{v.command}` failed", v) for t in report.teammates for v in t.verify if not v.passed]
    for r in report.verify_runs:
        for name in r.blamed:
            failures += [(f"**{name}** dropped from the integration: merge.verify `{v.command}` failed on "
                          f"`{r.sha[:10]}`, holding the work of {', '.join(r.teammates)}", v)
                         for v in r.commands if not v.passed]
    failures += [(f"**integration**: merge.verify `{v.command}` failed", v) for v in report.verification if not v.passed]
    out: list[str] = []
    for title, v in failures:
        lines = [line[:_TAIL_LINE_CHARS] for line in v.output_tail.splitlines()[-VERIFY_TAIL_LINES:]]
        where = f" (all of it in `.git/rally/runs/{report.run_id}/{v.log}`)" if v.log else ""
        if not lines:
            out += ["", f"{title}, with no output{where}."]
            continue
        fence = code_fence("\n".join(lines))
        out += ["", f"{title}. The last lines{where}:", "", f"{fence}text", *lines, fence]
    return out


def step_complete_text(report: Report) -> str:
    """The ``_STEP_COMPLETE`` block for agent pipelines."""
    fields = step_complete_fields(report)
    return "\n".join(["```", "_STEP_COMPLETE", "Agent: rally-gh", *(f"{k}: {v}" for k, v in fields.items()), "```"])


def step_complete_fields(report: Report) -> dict[str, str]:
    left = [t for t in report.teammates if t.outcome != "done" or (report.integration_sha and not t.integrated)]
    validations = [f"{v.command}: {'passed' if v.passed else 'failed'}" for v in report.verification]
    validations.append(f"ownership: {plural(report.violations, 'violation')}")
    reason = "; ".join(f"{t.name} {t.outcome}{', not integrated' if t.outcome == 'done' else ''}{aside(t.reason)}"
                       for t in left)
    if not reason and report.status != "done" and report.integration_sha:
        reason = "every teammate integrated, but the integration did not pass verification"
    return {
        "Status": report.step_complete,
        "Output": str(report.integration_branch) if report.integration_sha else "none",
        "Validations": "; ".join(validations),
        "Next": report.next,
        "Reason": reason or "every teammate done and integrated",
    }


def tes_measured(part: str, inputs: dict[str, Any]) -> str:
    """One line saying what a part of the score was computed from."""
    if part == "parallel_efficiency":
        return (f"{duration_text(inputs['busy_s'])} of teammate work in {duration_text(inputs['run_wall_s'])} "
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


def _code(text: str) -> str:
    """``text`` as inline code that it cannot end early: fenced by one backtick more than its
    longest run of them (a file name is anyone's choice, and the report reaches a pull request)."""
    text = " ".join(text.splitlines())
    fence = code_fence(text, least=1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#+!~])")


def _plain(text: str) -> str:
    """Text that holds names someone else chose (paths, in a reason), shown as it reads and never
    as Markdown: no link, image, emphasis or code span can start in it."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(text.splitlines()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def duration_text(seconds: float) -> str:
    """``8.4s`` under a minute, else ``80m30s``: how every renderer writes a duration."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"
