from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rally_gh import plan
from rally_gh.config import Config, load_config_text
from rally_gh.errors import RallyError, UsageError
from rally_gh.handoff import handoff_tasks, nexus_handoff, tasks_from_handoff
from rally_gh.report import Report, build_report, report_json, report_markdown, step_complete_text
from rally_gh.testing import run_state, teammate_record
from rally_gh.ownership.enforce import Violation
from rally_gh.state import Conflict, ConvergenceGroup, RunState, TeammateRecord, VerifyResult
from rally_gh.tasks import TasksRefused, apply_tasks

MAP = """\
version: 1
team: shop
teammates:
  - name: schema
    exclusive_write: [/db/]
  - name: api
    exclusive_write: [src/api/**, tests/api/, "!src/api/generated/**"]
  - name: web
    exclusive_write: [src/web/**]
    blocked_by: [api]
  - name: docs
    exclusive_write: [/docs/]
"""

GOOD = """\
tasks:
  - id: orders-schema
    description: Add the orders table and its migration
    files: [db/migrations/*.sql, db/schema.sql]
  - id: orders-endpoint
    description: Implement GET and POST /orders
    files: [src/api/orders.py, tests/api/test_orders.py]
    depends_on: [orders-schema]
  - id: orders-page
    description: Add the orders page
    files: [src/web/orders.tsx]
    depends_on: [orders-endpoint]
  - id: api-readme
    description: Describe /orders in the API readme
    files: [src/api/README.md]
    depends_on: [orders-endpoint]
"""


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config_text(MAP).config


def refused(text: str, config: Config, source: str = "plan.yml") -> str:
    with pytest.raises(TasksRefused) as info:
        handoff_tasks(text, config, source)
    return str(info.value)


def test_each_task_goes_to_the_teammate_owning_its_files(config: Config) -> None:
    tasks = handoff_tasks(GOOD, config, "plan.yml")
    assert tasks.names == ("schema", "api", "web")  # the map's order; docs has no task and does not run
    api = next(t for t in tasks.teammates if t.name == "api")
    assert api.task == (
        "Tasks from the handoff plan.yml, in this order:\n\n"
        "1. [orders-endpoint] Implement GET and POST /orders\n"
        "   Files: src/api/orders.py, tests/api/test_orders.py\n"
        "   Builds on: orders-schema (schema), already in your worktree\n"
        "2. [api-readme] Describe /orders in the API readme\n"
        "   Files: src/api/README.md\n"
    )
    # done_when: the literal files only (a wildcard names no file that must exist).
    assert api.done_when == ("src/api/orders.py", "tests/api/test_orders.py", "src/api/README.md")
    assert next(t for t in tasks.teammates if t.name == "schema").done_when == ("db/schema.sql",)
    # depends_on across teammates becomes blocked_by; one the map lacks is a note, the map's own is silent.
    assert api.blocked_by == ("schema",)
    assert [(n.code, n.teammates) for n in tasks.notes] == [("handoff-dependency", ("api", "schema"))]
    applied = apply_tasks(config, tasks)
    assert plan.waves(applied, tasks.names) == [["schema"], ["api"], ["web"]]


def test_a_task_touching_two_teammates_files_is_hidden_coupling(config: Config) -> None:
    message = refused("tasks:\n  - id: t1\n    description: x\n    files: [src/api/a.py, src/web/a.tsx]\n", config)
    assert message.startswith("plan.yml:2:5: tasks[0]: task 't1' touches the files of api and web (api owns "
                              "src/api/a.py; web owns src/web/a.tsx): hidden coupling")
    assert "split it into one task per teammate" in message
    # A wildcard that reaches into two teammates' patterns is coupling too.
    assert "touches the files of api and web" in refused(
        "tasks:\n  - {id: t1, description: x, files: ['src/**/*.ts']}\n", config)


def test_files_owned_by_nobody_or_hostile_are_refused(config: Config) -> None:
    message = refused("tasks:\n  - id: t1\n    description: x\n    files: [README.md, 'ops/**', src/api/generated/x.py,"
                      " ../etc/passwd, '!src/api/x']\n", config)
    lines = message.splitlines()
    assert lines[0].startswith("plan.yml:4:13: tasks[0].files[0]: task 't1': 'README.md' is owned by no teammate")
    assert "'ops/**' is owned by no teammate" in lines[1]
    assert "'src/api/generated/x.py' is owned by no teammate" in lines[2]  # api's '!' takes it back
    assert "pattern escapes the repository" in lines[3]
    assert "a '!' pattern means nothing here" in lines[4]
    # Control files are never reached by a wildcard.
    assert "is owned by no teammate" in refused(
        "- {id: t1, description: x, files: [.github/workflows/ci.yml]}\n", config)


