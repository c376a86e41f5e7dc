"""Every diagram rally-gh emits, drawn by Mermaid itself (tests/mermaid/render.mjs).

The renderer is mermaid's own code under node with jsdom, installed by
tests/mermaid/install.sh (called from .ci/run) into a cache outside the
checkout. Without it these tests skip, and say so loudly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from rally_gh.commands.plan import mermaid_graph
from rally_gh.config import load_config_text
from rally_gh.report import build_report, mermaid_dependencies, mermaid_timeline, report_markdown, timeline_axis
from rally_gh.state import RunState, TeammateRecord
from rally_gh.testing import T0, run_state, teammate_record

HERE = Path(__file__).parent.parent / "mermaid"
CACHE = Path(os.environ.get("RALLY_MERMAID_CACHE") or Path.home() / ".cache" / "rally-gh-mermaid")

# Every word Mermaid's gantt and flowchart grammars treat specially that is also a
# valid teammate name (^[a-z0-9][a-z0-9-]{0,38}$).
GANTT_WORDS = ["click", "gantt", "topaxis", "accdescription", "accdescr", "acctitle", "section", "title",
               "excludes", "includes", "dateformat", "axisformat", "tickinterval", "todaymarker", "weekday",
               "weekend", "inclusiveenddates", "call", "href", "monday", "friday", "saturday", "milestone",
               "after", "until", "done", "active", "crit", "2024-01-01"]
FLOWCHART_WORDS = ["end", "graph", "flowchart", "subgraph", "style", "class", "classdef", "linkstyle",
                   "interpolate", "direction", "default", "td", "lr", "o", "x", "v", "a--b", "blank"]
OUTCOMES = ["done", "failed", "timed_out", "violated", "unverified", "incomplete", "no_changes", "conflicted"]


def _teammates(names: list[str], seconds: float, outcomes: list[str] | None = None) -> tuple[TeammateRecord, ...]:
    """Teammates that ran one after another within ``seconds``, each blocked by the one before."""
    step = seconds / (len(names) + 1)
    return tuple(teammate_record(name, (outcomes or OUTCOMES)[i % len(outcomes or OUTCOMES)],
                                 started_at=T0 + step * (i + 0.5), finished_at=T0 + step * (i + 2),
                                 duration_s=step * 1.5, blocked_by=(names[i - 1],) if i else (),
                                 role='Says "hi" [x] <b>')
                 for i, name in enumerate(names))


def _run(names: list[str], seconds: float) -> RunState:
    return run_state(*_teammates(names, seconds), finished_at=T0 + seconds)


CASES: dict[str, RunState] = {
    "normal": _run(["api", "web", "docs"], 8.4),
    "sub-second": _run(["api", "web"], 0.35),
    "over an hour": _run(["api", "web", "docs", "qa"], 4830.0),
    "nine teammates": _run([f"t{i}" for i in range(9)], 95.0),
    "gantt keywords": _run(GANTT_WORDS, 30.0),
    "flowchart keywords": _run(FLOWCHART_WORDS, 30.0),
}


def _diagrams(state: RunState) -> list[str]:
    """Every Mermaid block of the report, as GitHub gets it."""
    return re.findall(r"```mermaid\n(.*?)```", report_markdown(build_report(state)), re.S)


@cache
def _renderer() -> Path:
    node = shutil.which("node")
    reason = ""
    if node is None:
        reason = "node is not installed"
    elif not (CACHE / "installed").is_file():
        reason = f"mermaid is not installed in {CACHE}: run `bash tests/mermaid/install.sh`"
    if reason:  # tests/conftest.py repeats it at the end of the test run
        pytest.skip(f"THE REPORT'S MERMAID DIAGRAMS WERE NOT RENDERED: {reason}")
    return Path(node or "node")


def render(texts: list[str], tz: str = "Asia/Kolkata") -> list[dict[str, Any]]:
    """What Mermaid draws of each text, in a viewer's time zone (a half-hour one by default)."""
    node = _renderer()
    done = subprocess.run([str(node), str(HERE / "render.mjs"), str(CACHE)], input=json.dumps(texts),
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TZ": tz}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


@pytest.fixture(scope="module")
def drawn() -> dict[str, list[dict[str, Any]]]:
    """Each case's diagrams drawn, in one node process for all of them."""
    texts = [text for state in CASES.values() for text in _diagrams(state)]
    results = iter(render(texts))
    return {case: [next(results) for _ in _diagrams(state)] for case, state in CASES.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_every_diagram_of_the_report_draws_every_teammate(case: str, drawn: dict[str, list[dict[str, Any]]]) -> None:
    state = CASES[case]
    flow, gantt = drawn[case]
    assert "error" not in flow and "error" not in gantt, (flow, gantt)
    names = [t.name for t in state.teammates]
    assert len(flow["nodes"]) == len(names) and flow["edges"] == len(names) - 1
    assert [node.split(":")[0] for node in flow["nodes"]] == names
    # Each bar: the outcome's icon, the teammate, the outcome.
    assert [task["label"].strip().split(" ", 1)[1] for task in gantt["tasks"]] == [
        f"{t.name} ({t.outcome})" for t in state.teammates]
    assert gantt["sections"] == ["teammates"]


@pytest.mark.parametrize(("case", "unit"), [("normal", "s"), ("sub-second", "ms"), ("over an hour", "min"),
                                             ("nine teammates", "s")])
def test_the_timeline_axis_counts_from_the_start_in_one_unit(
        case: str, unit: str, drawn: dict[str, list[dict[str, Any]]]) -> None:
    ticks = drawn[case][1]["ticks"]
    assert 2 <= len(ticks) <= 11, ticks
    numbers = []
    for tick in ticks:
        number, _, label = tick.partition(" ")
        assert label == unit, ticks
        numbers.append(int(number))
    assert numbers == sorted(set(numbers)), ticks  # no tick printed twice
    step = numbers[1] - numbers[0]
    assert all(b - a == step for a, b in zip(numbers, numbers[1:])), ticks
    span = max(t.finished_at or 0 for t in CASES[case].teammates) - T0
    assert numbers[-1] <= span * {"ms": 1000, "s": 1, "min": 1 / 60}[unit]


def test_the_axis_is_the_same_in_every_time_zone() -> None:
    texts = [mermaid_timeline(build_report(CASES[case])) for case in ("normal", "sub-second", "over an hour")]
    ticks = {tz: [r["ticks"] for r in render(texts, tz)]
             for tz in ("UTC", "Asia/Kolkata", "America/St_Johns", "Australia/Eucla")}
    assert len({json.dumps(t) for t in ticks.values()}) == 1, ticks


def test_each_outcome_but_the_pairs_that_mean_the_same_looks_different() -> None:
    names = [o.replace("_", "-") for o in OUTCOMES]
    (gantt,) = render([mermaid_timeline(build_report(run_state(*_teammates(names, 20.0, OUTCOMES))))])
    look = {outcome: re.sub(r"\d+$", "", task["classes"].split()[-1])
            for outcome, task in zip(OUTCOMES, gantt["tasks"])}
    assert look == {"done": "done", "no_changes": "task", "incomplete": "active", "unverified": "active",
                    "failed": "crit", "timed_out": "activeCrit", "violated": "doneCrit", "conflicted": "doneCrit"}
    labels = [task["label"] for task in gantt["tasks"]]
    assert len(set(labels)) == len(labels) and len({label.split()[0] for label in labels}) == len(OUTCOMES)


def test_the_plans_dependency_graph_draws_keyword_teammates() -> None:
    names = FLOWCHART_WORDS + GANTT_WORDS[:6]
    teammates = "".join(
        f"  - name: {name}\n    role: 'Role \"{i}\" [x]'\n    task: t\n    exclusive_write: [/p{i}/]\n"
        + (f"    blocked_by: ['{names[i - 1]}']\n" if i else "") for i, name in enumerate(names))
    config = load_config_text(f"version: 1\nteam: t\nteammates:\n{teammates}").config
    (flow,) = render([mermaid_graph(config)])
    assert "error" not in flow, flow
    assert [node.split("Role")[0] for node in flow["nodes"]] == names and flow["edges"] == len(names) - 1


@pytest.mark.parametrize(("span", "expected"), [
    (0.35, (1000.0, "%Q ms", "50millisecond")), (1.99, (1000.0, "%Q ms", "200millisecond")),
    (8.4, (1000.0, "%s s", "1second")), (95.0, (1000.0, "%s s", "10second")),
    (4830.0, (1000.0 / 60, "%s min", "10second")), (30 * 3600.0, (1000.0 / 3600, "%s h", "5second")),
])
def test_the_axis_is_chosen_from_the_runs_length(span: float, expected: tuple[float, str, str]) -> None:
    assert timeline_axis(span) == expected


def test_a_test_run_without_the_renderer_ends_saying_so(tmp_path: Path) -> None:
    env = {**os.environ, "RALLY_MERMAID_CACHE": str(tmp_path / "empty")}
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", __file__,
         "-k", "time_zone"], cwd=Path(__file__).parent.parent.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = [line for line in proc.stdout.splitlines() if line.startswith("= THE REPORT'S MERMAID")]
    assert [line.strip("= ") for line in said] == [(f"THE REPORT'S MERMAID DIAGRAMS WERE NOT RENDERED: mermaid is not installed in "
                                f"{tmp_path / 'empty'}: run `bash tests/mermaid/install.sh`")]


def test_the_dependency_graph_of_every_case_names_each_teammate_once() -> None:
    for state in CASES.values():
        text = mermaid_dependencies(build_report(state))
        assert len(re.findall(r'^  t_\S+\["', text, re.M)) == len(state.teammates)
