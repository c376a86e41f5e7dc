"""What a person watching a run sees: a live table in a terminal, log lines elsewhere.

Both take the orchestrator's events ``(teammate, state, detail)``; a teammate
of ``""`` is the run itself (``phase`` events).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rally_gh.errors import RallyError
from rally_gh.report import duration_text
from rally_gh.report.text import OUTCOME_STYLE
from rally_gh.state import RunState, TeammateRecord, load_state
from rally_gh.words import aside

# The outcomes' colours, as in the report, and those of the states only a live table shows.
_STYLE = {**OUTCOME_STYLE, "spawning": "cyan", "reconciling": "cyan", "retrying": "yellow", "queued": "dim"}


def wants_live(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """A live table only for a person at a terminal; CI logs get one line per event."""
    return stream.isatty() and environ.get("CI", "").lower() not in ("true", "1") and environ.get("TERM") != "dumb"


@dataclass
class _Row:
    state: str = "queued"
    detail: str = ""
    started: float | None = None
    ended: float | None = None
    said: tuple[str, str] | None = None  # the last (state, detail) shown: the same event twice is shown once


@dataclass
class Progress:
    """Pass ``progress.event`` as the run's ``on_event``; use as a context manager."""

    stream: TextIO
    live: bool
    # Files changed and cost come from the saved run state (rewritten at every step),
    # so the orchestrator needs no extra events for them.
    common_dir: Path | None = None
    run_id: str | None = None
    rows: dict[str, _Row] = field(default_factory=dict)
    phase: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _live: Live | None = None
    _started: float = field(default_factory=time.monotonic)

    def __enter__(self) -> Progress:
        if self.live:
            console = Console(file=self.stream)
            self._live = Live(self._table(), console=console, refresh_per_second=4, transient=False,
                              get_renderable=self._table)
            self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        with self._lock:
            self.phase = "done" if kind is None else "stopped"
        if self._live is not None:
            self._live.__exit__(kind, err, tb)
            self._live = None

    def event(self, name: str, state: str, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            if not name:
                self.phase = detail
            else:
                row = self.rows.setdefault(name, _Row())
                if state in ("spawning", "running") and row.started is None:
                    row.started = now
                if (state in _FINAL or state == "finished") and row.ended is None:
                    row.ended = now
                if state == "finished":  # the orchestrator's reconciled outcome follows
                    return
                row.state, row.detail = state, detail
                if row.said == (state, detail):  # the scheduler and the orchestrator both report a skip
                    return
                row.said = (state, detail)
        if not self.live:
            what = f"{name}: {state}{aside(detail)}" if name else f"-- {detail}"
            text = f"[{now - self._started:6.1f}s] {what}"
            self.stream.write(text + "\n")
            self.stream.flush()

    def _table(self) -> Table:
        saved = self._saved()
        title = f"rally-gh: {self.phase or 'starting'}"
        if self.phase == "done" and saved is not None and saved.finished_at is not None:
            title += f" in {duration_text(saved.finished_at - saved.started_at)}"  # the report's wall time
        table = Table(title=title, title_justify="left", expand=False)
        for column, justify in (("teammate", "left"), ("state", "left"), ("elapsed", "right"), ("files", "right"),
                                ("cost", "right"), ("detail", "left")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        now = time.monotonic()
        with self._lock:
            for name, row in self.rows.items():
                elapsed = "" if row.started is None else duration_text((row.ended or now) - row.started)
                files, cost = "", ""
                record = _record(saved, name)
                if record is not None:
                    files, cost = str(len(record.files_changed)), f"${record.cost_usd:.2f}"
                    if record.finished_at is not None and record.attempts:
                        elapsed = duration_text(record.duration_s)  # what the report says
                table.add_row(Text(name), Text(row.state, style=_STYLE.get(row.state, "")), elapsed, files, cost,
                              Text(row.detail[:60]))
        return table

    def _saved(self) -> RunState | None:
        if self.common_dir is None or self.run_id is None:
            return None
        try:
            return load_state(self.common_dir, self.run_id)
        except (RallyError, OSError):
            return None


def _record(saved: RunState | None, name: str) -> TeammateRecord | None:
    if saved is None:
        return None
    try:
        return saved.teammate(name)
    except KeyError:
        return None


_FINAL = frozenset({"done", "failed", "timed_out", "violated", "unverified", "incomplete", "no_changes", "skipped",
                    "conflicted"})
