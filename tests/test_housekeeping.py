"""Finding and cleaning runs (``rally-gh runs``, ``report`` without ``--run``, ``clean``) on real runs
of scripted teammates, as a user meets them after a few runs."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rally_gh import git
from rally_gh.run import pipeline
from rally_gh.commands import clean as clean_cmd
from rally_gh.commands.clean import CleanOptions
from rally_gh.commands import report as report_cmd
from rally_gh.commands import runs as runs_cmd
from rally_gh.config import load_config_text
from rally_gh.errors import RallyError, UsageError
from rally_gh.housekeeping import parse_age
from rally_gh.state import Clock, runs_dir, save_state
from rally_gh.testing import git as run_git
from rally_gh.testing import commit, init_repo, run_state, teammate_record

DAY = 86400.0
NOW = 1_800_000_000.0  # 2027-01-15

# Each run writes its own id: one run's work is not another's.
WRITES = {
    "api": "import os, pathlib; pathlib.Path('src/api').mkdir(parents=True); "
           "pathlib.Path('src/api/a.py').write_text(f\"a = '{os.environ['RALLY_RUN_ID']}'\\n\")",
    "docs": "import os, pathlib; pathlib.Path('docs').mkdir(); "
            "pathlib.Path('docs/a.md').write_text(f\"# {os.environ['RALLY_RUN_ID']}\\n\")",
    # Writes a file it does not own: violated, never integrated, its branch keeps the work.
    "stray": "import pathlib; pathlib.Path('src/stray').mkdir(parents=True); "
             "pathlib.Path('src/stray/x.py').write_text('x = 1\\n'); pathlib.Path('README.md').write_text('mine\\n')",
}
OWNS = {"api": "[src/api/**]", "docs": "[docs/**]", "stray": "[src/stray/**]"}


def team_map(names: list[str]) -> str:
    lines = ["version: 1", "team: tidy", "defaults: {timeout: 5s, retries: 0}", "teammates:"]
    for name in names:
        lines += [f"  - name: {name}", f"    exclusive_write: {OWNS[name]}",
                  f"    agent: {{preset: command, command: [{json.dumps(sys.executable)}, -c, {json.dumps(WRITES[name])}]}}"]
    return "\n".join(lines) + "\n"


def do_run(repo: Path, run_id: str, names: list[str], started: float, dry_run: bool = False) -> None:
    loaded = load_config_text(team_map(names), "rally.yml")
    pipeline.run(repo, loaded, run_id, None, lambda: started, dict(os.environ), dry_run=dry_run)


def branches(repo: Path) -> list[str]:
    return run_git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/rally/").split()


def say(fn: Callable[..., int], repo: Path, **options: Any) -> str:
    out = io.StringIO()
    assert fn(repo, out, **options) == 0
    return out.getvalue()


def clean(repo: Path, clock: Clock = lambda: NOW, **options: Any) -> str:
    out = io.StringIO()
    assert clean_cmd.run(repo, clock, out, options=CleanOptions(**options)) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository after an old run (40 days ago), a recent one, and a dry run: what a user has."""
    root = tmp_path_factory.mktemp("runs")
    repo = init_repo(root / "repo", {"README.md": "# tidy\n", "rally.yml": team_map(["api", "docs", "stray"])})
    environ = dict(os.environ)
    os.environ["RALLY_WORKTREES"] = str(root / "worktrees")
    try:
        do_run(repo, "old", ["api", "docs", "stray"], NOW - 40 * DAY)
        do_run(repo, "recent", ["api", "docs"], NOW - 1 * DAY)
        do_run(repo, "try", ["api", "docs"], NOW - 0.5 * DAY, dry_run=True)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    return repo


def copy_of(repo: Path, tmp_path: Path) -> Path:
    """A clone with the same branches and run states, to clean without touching the others' fixture."""
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", "--mirror", str(repo), str(clone / ".git"))
    run_git(clone, "config", "--bool", "core.bare", "false")
    run_git(clone, "remote", "remove", "origin")
    run_git(clone, "checkout", "-q", "main")
    (clone / ".git" / "rally").mkdir()
    import shutil

    shutil.copytree(runs_dir(repo / ".git"), runs_dir(clone / ".git"))
    return clone


