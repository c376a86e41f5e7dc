from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from rally_gh import plan
from rally_gh.commands import plan as plan_cmd
from rally_gh.commands.plan import PlanOptions
from rally_gh.config import Config
from rally_gh.github.actions import read
from rally_gh.testing import SAMPLE_MAP, init_repo


def team(*teammates: dict[str, Any], **top: Any) -> Config:
    return Config.model_validate({"team": "t", **top, "teammates": list(teammates)})


def mate(name: str, owns: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "exclusive_write": [owns], "task": f"Do {name}.\nMore detail.", **extra}


def test_waves_are_topological_layers_in_listed_order() -> None:
    config = team(mate("web", "web/"), mate("api", "api/", blocked_by=["schema"]), mate("schema", "db/"),
                  mate("docs", "docs/", blocked_by=["api", "web"]))
    assert plan.waves(config) == [["web", "schema"], ["api"], ["docs"]]
    assert plan.integration_order(config) == ["web", "schema", "api", "docs"]
    listed = config.model_copy(update={"merge": config.merge.model_copy(update={"order": "listed"})})
    assert plan.integration_order(listed) == ["web", "api", "schema", "docs"]
    assert plan.blockers_closure(config, "docs") == ["web", "schema", "api"]


def test_a_blocker_that_does_not_run_holds_nobody_back() -> None:
    config = team(mate("api", "api/", blocked_by=["schema"]), mate("schema", "db/"), mate("web", "web/"))
    assert plan.waves(config, selected={"api", "web"}) == [["api", "web"]]
    problems = plan.assess(config, selected={"api", "web"})
    assert [p.code for p in problems] == ["blocker-not-running"]


def test_false_parallelism_and_large_teams_are_refused() -> None:
    alone = plan.assess(team(mate("api", "api/")))
    assert [(p.severity, p.code) for p in alone] == [("error", "false-parallelism")]
    ten = team(*(mate(f"m{i}", f"d{i}/") for i in range(10)))
    assert "team-size" in {p.code for p in plan.assess(ten) if p.severity == "error"}
    nine = team(*(mate(f"m{i}", f"d{i}/") for i in range(9)))
    assert not [p for p in plan.assess(nine) if p.severity == "error"]
    wide = team(mate("a", "a/"), mate("b", "b/"), max_parallel=9)
    assert [p.code for p in plan.assess(wide)] == ["team-size"]


def test_a_read_of_another_teammates_files_without_blocked_by_is_a_hidden_dependency() -> None:
    config = team(mate("api", "src/api/**", read=["src/models/**"]), mate("models", "src/models/"),
                  mate("web", "src/web/**", read=["src/models/user.py"], blocked_by=["models"]),
                  mate("docs", "docs/**", read=["src/web/*.html"]))
    hidden = plan.hidden_dependencies(config, [t.name for t in config.teammates])
    assert [p.teammates for p in hidden] == [("api", "models"), ("docs", "web")]
    assert all(p.severity == "warning" for p in hidden)
    assert [p.example for p in hidden] == ["src/models/a", "src/web/a.html"]
    assert "(both cover src/models/a)" in hidden[0].message


def test_hidden_dependencies_are_proved_like_overlaps_not_guessed_from_prefixes() -> None:
    """The click trial's map: every warning the prefix comparison gave was false."""
    config = team(
        mate("utils", "src/click/utils.py", read=["src/click/core.py", "/README.md"]),
        {**mate("core", "src/click/core.py", read=["src/click/utils.py"]), "exclusive_write":
         ["src/click/*.py", "!src/click/utils.py"]},
        mate("docs", "/docs/", read=["/CHANGES.md", "/README.md", "src/click/*.pyi"]),
        mate("meta", "/CHANGES.md", read=["docs/*.txt"]),
        mate("types", "src/click/*.pyi", read=["src/click/*.txt"]),
    )
    hidden = plan.hidden_dependencies(config, [t.name for t in config.teammates])
    # utils/core read each other's files for real; docs reads meta's CHANGES.md and types' stubs;
    # meta reads docs' text files. Two files of one folder, or a root file, prove nothing else.
    assert [(p.teammates, p.example) for p in hidden] == [
        (("utils", "core"), "src/click/core.py"),
        (("core", "utils"), "src/click/utils.py"),
        (("docs", "meta"), "CHANGES.md"),
        (("docs", "types"), "src/click/a.pyi"),
        (("meta", "docs"), "docs/a.txt"),
    ]
    # An exclusion in the read list counts too.
    config = team(mate("a", "src/x/**", read=["src/**", "!src/x/**"]), mate("b", "src/x/gen/"))
    assert plan.hidden_dependencies(config, ["a", "b"]) == []


