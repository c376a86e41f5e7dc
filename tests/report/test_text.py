"""The report drawn for a terminal (``--format text``, the default in one) and the live table."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from rally_gh import git
from rally_gh.commands import report as report_cmd
from rally_gh.progress import Progress
from rally_gh.report import build_report, report_markdown
from rally_gh.report.text import report_text
from rally_gh.state import RunState, VerifyResult, save_state
from rally_gh.testing import T0, init_repo, run_state, teammate_record

rec = teammate_record


def _state() -> RunState:
    return run_state(
        rec("api", "done", integrated=True, files_changed=("src/api/a.py",), cost_usd=0.5, role="Backend",
            started_at=T0 + 0.5, finished_at=T0 + 6.0, duration_s=5.5),
        rec("web", "timed_out", reason="stopped after 4.0s, twice its timeout (after 2 attempts)",
            blocked_by=("api",), started_at=T0 + 6.2, finished_at=T0 + 11.5, duration_s=5.3),
        rec("qa", "skipped", attempts=0, started_at=None, finished_at=None, reason="budget spent"),
        verification=(VerifyResult(command="pytest -q", passed=True, exit_code=0),),
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_terminal_report_shows_the_content_without_what_only_github_reads() -> None:
    state = _state()
    text = report_text(build_report(state), width=100)
    for hidden in ("<!--", "```", "mermaid", "graph TD", "gantt", "dateFormat", "_STEP_COMPLETE", "|---", "**Team**"):
        assert hidden not in text
    assert text.startswith("rally-gh run r1: Partial\n")
    # Every section of the Markdown, and every reason, is there.
    for heading in re.findall(r"^### (.+)$", report_markdown(build_report(state)), re.M):
        assert f"\n{heading}\n" in text
    assert "web (timed_out): stopped after 4.0s, twice its timeout (after 2 attempts)" in text
    assert "web waits for api" in text
    team = re.search(r"^  api .*$", text, re.M)
    assert team is not None and re.fullmatch(r"  api\s+Backend\s+✅ done\s+5.5s\s+\$0.50\s+1\s*", team.group())
    # The timeline: a bar per teammate that ran, on one scale, ending with the run's last finish.
    bars = [line for line in text.splitlines() if "━" in line and "╇" not in line]
    assert [re.findall(r"^(\S+) .* (\S+ to \S+)$", line)[0] for line in bars] == [
        ("api", "0.5s to 6.0s"), ("web", "6.2s to 11.5s")]
    api_bar, web_bar = bars
    assert api_bar.index("━") < web_bar.index("━") and api_bar.rindex("━") < web_bar.rindex("━")
    assert all(len(line) <= 100 for line in text.splitlines())


def test_text_from_the_map_is_shown_as_written_never_read_as_markup() -> None:
    state = run_state(rec("api", "done", role="fix [/] things [bold]now"))
    assert "fix [/] things [bold]now" in report_text(build_report(state), width=160)


def test_outcomes_have_their_colours() -> None:
    text = report_text(build_report(_state()), width=100, color=True)
    assert re.search(r"\x1b\[32m✅ done", text) and re.search(r"\x1b\[31m⏱️ timed_out", text)
    assert "\x1b[1;33mrally-gh run r1: Partial" in text


def test_report_draws_for_a_terminal_and_writes_markdown_elsewhere(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"a.txt": "a"})
    save_state(git.common_dir(git.open_repo(repo)), _state())
    piped, terminal, text = io.StringIO(), _Terminal(), io.StringIO()
    assert report_cmd.run(repo, piped, run_id="r1") == 0
    assert report_cmd.run(repo, terminal, run_id="r1") == 0
    assert report_cmd.run(repo, text, run_id="r1", fmt="text") == 0
    assert piped.getvalue() == report_markdown(build_report(_state()))  # as today, for GitHub and pipes
    assert "<!--" not in terminal.getvalue() and "Timeline" in terminal.getvalue()
    assert "```" not in text.getvalue() and "rally-gh run r1: Partial" in text.getvalue()


def _live_table(progress: Progress) -> str:
    out = io.StringIO()
    Console(file=out, width=120).print(progress._table())
    return out.getvalue()


def test_the_live_table_ends_with_the_reports_files_cost_and_durations(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"a.txt": "a"})
    common = git.common_dir(git.open_repo(repo))
    state = _state()
    save_state(common, state)
    with Progress(io.StringIO(), live=False, common_dir=common, run_id="r1") as progress:
        for event in (("api", "running", "attempt 1"), ("api", "finished", "done"), ("api", "reconciling", ""),
                      ("api", "done", ""), ("web", "running", "attempt 1"), ("web", "timed_out", "stopped"),
                      ("qa", "skipped", "budget spent"), ("", "phase", "publish")):
            progress.event(*event)
    table = _live_table(progress)
    assert "rally-gh: done in 12.0s" in table  # the report's wall time
    rows = {line.split()[1]: line for line in table.splitlines() if line.startswith("│ ") and "teammate" not in line}
    assert re.search(r"│ done\s+│\s+5\.5s │\s+1 │ \$0\.50 │", rows["api"])
    assert re.search(r"│ timed_out\s+│\s+5\.3s │\s+0 │ \$0\.00 │", rows["web"])
    assert re.search(r"│ skipped\s+│\s+│\s+0 │ \$0\.00 │ budget spent", rows["qa"])


def test_a_budget_stop_prints_each_skipped_teammate_once() -> None:
    out = io.StringIO()
    with Progress(out, live=False) as progress:
        # The scheduler reports the skip, then the orchestrator settles the same outcome.
        for name in ("c", "d"):
            progress.event(name, "queued", "")
            progress.event(name, "skipped", "the budget is spent (max_cost_usd 1)")
        for name in ("c", "d"):
            progress.event(name, "skipped", "the budget is spent (max_cost_usd 1)")
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["c: queued", "c: skipped: the budget is spent (max_cost_usd 1)",
                     "d: queued", "d: skipped: the budget is spent (max_cost_usd 1)"]
