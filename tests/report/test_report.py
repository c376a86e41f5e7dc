from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from rally_gh import git
from rally_gh.commands import report as report_cmd
from rally_gh.report import (
    TES_WEIGHTS,
    build_report,
    report_json,
    report_markdown,
    run_status,
    step_complete_text,
    team_efficiency,
)
from rally_gh.config import Location
from rally_gh.ownership.enforce import Violation
from rally_gh.state import Conflict, VerifyResult, VerifyRunRecord, save_state
from rally_gh.testing import init_repo, run_state, teammate_record

rec = teammate_record
finished = run_state


def test_a_perfect_run_scores_100_and_is_done() -> None:
    state = finished(rec("api", "done", integrated=True), rec("web", "done", integrated=True),
                     verification=(VerifyResult(command="pytest", passed=True, exit_code=0),))
    assert run_status(state) == "done"
    score = team_efficiency(state)
    assert score.total == 100 and set(score.parts.values()) == {1.0}
    assert "Status: SUCCESS" in step_complete_text(build_report(state))


def test_the_score_weighs_its_five_parts() -> None:
    # parallel: 15s busy over 10s wall x 2 used = 0.75; economy: 1 done / 3 attempts; prevention: 1 clean of 2;
    # quality: 1 of 2 verify commands; autonomy: a manual step -> 0.
    state = finished(
        rec("api", "done", integrated=True, attempts=2, duration_s=10.0),
        rec("web", "conflicted", duration_s=5.0),
        rec("docs", "skipped", attempts=0, started_at=None, finished_at=None),
        conflicts=(Conflict(teammate="web", paths=("a.py",)),),
        verification=(VerifyResult(command="a", passed=True), VerifyResult(command="b", passed=False)),
        manual_steps=("resolved a conflict by hand",),
    )
    score = team_efficiency(state)
    assert score.parts == pytest.approx({"parallel_efficiency": 0.75, "task_economy": 1 / 3,
                                         "conflict_prevention": 0.5, "integration_quality": 0.5, "autonomy": 0.0})
    assert score.total == round(100 * (0.3 * 0.75 + 0.2 / 3 + 0.2 * 0.5 + 0.2 * 0.5))
    assert run_status(state) == "partial"
    assert "Status: PARTIAL" in step_complete_text(build_report(state))


def test_a_teammate_that_merge_verify_dropped_lowers_integration_quality() -> None:
    # qa broke merge.verify; bisection dropped it and the final run, without qa, passed.
    state = finished(
        rec("api", "done", integrated=True), rec("qa", "unverified", reason="verify fails once qa's work is added"),
        verification=(VerifyResult(command="pytest -q", passed=True, exit_code=0),),
        verify_runs=(VerifyRunRecord(sha="1" * 40, teammates=("api", "qa"), passed=False),
                     VerifyRunRecord(sha="2" * 40, teammates=("api",), passed=True)),
    )
    score = team_efficiency(state)
    assert score.parts["integration_quality"] == 0.5 and score.total < 100
    part = report_json(state)["tes_breakdown"]["integration_quality"]
    assert part["value"] == 0.5 and part["weight"] == 0.2 and part["points"] == 10.0
    assert part["inputs"] == {"verified": ["api", "qa"], "failed": ["qa"], "dropped_by_merge_verify": ["qa"],
                              "merge_verify_commands": 1, "merge_verify_passed": 1}
    assert "merge.verify" in part["definition"]
    assert "| integration quality | 20% | 50 | 1 of 2 verified passed (qa dropped by merge.verify); " \
           "merge.verify 1 of 1 command passed |" in report_markdown(build_report(state))


def test_a_teammate_that_conflicted_once_a_culprit_was_dropped_is_not_counted_as_dropped_by_verify() -> None:
    state = finished(
        rec("api", "done", integrated=True), rec("qa", "unverified"), rec("web", "conflicted"),
        verification=(VerifyResult(command="pytest -q", passed=True, exit_code=0),),
        verify_runs=(VerifyRunRecord(sha="1" * 40, teammates=("api", "qa", "web"), passed=False, blamed=("qa",)),
                     VerifyRunRecord(sha="2" * 40, teammates=("api",), passed=True)),
    )
    inputs = report_json(state)["tes_breakdown"]["integration_quality"]["inputs"]
    assert (inputs["verified"], inputs["dropped_by_merge_verify"]) == (["api", "qa"], ["qa"])
    assert team_efficiency(state).parts["integration_quality"] == 0.5


def test_a_teammate_whose_own_verify_failed_lowers_integration_quality() -> None:
    state = finished(rec("api", "done", integrated=True, verify=(VerifyResult(command="t", passed=True),)),
                     rec("web", "unverified", verify=(VerifyResult(command="t", passed=False, exit_code=1),)))
    assert team_efficiency(state).parts["integration_quality"] == 0.5