def test_sparse_directories_cover_every_pattern_or_give_up() -> None:
    assert plan.sparse_directories(["src/api/**", "tests/api/", "docs/guide.md", "/Makefile"]) == \
        ["docs", "src/api", "tests/api"]
    assert plan.sparse_directories(["src/api/**", "*.md"]) is None


def test_the_prompt_says_everything_an_agent_needs() -> None:
    config = team(mate("api", "src/api/**", role="Backend", read=["src/models/**"], blocked_by=["models"],
                       done_when=["tests/api/test_orders.py"], verify=["pytest -q"]),
                  mate("models", "src/models/"))
    text = plan.prompt_for(config, config.teammate("api"), "Orders endpoint\n\nbody $(rm -rf /)", "r7")
    for expected in ("You are api, Backend, on team t", "Run r7", "Do api.", "<issue>", "$(rm -rf /)",
                     "`src/api/**`", "`src/models/**`", "finished work of models", "Write only the files you own",
                     "`tests/api/test_orders.py` exists", "`pytest -q` passes", "RALLY_REPORT_FILE"):
        assert expected in text
    assert "<issue>" not in plan.prompt_for(config, config.teammate("models"), None, "r7")


MAP = SAMPLE_MAP + """\
  - name: end
    task: A name Mermaid would read as a keyword.
    exclusive_write: [docs/**]
    agent: {preset: command, command: ["true"]}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", {"rally.yml": MAP})


def test_plan_matrix_is_one_actions_matrix_per_wave_and_goes_to_github_output(repo: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    output_file = tmp_path / "gh-output"
    code = plan_cmd.run(repo, read({"GITHUB_OUTPUT": str(output_file)}), out, options=PlanOptions(fmt="matrix"))
    assert code == 0
    matrix = json.loads(out.getvalue())
    assert matrix == {"wave-1": {"include": [{"teammate": "api"}, {"teammate": "end"}]},
                      "wave-2": {"include": [{"teammate": "web"}]}}
    written = output_file.read_text()
    assert f"matrix={json.dumps(matrix, separators=(',', ':'))}\n" in written
    # What docs/workflows/rally-matrix.yml reads: one output per wave, how many waves, the map's cap.
    assert f"wave-2={json.dumps(matrix['wave-2'], separators=(',', ':'))}\n" in written
    assert "waves=2\n" in written and "max-parallel=4\n" in written


def test_plan_mermaid_draws_blocked_by_edges(repo: Path) -> None:
    out = io.StringIO()
    assert plan_cmd.run(repo, read({}), out, options=PlanOptions(fmt="mermaid")) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "graph TD"
    assert "  t_api --> t_web" in lines and '  t_end["end"]' in lines


def test_plan_text_and_json_show_waves_prompts_and_refusals(repo: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    assert plan_cmd.run(repo, read({}), out) == 0
    text = out.getvalue()
    assert "wave 1: api, end" in text and "wave 2: web" in text and "--- prompt for web" in text
    out = io.StringIO()
    tasks = tmp_path / "tasks.md"
    tasks.write_text("```rally\napi: Ship it by Friday\nend: {}\nweb: {}\n```\n")
    assert plan_cmd.run(repo, read({}), out, options=PlanOptions(fmt="json", tasks_path=tasks)) == 0
    data = json.loads(out.getvalue())
    assert data["waves"] == [["api", "end"], ["web"]] and not data["refused"]
    assert "Ship it by Friday" in data["teammates"][0]["prompt"]


def test_a_refused_plan_exits_1(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "solo", {"rally.yml": MAP.split("  - name: web")[0]})
    out = io.StringIO()
    assert plan_cmd.run(repo, read({}), out) == 1
    assert "refused: only 1 teammate would run" in out.getvalue()


def test_team_size_counts_who_runs_not_the_whole_map() -> None:
    from rally_gh.config import load_config_text
    from rally_gh.plan import assess

    mates = "".join(f"  - name: t{i}\n    exclusive_write: [/d{i}/]\n" for i in range(12))
    config = load_config_text(f"version: 1\nteam: big\nteammates:\n{mates}").config
    assert any(p.code == "team-size" for p in assess(config))
    assert not any(p.code == "team-size" for p in assess(config, {"t0", "t1", "t2"}))


def test_in_actions_the_events_issue_chooses_who_runs(repo: Path, tmp_path: Path) -> None:
    """The plan job and every teammate job of a split run read the same issue."""
    from rally_gh.commands import run as run_cmd

    event = tmp_path / "event.json"
    body = "Orders, please.\n\n```rally\napi: Build /orders\nend: Write the docs\n```\n"
    event.write_text(json.dumps({"action": "labeled", "issue": {"number": 7, "title": "Orders", "body": body}}))
    env = {"GITHUB_EVENT_PATH": str(event)}
    out = io.StringIO()
    assert plan_cmd.run(repo, read(env), out, options=PlanOptions(fmt="matrix")) == 0
    assert json.loads(out.getvalue()) == {"wave-1": {"include": [{"teammate": "api"}, {"teammate": "end"}]}}
    out = io.StringIO()
    assert run_cmd.teammate(repo, read(env), out, options=run_cmd.TeammateOptions("web", "r7")) == 0
    assert out.getvalue() == "web: not in this run (the issue's rally block names api, end)\n"


SIX = """\
version: 1
team: six
defaults: {agent: {preset: command, command: ["true"]}}
teammates:
  - {name: schema, exclusive_write: [/db/], task: Schema.}
  - {name: api, exclusive_write: [/src/api/], task: API.}
  - {name: web, exclusive_write: [/src/web/], blocked_by: [api], task: Web.}
  - {name: docs, exclusive_write: [/docs/], task: Docs.}
  - {name: ops, exclusive_write: [/ops/], task: Ops.}
  - {name: qa, exclusive_write: [/qa/], task: QA.}
