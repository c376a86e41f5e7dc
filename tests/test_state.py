from __future__ import annotations

import os
from pathlib import Path

import pytest

from rally_gh.config import Location
from rally_gh.errors import RallyError, UsageError
from rally_gh.ownership.enforce import Violation
from rally_gh.state import (
    RunState,
    TeammateRecord,
    check_ref_component,
    list_runs,
    load_state,
    new_run_id,
    runs_dir,
    new_verify_log,
    save_state,
    state_path,
)


def sample_state(run_id: str = "r1") -> RunState:
    return RunState(
        run_id=run_id, team="t", base_ref="main", base_sha="a" * 40, config_digest="d", started_at=1000.0,
        teammates=(TeammateRecord(name="api", branch=f"rally/{run_id}/api"),
                   TeammateRecord(name="web", branch=f"rally/{run_id}/web")),
    )


def test_save_then_load_gives_the_same_state(tmp_path: Path) -> None:
    state = sample_state()
    state = state.with_teammate(state.teammate("api").model_copy(update={"outcome": "done", "attempts": 1}))
    state = state.with_phase("run", 1.5).with_phase("run", 0.25)
    path = save_state(tmp_path, state)
    assert path == tmp_path / "rally" / "runs" / "r1" / "run.json"
    loaded = load_state(tmp_path, "r1")
    assert loaded == state and loaded.phases == {"run": 1.75}
    assert loaded.teammate("api").finished and not loaded.teammate("web").finished


def test_a_violation_keeps_its_reason_and_rule_through_run_json(tmp_path: Path) -> None:
    bad = Violation(teammate="api", path="src/web/app.js", owner="web", kind="modified", commit="e" * 40,
                    reason="api modified it, but it is owned by web", rule=Location("rally.yml@1a2b3c4d5e", 12, 5))
    state = sample_state()
    state = state.with_teammate(state.teammate("api").model_copy(update={"violations": (bad,)}))
    save_state(tmp_path, state)
    [loaded] = load_state(tmp_path, "r1").teammate("api").violations
    assert loaded == bad and str(loaded.rule) == "rally.yml@1a2b3c4d5e:12:5"
    # A record written before reasons and rules were kept still loads.
    old = {"teammate": "api", "path": "src/web/app.js", "owner": "web", "kind": "modified", "commit": "e" * 40}
    assert Violation.model_validate(old).model_dump() == {**old, "reason": "", "rule": None}


def test_a_save_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    save_state(tmp_path, sample_state())
    first_inode = state_path(tmp_path, "r1").stat().st_ino
    save_state(tmp_path, sample_state().model_copy(update={"status": "finished"}))
    assert state_path(tmp_path, "r1").stat().st_ino != first_inode  # a rename, never an in-place rewrite
    assert os.listdir(state_path(tmp_path, "r1").parent) == ["run.json"]
    assert load_state(tmp_path, "r1").status == "finished"


def test_a_failed_write_keeps_the_previous_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_state(tmp_path, sample_state())

    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        save_state(tmp_path, sample_state().model_copy(update={"status": "finished"}))
    monkeypatch.undo()
    assert load_state(tmp_path, "r1").status == "running"
    assert os.listdir(state_path(tmp_path, "r1").parent) == ["run.json"]


def test_missing_and_unreadable_states_are_explained(tmp_path: Path) -> None:
    save_state(tmp_path, sample_state("old"))
    with pytest.raises(RallyError, match=r"no run 'nope'.*recent runs: old"):
        load_state(tmp_path, "nope")
    state_path(tmp_path, "old").write_text('{"run_id": 3}')
    with pytest.raises(RallyError, match="not a run state"):
        load_state(tmp_path, "old")
    assert list_runs(tmp_path) == ["old"]


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", "a..b", "x.lock", "a b", "x\n", "é", "x" * 101])
def test_unsafe_run_ids_are_refused_before_any_git_call(bad: str) -> None:
    with pytest.raises(UsageError):
        check_ref_component(bad, "run id")


def test_run_ids_come_from_the_issue_and_ci_run_else_the_time() -> None:
    clock = lambda: 1767225600.0  # 2026-01-01T00:00:00Z  # noqa: E731
    assert new_run_id(42, "9876-1", clock) == "issue-42-9876-1"
    assert new_run_id(42, None, clock) == "issue-42-20260101-000000"
    assert new_run_id(None, None, clock) == "20260101-000000"
    assert new_run_id(None, "a/b c", clock) == "a-b-c"


def test_a_time_made_run_id_that_exists_gets_a_number_a_ci_one_never(tmp_path: Path) -> None:
    clock = lambda: 1767225600.0  # noqa: E731
    for taken in ("20260101-000000", "20260101-000000-2", "issue-7-9876"):
        (runs_dir(tmp_path) / taken).mkdir(parents=True)
    assert new_run_id(None, None, clock, tmp_path) == "20260101-000000-3"
    assert new_run_id(7, "9876", clock, tmp_path) == "issue-7-9876"  # a re-run of the same CI run


def test_verify_logs_are_numbered_in_the_order_they_ran_even_from_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda i: new_verify_log(tmp_path, "r1", f"t{i}"), range(16)))
    folder = tmp_path / "rally" / "runs" / "r1" / "verify"
    assert sorted(int(p.name.split("-")[0]) for p in made) == list(range(1, 17))
    assert all(p.parent == folder and p.read_bytes() == b"" for p in made)
    assert new_verify_log(tmp_path, "r1", "merge-abc").name == "17-merge-abc.log"  # a resumed run goes on counting
