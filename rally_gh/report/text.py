"""The report for a person at a terminal (``--format text``), drawn with rich.

The content is the Markdown report's (``report_markdown``), section by
section, so that the two never tell different stories. What only reads well on
GitHub is drawn for a terminal instead: the headline and the team table in
colour, the dependency graph as sentences and the timeline as bars instead of
Mermaid source, and neither the hidden marker nor the ``_STEP_COMPLETE`` block
(``report --format step-complete`` gives it).
"""

from __future__ import annotations

import io
import re
from typing import TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from rally_gh.report.markdown import duration_text, report_markdown
from rally_gh.report.mermaid import outcome_icon
from rally_gh.report.model import Report, TeammateReport

# An outcome's colour, wherever a terminal shows one (the report, the live table).
OUTCOME_STYLE = {"done": "green", "failed": "red", "timed_out": "red", "violated": "red", "conflicted": "red",
                 "unverified": "yellow", "incomplete": "yellow", "no_changes": "dim", "skipped": "dim",
                 "pending": "yellow", "running": "cyan"}
_STATUS_STYLE = {"done": "bold green", "partial": "bold yellow", "failed": "bold red"}
_STEP_COMPLETE = re.compile(r"^```\n_STEP_COMPLETE\n.*?^```\n?", re.M | re.S)
_BAR_WIDTH = 40


def print_report(report: Report, console: Console) -> None:
    console.print(report_renderable(report))


def report_text(report: Report, width: int = 100, *, color: bool = False) -> str:
    """The rendering as a string, ``width`` columns wide (with ANSI colours when ``color``)."""
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=color, color_system="standard" if color else None,
                      legacy_windows=False)
    print_report(report, console)
    return out.getvalue()


def write_report(report: Report, stream: TextIO, *, marker: bool = True) -> None:
    """The report on ``stream``: drawn for a person at a terminal, else the Markdown
    (with the hidden line that finds the run's comment, unless ``marker`` is false)."""
    if stream.isatty():
        print_report(report, Console(file=stream))
    else:
        stream.write(report_markdown(report, marker=marker))


def report_renderable(report: Report) -> RenderableType:
    head, sections = _sections(report_markdown(report, marker=False))
    parts: list[RenderableType] = [_headline(report, head[0]), _markdown(head[1:])]
    for title, body in sections:
        parts.append(Text(f"\n{title}", style="bold underline"))
        if title == "Team":
            parts += [_team(report), _markdown([line for line in body if not line.startswith("|")])]
        elif title == "Dependencies":
            parts.append(_dependencies(report))
        elif title == "Timeline":
            parts.append(_timeline(report))
        else:
            parts.append(_markdown(body))
    return Group(*parts)


def _sections(markdown: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The lines before the first ``###`` heading, and each section's title and lines."""
    head: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in _STEP_COMPLETE.sub("", markdown).splitlines():
        if line.startswith("### "):
            sections.append((line[4:].strip(), []))
        elif sections:
            sections[-1][1].append(line)
        else:
            head.append(line)
    return head, sections


def _markdown(lines: list[str]) -> RenderableType:
    text = "\n".join(lines).strip()
    return Markdown(text) if text else Text("")


def _headline(report: Report, title: str) -> Text:
    words = title.lstrip("#").strip().replace("`", "")
    return Text(words, style="bold yellow" if report.run_status == "waiting" else _STATUS_STYLE[report.status])


def _outcome(outcome: str) -> Text:
    return Text(f"{outcome_icon(outcome)} {outcome}".strip(), style=OUTCOME_STYLE.get(outcome, ""))


def _team(report: Report) -> Table:
    table = Table(box=box.SIMPLE, header_style="bold")  # as the Markdown's tables are drawn
    for column, justify in (("teammate", "left"), ("role", "left"), ("agent", "left"), ("outcome", "left"),
                            ("duration", "right"), ("cost", "right"), ("files", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for t in report.teammates:
        # Text, not markup: a role is free text from rally.yml ('fix [/] things' would not parse).
        table.add_row(Text(t.name), Text(t.role), Text(t.agent), _outcome(t.outcome), duration_text(t.duration_s), f"${t.cost_usd:.2f}",
                      str(len(t.files_changed)))
    return table


def _dependencies(report: Report) -> Text:
    waits = [f"{t.name} waits for {', '.join(t.blocked_by)}" for t in report.teammates if t.blocked_by]
    return Text("\n".join(waits) if waits else "No teammate waits for another: all could start at once.")


def _timeline(report: Report) -> RenderableType:
    """A bar per teammate that ran, on one scale from the run's start to the last finish."""
    ran = [(t, *t.ran) for t in report.teammates if t.ran is not None]
    if not ran:
        return Text("No teammate ran.")
    span = max(end for _, _, end in ran) or 1.0
    table = Table.grid(padding=(0, 1))
    table.add_column()
    table.add_column()
    table.add_column(justify="right")
    for t, start, end in ran:
        first = min(_BAR_WIDTH - 1, int(_BAR_WIDTH * start / span))
        last = max(first + 1, round(_BAR_WIDTH * end / span))
        bar = Text(" " * first)
        bar.append("━" * (last - first), style=OUTCOME_STYLE.get(t.outcome, ""))
        bar.append(" " * (_BAR_WIDTH - last))
        table.add_row(_team_name(t), bar, f"{duration_text(start)} to {duration_text(end)}")
    table.add_row("", Text(f"0{' ' * (_BAR_WIDTH - 1 - len(duration_text(span)))}{duration_text(span)}", style="dim"), "")
    return table


def _team_name(t: TeammateReport) -> Text:
    return Text(t.name, style=OUTCOME_STYLE.get(t.outcome, ""))