"""


def test_a_plan_for_some_teammates_lists_and_prompts_only_who_runs(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"rally.yml": SIX})
    (repo / "tasks.md").write_text("api: Build /orders\nweb: The orders page\ndocs: Document /orders\n")
    out = io.StringIO()
    assert plan_cmd.run(repo, read({}), out, options=PlanOptions(tasks_path=repo / "tasks.md")) == 0
    text = out.getvalue()
    assert text.startswith("Team six: 3 of 6 teammates in 2 waves, at most 4 at once\n")
    assert "  wave 1: api, docs\n  wave 2: web\n  integration order: api, docs, web\n" in text
    prompts = text.split("--- prompt for ")[1:]
    assert [p.split(" ", 1)[0] for p in prompts] == ["api", "web", "docs"]
    api, web, docs = prompts
    # In parallel with its own wave only: not schema, ops, qa (not running), not web (waits for api).
    assert "in parallel with docs. Each of you" in api and "finished work of" not in api
    assert "while no other teammate works" in web and "finished work of api." in web
    assert "in parallel with api. Each of you" in docs

    out = io.StringIO()
    plan_cmd.run(repo, read({}), out, options=PlanOptions(fmt="json", tasks_path=repo / "tasks.md"))
    data = json.loads(out.getvalue())
    assert [t["name"] for t in data["teammates"]] == ["api", "web", "docs"]
    assert data["integration_order"] == ["api", "docs", "web"]
    assert [t["blocked_by"] for t in data["teammates"]] == [[], ["api"], []]

    out = io.StringIO()
    plan_cmd.run(repo, read({}), out, options=PlanOptions(fmt="mermaid", tasks_path=repo / "tasks.md"))
    assert "schema" not in out.getvalue() and "t_api --> t_web" in out.getvalue()


def test_one_teammate_one_wave_reads_in_the_singular(repo: Path) -> None:
    config = team(mate("a", "/a/"), mate("b", "/b/"))
    assert plan.plan_text(config, [["a", "b"]], [], None, None).startswith("Team t: 2 teammates in 1 wave, ")
