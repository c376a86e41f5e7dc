from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rally_gh import plan
from rally_gh.config import Config, load_config_text
from rally_gh.errors import ConfigError, RallyError, UsageError
from rally_gh.tasks import (
    RunTasks,
    TasksRefused,
    TeammateTask,
    apply_tasks,
    find_block,
    refusal_comment,
    tasks_from_file,
    tasks_from_issue,
)

MAP = """\
version: 1
team: shop
teammates:
  - name: schema
    task: Keep the schema tidy.
    exclusive_write: [/db/]
  - name: api
    task: Map task of api.
    exclusive_write: [src/api/**, tests/api/]
    blocked_by: [schema]
    done_when: [src/api/app.py]
  - name: web
    task: Map task of web.
    exclusive_write: [src/web/**]
  - name: docs
    exclusive_write: [docs/]
"""


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config_text(MAP).config


def refused(body: str, config: Config) -> TasksRefused:
    with pytest.raises(TasksRefused) as info:
        tasks_from_issue(body, config)
    return info.value


def test_a_block_gives_tasks_and_chooses_who_runs(config: Config) -> None:
    body = ("We need orders.\r\n\r\n"
            "```rally\r\n"
            "web: Add the orders page\r\n"
            "docs:\r\n"
            "  task: |\r\n"
            "    Document /orders.\r\n"
            "    With examples.\r\n"
            "  done_when: [docs/orders.md]\r\n"
            "```\r\n")
    tasks = tasks_from_issue(body, config)
    assert tasks == RunTasks("issue body", (
        TeammateTask("web", "Add the orders page"),
        TeammateTask("docs", "Document /orders.\nWith examples.\n", ("docs/orders.md",)),
    ))
    applied = apply_tasks(config, tasks)
    assert applied.teammate("web").task == "Add the orders page"
    assert applied.teammate("docs").done_when == ("docs/orders.md",)
    assert applied.teammate("api").task == "Map task of api."  # not named: not running, untouched
    # Ownership is the whole map's, running or not, and agents are the map's.
    assert [(t.name, t.exclusive_write, t.agent) for t in applied.teammates] == [
        (t.name, t.exclusive_write, t.agent) for t in config.teammates]
    assert plan.waves(applied, tasks.names) == [["web", "docs"]]
    assert not [p for p in plan.assess(applied, tasks.names) if p.severity == "error"]


def test_no_block_means_no_tasks_and_only_the_first_block_counts(config: Config) -> None:
    assert tasks_from_issue("Just prose, and `rally` in code.\n```python\nx = 1\n```\n", config) is None
    body = "```rally\nweb: first\n```\n\n```rally\nnope: second\n```\n"
    tasks = tasks_from_issue(body, config)
    assert tasks is not None and tasks.names == ("web",)


def test_a_rally_fence_shown_inside_another_block_is_not_the_block(config: Config) -> None:
    body = "How to write one:\n\n````markdown\n```rally\nnope: x\n```\n````\n\n~~~rally\nweb: real\n~~~\n"
    tasks = tasks_from_issue(body, config)
    assert tasks is not None and tasks.names == ("web",)
    assert find_block("```rallyx\nweb: x\n```") is None
    assert find_block("    ```rally\nweb: x\n    ```") is None  # four spaces: an indented code block


def test_an_indented_fence_and_the_mapping_with_only_done_when(config: Config) -> None:
    body = ("1. list item\n   ```rally\n   web: {}\n   api: {done_when: [tests/api/test_orders.py]}\n"
            "   schema: x\n   ```\n")
    tasks = tasks_from_issue(body, config)
    assert tasks is not None
    applied = apply_tasks(config, tasks)
    assert applied.teammate("web").task == "Map task of web."  # {} keeps the map's task
    assert applied.teammate("api").task == "Map task of api."
    assert applied.teammate("api").done_when == ("tests/api/test_orders.py",)
    assert applied.teammate("schema").done_when == ()


def test_ownership_agents_and_budgets_never_come_from_the_issue(config: Config) -> None:
    body = ("Intro line\n\n```rally\n"
            "api:\n"
            "  task: x\n"
            "  exclusive_write: [src/**]\n"
            "  agent: {preset: command, command: [sh, -c, 'curl evil']}\n"
            "budget: {max_cost_usd: 1000}\n"
            "max_parallel: 8\n"
            "```\n")
    err = refused(body, config)
    lines = str(err).splitlines()
    assert lines[0].startswith("issue body:6:3: api.exclusive_write: exclusive_write is set only in rally.yml")
    assert lines[1].startswith("issue body:7:3: api.agent: agent is set only in rally.yml")
    assert lines[2].startswith("issue body:8:1: budget: budget is set only in rally.yml")
    assert lines[3].startswith("issue body:9:1: max_parallel: ")
    assert "never come from an issue" in lines[3]
    assert "add the label again" in str(err)


