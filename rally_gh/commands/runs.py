"""``rally-gh runs``: the runs of this repository, newest first."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from rally_gh import git
from rally_gh.errors import EXIT_OK
from rally_gh.housekeeping import RunInfo, find_runs


def run(cwd: Path, stdout: TextIO, *, fmt: str = "text") -> int:
    runs = find_runs(git.open_repo(cwd, allow_bare=True))
    if fmt == "json":
        stdout.write(json.dumps([_as_json(r) for r in runs], indent=2) + "\n")
        return EXIT_OK
    if not runs:
        stdout.write("no runs yet: start one with `rally-gh run` (or try `rally-gh demo`)\n")
        return EXIT_OK
    rows = [("RUN", "STARTED (UTC)", "STATUS", "TEAMMATES", "INTEGRATION BRANCH")]
    rows += [(r.run_id, _when(r.started_at), r.status, _teammates(r), _integration(r)) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] + "\n")
    stdout.write("\n`rally-gh report --run RUN` shows a run; `rally-gh clean --dry-run` shows what cleaning would remove\n")
    return EXIT_OK


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _teammates(r: RunInfo) -> str:
    if r.state is None and not r.branches and r.attempts:
        return f"{len(r.attempts)} earlier attempt{'s' * (len(r.attempts) != 1)}"
    if r.state is None:
        return f"{len(r.branches)} branch{'es' * (len(r.branches) != 1)}"
    outcomes = Counter(t.outcome for t in r.state.teammates)
    n = len(r.state.teammates)
    detail = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items(), key=lambda kv: -kv[1]))
    return f"{n} ({detail})" if n else "0"


def _integration(r: RunInfo) -> str:
    branch = r.state.integration_branch if r.state is not None else None
    if branch is None or (r.state is not None and r.state.dry_run):
        return "-"  # a dry run makes no branch
    return branch if branch in r.branches else f"{branch} (deleted)"


def _as_json(r: RunInfo) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "started_at": None if r.started_at is None else datetime.fromtimestamp(r.started_at, tz=timezone.utc)
        .isoformat(timespec="seconds"),
        "status": r.status,
        "dry_run": r.state is not None and r.state.dry_run,
        "teammates": [] if r.state is None else [{"name": t.name, "outcome": t.outcome} for t in r.state.teammates],
        "integration_branch": r.state.integration_branch if r.state is not None else None,
        "branches": list(r.branches),
        "earlier_attempts": [str(p) for p in r.attempts],
    }
