from __future__ import annotations

import difflib
import io
import json
import threading
from pathlib import Path

import pytest

from rally_gh import git
from rally_gh.commands import history as history_cmd
from rally_gh.commands.history import HistoryOptions
from rally_gh.config import Config, load_config_text
from rally_gh.errors import UsageError
from rally_gh.history import (
    HISTORY_REF,
    HistoryError,
    Record,
    Suggestion,
    TeammateRun,
    append_record,
    append_records,
    apply_suggestion,
    history_refspec,
    load_history,
    read_history,
    record_path,
    record_run,
    suggestions,
)
from rally_gh.report import build_report
from rally_gh.state import RunState, TeammateRecord
from rally_gh.testing import git as run_git
from rally_gh.testing import init_repo

MAP = """\
# The ownership map of the shop team.
version: 1
team: shop          # shown in reports
max_parallel: 2     # two runners for now
defaults:
  timeout: 20m
budget: {max_cost_usd: 25, max_minutes: 90}
merge:
  verify: ["pytest -q"]   # the whole suite
teammates:
  # Backend first.
  - name: api
    role: Backend
    task: |
      Implement the /orders endpoint.
    exclusive_write: [src/api/**, "!src/api/generated/**"]
    agent: {preset: command, command: ["true"]}
  - name: web
    exclusive_write:
      - src/web/**   # the whole client
    agent: {preset: command, command: ["true"]}
  - name: docs
    exclusive_write: [docs/]
    agent: {preset: command, command: ["true"]}
"""

DAY = 86_400.0
T0 = 1_780_000_000.0  # 2026-05-28