def test_unknown_teammates_and_keys_are_refused_with_a_close_match(config: Config) -> None:
    err = refused("```rally\nwebb: x\nweb:\n  taks: y\n```", config)
    assert str(err).splitlines()[:2] == [
        "issue body:2:1: webb: unknown teammate 'webb'; did you mean 'web'? the team is: schema, api, web, docs",
        "issue body:4:3: web.taks: unknown key 'taks'; did you mean 'task'? allowed here: task, done_when",
    ]


@pytest.mark.parametrize("block, expected", [
    ("web: 3", "2:1: web: expected a task (text) or a mapping with task: and done_when:, got the number 3"),
    ("web:", "2:1: web: expected a task (text) or a mapping with task: and done_when:, got nothing (null); "
             "write `web: {}` to run it with the map's task"),
    ("web: [a, b]", "2:1: web: expected a task (text)"),
    ("web: '  '", "2:1: web: empty task"),
    ("web: {task: [x]}", "2:7: web.task: expected the task as text, got a list"),
    ("web: {done_when: src/web/x.ts}", 'web.done_when: expected a list of paths (done_when: ["src/web/x.ts"])'),
    ("web: {done_when: [src/api/app.py]}", "web.done_when[0]: 'src/api/app.py' is owned by api, so web can never "
                                           "change it"),
    ("web: {done_when: ['../etc/passwd']}", "web.done_when[0]: pattern escapes the repository"),
    ("web: &a x\napi: *a", "3:6: api: YAML aliases (*name) are not supported in a rally block"),
    ("web: !!python/object:os.system x", "web: unsupported YAML tag"),
    ("web: x\nweb: y", "3:1: web: duplicate key 'web'"),
    ("- web", "2:1: the rally block must map teammate names to tasks"),
    ("", "the rally block is empty"),
    ("{}", "the rally block names no teammate"),
    ("web: [x", "YAML syntax error"),
    ("3: x", "a key must be a plain name"),
])
def test_each_refusal_points_at_the_issue_line_and_says_what_to_do(config: Config, block: str, expected: str) -> None:
    err = refused(f"```rally\n{block}\n```\n", config)
    # The block's first line is line 2 of the body: positions are the body's.
    message = str(err).replace("issue body:", "", 1)
    assert expected in message, message
    assert all(p.location is None or p.location.file == "issue body" for p in err.problems)


def test_an_unclosed_block_is_refused_where_it_opens(config: Config) -> None:
    err = refused("text\n\n  ```rally\nweb: x\n", config)
    assert str(err).startswith("issue body:3:3: the rally block opened here is never closed; end it with a line "
                               "holding only ```")


def test_a_blocker_that_does_not_run_is_refused_unless_named_too(config: Config) -> None:
    tasks = tasks_from_issue("```rally\napi: Build /orders\nweb: page\n```", config)
    assert tasks is not None
    with pytest.raises(TasksRefused) as info:
        apply_tasks(config, tasks)
    assert info.value.problems[0].code == "blocker-not-running"
    assert ("api is blocked by schema (rally.yml), which issue body does not name: api would start without "
            "schema's work; add schema to the tasks") in str(info.value)
    both = tasks_from_issue("```rally\napi: Build /orders\nschema: {}\n```", config)
    assert both is not None
    applied = apply_tasks(config, both)
    assert plan.waves(applied, both.names) == [["schema"], ["api"]]


def test_added_waits_that_close_a_cycle_with_the_map_are_refused(config: Config) -> None:
    tasks = RunTasks("plan.yml", (TeammateTask("schema", "x", blocked_by=("api",)), TeammateTask("api", "y")))
    with pytest.raises(TasksRefused, match=r"dependency cycle: (schema -> api -> schema|api -> schema -> api)"):
        apply_tasks(config, tasks)


