"""``rally-gh history``: the trend of past runs, and changes to the map it suggests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rally_gh import git
from rally_gh.config import Config, find_config, format_duration, load_config
from rally_gh.errors import EXIT_OK, ConfigError, GitError, UsageError
from rally_gh.history import (
    HISTORY_REF,
    MIN_RUNS_FOR_SUGGESTIONS,
    History,
    Record,
    Suggestion,
    apply_suggestion,
    read_history,
    suggestions,
)
from rally_gh.words import plural

SPARK = "▁▂▃▄▅▆▇█"
TABLE_ROWS = 20  # the latest runs; --format json has them all
SPARK_RUNS = 60


@dataclass(frozen=True)
class HistoryOptions:
    config_path: Path | None = None
    apply: int | None = None
    """Write suggestion N into rally.yml."""
    fmt: str = "text"
    """text or json."""


def run(cwd: Path, stdout: TextIO, *, options: HistoryOptions = HistoryOptions()) -> int:
    apply, fmt = options.apply, options.fmt
    repo = git.open_repo(cwd, allow_bare=apply is None)
    history = read_history(repo)
    config, path, why_not = _map(repo, options.config_path)
    found = suggestions(history.records, config) if config is not None else []
    if apply is not None:
        return _apply(found, apply, path, why_not, stdout)
    if fmt == "json":
        json.dump(history_json(history, found), stdout, indent=2)
        stdout.write("\n")
    else:
        write_text(history, found, config, why_not, stdout)
    return EXIT_OK


def _map(repo: git.Repository, config_path: Path | None) -> tuple[Config | None, Path | None, str]:
    """The map suggestions are made for; the history is still shown without one."""
    try:
        path = find_config(git.workdir(repo), config_path)
        return load_config(path).config, path, ""
    except (ConfigError, GitError) as err:
        return None, None, str(err).splitlines()[0]


def _apply(found: Sequence[Suggestion], number: int, path: Path | None, why_not: str, stdout: TextIO) -> int:
    if path is None:
        raise UsageError(f"history --apply needs the map: {why_not}")
    if not 1 <= number <= len(found):
        there = f"there are {len(found)}" if found else "there are none"
        raise UsageError(f"history --apply {number}: no such suggestion ({there})",
                         hint="run `rally-gh history` to see them, numbered")
    chosen = found[number - 1]
    apply_suggestion(path, chosen)
    stdout.write(f"{path}: {chosen.setting}: {chosen.current} -> {_written(chosen.value)}\n"
                 f"  because {chosen.why}\n")
    return EXIT_OK


def history_json(history: History, found: Sequence[Suggestion]) -> dict[str, Any]:
    return {
        "ref": HISTORY_REF,
        "tip": history.tip,
        "records": [r.model_dump(mode="json") for r in history.records],
        "unreadable": [{"path": p, "why": why} for p, why in history.unreadable],
        "suggestions": [
            {"number": n, "setting": s.setting, "current": s.current, "proposed": s.value, "why": s.why,
             "evidence": list(s.evidence)}
            for n, s in enumerate(found, 1)
        ],
    }


def write_text(history: History, found: Sequence[Suggestion], config: Config | None, why_not: str,
               stdout: TextIO) -> None:
    console = Console(file=stdout, width=None if stdout.isatty() else 120, highlight=False)
    for path, why in history.unreadable:
        console.print(f"warning: {HISTORY_REF}: {path} skipped ({why}); it is kept as it is",
                      markup=False, soft_wrap=True)
    records = history.records
    if not records:
        console.print(f"No runs recorded yet in {HISTORY_REF}: every finished run adds one.",
                      markup=False, soft_wrap=True)
        return
    teams = sorted({r.team for r in records})
    console.print(f"{plural(records, 'run')} of {', '.join(teams)} in {HISTORY_REF}", markup=False, soft_wrap=True)
    scores = [r.tes for r in records[-SPARK_RUNS:]]
    console.print(f"score {sparkline(scores)}  first {scores[0]}, last {scores[-1]}, best {max(scores)}",
                  markup=False, soft_wrap=True)
    console.print(_table(records[-TABLE_ROWS:], multi_team=len(teams) > 1))
    if config is None:
        console.print(f"No suggestions: {why_not}", markup=False, soft_wrap=True)
    elif not found:
        mine = sum(r.team == config.team for r in records)
        console.print("No suggestions: " + (
            f"{plural(mine, 'run')} of {config.team}; they start after {MIN_RUNS_FOR_SUGGESTIONS}"
            if mine < MIN_RUNS_FOR_SUGGESTIONS else "the map fits the recent runs"), markup=False, soft_wrap=True)
    else:
        console.print("Suggestions (`rally-gh history --apply N` writes one into rally.yml):",
                      markup=False, soft_wrap=True)
        for n, s in enumerate(found, 1):
            console.print(f"{n:>2}. {s.setting}: {s.current} -> {_written(s.value)}", markup=False, soft_wrap=True)
            console.print(f"    {s.why}", markup=False, soft_wrap=True)
            for line in s.evidence:
                console.print(f"      - {line}", markup=False, soft_wrap=True)


PARTS = ("parallel_efficiency", "task_economy", "conflict_prevention", "integration_quality", "autonomy")


def _table(records: Sequence[Record], multi_team: bool) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    # The five parts of the score in one column, in the order of their weights (30/20/20/20/10).
    columns = ["date", "run", *(["team"] if multi_team else []), "status", "size", "waves", "wall", "cost",
               "confl", "viol", "score", "par eco pre qua aut"]
    for name in columns:
        table.add_column(name, justify="left" if name in ("date", "run", "team", "status") else "right",
                         no_wrap=True)
    for r in records:
        when = datetime.fromtimestamp(r.recorded_at, tz=timezone.utc).strftime("%Y-%m-%d")
        parts = " ".join(f"{100 * r.tes_parts.get(k, 0.0):3.0f}" for k in PARTS)
        cells = [when, r.run_id, *([r.team] if multi_team else []), r.status, str(r.size), str(len(r.waves)),
                 format_duration(r.wall_s), f"${r.cost_usd:.2f}", str(r.conflicts), str(r.violations),
                 str(r.tes), parts]
        table.add_row(*(Text(c) for c in cells))  # Text: a team name with '[' is not markup
    return table


def sparkline(values: Sequence[float], low: float = 0, high: float = 100) -> str:
    """One block character per value, from ``low`` to ``high``."""
    span = (high - low) or 1
    return "".join(SPARK[min(len(SPARK) - 1, max(0, int((v - low) / span * len(SPARK))))] for v in values)


def _written(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