def test_unknown_dependencies_cycles_and_bad_shapes_are_refused(config: Config) -> None:
    message = refused("""\
tasks:
  - id: a
    description: x
    files: [docs/a.md]
    depends_on: [b, orders-shema]
  - id: b
    description: y
    files: [docs/b.md]
    depends_on: [b]
  - {id: c, description: '', files: docs/c.md, owner: web}
  - {id: a, description: z, files: [docs/d.md]}
  - just text
""", config)
    assert "tasks[0].depends_on[1]: unknown task 'orders-shema'; tasks are: a, b" in message
    assert "tasks[1].depends_on[0]: task 'b' depends on itself" in message
    assert "tasks[2].description: expected what to do, as text" in message
    assert "tasks[2].files: expected a list of the paths or patterns the task changes" in message
    assert "tasks[2].owner: unknown key 'owner'; a task has id, description, files, depends_on" in message
    assert "tasks[3].id: duplicate task id 'a' (also tasks[0])" in message
    assert "tasks[4]: a task is a mapping" in message
    cycle = refused("- {id: a, description: x, files: [docs/a.md], depends_on: [b]}\n"
                    "- {id: b, description: y, files: [docs/b.md], depends_on: [a]}\n", config)
    assert "dependency cycle: a -> b -> a" in cycle or "dependency cycle: b -> a -> b" in cycle


def test_a_bad_handoff_reports_every_problem_at_once(config: Config) -> None:
    """Shape errors do not hide where the well-formed tasks go wrong: one round of fixes."""
    message = refused("""\
tasks:
  - {id: a, description: '', files: [docs/a.md]}
  - {id: b, description: both, files: [src/api/a.py, src/web/a.tsx]}
  - {id: c, description: nobody's, files: [README.md]}
  - {id: d, description: endpoint, files: [src/api/x.py], depends_on: [e]}
  - {id: e, description: page, files: [src/web/x.tsx], depends_on: [f]}
  - {id: f, description: loop, files: [docs/f.md], depends_on: [e]}
""", config)
    lines = message.splitlines()
    assert any("tasks[0].description: expected what to do" in line for line in lines)
    assert any("task 'b' touches the files of api and web" in line for line in lines)
    assert any("'README.md' is owned by no teammate" in line for line in lines)
    assert any("dependency cycle: " in line and "e" in line and "f" in line for line in lines)
    assert message.index("tasks[0]") < message.index("task 'b'") < message.index("'README.md'")


def test_a_dependency_against_the_maps_blocked_by_is_refused(config: Config) -> None:
    # web waits for api in rally.yml; a handoff making api wait for web would deadlock.
    message = refused(json.dumps([
        {"id": 1, "description": "endpoint", "files": ["src/api/x.py"], "depends_on": [2]},
        {"id": 2, "description": "page", "files": ["src/web/x.tsx"]},
    ]), config, "plan.json")
    assert message.startswith("plan.json: task '1' (api) depends on '2' (web), but in rally.yml web waits for api")