def test_every_part_of_the_score_says_what_it_measured() -> None:
    state = finished(rec("api", "done", integrated=True, attempts=2), rec("web", "conflicted"),
                     manual_steps=("resolved a conflict by hand",))
    data = report_json(state)
    assert list(data["tes_breakdown"]) == list(data["tes_parts"]) == [name for name, _ in TES_WEIGHTS]
    assert data["tes_breakdown"]["task_economy"]["inputs"] == {"done": 1, "attempts": 3}
    assert data["tes_breakdown"]["conflict_prevention"]["inputs"]["conflicted"] == ["web"]
    assert sum(p["points"] for p in data["tes_breakdown"].values()) == pytest.approx(data["tes"], abs=0.5)
    text = report_markdown(build_report(state))
    assert "| task economy | 20% | 33 | 1 done in 3 attempts |" in text
    assert "1 of 2 offered clean (web not)" in text and "1 manual step: resolved a conflict by hand" in text


def test_nothing_integrated_is_a_failure() -> None:
    state = finished(rec("api", "failed", reason="exit 1"), rec("web", "timed_out"), integration_sha=None)
    assert run_status(state) == "failed"
    assert "Status: FAILED" in step_complete_text(build_report(state))
    assert report_json(state)["risks"] == ["api failed: exit 1", "web timed out: no reason recorded"]


def test_the_json_holds_every_key_of_the_spec() -> None:
    violation = Violation(teammate="web", path="README.md", owner=None, kind="modified", commit="e" * 40,
                          reason="web modified it, but it is owned by nobody")
    state = finished(rec("api", "done", integrated=True, files_changed=("src/api/a.py",), cost_usd=0.5),
                     rec("web", "violated", violations=(violation,)))
    data = json.loads(json.dumps(report_json(state)))
    assert {"run_id", "status", "base_sha", "integration_branch", "integration_sha", "teammates", "violations",
            "conflicts", "convergence", "verification", "phases", "tes"} <= set(data)
    assert {"name", "outcome", "branch", "head_sha", "files_changed", "duration_s", "cost_usd", "attempts",
            "reason"} <= set(data["teammates"][0])
    assert data["violations"] == [{"teammate": "web", "path": "README.md", "owner": None, "kind": "modified",
                                   "commit": "e" * 40, "reason": "web modified it, but it is owned by nobody",
                                   "rule": None}]
    assert list(data["phases"]) == ["assess", "plan", "spawn", "run", "reconcile", "integrate", "verify",
                                    "publish", "cleanup"]


def test_the_markdown_has_every_section() -> None:
    state = finished(rec("api", "done", integrated=True, files_changed=("src/api/a.py",)),
                     rec("web", "incomplete", reason="done_when not met", blocked_by=("api",)),
                     risks=("api may write the control file CODEOWNERS",))
    text = report_markdown(build_report(state))
    for heading in ("## rally-gh run `r1`: Partial", "### Team", "### Efficiency", "### Ownership map",
                    "### Dependencies", "### Timeline", "### Changed files", "### Verification", "### Conflicts",
                    "### Violations", "### Risks", "### Next step", "_STEP_COMPLETE"):
        assert heading in text
    assert "  t_api --> t_web" in text and "tasks** 1/2 done" in text
    assert "control file CODEOWNERS" in text and "<!-- rally-gh:run:r1 -->" in text
    for line in ("Agent: rally-gh", "Status: PARTIAL", "Output: rally/r1/_integration", "Validations:", "Next:",
                 "Reason: web incomplete (done_when not met)"):
        assert line in text


def test_a_violation_says_why_and_which_rule_owns_the_path_in_markdown_and_json() -> None:
    # What enforce found reaches the report whole: the PR can say "rule at rally.yml:12:5".
    bad = Violation(teammate="api", path="src/web/app.js", owner="web", kind="modified", commit="e" * 40,
                    reason="api modified it, but it is owned by web", rule=Location("rally.yml", 12, 5))
    state = finished(rec("api", "violated", violations=(bad,)), rec("web", "done"))
    text = report_markdown(build_report(state))
    assert "| teammate | path | owner | kind | commit | reason | rule |" in text
    assert ("| api | `src/web/app.js` | web | modified | `eeeeeeeeee` | api modified it, but it is owned by web "
            "| `rally.yml:12:5` |") in text
    [violation] = json.loads(json.dumps(report_json(state)))["violations"]
    assert (violation["reason"], violation["rule"]) == ("api modified it, but it is owned by web", "rally.yml:12:5")


def test_the_step_complete_block_counts_in_words_and_never_doubles_a_parenthesis() -> None:
    one = Violation(teammate="web", path="README.md", owner=None, kind="modified", commit="e" * 40)
    state = finished(rec("api", "timed_out", reason="stopped after 4.0s, twice its timeout (after 2 attempts)"),
                     rec("web", "violated", violations=(one,)))
    block = step_complete_text(build_report(state))
    assert "ownership: 1 violation\n" in block
    assert "(s)" not in block and "))" not in block
    assert "Reason: api timed_out: stopped after 4.0s, twice its timeout (after 2 attempts); web violated" in block


