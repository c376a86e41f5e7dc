"""``rally-gh plan``: the waves, each teammate's prompt, refusals and warnings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from rally_gh import git, plan
from rally_gh.config import Config, Problem, find_config, load_config
from rally_gh.errors import EXIT_FAILED, EXIT_OK, GitError, UsageError
from rally_gh.report import mermaid_flowchart

PLAN_RUN_ID = "<run>"  # the prompt names the run; a plan has none yet


def run(cwd: Path, config_path: Path | None, fmt: str, issue: int | None, tasks_path: Path | None,
        handoff_path: Path | None, environ: Mapping[str, str], stdout: TextIO) -> int:
    if handoff_path is not None:
        raise UsageError("--from-handoff is not supported by this version of rally-gh",
                         hint="plan from the map (and --tasks FILE for this run's tasks)")
    try:
        root = git.workdir(git.open_repo(cwd))
    except GitError:
        root = cwd  # planning needs only the map
    issue_text = _read_tasks(tasks_path)
    config, selected = for_this_run(load_config(find_config(root, config_path)).config, issue_text)
    problems = plan.assess(config, selected)
    refused = any(p.severity == "error" for p in problems)
    waves = plan.waves(config, selected)
    if fmt == "json":
        json.dump(plan_json(config, waves, problems, issue_text), stdout, indent=2)
        stdout.write("\n")
    elif fmt == "mermaid":
        stdout.write(mermaid_graph(config))
    elif fmt == "matrix":
        matrix = wave_matrix(waves)
        text = json.dumps(matrix, separators=(",", ":"))
        stdout.write(text + "\n")
        output_file = environ.get("GITHUB_OUTPUT")
        if output_file:
            with open(output_file, "a", encoding="utf-8") as fh:
                fh.write(f"matrix={text}\n")
                for wave, value in matrix.items():
                    fh.write(f"{wave}={json.dumps(value, separators=(',', ':'))}\n")
    else:
        stdout.write(plan_text(config, waves, problems, issue_text, issue))
    return EXIT_FAILED if refused else EXIT_OK


def for_this_run(config: Config, issue_text: str | None) -> tuple[Config, frozenset[str] | None]:
    """The map with the issue's tasks in place, and who runs (None: everyone)."""
    tasks = plan.issue_tasks(issue_text, config)
    if tasks is None:
        return config, None
    return plan.with_issue_tasks(config, tasks), frozenset(tasks)


def _read_tasks(tasks_path: Path | None) -> str | None:
    if tasks_path is None:
        return None
    try:
        return tasks_path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"--tasks {tasks_path}: cannot read it: {err.strerror}") from None


def plan_json(config: Config, waves: list[list[str]], problems: list[Problem], issue_text: str | None) -> dict[str, object]:
    return {
        "team": config.team,
        "refused": any(p.severity == "error" for p in problems),
        "waves": waves,
        "integration_order": plan.integration_order(config),
        "problems": [
            {"severity": p.severity, "code": p.code, "message": p.message, "teammates": list(p.teammates)}
            for p in problems
        ],
        "teammates": [
            {
                "name": t.name,
                "role": t.role,
                "blocked_by": list(t.blocked_by),
                "exclusive_write": list(t.exclusive_write),
                "prompt": plan.prompt_for(config, t, issue_text, PLAN_RUN_ID),
            }
            for t in config.teammates
            if any(t.name in wave for wave in waves)
        ],
    }


def mermaid_graph(config: Config) -> str:
    return mermaid_flowchart([(t.name, f"{t.name}<br/>{t.role}" if t.role else t.name, t.blocked_by)
                              for t in config.teammates])


def wave_matrix(waves: list[list[str]]) -> dict[str, dict[str, list[dict[str, str]]]]:
    """A GitHub Actions matrix per wave, for runs split across jobs (SPEC section 7)."""
    return {f"wave-{i}": {"include": [{"teammate": n} for n in wave]} for i, wave in enumerate(waves, 1)}


def plan_text(config: Config, waves: list[list[str]], problems: list[Problem], issue_text: str | None,
              issue: int | None) -> str:
    out = [f"Team {config.team}: {len(config.teammates)} teammates in {len(waves)} wave(s), "
           f"at most {config.max_parallel} at once" + (f", issue #{issue}" if issue else "")]
    for i, wave in enumerate(waves, 1):
        out.append(f"  wave {i}: {', '.join(wave)}")
    out.append(f"  integration order: {', '.join(plan.integration_order(config))}")
    if problems:
        out.append("")
        for p in problems:
            out.append(f"{'refused' if p.severity == 'error' else 'warning'}: {p.message}")
    for t in config.teammates:
        if not any(t.name in wave for wave in waves):
            continue
        out += ["", f"--- prompt for {t.name} " + "-" * max(0, 60 - len(t.name)), ""]
        out.append(plan.prompt_for(config, t, issue_text, PLAN_RUN_ID).rstrip())
    return "\n".join(out) + "\n"
