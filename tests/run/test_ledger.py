"""run/ledger.py: the run's state behind a lock, saved at every change; where a run's state begins."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from rally_gh.config import load_config_text
from rally_gh.errors import RallyError
from rally_gh.run.ledger import Ledger, resumed_state
from rally_gh.state import config_digest, load_state, save_state
from rally_gh.testing import run_state, teammate_record

MAP = "version: 1\nteam: t\nteammates:\n  - {name: api, exclusive_write: [src/**]}\n"


def test_every_change_is_in_run_json_at_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, run_state(teammate_record("api", "running"), status="running"))
    ledger.update("api", outcome="done", head_sha="a" * 40)
    ledger.add_risk("first")
    ledger.add_problems("one", "two")
    ledger.add_phase("run", 2.5)
    saved = load_state(tmp_path, "r1")
    assert saved == ledger.state
    assert (saved.teammate("api").outcome, saved.risks, saved.problems) == ("done", ("first",), ("one", "two"))


def test_changes_from_many_job_threads_are_all_kept(tmp_path: Path) -> None:
    names = [f"t{i}" for i in range(8)]
    ledger = Ledger(tmp_path, run_state(*(teammate_record(n, "running") for n in names), status="running"))

    def work(name: str) -> None:
        for attempt in range(1, 6):
            ledger.update(name, attempts=attempt)
            ledger.add_risk(f"{name} {attempt}")

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(ledger.record(n).attempts == 5 for n in names)
    assert len(ledger.state.risks) == 40
    assert load_state(tmp_path, "r1") == ledger.state


def test_a_resumed_run_starts_again_only_who_did_not_finish(tmp_path: Path) -> None:
    config = load_config_text(MAP, "rally.yml").config
    state = run_state(teammate_record("api", "done"), teammate_record("web", "running", worktree="/tmp/w"),
                      status="interrupted", config_digest=config_digest(config))
    save_state(tmp_path, state)
    resumed = resumed_state(tmp_path, "r1", config)
    assert resumed.status == "running" and resumed.finished_at is None
    assert resumed.teammate("api").outcome == "done"
    assert (resumed.teammate("web").outcome, resumed.teammate("web").worktree) == ("pending", None)


def test_a_run_is_never_resumed_with_another_map_or_once_finished(tmp_path: Path) -> None:
    config = load_config_text(MAP, "rally.yml").config
    save_state(tmp_path, run_state(teammate_record("api", "done"), config_digest="other"))
    with pytest.raises(RallyError, match="started with a different rally.yml"):
        resumed_state(tmp_path, "r1", config)
    save_state(tmp_path, run_state(teammate_record("api", "done"), config_digest=config_digest(config)))
    with pytest.raises(RallyError, match="has already finished"):
        resumed_state(tmp_path, "r1", config)