def test_the_step_complete_reason_names_what_is_missing_whenever_the_run_is_not_done() -> None:
    left_out = finished(rec("api", "done", integrated=True), rec("web", "done", reason="held back by hand"))
    assert "Reason: web done, not integrated (held back by hand)\n" in step_complete_text(build_report(left_out))
    assert "- **web** (done): held back by hand" in report_markdown(build_report(left_out))
    unverified = finished(rec("api", "done", integrated=True), rec("web", "done", integrated=True),
                          verification=(VerifyResult(command="pytest", passed=False, exit_code=1),))
    assert run_status(unverified) == "partial"
    block = step_complete_text(build_report(unverified))
    assert "Reason: every teammate integrated, but the integration did not pass verification\n" in block
    assert "Reason: every teammate done and integrated" in step_complete_text(build_report(
        finished(rec("api", "done", integrated=True), rec("web", "done", integrated=True))))


def test_the_next_step_speaks_of_one_teammate_as_one() -> None:
    one = finished(rec("api", "done", integrated=True), rec("web", "failed"))
    assert "web did not make it: inspect its branch (`git log rally/r1/web`), then rerun it in a new run" \
        in report_json(one)["next"]
    two = finished(rec("api", "done", integrated=True), rec("web", "failed"), rec("qa", "failed"))
    assert "web, qa did not make it: inspect their branches" in report_json(two)["next"]
    split = finished(rec("api", "done", integrated=True), rec("web", "skipped"), split=True)
    assert report_json(split)["next"].endswith(
        "(`git log rally/r1/web`), then re-run its job, then the merge and publish jobs")


def test_an_interrupted_run_says_how_to_resume() -> None:
    state = finished(rec("api", "done"), rec("web", "pending"), status="interrupted", integration_sha=None)
    assert "rally-gh run --resume r1" in report_json(state)["next"]
    assert "Status: BLOCKED" in step_complete_text(build_report(state))


def test_the_report_command_reads_run_json(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"a.txt": "a"})
    state = finished(rec("api", "done", integrated=True), rec("web", "done", integrated=True))
    save_state(git.common_dir(git.open_repo(repo)), state)
    for fmt, expected in (("md", "### Team"), ("json", '"run_id": "r1"'), ("step-complete", "Status: SUCCESS")):
        out = io.StringIO()
        assert report_cmd.run(repo, out, run_id="r1", fmt=fmt) == 0
        assert expected in out.getvalue()


def test_a_failing_verify_shows_its_last_lines_fenced_whatever_they_hold() -> None:
    tricky = "\n".join(f"line {i}" for i in range(30)) + "\n```not the end```\n" + "x" * 1000
    state = finished(
        rec("api", "unverified", verify=(VerifyResult(command="pytest", passed=False, exit_code=1,
                                                      output_tail=tricky, log="verify/01-api.log"),)),
        rec("web", "unverified", verify=(VerifyResult(command="make", passed=False),)))
    text = report_markdown(build_report(state))
    assert "**api**: `pytest` failed. The last lines (all of it in `.git/rally/runs/r1/verify/01-api.log`):" in text
    block = text.split("verify/01-api.log`):\n\n", 1)[1]
    assert block.startswith("````text\nline 12\n") and "line 11" not in block
    assert "```not the end```\n" + "x" * 300 + "\n````\n" in block  # a longer fence; a long line cut
    assert "**web**: `make` failed, with no output." in text


def test_names_someone_else_chose_never_become_markdown_in_the_report() -> None:
    """File names are the agents' choice and the report is a pull request's body: a backtick in a
    path cannot end its code span, and a reason or failure signature holding one cannot start a
    link or an image."""
    evil = "src/a`![x](https://e.example/t.png)`b.py"
    state = finished(
        rec("api", "violated", reason=f"wrote 1 path it does not own: {evil}", files_changed=(evil,),
            violations=(Violation(teammate="api", path=evil, owner="web", kind="add", commit="c" * 40,
                                  reason="owned by web"),)),
        rec("web", "done", integrated=True))
    text = report_markdown(build_report(state))
    # What GitHub renders as Markdown: outside fenced blocks (the _STEP_COMPLETE block) and code spans.
    outside_code = re.sub(r"``.*?``", "", re.sub(r"(?ms)^```.*?^```$", "", text))
    assert "![x](" not in outside_code.replace("\\!\\[x\\]\\(", "")  # only ever escaped there
    assert "``src/a`![x](https://e.example/t.png)`b.py``" in text  # changed files and the violation's path
    assert f"wrote 1 path it does not own: src/a\\`\\!\\[x\\]\\(https://e.example/t.png\\)\\`b.py" in text
