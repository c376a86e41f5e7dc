"""``rally-gh plan``: the waves, each teammate's prompt, refusals and warnings."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from rally_gh import git, plan
from rally_gh.config import Config, LoadedConfig, Problem, find_config, load_config
from rally_gh.errors import EXIT_FAILED, EXIT_OK, GitError, RallyError
from rally_gh.github.actions import ActionsContext, connect, issue_of_job, read_event
from rally_gh.github.endpoint import IssueNumber
from rally_gh.plan import PLAN_RUN_ID, plan_text
from rally_gh.report import mermaid_flowchart
from rally_gh.tasks import for_this_run, tasks_for_this_run

@dataclass(frozen=True)
class PlanOptions:
    config_path: Path | None = None
    fmt: str = "text"
    """text, json, mermaid or matrix."""
    issue: int | None = None
    tasks_path: Path | None = None
    handoff_path: Path | None = None


def run(cwd: Path, actions: ActionsContext, stdout: TextIO, *, options: PlanOptions = PlanOptions()) -> int:
    fmt = options.fmt
    try:
        root = git.workdir(git.open_repo(cwd))
    except GitError:
        root = cwd  # planning needs only the map
    # In Actions, the event's issue (its rally block chooses who runs); else --tasks or --from-handoff.
    issue, issue_text = issue_of_job(actions, read_event(actions), options.issue)
    loaded = load_config(find_config(root, options.config_path))
    base_config = loaded.config
    announce = _split_run_announcer(fmt, issue, actions)
    try:
        tasks = tasks_for_this_run(base_config, issue_text, options.tasks_path, options.handoff_path, issue)
    except RallyError as err:
        if announce is not None:
            announce(err)
        raise
    config, selected = for_this_run(base_config, tasks)
    problems = plan.assess(config, selected) + ([] if tasks is None else list(tasks.notes))
    if fmt in ("text", "json"):
        # Not for the matrix: a split run's plan job runs no agent; each teammate job has its own machine.
        problems += _programs(root, replace(loaded, config=config), selected, actions.environ)
    refused = any(p.severity == "error" for p in problems)
    if announce is not None:
        errors = [p for p in problems if p.severity == "error"]
        announce(RallyError("the plan is refused: " + "; ".join(p.message for p in errors)) if errors else None)
    waves = plan.waves(config, selected)
    if fmt == "json":
        json.dump(plan_json(config, waves, problems, issue_text, selected), stdout, indent=2)
        stdout.write("\n")
    elif fmt == "mermaid":
        stdout.write(mermaid_graph(config, selected))
    elif fmt == "matrix":
        matrix = wave_matrix(waves)
        text = json.dumps(matrix, separators=(",", ":"))
        stdout.write(text + "\n")
        # The ready workflow has a fixed number of wave jobs: `waves` lets it refuse a plan with more,
        # `max-parallel` caps each wave's matrix as the map does.
        from rally_gh.publish import write_outputs

        # issue-text: a dispatch's event does not carry it, and the teammate and merge jobs hold no token to read it.
        write_outputs(actions.output_file, {
            "matrix": text, "waves": str(len(matrix)), "max-parallel": str(config.max_parallel),
            "issue-text": issue_text or "",
            **{wave: json.dumps(value, separators=(",", ":")) for wave, value in matrix.items()}})
    else:
        stdout.write(plan_text(config, waves, problems, issue_text, issue, selected))
    return EXIT_FAILED if refused else EXIT_OK


def _programs(root: Path, loaded: LoadedConfig, selected: frozenset[str] | None,
              environ: Mapping[str, str]) -> list[Problem]:
    """Agent programs and preset CLIs that would not start, as ``run`` refuses them."""
    from rally_gh.run.assess import agent_program_problems

    try:
        repo: git.Repository | None = git.open_repo(root)
    except GitError:
        repo = None
    return agent_program_problems(repo, loaded, selected, environ)


def _split_run_announcer(fmt: str, issue: int | None,
                         actions: ActionsContext) -> Callable[[RallyError | None], None] | None:
    """In the plan job of a split run (``--format matrix`` with RALLY_RUN_ID, an issue and a
    token), what ``run`` does at its start: the refusal as a comment, or 👀, ``rally:running``
    and the progress comment, so that a split run looks like a single-job one from the issue."""
    run_id = actions.inputs.split_run_id
    if fmt != "matrix" or not run_id or issue is None or actions.token is None:
        return None

    def announce(refusal: RallyError | None) -> None:
        from rally_gh import publish

        endpoint = connect(actions)
        if refusal is None:
            publish.announce(endpoint, IssueNumber(issue), run_id)
        else:
            publish.refuse_run(endpoint, IssueNumber(issue), run_id, refusal)

    return announce


def plan_json(config: Config, waves: list[list[str]], problems: list[Problem], issue_text: str | None,
              selected: frozenset[str] | None = None) -> dict[str, object]:
    return {
        "team": config.team,
        "refused": any(p.severity == "error" for p in problems),
        "waves": waves,
        "integration_order": plan.integration_order(config, selected),
        "problems": [
            {"severity": p.severity, "code": p.code, "message": p.message, "teammates": list(p.teammates)}
            for p in problems
        ],
        "teammates": [
            {
                "name": t.name,
                "role": t.role,
                "blocked_by": [b for b in t.blocked_by if selected is None or b in selected],
                "exclusive_write": list(t.exclusive_write),
                "prompt": plan.prompt_for(config, t, issue_text, PLAN_RUN_ID, selected),
            }
            for t in config.teammates
            if any(t.name in wave for wave in waves)
        ],
    }


def mermaid_graph(config: Config, selected: frozenset[str] | None = None) -> str:
    """Who runs, and who waits for whom among them."""
    return mermaid_flowchart([(t.name, f"{t.name}<br/>{t.role}" if t.role else t.name, t.blocked_by)
                              for t in config.teammates if selected is None or t.name in selected])


def wave_matrix(waves: list[list[str]]) -> dict[str, dict[str, list[dict[str, str]]]]:
    """A GitHub Actions matrix per wave, for runs split across jobs (SPEC section 7)."""
    return {f"wave-{i}": {"include": [{"teammate": n} for n in wave]} for i, wave in enumerate(waves, 1)}
