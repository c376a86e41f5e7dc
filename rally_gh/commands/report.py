"""``rally-gh report``: the report of a run, from its run.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from rally_gh import git
from rally_gh.errors import EXIT_OK, UsageError
from rally_gh.report import report_json, report_markdown, step_complete_block
from rally_gh.state import check_ref_component, load_state


def run(cwd: Path, run_id: str, fmt: str, stdout: TextIO) -> int:
    repo = git.open_repo(cwd, allow_bare=True)
    state = load_state(git.common_dir(repo), check_ref_component(run_id, "run id"))
    if fmt == "json":
        stdout.write(json.dumps(report_json(state), indent=2) + "\n")
    elif fmt == "step-complete":
        stdout.write(step_complete_block(state) + "\n")
    elif fmt == "handoff":
        from rally_gh.handoff import nexus_handoff

        stdout.write(nexus_handoff(report_json(state)) + "\n")
    elif fmt == "md":
        stdout.write(report_markdown(state))
    else:
        raise UsageError(f"report --format {fmt} is not supported by this version of rally-gh",
                         hint="use md, json, step-complete or handoff")
    return EXIT_OK