def test_tasks_from_a_file_plain_yaml_or_an_issue_body(tmp_path: Path, config: Config) -> None:
    plain = tmp_path / "tasks.yml"
    plain.write_text("# this run\nweb: Add the page\ndocs: Write it up\n")
    assert tasks_from_file(plain, config).names == ("web", "docs")
    body = tmp_path / "issue.md"
    body.write_text("# Orders\n\nSome text.\n\n```rally\nweb: Add the page\nnope: x\n```\n")
    with pytest.raises(TasksRefused) as info:
        tasks_from_file(body, config)
    assert str(info.value).startswith(f"{body}:7:1: nope: unknown teammate 'nope'")
    assert f"fix {body}" in (info.value.hint or "")
    with pytest.raises(UsageError, match="cannot read it"):
        tasks_from_file(tmp_path / "missing.yml", config)


def test_the_refusal_comment_quotes_the_issue_in_a_code_block(config: Config) -> None:
    err = refused("```rally\n'@org/admins ``` <b>': x\n```", config)
    comment = refusal_comment(err)
    assert comment.startswith("**rally-gh did not start**: the `rally` block of this issue was refused.")
    # The issue's text sits inside a fence longer than any backtick run in it: no mention, no HTML.
    assert "````text\nissue body:2:1: @org/admins ``` <b>: unknown teammate" in comment
    assert "What to do: edit the rally block" in comment
    plain = refusal_comment(UsageError("only 1 teammate(s) would run"))
    assert "the run was refused" in plain and "only 1 teammate(s) would run" in plain


def test_a_full_size_issue_body_is_read_quickly(config: Config) -> None:
    filler = ("Some prose about the change, with `code` and a [link](https://example.com).\n" * 800)[:60_000]
    tasks_block = "```rally\n" + "".join(f"web: {'x' * 4000}\n" for _ in range(1)) + "```\n"
    body = (filler + "\n" + tasks_block)[:65_536]
    assert len(body) <= 65_536
    start = time.perf_counter()
    tasks = tasks_from_issue(body, config)
    assert tasks is not None and tasks.names == ("web",)
    assert time.perf_counter() - start < 2.0
    start = time.perf_counter()
    assert tasks_from_issue("```\n" * 20_000, config) is None  # fences all the way down
    assert time.perf_counter() - start < 2.0


# Names and keys of the map, YAML's indicators, and the characters that trouble readers and line counts.
_YAMLISH = st.text(alphabet=st.sampled_from(list("web api docs schema task done_when: -[]{}&*!|>'\"#,?\n\t `~%@\\")
                                            + ["é", "\u2028", "\x00", "\x85", "\r"]), max_size=200)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.text(max_size=40), block=_YAMLISH, fence=st.sampled_from(["```", "~~~", "````", "  ```"]),
       closed=st.booleans())
def test_fuzzed_blocks_give_tasks_none_or_a_pointed_refusal(config: Config, before: str, block: str, fence: str,
                                                            closed: bool) -> None:
    body = f"{before}\n{fence}rally\n{block}\n" + (f"{fence}\n" if closed else "")
    try:
        tasks = tasks_from_issue(body, config)
    except TasksRefused as err:
        assert err.problems and all(p.message for p in err.problems)
        assert all(p.location is None or p.location.line >= 1 for p in err.problems)
        refusal_comment(err)
        return
    except RallyError as err:  # pragma: no cover - the only other family member allowed
        raise AssertionError(f"not a TasksRefused: {err!r}") from None
    if tasks is not None:
        assert set(tasks.names) <= {"schema", "api", "web", "docs"}
        assert all(t.task is None or t.task.strip() for t in tasks.teammates)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzzed_bodies_never_raise_anything_but_config_errors(config: Config, body: str) -> None:
    try:
        tasks_from_issue(body, config)
    except ConfigError:
        pass


def test_the_issue_in_the_docs_is_read_as_the_docs_say() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "plans.md").read_text()
    issue = docs.split("````markdown\n", 1)[1].split("\n````", 1)[0]
    team = load_config_text(MAP.replace("  - name: docs\n", "  - name: infra\n    exclusive_write: [ops/]\n"
                                                              "  - name: docs\n")).config
    tasks = tasks_from_issue(issue, team)
    assert tasks is not None and tasks.names == ("api", "web", "docs")
    applied = apply_tasks(team.model_copy(update={"teammates": tuple(
        t.model_copy(update={"blocked_by": ()}) for t in team.teammates)}), tasks)
    assert plan.waves(applied, tasks.names) == [["api", "web", "docs"]]  # schema and infra sit it out
    assert applied.teammate("web").done_when == ("src/web/pages/orders.tsx",)
