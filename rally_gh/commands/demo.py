"""``rally-gh demo``: build the sample repository, run the team, print the report."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from rally_gh import git, process
from rally_gh.run import pipeline
from rally_gh.config import load_config_text
from rally_gh.demo import DEMO_RUN_ID, EXPECTED, INTRO, build_demo
from rally_gh.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from rally_gh.github.actions import ActionsContext
from rally_gh.progress import Progress, wants_live
from rally_gh.report import build_report
from rally_gh.report.text import write_report


def run(actions: ActionsContext, stdout: TextIO, *, keep: Path | None = None,
        progress_stream: TextIO | None = None) -> int:
    """Exit 0 when every scripted teammate got the outcome it was written for. ``keep``: build the
    sample repository there and keep it."""
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise UsageError(f"--keep {keep}: the folder is not empty", hint="name a new or empty folder")
    root = keep.resolve() if keep is not None else Path(tempfile.mkdtemp(prefix="rally-demo-")) / "tiny-shop"
    try:
        demo = build_demo(root)
        where = str(root) if keep is not None else f"{root} (removed at the end; keep it with --keep DIR)"
        stdout.write(INTRO + f"Sample repository: {where}\n\n")
        stdout.flush()
        stream = progress_stream if progress_stream is not None else sys.stderr
        progress = Progress(stream, wants_live(stream, actions.environ), common_dir=git.common_dir(git.open_repo(root)),
                            run_id=DEMO_RUN_ID)
        with progress:
            # The demo's agents are rally-gh's own scripts: without a sandbox here they run as they are.
            sandbox = process.sandbox_probe(actions.environ.get("PATH")).ok
            state = pipeline.run(root, load_config_text(demo.rally_yml, "rally.yml"), DEMO_RUN_ID, None,
                                 time.time, actions.environ, progress.event, sandbox=sandbox)
        stdout.write("\n")
        write_report(build_report(state), stdout, marker=False)
        if keep is not None:
            stdout.write(f"\nThe repository is kept in {root}: try `git -C {root} log --all --oneline --graph` "
                         f"and `rally-gh report --run {DEMO_RUN_ID}` there.\n")
        if state.status == "interrupted":
            return EXIT_INTERRUPTED
        outcomes = {t.name: t.outcome for t in state.teammates}
        if outcomes != EXPECTED:
            stdout.write(f"\nThe demo did not go as scripted: expected {EXPECTED}, got {outcomes}.\n")
            return EXIT_FAILED
        return EXIT_OK
    finally:
        if keep is None:
            shutil.rmtree(root.parent, ignore_errors=True)