@pytest.fixture()
def repo_path(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", {"rally.yml": MAP, "README.md": "shop\n"})


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config_text(MAP).config


def record(run_id: str, at: float, *teammates: TeammateRun, **extra: object) -> Record:
    fields: dict[str, object] = {"run_id": run_id, "team": "shop", "recorded_at": at, "status": "done",
                                 "size": len(teammates), "waves": (tuple(t.name for t in teammates),),
                                 "max_parallel": 2, "wall_s": 600.0, "cost_usd": 4.0, "tes": 80,
                                 "tes_parts": {"parallel_efficiency": 0.8}, "teammates": teammates}
    fields.update(extra)
    return Record.model_validate(fields)


def mate(name: str, outcome: str = "done", duration: float = 600.0, timeout: float = 1200.0,
         **extra: object) -> TeammateRun:
    return TeammateRun.model_validate({"name": name, "outcome": outcome, "duration_s": duration,
                                       "timeout_s": timeout, "attempts": 1, **extra})


# --- Storage -----------------------------------------------------------------


def test_records_are_appended_under_the_ref_without_touching_work_tree_or_index(repo_path: Path,
                                                                                 config: Config) -> None:
    repo = git.open_repo(repo_path)
    head = run_git(repo_path, "rev-parse", "HEAD")
    index_before = (repo_path / ".git" / "index").read_bytes()
    state = RunState.model_validate({
        "run_id": "issue-7-1", "team": "shop", "base_ref": "main", "base_sha": "b" * 40, "config_digest": "d",
        "started_at": T0, "finished_at": T0 + 700, "status": "finished", "max_parallel": 2,
        "phases": {"run": 600.0}, "integration_branch": "rally/issue-7-1/_integration", "integration_sha": "c" * 40,
        "integrated": ("api",),
        "teammates": (
            TeammateRecord(name="api", branch="b", outcome="done", attempts=1, duration_s=500, cost_usd=1.5,
                           integrated=True),
            TeammateRecord(name="web", branch="b", outcome="timed_out", attempts=2, duration_s=2400, cost_usd=2.0,
                           reason="stopped after 40m"),
        ),
    })
    report = build_report(state)
    written = record_run(repo, report, config, clock=lambda: T0 + 800)
    assert written is not None
    assert written.size == 2 and written.max_parallel == 2 and written.waves == (("api", "web"),)
    assert written.cost_usd == 3.5 and written.tes == report.tes and written.tes_parts == report.tes_parts
    assert [(t.name, t.outcome, t.timeout_s) for t in written.teammates] == [("api", "done", 1200.0),
                                                                           ("web", "timed_out", 1200.0)]
    assert written.budget_cost_usd == 25 and written.budget_minutes == 90
    assert load_history(repo) == [written]
    files = run_git(repo_path, "ls-tree", "-r", "--name-only", HISTORY_REF).split()
    assert files == ["rally-history.json", "runs/2026/05/issue-7-1.json"] == ["rally-history.json",
                                                                             record_path(written)]
    # Nothing a user sees moved.
    assert run_git(repo_path, "rev-parse", "HEAD") == head
    assert (repo_path / ".git" / "index").read_bytes() == index_before
    assert run_git(repo_path, "status", "--porcelain") == ""
    assert history_refspec == HISTORY_REF == "refs/rally/history"
    # A dry run teaches nothing: it is not recorded.
    assert record_run(repo, report.model_copy(update={"dry_run": True}), config) is None
    assert len(load_history(repo)) == 1


def test_each_append_is_one_commit_and_a_run_recorded_again_replaces_its_record(repo_path: Path) -> None:
    repo = git.open_repo(repo_path)
    append_record(repo, record("r1", T0, mate("api")))
    append_record(repo, record("r2", T0 + DAY, mate("api")))
    append_record(repo, record("r1", T0 + 60, mate("api"), status="partial"))  # resumed, same month
    assert [(r.run_id, r.status) for r in load_history(repo)] == [("r1", "partial"), ("r2", "done")]
    assert run_git(repo_path, "rev-list", "--count", HISTORY_REF).strip() == "3"
    last_title = run_git(repo_path, "log", "-1", "--format=%s", HISTORY_REF).strip()
    assert last_title == "rally-gh history: r1 (partial, score 80)"


def test_concurrent_appends_all_land(repo_path: Path) -> None:
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            repo = git.open_repo(repo_path)  # one Repository per thread, as per process in real life
            for i in range(6):
                append_record(repo, record(f"w{k}-{i}", T0 + k * 100 + i, mate("api")))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    repo = git.open_repo(repo_path)
    assert len(load_history(repo)) == 36
    # A straight chain: every record is one commit on top of the previous one.
    assert run_git(repo_path, "rev-list", "--count", "--min-parents=2", HISTORY_REF).strip() == "0"
    assert run_git(repo_path, "rev-list", "--count", HISTORY_REF).strip() == "36"


def test_five_thousand_records_load_in_order_and_one_more_appends(repo_path: Path) -> None:
    # How fast is for bench/, not for a timed test that fails on a loaded machine.
    repo = git.open_repo(repo_path)
    team = [mate(n, duration=300 + i) for i, n in enumerate(("api", "web", "docs"))]
    records = [record(f"run-{i:05d}", T0 + i * 3600.0, *team, tes=i % 101) for i in range(5000)]
    append_records(repo, records)
    loaded = load_history(repo)
    assert len(loaded) == 5000 and loaded[0].run_id == "run-00000" and loaded[-1].run_id == "run-04999"
    append_record(repo, record("one-more", T0 + 5000 * 3600.0, *team))
    assert len(load_history(repo)) == 5001


def test_a_foreign_ref_is_refused_and_never_overwritten(repo_path: Path) -> None:
    repo = git.open_repo(repo_path)
    blob = run_git(repo_path, "hash-object", "-w", "--stdin", input="not a history\n").strip()
    run_git(repo_path, "update-ref", HISTORY_REF, blob)
    with pytest.raises(HistoryError) as info:
        read_history(repo)
    assert f"{HISTORY_REF} points at {blob[:10]}, a blob; rally-gh neither reads nor overwrites it" in str(info.value)
    assert f"git update-ref refs/rally/history-old {blob}" in (info.value.hint or "")
    with pytest.raises(HistoryError):
        append_record(repo, record("r1", T0, mate("api")))
    assert run_git(repo_path, "rev-parse", HISTORY_REF).strip() == blob
    # A commit of somebody else's (here: the project's own history) is foreign too.
    head = run_git(repo_path, "rev-parse", "HEAD").strip()
    run_git(repo_path, "update-ref", HISTORY_REF, head)
    with pytest.raises(HistoryError, match="a commit whose tree is not a rally-gh history"):
        append_record(repo, record("r1", T0, mate("api")))
    assert run_git(repo_path, "rev-parse", HISTORY_REF).strip() == head
    # The command says so, with exit 1 and no traceback.
    out = io.StringIO()
    with pytest.raises(HistoryError):
        history_cmd.run(repo_path, out)


def test_an_unreadable_record_is_skipped_and_kept(repo_path: Path) -> None:
    repo = git.open_repo(repo_path)
    append_record(repo, record("r1", T0, mate("api")))
    tip = git.ref_sha(repo, HISTORY_REF)
    assert tip is not None
    broken = git.commit_with_files(repo, tip, {"runs/2026/05/broken.json": b"{not json",
                                               "runs/2026/05/odd.json": b'{"run_id": 3}'}, "damage")
    run_git(repo_path, "update-ref", HISTORY_REF, broken)
    append_record(repo, record("r2", T0 + DAY, mate("api")))
    history = read_history(repo)
    assert [r.run_id for r in history.records] == ["r1", "r2"]
    assert [p for p, _ in history.unreadable] == ["runs/2026/05/broken.json", "runs/2026/05/odd.json"]
    out = io.StringIO()
    history_cmd.run(repo_path, out)
    assert f"warning: {HISTORY_REF}: runs/2026/05/broken.json skipped" in out.getvalue()


def test_a_history_of_a_newer_format_is_left_alone(repo_path: Path) -> None:
    repo = git.open_repo(repo_path)
    marker = b'{"format": "rally-gh run history", "version": 2}'
    newer = git.commit_with_files(repo, None, {"rally-history.json": marker}, "from the future")
    run_git(repo_path, "update-ref", HISTORY_REF, newer)
    with pytest.raises(HistoryError, match="written by a newer rally-gh"):
        append_record(repo, record("r1", T0, mate("api")))


def test_the_history_travels_with_its_refspec(repo_path: Path, tmp_path: Path) -> None:
    repo = git.open_repo(repo_path)
    append_record(repo, record("r1", T0, mate("api")))
    remote = tmp_path / "remote.git"
    run_git(tmp_path, "init", "-q", "--bare", str(remote))
    run_git(repo_path, "push", "-q", str(remote), f"{history_refspec}:{history_refspec}")
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", str(remote), str(clone))
    run_git(clone, "fetch", "-q", "origin", f"{history_refspec}:{history_refspec}")
    assert [r.run_id for r in load_history(git.open_repo(clone))] == ["r1"]


# --- Suggestions -----------------------------------------------------------------


def runs(*teammate_sets: tuple[TeammateRun, ...], **extra: object) -> list[Record]:
    return [record(f"r{i}", T0 + i * DAY, *team, **extra) for i, team in enumerate(teammate_sets, 1)]


def test_no_suggestion_before_three_runs(config: Config) -> None:
    two = runs((mate("web", "timed_out", 2400),), (mate("web", "timed_out", 2400),))
    assert suggestions(two, config) == []


def test_a_teammate_timing_out_again_and_again_gets_a_longer_timeout(config: Config) -> None:
    history = runs((mate("web", "timed_out", 2400), mate("api")), (mate("web", "done", 1100), mate("api")),
                   (mate("web", "timed_out", 2400), mate("api")))
    found = [s for s in suggestions(history, config) if s.setting == "teammates[1].timeout"]
    assert len(found) == 1
    assert (found[0].current, found[0].value) == ("20m", "40m")
    assert found[0].why == ("web was stopped at 40m (twice its expected 20m) in 2 of its last 3 runs: raise its "
                            "timeout to 40m (expected 40m, stopped at 1h20m), or split its task")
    assert found[0].evidence == ("r1: timed out, expected 20m, stopped at 40m",
                                 "r3: timed out, expected 20m, stopped at 40m")


def test_a_teammate_always_done_in_a_fraction_of_its_timeout_gets_a_shorter_one(config: Config) -> None:
    history = runs(*((mate("docs", "done", 120 + i), mate("api", "done", 900)) for i in range(4)))
    found = {s.setting: s for s in suggestions(history, config)}
    # The longest run, 123s, is what to expect (rounded up to minutes): stopped at twice that.
    shorter = found["teammates[2].timeout"]
    assert shorter.value == "3m" and "lower its timeout to 3m (expected 3m, stopped at 6m)" in shorter.why
    assert shorter.evidence[0] == "r1: done in 2m (expected 20m)"
    assert "teammates[0].timeout" not in found  # api uses most of its 20m


def test_max_parallel_follows_the_waves_that_queued(config: Config) -> None:
    wide = (mate("api"), mate("web"), mate("docs"))
    history = runs(wide, wide, wide, waves=(("api", "web", "docs"),), max_parallel=2)
    found = {s.setting: s for s in suggestions(history, config)}
    assert found["max_parallel"].value == 3 and found["max_parallel"].current == "2"
    assert found["max_parallel"].evidence[0] == "r1: a wave of 3 with max_parallel 2, wall 10m"
    # Conflicts among them: more at once is not suggested.
    noisy = runs(wide, wide, wide, waves=(("api", "web", "docs"),), max_parallel=2, conflicts=1)
    assert "max_parallel" not in {s.setting for s in suggestions(noisy, config)}
    # Never more than two at once although four are allowed: lower it.
    four = config.model_copy(update={"max_parallel": 4})
    narrow = runs(wide, wide, wide, waves=(("api", "web"), ("docs",)), max_parallel=4)
    assert {s.setting: s.value for s in suggestions(narrow, four)}["max_parallel"] == 2


def test_budgets_follow_what_runs_cost(config: Config) -> None:
    cheap = runs(*((mate("api", cost_usd=1.0),) for _ in range(3)), cost_usd=2.0, wall_s=900.0)
    found = {s.setting: s for s in suggestions(cheap, config)}
    assert found["budget.max_cost_usd"].value == 4.0  # twice the costliest run, well under $25
    assert found["budget.max_minutes"].value == 30
    starved = runs(*((mate("api"), mate("docs", "skipped", 0, attempts=0, reason="budget: $25.00 spent of $25.00")),)
                   * 3, cost_usd=25.0)
    found = {s.setting: s for s in suggestions(starved, config)}
    assert found["budget.max_cost_usd"].value == 40.0
    assert found["budget.max_cost_usd"].why.startswith("the budget stopped teammates from starting in 3 of the last 3")
    late = runs(*((mate("api"), mate("docs", "skipped", 0, attempts=0, reason="budget: 91.0 of 90 minutes spent")),)
                * 3, wall_s=5460.0)
    found = {s.setting: s for s in suggestions(late, config)}
    assert found["budget.max_minutes"].value == 140  # half as much again, in fives
    assert found["budget.max_minutes"].evidence[0] == "r1: 1 skipped, wall 1h31m"
    # Short runs under a small time budget: lowering it to the 10-minute floor would raise it, or change nothing.
    for small in (5, 10):
        tight = config.model_copy(update={"budget": config.budget.model_copy(update={"max_minutes": small})})
        assert "budget.max_minutes" not in {s.setting for s in suggestions(runs(*((mate("api"),),) * 3,
                                                                                     wall_s=30.0), tight)}


# --- rally.yml edits and the command ---------------------------------------------------


def test_applying_a_suggestion_keeps_every_comment_and_the_layout(tmp_path: Path) -> None:
    path = tmp_path / "rally.yml"
    path.write_text(MAP)
    path.chmod(0o644)
    edits = [
        Suggestion(("teammates", 1, "timeout"), "40m", "20m", "why", ()),
        Suggestion(("max_parallel",), 3, "2", "why", ()),
        Suggestion(("budget", "max_cost_usd"), 40.0, "$25", "why", ()),
    ]
    text = MAP
    for suggestion in edits:
        new = apply_suggestion(path, suggestion)
        changed = [line for line in difflib.unified_diff(text.splitlines(), new.splitlines(), lineterm="", n=0)
                   if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        assert len([c for c in changed if c.startswith("+")]) == 1, changed
        text = new
    assert path.read_text() == text and oct(path.stat().st_mode & 0o777) == "0o644"
    for comment in ("# The ownership map of the shop team.", "team: shop          # shown in reports",
                    "max_parallel: 3     # two runners for now", "  # Backend first.",
                    "      - src/web/**   # the whole client", '  verify: ["pytest -q"]   # the whole suite',
                    'exclusive_write: [src/api/**, "!src/api/generated/**"]'):
        assert comment in text
    assert "budget: {max_cost_usd: 40, max_minutes: 90}" in text
    assert "    agent: {preset: command, command: [\"true\"]}\n    timeout: 40m\n  - name: docs" in text
    loaded = load_config_text(text).config
    assert loaded.teammate("web").timeout == 2400 and loaded.max_parallel == 3


def test_a_missing_key_is_added_where_a_person_would_write_it(tmp_path: Path) -> None:
    path = tmp_path / "rally.yml"
    path.write_text("version: 1\nteam: t\nteammates:\n- name: a\n  exclusive_write: [a/]\n"
                    "- name: b\n  exclusive_write: [b/]\n")
    text = apply_suggestion(path, Suggestion(("budget", "max_cost_usd"), 10.0, "none", "", ()))
    assert text == ("version: 1\nteam: t\nbudget:\n  max_cost_usd: 10\nteammates:\n- name: a\n  exclusive_write: [a/]\n"
                    "- name: b\n  exclusive_write: [b/]\n")


def test_one_run_is_one_run(repo_path: Path) -> None:
    append_record(git.open_repo(repo_path), record("issue-0", T0, mate("api")))
    out = io.StringIO()
    assert history_cmd.run(repo_path, out) == 0
    assert "1 run of shop in refs/rally/history" in out.getvalue()
    assert "No suggestions: 1 run of shop; they start after" in out.getvalue()


def test_the_history_command_shows_the_trend_and_applies_a_suggestion(repo_path: Path) -> None:
    repo = git.open_repo(repo_path)
    for i in range(4):
        web = mate("web", "timed_out" if i % 2 == 0 else "done", 2400 if i % 2 == 0 else 1000)
        append_record(repo, record(f"issue-{i}", T0 + i * DAY, mate("api"), web, tes=40 + 15 * i))
    out = io.StringIO()
    assert history_cmd.run(repo_path, out) == 0
    text = out.getvalue()
    assert "4 runs of shop in refs/rally/history" in text
    assert "score ▄▅▆▇  first 40, last 85, best 85" in text
    assert "issue-3" in text and "timed" not in text.split("Suggestions")[0]
    assert " 1. teammates[1].timeout: 20m -> 40m" in text
    assert "      - issue-0: timed out, expected 20m, stopped at 40m" in text
    out = io.StringIO()
    history_cmd.run(repo_path, out, options=HistoryOptions(fmt="json"))
    data = json.loads(out.getvalue())
    assert [r["run_id"] for r in data["records"]] == ["issue-0", "issue-1", "issue-2", "issue-3"]
    assert data["suggestions"][0]["setting"] == "teammates[1].timeout" and data["suggestions"][0]["number"] == 1
    out = io.StringIO()
    assert history_cmd.run(repo_path, out, options=HistoryOptions(apply=1)) == 0
    assert out.getvalue().startswith(f"{repo_path / 'rally.yml'}: teammates[1].timeout: 20m -> 40m")
    assert "# Backend first." in (repo_path / "rally.yml").read_text()
    with pytest.raises(UsageError, match="no such suggestion"):
        history_cmd.run(repo_path, io.StringIO(), options=HistoryOptions(apply=99))


def test_the_history_command_on_an_empty_history(repo_path: Path) -> None:
    out = io.StringIO()
    assert history_cmd.run(repo_path, out) == 0
    assert out.getvalue() == "No runs recorded yet in refs/rally/history: every finished run adds one.\n"


def test_the_command_line_exit_codes(repo_path: Path) -> None:
    import subprocess

    from rally_gh.testing import RALLY_CLI, git_env

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*RALLY_CLI, "history", *args], cwd=repo_path, env=git_env(), text=True,
                              capture_output=True, check=False)

    assert cli("--format", "json").returncode == 0
    run_git(repo_path, "update-ref", HISTORY_REF, run_git(repo_path, "rev-parse", "HEAD").strip())
    refused = cli()
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "rally-gh neither reads nor overwrites it" in refused.stderr
    assert cli("--apply", "x").returncode == 2


def test_a_ci_run_shares_its_record_through_the_remote(tmp_path: Path) -> None:
    """Runners start from fresh clones: the record goes to the remote's history,
    and a second clone's record lands on top of the first (fast-forward only)."""
    from rally_gh.history import fetch_history, share_record

    origin = init_repo(tmp_path / "origin", {"rally.yml": MAP})
    bare = tmp_path / "remote.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(origin), str(bare))
    clones = []
    for name in ("one", "two"):
        run_git(tmp_path, "clone", "-q", str(bare), str(tmp_path / name))
        clones.append(git.open_repo(tmp_path / name))
    share_record(clones[0], record("r1", 1000.0, mate("api")), git.Remote("origin"))
    share_record(clones[1], record("r2", 2000.0, mate("api")), git.Remote("origin"))  # raced: appends on top of r1
    third = tmp_path / "three"
    run_git(tmp_path, "clone", "-q", str(bare), str(third))
    repo = git.open_repo(third)
    fetch_history(repo, git.Remote("origin"))
    assert sorted(r.run_id for r in load_history(repo)) == ["r1", "r2"]