def test_json_handoffs_and_their_errors(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "handoff.json"
    path.write_text(json.dumps({"tasks": [{"id": "d", "description": "Docs", "files": ["docs/x.md"]},
                                          {"id": "w", "description": "Page", "files": ["src/web/x.tsx"]}]}))
    assert tasks_from_handoff(path, config).names == ("web", "docs")
    path.write_text('{"tasks": [1,}')
    with pytest.raises(TasksRefused, match=r"handoff.json:1:14: not valid JSON"):
        tasks_from_handoff(path, config)
    path.write_text('{"tasks": [], "tasks": []}')
    with pytest.raises(TasksRefused, match="duplicate key 'tasks'"):
        tasks_from_handoff(path, config)
    with pytest.raises(UsageError, match="cannot read it"):
        tasks_from_handoff(tmp_path / "nope.yml", config)


# --- Out ------------------------------------------------------------------------

def rec(name: str, outcome: str, **extra: object) -> TeammateRecord:
    return teammate_record(name, outcome, **{"head_sha": "f" * 40, "files_changed": ("a", "b"), **extra})


def state(*teammates: TeammateRecord, **extra: object) -> RunState:
    return run_state(*teammates, **{"team": "shop", **extra})


STATES = {
    "done": state(rec("api", "done", integrated=True), rec("web", "done", integrated=True),
                  verification=(VerifyResult(command="pytest -q", passed=True, exit_code=0),)),
    "partial": state(rec("api", "done", integrated=True), rec("web", "conflicted", reason="src/x.ts"),
                     conflicts=(Conflict(teammate="web", paths=("src/x.ts",)),),
                     verification=(VerifyResult(command="pytest -q", passed=False, exit_code=1),)),
    "blocked": state(rec("api", "failed", reason="npm ci failed"), rec("web", "failed", reason="npm ci failed"),
                     integration_sha=None,
                     convergence=(ConvergenceGroup(signature="npm ci failed", teammates=("api", "web")),)),
    "violated": state(rec("api", "violated", violations=(Violation(teammate="api", path="src/web/x.ts", owner="web",
                                                                   kind="added", commit="e" * 40),)),
                      rec("web", "done", integrated=True)),
    "timed_out": state(rec("api", "done", integrated=True),
                       rec("web", "timed_out", reason="stopped after 4.0s, twice its timeout (after 2 attempts)")),
}


@pytest.mark.parametrize("name", list(STATES))
def test_step_complete_from_the_report_json_is_the_reports_own_block(name: str) -> None:
    run = STATES[name]
    # What a reader of the report.json written next to run.json gets is the report's own block.
    # The report.json written beside run.json reads back as the same typed report.
    report = build_report(run)
    assert Report.model_validate(json.loads(json.dumps(report_json(run)))) == report
    assert step_complete_text(report) in report_markdown(report)


def test_the_nexus_handoff_tells_the_next_agent_what_happened() -> None:
    text = nexus_handoff(build_report(STATES["partial"]))
    lines = text.splitlines()
    assert lines[:5] == ["```", "NEXUS_HANDOFF", "Step: rally-gh run r1 (team shop)", "Agent: rally-gh",
                         "Status: PARTIAL"]
    assert lines[5].startswith("Summary: 1/2 tasks done; integrated: api; team efficiency ")
    assert "- web: conflicted (src/x.ts)" in lines
    assert "- conflict: web on src/x.ts (skipped)" in lines
    assert "- verification failed: pytest -q" in lines
    assert "- integration branch rally/r1/_integration @ cccccccccc" in lines
    assert "- api: rally/r1/api @ ffffffffff (2 files changed)" in lines
    assert any(line.startswith("Suggested next: reviewer") for line in lines)
    assert lines[-2].startswith("Next action: review `rally/r1/_integration`")
    blocked = nexus_handoff(build_report(STATES["blocked"]))
    assert "Status: BLOCKED" in blocked and "- shared blocker of api, web: npm ci failed" in blocked
    assert "Suggested next: a person" in blocked
    done = nexus_handoff(build_report(STATES["done"]))
    assert "Findings: none" in done and "Risks: none" in done
    violated = nexus_handoff(build_report(STATES["violated"]))
    assert "- violation: api wrote src/web/x.ts (added, owner web)" in violated


def test_the_handoff_in_the_docs_is_placed_as_the_docs_say(config: Config) -> None:
    docs = (Path(__file__).parents[1] / "docs" / "plans.md").read_text()
    example = "tasks:" + docs.split("```yaml\ntasks:", 1)[1].split("\n```", 1)[0]
    tasks = handoff_tasks(example, config, "handoff.yml")
    assert [(t.name, t.blocked_by) for t in tasks.teammates] == [("schema", ()), ("api", ("schema",)),
                                                                 ("web", ("api",))]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("tasks id description files depends_on: -[]{}*/!'\"#,\n 01.\\")
                                + ["src/api/", "src/web/", "docs/", "db/", "\u2028", "\n  - "]), max_size=80)
       .map("".join))
def test_fuzzed_handoffs_give_tasks_or_a_project_error(config: Config, text: str) -> None:
    try:
        tasks = handoff_tasks(text, config, "fuzz.yml")
    except RallyError:
        return
    assert tasks.teammates and all(t.task for t in tasks.teammates)
