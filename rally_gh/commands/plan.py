"""``rally-gh plan``: the waves, each teammate's prompt, refusals and warnings."""

from __future__ import annotations

import json
from dataclasses import replace
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from rally_gh import git, plan
from rally_gh.config import Config, LoadedConfig, Problem, find_config, load_config
from rally_gh.errors import EXIT_FAILED, EXIT_OK, GitError, RallyError, UsageError
from rally_gh.github.endpoint import GitHubEndpoint, IssueNumber
from rally_gh.handoff import tasks_from_handoff
from rally_gh.report import mermaid_flowchart
from rally_gh.tasks import RunTasks, apply_tasks, tasks_from_file, tasks_from_issue

PLAN_RUN_ID = "<run>"  # the prompt names the run; a plan has none yet


def run(cwd: Path, config_path: Path | None, fmt: str, issue: int | None, tasks_path: Path | None,
        handoff_path: Path | None, environ: Mapping[str, str], stdout: TextIO) -> int:
    try:
        root = git.workdir(git.open_repo(cwd))
    except GitError:
        root = cwd  # planning needs only the map
    # In Actions, the event's issue (its rally block chooses who runs); else --tasks or --from-handoff.
    event = Path(environ["GITHUB_EVENT_PATH"]) if environ.get("GITHUB_EVENT_PATH") else None
    issue, issue_text = issue_of_job(issue, event, environ)
    loaded = load_config(find_config(root, config_path))
    base_config = loaded.config
    announce = _split_run_announcer(fmt, issue, environ)
    try:
        tasks = tasks_for_this_run(base_config, issue_text, tasks_path, handoff_path, issue)
    except RallyError as err:
        if announce is not None:
            announce(err)
        raise
    config, selected = for_this_run(base_config, tasks)
    problems = plan.assess(config, selected) + ([] if tasks is None else list(tasks.notes))
    if fmt in ("text", "json"):
        # Not for the matrix: a split run's plan job runs no agent; each teammate job has its own machine.
        problems += _programs(root, replace(loaded, config=config), selected, environ)
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
        output_file = environ.get("GITHUB_OUTPUT")
        if output_file:
            with open(output_file, "a", encoding="utf-8") as fh:
                # The ready workflow has a fixed number of wave jobs: `waves` lets it refuse a plan with more,
                # `max-parallel` caps each wave's matrix as the map does.
                fh.write(f"matrix={text}\nwaves={len(matrix)}\nmax-parallel={config.max_parallel}\n")
                for wave, value in matrix.items():
                    fh.write(f"{wave}={json.dumps(value, separators=(',', ':'))}\n")
    else:
        stdout.write(plan_text(config, waves, problems, issue_text, issue, selected))
    return EXIT_FAILED if refused else EXIT_OK


def _programs(root: Path, loaded: LoadedConfig, selected: frozenset[str] | None,
              environ: Mapping[str, str]) -> list[Problem]:
    """Agent programs and preset CLIs that would not start, as ``run`` refuses them."""
    from rally_gh.orchestrate import agent_program_problems

    try:
        repo: git.Repository | None = git.open_repo(root)
    except GitError:
        repo = None
    return agent_program_problems(repo, loaded, selected, environ)


def _split_run_announcer(fmt: str, issue: int | None,
                         environ: Mapping[str, str]) -> Callable[[RallyError | None], None] | None:
    """In the plan job of a split run (``--format matrix`` with RALLY_RUN_ID, an issue and a
    token), what ``run`` does at its start: the refusal as a comment, or 👀, ``rally:running``
    and the progress comment, so that a split run looks like a single-job one from the issue."""
    run_id = environ.get("RALLY_RUN_ID")
    if fmt != "matrix" or not run_id or issue is None or not has_token(environ):
        return None

    def announce(refusal: RallyError | None) -> None:
        from rally_gh import publish
        from rally_gh.github.endpoint import run_marker
        from rally_gh.github.real import RealGitHub
        from rally_gh.tasks import refusal_comment

        endpoint = RealGitHub.from_environment(environ)
        if refusal is None:
            publish.announce(endpoint, IssueNumber(issue), run_id)
        else:
            marker = run_marker(run_id)
            endpoint.upsert_comment(IssueNumber(issue), marker, f"{marker}\n{refusal_comment(refusal)}")

    return announce


