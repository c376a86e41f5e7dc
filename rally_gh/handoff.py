"""Handoffs between rally-gh and other agent pipelines.

In: ``plan --from-handoff FILE``, a task list written by a planning agent
(YAML or JSON)::

    tasks:
      - id: orders-schema
        description: Add the orders table and its migration
        files: [db/migrations/*.sql, db/schema.sql]
      - id: orders-endpoint
        description: Implement GET and POST /orders
        files: [src/api/orders.py, tests/api/test_orders.py]
        depends_on: [orders-schema]

Each task goes to the one teammate that owns every file it touches. A planner
does not know the ownership map, so a task whose files belong to two teammates
is refused as hidden coupling (two agents would have to change them together
without seeing each other's work), and so is a file nobody owns. ``depends_on``
between tasks of different teammates becomes ``blocked_by`` for this run.

Out: ``nexus_handoff`` renders a run's report (``rally_gh.report.Report``) for the
next agent of a pipeline.
"""

from __future__ import annotations

import difflib
import graphlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ruamel.yaml.nodes import MappingNode, SequenceNode

from rally_gh.config import (
    MAX_CONFIG_BYTES,
    Config,
    ConfigInvalid,
    KeyPath,
    Location,
    NodeReader,
    Problem,
    compose_yaml,
    describe_value,
    format_key_path,
    pattern_problem,
)
from rally_gh.errors import PatternError, UsageError
from rally_gh.ownership.globs import compile_glob
from rally_gh.ownership.overlap import find_overlaps
from rally_gh.ownership.rules import Ownership
from rally_gh.plan import blockers_closure
from rally_gh.report import Report, step_complete_fields
from rally_gh.tasks import DOCS, RunTasks, TasksRefused, TeammateTask, dependency_cycle

TASK_KEYS = ("id", "description", "files", "depends_on")


@dataclass(frozen=True)
class HandoffTask:
    id: str
    description: str
    files: tuple[str, ...]
    depends_on: tuple[str, ...]
    path: KeyPath  # where it was written, for messages


@dataclass(frozen=True)
class _Placed:
    """A task with the teammate that owns its files and the literal files among them."""

    task: HandoffTask
    teammate: str
    exact_files: tuple[str, ...]


def tasks_from_handoff(path: Path, config: Config) -> RunTasks:
    """This run's tasks from a handoff file; refused with every problem found."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"--from-handoff {path}: cannot read it: {err.strerror or err}") from None
    return handoff_tasks(raw, config, str(path))


def handoff_tasks(raw: bytes | str, config: Config, source: str) -> RunTasks:
    hint = f"fix {source} and plan again (the format is in {DOCS})"
    if len(raw) > MAX_CONFIG_BYTES:
        raise TasksRefused([Problem("error", "syntax", f"{source}: {len(raw)} bytes; the limit is "
                                    f"{MAX_CONFIG_BYTES}: a handoff lists tasks, not their contents")], hint)
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise UsageError(f"{source}: not UTF-8 text; save it as UTF-8") from None
    reader = NodeReader(source)
    problems: list[Problem] = []
    data = _read(text, source, reader, problems)
    # Every well-formed task is placed even when others are not: a planner fixes all at once.
    tasks = _tasks(data, reader, problems)
    placed = _place(tasks, config, reader, problems)
    return _run_tasks(placed, config, source, problems, hint)


def _named(problem: Problem, source: str) -> Problem:
    """A problem without a position (JSON, or about the whole plan) still names the file."""
    return problem if problem.location else replace(problem, message=f"{source}: {problem.message}")


def _order(problem: Problem) -> tuple[int, int]:
    return (problem.location.line, problem.location.column) if problem.location else (0, 0)


# --- Reading -------------------------------------------------------------------


def _read(text: str, source: str, reader: NodeReader, problems: list[Problem]) -> Any:
    """The document as dicts and tuples. JSON is read as JSON (YAML reads most
    JSON, but not a tab before a key), YAML with positions for every key."""
    if source.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            return _frozen(json.loads(text, object_pairs_hook=_no_duplicates))
        except json.JSONDecodeError as err:
            problems.append(Problem("error", "syntax", f"not valid JSON: {err.msg}",
                                    Location(source, err.lineno, err.colno)))
        except ValueError as err:
            problems.append(Problem("error", "syntax", str(err), Location(source, 1, 1)))
        return None
    try:
        root = compose_yaml(text, source)
    except ConfigInvalid as err:
        problems += [Problem(p.severity, p.code, p.message.replace("a rally.yml", "a handoff"), p.location)
                     for p in err.problems]
        return None
    if root is None or not isinstance(root, (MappingNode, SequenceNode)):
        problems.append(Problem("error", "schema", "a handoff is a list of tasks, or a mapping with tasks:",
                                Location(source, 1, 1)))
        return None
    data = reader.read(root, (), 0)
    problems += [Problem(p.severity, p.code, p.message.replace("a rally.yml", "a handoff"), p.location)
                 for p in reader.problems]
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}; keep one")
        out[key] = value
    return out


def _frozen(value: Any) -> Any:
    """JSON lists as tuples, the shape the YAML reader gives."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return value