def test_runs_lists_each_run_newest_first_with_its_status_teammates_and_integration_branch(three_runs: Path) -> None:
    lines = say(runs_cmd.run, three_runs, fmt="text").splitlines()
    assert lines[0].split() == ["RUN", "STARTED", "(UTC)", "STATUS", "TEAMMATES", "INTEGRATION", "BRANCH"]
    assert [line.split()[:5] for line in lines[1:4]] == [
        ["try", "2027-01-14", "20:00", "dry", "run"],
        ["recent", "2027-01-14", "08:00", "done", "2"],
        ["old", "2026-12-06", "08:00", "partial", "3"],
    ]
    assert lines[1].split()[6:] == ["(2", "pending)", "-"]  # "dry run" is two words
    assert lines[2].split()[5:] == ["(2", "done)", "rally/recent/_integration"]
    assert lines[3].split()[5:] == ["(2", "done,", "1", "violated)", "rally/old/_integration"]
    data = json.loads(say(runs_cmd.run, three_runs, fmt="json"))
    assert [(r["run_id"], r["dry_run"], r["status"]) for r in data] == [
        ("try", True, "dry run"), ("recent", False, "done"), ("old", False, "partial")]
    assert data[2]["teammates"] == [{"name": "api", "outcome": "done"}, {"name": "docs", "outcome": "done"},
                                    {"name": "stray", "outcome": "violated"}]
    assert data[2]["branches"] == ["rally/old/_integration", "rally/old/api", "rally/old/docs", "rally/old/stray"]


def test_report_without_run_shows_the_run_started_last(three_runs: Path) -> None:
    latest = json.loads(say(report_cmd.run, three_runs, fmt="json"))
    assert latest["run_id"] == "try"
    assert say(report_cmd.run, three_runs, fmt="md") == say(report_cmd.run, three_runs, run_id="try", fmt="md")


