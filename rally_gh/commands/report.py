"""``rally-gh report``: the report of a run, from its run.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from rich.console import Console

from rally_gh import git
from rally_gh.errors import EXIT_OK, UsageError
from rally_gh.housekeeping import latest_run
from rally_gh.report import build_report, report_markdown, step_complete_text
from rally_gh.report.text import print_report, write_report
from rally_gh.state import check_ref_component, load_state


def run(cwd: Path, stdout: TextIO, *, run_id: str | None = None, fmt: str | None = None) -> int:
    """The report of ``run_id``, or of the run started last when it is None. ``fmt`` None: drawn
    for a person at a terminal, Markdown for anything else."""
    repo = git.open_repo(cwd, allow_bare=True)
    run_id = latest_run(repo) if run_id is None else check_ref_component(run_id, "run id")
    report = build_report(load_state(git.common_dir(repo), run_id))
    if fmt is None:
        write_report(report, stdout)
    elif fmt == "text":
        print_report(report, Console(file=stdout))
    elif fmt == "json":
        stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    elif fmt == "step-complete":
        stdout.write(step_complete_text(report) + "\n")
    elif fmt == "handoff":
        from rally_gh.handoff import nexus_handoff

        stdout.write(nexus_handoff(report) + "\n")
    elif fmt == "md":
        stdout.write(report_markdown(report))
    else:
        raise UsageError(f"report --format {fmt} is not supported by this version of rally-gh",
                         hint="use text, md, json, step-complete or handoff")
    return EXIT_OK