def _tasks(data: Any, reader: NodeReader, problems: list[Problem]) -> list[HandoffTask]:
    def refuse(path: KeyPath, message: str) -> None:
        prefix = f"{format_key_path(path)}: " if path else ""
        problems.append(Problem("error", "handoff", prefix + message, _where(reader, path)))

    if data is None:
        return []
    base: KeyPath = ()
    if isinstance(data, dict):
        for key in data:
            if key != "tasks":
                refuse((key,), f"unknown key {key!r}; a handoff holds tasks: (a list)")
        data, base = data.get("tasks"), ("tasks",)
    if not isinstance(data, tuple) or not data:
        refuse(base, f"expected a list of tasks, got {describe_value(data)}")
        return []
    out: list[HandoffTask] = []
    for index, entry in enumerate(data):
        path = (*base, index)
        if not isinstance(entry, dict):
            refuse(path, f"a task is a mapping with id, description, files and depends_on, got {describe_value(entry)}")
            continue
        before = len(problems)
        for key in entry:
            if key not in TASK_KEYS:
                close = difflib.get_close_matches(key, TASK_KEYS, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                refuse((*path, key), f"unknown key {key!r}; {hint}a task has {', '.join(TASK_KEYS)}")
        for key in ("id", "description", "files"):
            if key not in entry:
                refuse(path, f"missing {key}")
        task_id = entry.get("id")
        if "id" in entry and not _is_id(task_id):
            refuse((*path, "id"), f"expected a name or a number, got {describe_value(task_id)}")
        description = entry.get("description")
        if "description" in entry and (not isinstance(description, str) or not description.strip()):
            refuse((*path, "description"), f"expected what to do, as text, got {describe_value(description)}")
        files = entry.get("files")
        if "files" in entry and (not isinstance(files, tuple) or not files
                                 or not all(isinstance(f, str) for f in files)):
            refuse((*path, "files"), "expected a list of the paths or patterns the task changes, e.g. "
                                     f"[src/api/orders.py], got {describe_value(files)}")
        depends_on = entry.get("depends_on", ())
        if not isinstance(depends_on, tuple) or not all(_is_id(d) for d in depends_on):
            refuse((*path, "depends_on"), f"expected a list of task ids, got {describe_value(depends_on)}")
        if len(problems) == before:
            out.append(HandoffTask(str(task_id), str(description).strip(), tuple(files or ()),
                                   tuple(str(d) for d in depends_on), path))
    seen: dict[str, HandoffTask] = {}
    for task in out:
        if task.id in seen:
            refuse((*task.path, "id"), f"duplicate task id {task.id!r} (also {format_key_path(seen[task.id].path)})")
        seen.setdefault(task.id, task)
    for task in out:
        for k, dep in enumerate(task.depends_on):
            if dep == task.id:
                refuse((*task.path, "depends_on", k), f"task {task.id!r} depends on itself; remove this entry")
            elif dep not in seen:
                close = difflib.get_close_matches(dep, list(seen), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                refuse((*task.path, "depends_on", k), f"unknown task {dep!r}; {hint}tasks are: {', '.join(seen)}")
    if len(seen) == len(out):  # ids are unique: a cycle among the well-formed tasks is the planner's too
        cycle = dependency_cycle({t.id: [d for d in t.depends_on if d != t.id] for t in out})
        if cycle:
            first = seen[cycle[0]]
            refuse((*first.path, "depends_on"), f"dependency cycle: {' -> '.join(cycle)} (each depends on the "
                                                "next); remove one of these depends_on entries")
    return out


def _is_id(value: Any) -> bool:
    return (isinstance(value, str) and bool(value.strip())) or (isinstance(value, int) and not isinstance(value, bool))


def _where(reader: NodeReader, path: KeyPath) -> Location | None:
    return reader.location(path) if reader.positions else None


# --- Placing tasks with teammates ----------------------------------------------


def _place(tasks: Sequence[HandoffTask], config: Config, reader: NodeReader,
           problems: list[Problem]) -> list[_Placed]:
    ownership = Ownership.from_config(config)
    out: list[_Placed] = []
    for task in tasks:
        owners: dict[str, list[str]] = {}  # teammate -> the files of the task it owns
        exact: list[str] = []
        for k, pattern in enumerate(task.files):
            where = (*task.path, "files", k)
            found, why = _owners_of_file(pattern, config, ownership)
            if why is not None:
                problems.append(Problem("error", "handoff", f"{format_key_path(where)}: task {task.id!r}: {why}",
                                        _where(reader, where), tuple(found)))
                continue
            for name in found:
                owners.setdefault(name, []).append(pattern)
            if len(found) == 1 and _is_file(pattern) and ownership.owner_of(pattern) == found[0]:
                exact.append(pattern)
        if len(owners) > 1:
            shares = "; ".join(f"{name} owns {', '.join(files)}" for name, files in owners.items())
            problems.append(Problem(
                "error", "hidden-coupling",
                f"{format_key_path(task.path)}: task {task.id!r} touches the files of {' and '.join(owners)} "
                f"({shares}): hidden coupling, two agents would change them together without seeing each other's "
                "work; split it into one task per teammate, with depends_on between them",
                _where(reader, task.path), tuple(owners)))
        elif len(owners) == 1:
            out.append(_Placed(task, next(iter(owners)), tuple(exact)))
    return out


def _is_file(pattern: str) -> bool:
    glob = compile_glob(pattern, allow_negation=False)
    return glob.literal == pattern and not glob.dir_only


def _owners_of_file(pattern: str, config: Config, ownership: Ownership) -> tuple[list[str], str | None]:
    """The teammates whose files ``pattern`` can touch, or why it cannot be used."""
    if pattern.startswith("!"):
        return [], f"{pattern!r}: files lists what the task changes; a '!' pattern means nothing here"
    problem = pattern_problem(pattern)
    if problem is not None:
        return [], problem
    try:
        glob = compile_glob(pattern, allow_negation=False)
    except PatternError as err:
        return [], err.message
    if glob.literal is not None and not glob.dir_only:
        claimed = list(ownership.owners_of(glob.literal))
        if len(claimed) > 1:
            return claimed, (f"{glob.literal!r} is claimed by {' and '.join(claimed)} in rally.yml (an overlap: "
                             "neither may write it); fix the map first (`rally-gh validate`)")
        if not claimed:
            return [], (f"{pattern!r} is owned by no teammate: no agent may write it; give it to a teammate in "
                        "rally.yml, or leave it out of the task")
        return claimed, None
    # A wildcard or a directory: whose patterns can share a path with it. The
    # handoff's paths are from the repository root, whatever CODEOWNERS would
    # make of a pattern without a slash.
    anchored = pattern if pattern.startswith("/") else "/" + pattern
    touched = [t.name for t in config.teammates
               if any(o.severity == "error" for o in find_overlaps([("", (anchored,)), (t.name, t.exclusive_write)]))]
    if not touched:
        return [], (f"{pattern!r} is owned by no teammate: no agent may write it; give it to a teammate in "
                    "rally.yml, or leave it out of the task")
    return touched, None


# --- The run's tasks --------------------------------------------------------------


def _run_tasks(placed: Sequence[_Placed], config: Config, source: str, problems: list[Problem],
               hint: str) -> RunTasks:
    teammate_of = {p.task.id: p.teammate for p in placed}
    by_teammate: dict[str, list[_Placed]] = {}
    for p in placed:
        by_teammate.setdefault(p.teammate, []).append(p)
    waits: dict[str, dict[str, tuple[str, str]]] = {}  # teammate -> blocker -> (task, the task it depends on)
    for p in placed:
        for dep in p.task.depends_on:
            blocker = teammate_of.get(dep)  # None: that task was refused, and said so
            if blocker is not None and blocker != p.teammate:
                waits.setdefault(p.teammate, {}).setdefault(blocker, (p.task.id, dep))
    map_waits = {t.name: set(t.blocked_by) for t in config.teammates}
    notes: list[Problem] = []
    for name, blockers in waits.items():
        for blocker, (task_id, dep) in blockers.items():
            if name in blockers_closure(config, blocker):
                problems.append(Problem(
                    "error", "cycle",
                    f"task {task_id!r} ({name}) depends on {dep!r} ({blocker}), but in rally.yml {blocker} waits "
                    f"for {name} (blocked_by): one of them must change; reorder the tasks or fix the map",
                    teammates=(name, blocker)))
            elif blocker not in map_waits[name]:
                notes.append(Problem(
                    "warning", "handoff-dependency",
                    f"{name} waits for {blocker} in this run (task {task_id!r} depends on {dep!r}); rally.yml has no "
                    f"blocked_by: [{blocker}] for {name}; add it there if it always holds",
                    teammates=(name, blocker)))
    if problems:
        raise TasksRefused(sorted((_named(p, source) for p in problems), key=_order), hint)
    order = {t.name: i for i, t in enumerate(config.teammates)}
    teammates = tuple(
        TeammateTask(name, _task_text(items, teammate_of, source),
                     tuple(dict.fromkeys(f for p in items for f in p.exact_files)) or None,
                     tuple(waits.get(name, {})))
        for name, items in sorted(by_teammate.items(), key=lambda kv: order[kv[0]])
    )
    return RunTasks(source, teammates, tuple(notes))


def _task_text(items: Sequence[_Placed], teammate_of: Mapping[str, str], source: str) -> str:
    """The teammate's tasks in dependency order, each with its files and what it waits for."""
    ids = {p.task.id: p for p in items}
    sorter = graphlib.TopologicalSorter({i: [d for d in p.task.depends_on if d in ids] for i, p in ids.items()})
    ordered = [ids[i] for i in sorter.static_order()]
    lines = [f"Tasks from the handoff {Path(source).name}, in this order:", ""]
    for n, p in enumerate(ordered, 1):
        lines.append(f"{n}. [{p.task.id}] {p.task.description}")
        lines.append(f"   Files: {', '.join(p.task.files)}")
        outside = [f"{d} ({teammate_of[d]})" for d in p.task.depends_on if d not in ids]
        if outside:
            lines.append(f"   Builds on: {', '.join(outside)}, already in your worktree")
    return "\n".join(lines) + "\n"


# --- Out: a run's result for the next agent -------------------------------------


_NEXT_AGENT = {
    "SUCCESS": "reviewer: review and merge the integration branch",
    "PARTIAL": "reviewer for what was integrated; rally-gh again for the teammates that did not make it",
    "BLOCKED": "a person: the shared blocker needs fixing before any agent can go on",
    "FAILED": "a person: inspect the teammate branches before starting agents again",
}


def nexus_handoff(report: Report) -> str:
    """A ``NEXUS_HANDOFF`` block of a run's report: what the next agent (or
    person) of a pipeline needs, and nothing it does not."""
    fields = step_complete_fields(report)
    status = fields["Status"]
    teammates = report.teammates
    summary = (f"{report.tasks.done}/{report.tasks.total} tasks done; integrated: "
               f"{', '.join(report.integrated) or 'nothing'}; team efficiency {report.tes}/100; "
               f"wall {report.wall_s:.0f}s; cost ${report.cost_usd:.2f}")
    findings = [f"{t.name}: {t.outcome}" + (f" ({t.reason})" if t.reason else "")
                for t in teammates if t.outcome != "done"]
    findings += [f"conflict: {c.teammate} on {', '.join(c.paths)} ({c.action})" for c in report.conflicts]
    findings += [f"violation: {v.teammate} wrote {v.path} ({v.kind}, owner {v.owner or 'nobody'})"
                 for v in report.violations]
    findings += [f"shared blocker of {', '.join(g.teammates)}: {g.signature}" for g in report.convergence]
    findings += [f"verification failed: {v.command}" for v in report.verification if not v.passed]
    artifacts = []
    if report.integration_sha:
        artifacts.append(f"integration branch {report.integration_branch} @ {report.integration_sha[:10]}")
    artifacts += [f"{t.name}: {t.branch}" + (f" @ {t.head_sha[:10]}" if t.head_sha else "")
                  + f" ({len(t.files_changed)} files changed)" for t in teammates]
    lines = ["```", "NEXUS_HANDOFF", f"Step: rally-gh run {report.run_id} (team {report.team})",
             "Agent: rally-gh", f"Status: {status}", f"Summary: {summary}"]
    for title, items in (("Findings", findings), ("Artifacts", artifacts), ("Risks", list(report.risks))):
        lines.append(f"{title}:" + ("" if items else " none"))
        lines += [f"- {item}" for item in items]
    lines += [f"Suggested next: {_NEXT_AGENT.get(status, _NEXT_AGENT['FAILED'])}",
              f"Next action: {fields['Next']}", "```"]
    return "\n".join(lines)
