"""The report's diagrams in Mermaid: who waits for whom, and when each teammate ran.
``plan --format mermaid`` draws its waves with ``mermaid_flowchart`` too."""

from __future__ import annotations

from collections.abc import Sequence

from rally_gh.report.model import Report, TeammateReport

_ICON = {"done": "✅", "failed": "❌", "timed_out": "⏱️", "violated": "🚫", "unverified": "⚠️",
         "incomplete": "🟡", "no_changes": "➖", "skipped": "⏭️", "conflicted": "💥",
         "pending": "⏳", "running": "🏃"}


def outcome_icon(outcome: str) -> str:
    return _ICON.get(outcome, "")


def mermaid_dependencies(report: Report) -> str:
    return mermaid_flowchart([(t.name, f"{t.name}: {t.outcome}", t.blocked_by) for t in report.teammates])


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


def mermaid_timeline(report: Report) -> str:
    """A gantt chart of when each teammate ran, from the run's start."""
    spans = [(t, *t.ran) for t in report.teammates if t.ran is not None]
    if not spans:
        return ""
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


def _gantt_label(t: TeammateReport) -> str:
    # The icon first: a line that starts with a word such as click, section, title or
    # excludes is a gantt statement, not a bar, and a teammate may be named so.
    return f"{outcome_icon(t.outcome) or '•'} {t.name} ({t.outcome})"


def _node(name: str) -> str:
    # Mermaid reads some bare words (end, graph) as keywords; a prefix avoids every one.
    return "t_" + name.replace("-", "_")