def test_report_without_run_in_a_repository_without_runs_says_how_to_start_one(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n"})
    with pytest.raises(RallyError, match=r"^no run in this repository yet") as err:
        report_cmd.run(repo, io.StringIO(), fmt="md")
    assert err.value.hint is not None and "rally-gh run" in err.value.hint
    assert say(runs_cmd.run, repo, fmt="text").startswith("no runs yet")


def test_a_dry_run_of_clean_lists_what_would_go_and_removes_nothing(three_runs: Path, tmp_path: Path) -> None:
    repo = copy_of(three_runs, tmp_path)
    before = branches(repo)
    out = clean(repo, older_than="30d", dry_run=True)
    assert branches(repo) == before and (runs_dir(repo / ".git") / "old").is_dir()
    assert "old: would delete branch rally/old/api\n" in out and "old: would delete branch rally/old/docs\n" in out
    assert "recent" not in out and "try" not in out  # younger than 30 days
    # The integration branch holds work main does not have; stray's violated work is on its branch alone.
    assert "old: kept branch rally/old/_integration: 2 commits" in out
    assert "old: kept branch rally/old/stray: 1 commit (" in out and ") holds work that no other branch" in out
    assert "--force" in out
    assert out.endswith("dry run: would delete 2 branches, 0 run states and 0 leftover worktrees; "
                        "kept 2 branches with work found nowhere else\n")


def test_clean_never_deletes_work_that_exists_nowhere_else_unless_forced(three_runs: Path, tmp_path: Path) -> None:
    repo = copy_of(three_runs, tmp_path)
    clean(repo, older_than="30d")
    # api's and docs' commits were replayed onto the kept integration branch: their own branches went.
    assert [b for b in branches(repo) if b.startswith("rally/old/")] == ["rally/old/_integration", "rally/old/stray"]
    assert (runs_dir(repo / ".git") / "old").is_dir()  # its report stays while a branch does
    # The pull request is merged: the integration branch is now in main, so it may go; stray's work still may not.
    run_git(repo, "merge", "-q", "--ff-only", "rally/old/_integration")
    out = clean(repo, older_than="30d")
    assert "old: deleted branch rally/old/_integration\n" in out
    assert [b for b in branches(repo) if b.startswith("rally/old/")] == ["rally/old/stray"]
    out = clean(repo, older_than="30d", force=True)
    assert "old: deleted branch rally/old/stray\n" in out and "old: deleted state " in out
    assert not any(b.startswith("rally/old/") for b in branches(repo))
    assert not (runs_dir(repo / ".git") / "old").exists()
    assert [r["run_id"] for r in json.loads(say(runs_cmd.run, repo, fmt="json"))] == ["try", "recent"]


def test_clean_of_a_pushed_run_deletes_its_local_branches_and_state(three_runs: Path, tmp_path: Path) -> None:
    repo = copy_of(three_runs, tmp_path)
    remote = tmp_path / "remote.git"
    run_git(tmp_path, "init", "-q", "--bare", str(remote))
    run_git(repo, "remote", "add", "origin", str(remote))
    run_git(repo, "push", "-q", "origin", "refs/heads/rally/recent/*:refs/heads/rally/recent/*")
    run_git(repo, "fetch", "-q", "origin")
    out = clean(repo, run_id="recent")
    assert "kept" not in out and "recent: deleted state " in out
    assert not any(b.startswith("rally/recent/") for b in branches(repo))


def test_clean_removes_a_killed_run_s_leftover_worktrees(three_runs: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    repo = copy_of(three_runs, tmp_path)
    monkeypatch.setenv("RALLY_WORKTREES", str(tmp_path / "worktrees"))
    leftover = git.rally_worktrees_root(git.open_repo(repo)) / "recent" / "api"
    run_git(repo, "worktree", "add", "-q", "--detach", str(leftover), "rally/recent/api")
    out = clean(repo, run_id="recent", dry_run=True)
    assert f"recent: would delete leftover worktree {leftover}\n" in out and leftover.is_dir()
    clean(repo, run_id="recent")
    assert not leftover.exists()
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_clean_leaves_a_running_run_alone(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n"})
    base = run_git(repo, "rev-parse", "HEAD").strip()
    run_git(repo, "branch", "rally/live/api", base)
    save_state(repo / ".git", run_state(teammate_record("api", "running"), run_id="live", status="running",
                                        pid=os.getpid(), started_at=time.time()))
    assert clean(repo, time.time, force=True).startswith("live: still running, left alone\n")
    assert branches(repo) == ["rally/live/api"]
    assert "running" in say(runs_cmd.run, repo, fmt="text")


def test_clean_usage_errors(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n"})
    with pytest.raises(UsageError, match=r"^--run nope: no such run"):
        clean_cmd.run(repo, time.time, io.StringIO(), options=CleanOptions(run_id="nope"))
    with pytest.raises(UsageError, match=r"^--older-than '30': not an age"):
        parse_age("30")
    assert parse_age("1d12h") == 1.5 * DAY and parse_age("2w") == 14 * DAY
    assert clean(repo, time.time) == "nothing to clean\n"


def test_a_branch_checked_out_in_a_worktree_is_kept_with_its_run_state_even_when_forced(
        three_runs: Path, tmp_path: Path) -> None:
    repo = copy_of(three_runs, tmp_path)
    elsewhere = tmp_path / "reviewing"
    run_git(repo, "worktree", "add", "-q", str(elsewhere), "rally/old/api")
    out = clean(repo, older_than="30d", force=True)
    # git would refuse to delete it, and someone works there: kept, said why, and the run's state with it.
    assert f"old: kept branch rally/old/api: it is checked out in {elsewhere}; check out another branch" in out
    assert "deleted branch rally/old/api" not in out
    assert [b for b in branches(repo) if b.startswith("rally/old/")] == ["rally/old/api"]
    assert (runs_dir(repo / ".git") / "old").is_dir()
    assert out.endswith("; kept 1 branch checked out in a worktree\n")
    assert (elsewhere / ".git").is_file()  # the worktree itself is the user's: untouched


def test_clean_removes_the_earlier_attempts_a_kept_workspace_set_aside(tmp_path: Path) -> None:
    from rally_gh.run.ledger import set_aside_earlier_attempt

    repo = init_repo(tmp_path / "repo", {"README.md": "# tidy\n", "rally.yml": team_map(["api", "docs"])})
    common = repo / ".git"
    do_run(repo, "ci-7", ["api", "docs"], NOW - DAY)
    # A re-run of the same CI run in the workspace the first attempt left (a self-hosted runner).
    assert set_aside_earlier_attempt(git.open_repo(repo), common, "ci-7", "rally") is not None
    do_run(repo, "ci-7", ["api", "docs"], NOW - DAY / 2)
    attempt = common / "rally" / "attempts" / "ci-7-1"
    superseded = run_git(repo, "for-each-ref", "--format=%(refname)", "refs/rally/superseded/").split()
    assert attempt.is_dir() and len(superseded) == 3  # api, docs and the integration of the first attempt
    out = clean(repo, run_id="ci-7", dry_run=True)
    assert f"ci-7: would delete an earlier attempt's branch {superseded[0]}\n" in out
    # The kept integration branch holds the earlier attempt's work (the same changes): its refs go;
    # the run's state, and its earlier attempt's, stay with the integration branch.
    clean(repo, run_id="ci-7")
    assert not run_git(repo, "for-each-ref", "refs/rally/superseded/").strip()
    assert attempt.is_dir() and (runs_dir(common) / "ci-7").is_dir()
    out = clean(repo, run_id="ci-7", force=True)
    assert f"ci-7: deleted an earlier attempt's state {attempt}\n" in out
    assert not attempt.exists() and not (runs_dir(common) / "ci-7").exists() and not branches(repo)


def test_a_run_left_only_as_earlier_attempts_is_listed_and_cleaned(tmp_path: Path) -> None:
    """A re-run in a kept workspace set the first attempt aside, then left nothing of its own (stopped
    before its state was written): ``runs`` and ``clean`` still find the run."""
    from rally_gh.run.ledger import set_aside_earlier_attempt

    repo = init_repo(tmp_path / "repo", {"README.md": "# tidy\n"})
    common = repo / ".git"
    run_git(repo, "checkout", "-q", "-b", "rally/ci-9/api")
    work = commit(repo, {"src/api/a.py": "a = 1\n"}, "rally(api): a")
    run_git(repo, "checkout", "-q", "main")
    save_state(common, run_state(teammate_record("api", "done", branch="rally/ci-9/api", head_sha=work),
                                 run_id="ci-9", started_at=NOW - DAY, integration_branch="rally/ci-9/_integration"))
    assert set_aside_earlier_attempt(git.open_repo(repo), common, "ci-9", "rally") is not None
    attempt = common / "rally" / "attempts" / "ci-9-1"
    (superseded,) = run_git(repo, "for-each-ref", "--format=%(refname)", "refs/rally/superseded/").split()
    assert not branches(repo) and not (runs_dir(common) / "ci-9").exists() and attempt.is_dir()

    (line,) = [ln for ln in say(runs_cmd.run, repo, fmt="text").splitlines() if ln.startswith("ci-9 ")]
    assert line.split()[1:] == ["2027-01-14", "08:00", "earlier", "attempts", "only", "1", "earlier", "attempt", "-"]
    (found,) = json.loads(say(runs_cmd.run, repo, fmt="json"))
    assert (found["status"], found["earlier_attempts"], found["branches"]) == (
        "earlier attempts only", [str(attempt)], [])
    # Its earlier attempt's branch holds work found nowhere else: kept, and its state with it, unless --force.
    out = clean(repo, older_than="1h", dry_run=True)
    assert f"ci-9: kept an earlier attempt's branch {superseded}: 1 commit ({work[:10]})" in out
    assert "ci-9: kept its earlier attempts' states with its kept branches\n" in out
    out = clean(repo, run_id="ci-9", force=True)
    assert f"ci-9: deleted an earlier attempt's branch {superseded}\n" in out
    assert f"ci-9: deleted an earlier attempt's state {attempt}\n" in out
    assert not attempt.exists() and not run_git(repo, "for-each-ref", "refs/rally/").strip()
    assert clean(repo) == "nothing to clean\n"