def issue_from_event(issue: int | None, event_path: Path | None) -> tuple[int | None, str | None]:
    """The issue number and text from a GitHub event file (the text reaches agents
    only through their prompt files, never a shell)."""
    text = None
    if event_path is not None:
        try:
            event = json.loads(event_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise UsageError(f"--event {event_path}: not a readable JSON event: {err}") from None
        found = event.get("issue") if isinstance(event, dict) else None
        if isinstance(found, dict):
            issue = issue if issue is not None else found.get("number")
            text = "\n\n".join(str(found.get(k) or "") for k in ("title", "body")).strip() or None
    return issue, text


def has_token(environ: Mapping[str, str]) -> bool:
    """Whether GitHub's API may be asked (in Actions); without a token a run is local."""
    return bool(environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN"))


def issue_text_from_github(endpoint: GitHubEndpoint, issue: int) -> str | None:
    """The issue's text as GitHub has it now: a dispatch names the issue but does not carry its text."""
    found = endpoint.issue(IssueNumber(issue))
    return f"{found.title}\n\n{found.body}".strip() or None


def issue_of_job(issue: int | None, event_path: Path | None, environ: Mapping[str, str]) -> tuple[int | None, str | None]:
    """The issue number and text of a job of a split run (plan, teammate, merge): the event's,
    and for a dispatch naming an issue, its text from GitHub when there is a token, as ``run``
    does, so that every job reads the same ``rally`` block and prompts."""
    issue, text = issue_from_event(issue, event_path)
    if (text is not None or event_path is None or environ.get("GITHUB_EVENT_NAME") != "workflow_dispatch"
            or not has_token(environ)):
        return issue, text
    from rally_gh.github.events import load_event
    from rally_gh.github.real import RealGitHub

    named = load_event("workflow_dispatch", event_path).issue
    number = named if named is not None else issue
    if number is None:
        return issue, None
    return number, issue_text_from_github(RealGitHub.from_environment(environ), number)


def tasks_for_this_run(config: Config, issue_text: str | None, tasks_path: Path | None,
                       handoff_path: Path | None, issue: int | None) -> RunTasks | None:
    """This run's tasks: a handoff file, else a tasks file, else the issue's ``rally`` block."""
    if handoff_path is not None and tasks_path is not None:
        raise UsageError("--tasks and --from-handoff both give this run's tasks", hint="give one of them")
    if handoff_path is not None:
        return tasks_from_handoff(handoff_path, config)
    if tasks_path is not None:
        return tasks_from_file(tasks_path, config)
    if issue_text:
        return tasks_from_issue(issue_text, config, f"issue #{issue}" if issue is not None else "issue body")
    return None


def for_this_run(config: Config, tasks: RunTasks | None) -> tuple[Config, frozenset[str] | None]:
    """The map with this run's tasks in place, and who runs (None: everyone)."""
    if tasks is None:
        return config, None
    return apply_tasks(config, tasks), frozenset(tasks.names)


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


def plan_text(config: Config, waves: list[list[str]], problems: list[Problem], issue_text: str | None,
              issue: int | None, selected: frozenset[str] | None = None) -> str:
    running = sum(len(wave) for wave in waves)
    who = (f"{running} of {len(config.teammates)} teammates" if running != len(config.teammates)
           else _count(running, "teammate"))
    out = [f"Team {config.team}: {who} in {_count(len(waves), 'wave')}, "
           f"at most {config.max_parallel} at once" + (f", issue #{issue}" if issue else "")]
    for i, wave in enumerate(waves, 1):
        out.append(f"  wave {i}: {', '.join(wave)}")
    out.append(f"  integration order: {', '.join(plan.integration_order(config, selected))}")
    if problems:
        out.append("")
        for p in problems:
            out.append(f"{'refused' if p.severity == 'error' else 'warning'}: {p.message}")
    for t in config.teammates:
        if not any(t.name in wave for wave in waves):
            continue
        out += ["", f"--- prompt for {t.name} " + "-" * max(0, 60 - len(t.name)), ""]
        out.append(plan.prompt_for(config, t, issue_text, PLAN_RUN_ID, selected).rstrip())
    return "\n".join(out) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"
