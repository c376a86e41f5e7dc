"""This run's tasks: the ``rally`` block of an issue body (SPEC section 5).

An issue may carry a fenced block tagged ``rally`` that gives per-teammate
tasks and chooses who runs::

    ```rally
    api: Implement the /orders endpoint
    web:
      task: Add the orders page
      done_when: [src/web/orders.tsx]
    ```

The issue is untrusted: the block may only pick teammates of the map on the
base commit and say what they do. Ownership, agents, timeouts and budgets come
from the map alone, so any other key is refused, as are unknown teammates,
aliases, tags and anything that is not text. Every refusal points at the line
and column of the issue body (not of the block) and says what to write instead.

The YAML is read with the map's own reader (``rally_gh.config``): the same
alias-free composer, the same positions, the same messages.
"""

from __future__ import annotations

import difflib
import graphlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from rally_gh.config import (
    MAX_CONFIG_BYTES,
    Config,
    ConfigInvalid,
    KeyPath,
    Location,
    NodeReader,
    Problem,
    Teammate,
    compose_yaml,
    describe_value,
    format_key_path,
    pattern_problem,
)
from rally_gh import docs_url
from rally_gh.errors import ConfigError, PatternError, RallyError, UsageError
from rally_gh.ownership.globs import compile_glob
from rally_gh.ownership.rules import Ownership
from rally_gh.words import code_fence, possessive

BLOCK_TAG = "rally"
BLOCK_KEYS = ("task", "done_when")
DOCS = docs_url("plans.md")
ISSUE_HINT = ("edit the rally block of the issue (one teammate a line, `name: task`, or `name:` with `task:` and "
              f"`done_when:`), then add the label again; see {DOCS}")

# The issue may choose who runs and what they do; everything else is the map's.
_MAP_ONLY = frozenset(Config.model_fields) | frozenset(Teammate.model_fields) - {"task", "done_when"}


@dataclass(frozen=True)
class TeammateTask:
    """What one teammate does in this run."""

    name: str
    task: str | None  # None: the map's task
    done_when: tuple[str, ...] | None = None  # None: the map's done_when
    blocked_by: tuple[str, ...] = ()  # waits added to the map's (a handoff's depends_on)


@dataclass(frozen=True)
class RunTasks:
    """The teammates that run, and their tasks. Teammates not named do not run."""

    source: str  # where the tasks were written, for messages: "issue body", "tasks.yml"
    teammates: tuple[TeammateTask, ...]
    notes: tuple[Problem, ...] = ()  # warnings to show with the plan

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.teammates)


class TasksRefused(ConfigError):
    """The tasks cannot be used. ``problems`` holds each finding with its position."""

    def __init__(self, problems: Sequence[Problem], hint: str) -> None:
        self.problems = list(problems)
        lines = [f"{p.location}: {p.message}" if p.location else p.message for p in self.problems]
        super().__init__("\n".join(lines), hint=hint)


# --- Finding the block -------------------------------------------------------

_FENCE = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")


@dataclass(frozen=True)
class Block:
    """The text of a ``rally`` block and where it sits in the document."""

    text: str
    first_line: int  # 1-based line of the document that holds the block's first line
    indent_removed: tuple[int, ...]  # spaces taken off each line (an indented fence indents its content)


def find_block(document: str) -> Block | None:
    """The first fenced block tagged ``rally`` (CommonMark fences: three or more
    backticks or tildes, indented at most three spaces), or None.

    Fences of other blocks are followed, so a ``rally`` fence shown inside
    another code block is not taken for the real one. An unclosed ``rally``
    fence is refused rather than run to the end of the issue: the text after it
    was most likely not meant as tasks.
    """
    lines = document.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    inside: tuple[str, int] | None = None  # (fence character, length) of another block
    for number, line in enumerate(lines, 1):
        match = _FENCE.fullmatch(line)
        if inside is not None:
            if match and match[2][0] == inside[0] and len(match[2]) >= inside[1] and not match[3].strip():
                inside = None
            continue
        if match is None:
            continue
        fence, info = match[2], match[3]
        if fence[0] == "`" and "`" in info:
            continue  # not a fence: CommonMark allows no backtick in a backtick fence's info string
        words = info.split()
        if not words or words[0] != BLOCK_TAG:
            inside = (fence[0], len(fence))
            continue
        return _block_after(lines, number, len(match[1]), fence)
    return None


def _block_after(lines: list[str], opened: int, indent: int, fence: str) -> Block:
    content: list[str] = []
    removed: list[int] = []
    for line in lines[opened:]:
        match = _FENCE.fullmatch(line)
        if match and match[2][0] == fence[0] and len(match[2]) >= len(fence) and not match[3].strip():
            return Block("\n".join(content), opened + 1, tuple(removed))
        strip = len(line) - len(line.lstrip(" ")) if indent else 0
        strip = min(strip, indent)
        content.append(line[strip:])
        removed.append(strip)
    raise TasksRefused(
        [Problem("error", "syntax", f"the {BLOCK_TAG} block opened here is never closed; end it with a line "
                                    f"holding only {fence}", Location("", opened, indent + 1))],
        hint=ISSUE_HINT,  # the caller says what to edit
    )


# --- Reading it --------------------------------------------------------------


def tasks_from_issue(body: str, config: Config, source: str = "issue body") -> RunTasks | None:
    """This run's tasks from an issue body, or None when it has no ``rally`` block
    (then every teammate runs with the map's task)."""
    try:
        block = find_block(body)
    except TasksRefused as err:
        raise _relabel(err, source, ISSUE_HINT) from None
    if block is None:
        return None
    return _read_block(block, config, source, ISSUE_HINT)


def tasks_from_file(path: Path, config: Config) -> RunTasks:
    """This run's tasks from a file (``--tasks FILE``): the ``rally`` block of an
    issue body saved as a file, or, when it has none, the whole file as the block."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise UsageError(f"--tasks {path}: cannot read it: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--tasks {path}: not UTF-8 text; save it as UTF-8") from None
    hint = f"fix {path} and run the command again (the format is in {DOCS})"
    try:
        block = find_block(text)
    except TasksRefused as err:
        raise _relabel(err, str(path), hint) from None
    if block is None:
        block = Block(text, 1, ())
    return _read_block(block, config, str(path), hint)


def _relabel(err: TasksRefused, source: str, hint: str) -> TasksRefused:
    return TasksRefused([_at(p, source) for p in err.problems], hint)


def _at(problem: Problem, source: str) -> Problem:
    loc = problem.location
    return problem if loc is None else replace(problem, location=Location(source, loc.line, loc.column))


def _read_block(block: Block, config: Config, source: str, hint: str) -> RunTasks:
    if len(block.text) > MAX_CONFIG_BYTES:
        raise TasksRefused([Problem("error", "syntax", f"{source}: the {BLOCK_TAG} block is "
                                    f"{len(block.text)} characters; the limit is {MAX_CONFIG_BYTES}")], hint)
    try:
        root = compose_yaml(block.text, source)
    except ConfigInvalid as err:
        raise TasksRefused([_shift(_reworded(p), block) for p in err.problems], hint) from None
    checker = _BlockChecker(config, source)
    tasks = checker.read(root)
    if checker.problems:
        raise TasksRefused(sorted((_shift(p, block) for p in checker.problems), key=_order), hint)
    return RunTasks(source, tuple(tasks))


class _BlockChecker:
    """Reads the composed block into teammate tasks, collecting every problem."""

    def __init__(self, config: Config, source: str) -> None:
        self.names = [t.name for t in config.teammates]
        self.ownership = Ownership.from_config(config)
        self.source = source
        self.reader = NodeReader(source)
        self.own_problems: list[Problem] = []

    @property
    def problems(self) -> list[Problem]:
        return [_reworded(p) for p in self.reader.problems] + self.own_problems

    def refuse(self, path: KeyPath, message: str, node: Node | None = None) -> None:
        where = Location(self.source, *_position(node)) if node is not None else self.reader.location(path)
        prefix = f"{format_key_path(path)}: " if path else ""
        names = (str(path[0]),) if path and path[0] in self.names else ()
        self.own_problems.append(Problem("error", "tasks", prefix + message, where, names))

    def read(self, root: Node | None) -> list[TeammateTask]:
        if root is None:
            self.refuse((), f"the {BLOCK_TAG} block is empty; name the teammates that run, one a line: "
                            "`api: Implement the /orders endpoint`")
            return []
        if not isinstance(root, MappingNode):
            self.refuse((), f"the {BLOCK_TAG} block must map teammate names to tasks "
                            f"(`api: Implement the /orders endpoint`), not {_node_kind(root)}", root)
            return []
        data = self.reader.read(root, (), 0)
        if not isinstance(data, dict):
            return []  # the reader said why
        if not data and not self.reader.problems:
            self.refuse((), f"the {BLOCK_TAG} block names no teammate", root)
        out = []
        for name, value in data.items():
            task = self.teammate_task(name, value)
            if task is not None:
                out.append(task)
        return out

    def teammate_task(self, name: str, value: Any) -> TeammateTask | None:
        if name not in self.names:
            self.refuse((name,), _not_a_teammate(name, self.names))
            return None
        if (name,) in self.reader.broken:
            return None  # an alias or a tag: already reported
        if isinstance(value, dict):
            return self.task_mapping(name, value)
        if isinstance(value, str) and value.strip():
            return TeammateTask(name, value)
        if isinstance(value, str):
            self.refuse((name,), f"empty task; write what {name} should do, or `{name}: {{}}` to keep the "
                                 "map's task")
        else:
            hint = f"; write `{name}: {{}}` to run it with the map's task" if value is None else ""
            self.refuse((name,), "expected a task (text) or a mapping with task: and done_when:, "
                                 f"got {describe_value(value)}{hint}")
        return None

    def task_mapping(self, name: str, value: dict[str, Any]) -> TeammateTask | None:
        before = len(self.own_problems)
        for key in value:
            if key in BLOCK_KEYS:
                continue
            if key in _MAP_ONLY:
                self.refuse((name, key), f"{key} is set only in rally.yml on the base commit: ownership, agents, "
                                         f"timeouts and budgets never come from an issue; a {BLOCK_TAG} block "
                                         "gives task: and done_when: only")
            else:
                close = difflib.get_close_matches(key, BLOCK_KEYS, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.refuse((name, key), f"unknown key {key!r}; {hint}allowed here: task, done_when")
        task = value.get("task")
        if "task" in value and (name, "task") not in self.reader.broken and (
                not isinstance(task, str) or not task.strip()):
            self.refuse((name, "task"), f"expected the task as text, got {describe_value(task)}")
        done_when = value.get("done_when")
        if "done_when" in value and (name, "done_when") not in self.reader.broken:
            if not isinstance(done_when, tuple) or not all(isinstance(p, str) for p in done_when):
                example = f" (done_when: [{json.dumps(done_when)}])" if isinstance(done_when, str) else ""
                self.refuse((name, "done_when"), f"expected a list of paths{example}, got {describe_value(done_when)}")
            else:
                for index, path in enumerate(done_when):
                    why = _done_when_problem(name, path, self.ownership)
                    if why is not None:
                        self.refuse((name, "done_when", index), why)
        broken = any(p[:1] == (name,) for p in self.reader.broken)
        if broken or len(self.own_problems) > before:
            return None
        return TeammateTask(name, task if isinstance(task, str) else None,
                            done_when if isinstance(done_when, tuple) else None)


def _done_when_problem(name: str, pattern: str, ownership: Ownership) -> str | None:
    problem = pattern_problem(pattern)
    if problem is not None:
        return problem
    try:
        glob = compile_glob(pattern, allow_negation=False)
    except PatternError as err:
        return err.message
    if glob.literal is None or glob.dir_only:
        return None  # a wildcard: checked against the changed files when the teammate is done
    owner = ownership.owner_of(glob.literal)
    if owner != name:
        holder = f"owned by {owner}" if owner else "owned by no single teammate"
        return (f"{glob.literal!r} is {holder}, so {name} can never change it; name a file {name} owns, or move "
                "the path to it in rally.yml")
    return None


def _not_a_teammate(key: str, names: Sequence[str]) -> str:
    if key in _MAP_ONLY:
        return (f"{key} is set only in rally.yml on the base commit: ownership, agents, timeouts and budgets never "
                f"come from an issue; a {BLOCK_TAG} block names teammates and their tasks")
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown teammate {key!r}; {hint}the team is: {', '.join(names)}"


def _reworded(problem: Problem) -> Problem:
    """The map's reader speaks of "a rally.yml"; here it reads a rally block."""
    return replace(problem, message=problem.message.replace("a rally.yml", f"a {BLOCK_TAG} block"))


def _shift(problem: Problem, block: Block) -> Problem:
    """A position in the block as a position in the document that holds it."""
    loc = problem.location
    if loc is None:
        return problem
    removed = block.indent_removed[loc.line - 1] if 0 < loc.line <= len(block.indent_removed) else 0
    return replace(problem, location=Location(loc.file, block.first_line + loc.line - 1, loc.column + removed))


def _order(problem: Problem) -> tuple[int, int]:
    return (problem.location.line, problem.location.column) if problem.location else (0, 0)


def _position(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _node_kind(node: Node) -> str:
    return "a list" if isinstance(node, SequenceNode) else f"the value {str(node.value)[:60]!r}"


# --- Applying them -----------------------------------------------------------


def apply_tasks(config: Config, tasks: RunTasks) -> Config:
    """The map for this run: the teammates ``tasks`` names get its task (and
    ``done_when``) in place of the map's, and a handoff's waits added to their
    ``blocked_by``. Who runs is ``tasks.names``: pass it on as the selection
    (``plan.assess``, ``plan.waves``, the orchestrator's ``selected``).

    Every teammate stays in the map, running or not: ownership is the whole
    map's, so a path another teammate also claims stays writable by neither,
    and a violation still names its real owner.

    A named teammate whose blocker does not run is refused rather than started
    from the base commit: its task was written for a tree that holds the
    blocker's work, and running it without would build on nothing.
    """
    wanted = {t.name: t for t in tasks.teammates}
    names = [t.name for t in config.teammates]
    problems: list[Problem] = []
    for name in wanted:
        if name not in names:
            problems.append(Problem("error", "tasks", f"{tasks.source}: {_not_a_teammate(name, names)}",
                                    teammates=(name,)))
    teammates: list[Teammate] = []
    for teammate in config.teammates:
        chosen = wanted.get(teammate.name)
        if chosen is None:
            teammates.append(teammate)
            continue
        blocked_by = tuple(dict.fromkeys([*teammate.blocked_by, *chosen.blocked_by]))
        for blocker in blocked_by:
            if blocker not in wanted:
                why = "rally.yml" if blocker in teammate.blocked_by else "its depends_on"
                problems.append(Problem(
                    "error", "blocker-not-running",
                    f"{teammate.name} is blocked by {blocker} ({why}), which {tasks.source} does not name: "
                    f"{teammate.name} would start without {possessive(blocker)} work; add {blocker} to the tasks so that it "
                    f"runs first, or leave {teammate.name} out",
                    teammates=(teammate.name, blocker)))
        teammates.append(teammate.model_copy(update={
            "task": teammate.task if chosen.task is None else chosen.task,
            "done_when": teammate.done_when if chosen.done_when is None else chosen.done_when,
            "blocked_by": blocked_by,
        }))
    cycle = dependency_cycle({t.name: t.blocked_by for t in teammates})
    if cycle:
        problems.append(Problem(
            "error", "cycle",
            f"dependency cycle: {' -> '.join(cycle)} (each waits for the next, combining rally.yml's blocked_by "
            f"with {tasks.source}); remove one of these dependencies", teammates=tuple(cycle[:-1])))
    if problems:
        raise TasksRefused(problems, hint=f"change {tasks.source} (see {DOCS})")
    return config.model_copy(update={"teammates": tuple(teammates)})


def tasks_for_this_run(config: Config, issue_text: str | None, tasks_path: Path | None,
                       handoff_path: Path | None, issue: int | None) -> RunTasks | None:
    """This run's tasks: a handoff file, else a tasks file, else the issue's ``rally`` block."""
    if handoff_path is not None and tasks_path is not None:
        raise UsageError("--tasks and --from-handoff both give this run's tasks", hint="give one of them")
    if handoff_path is not None:
        from rally_gh.handoff import tasks_from_handoff  # handoff builds on this module

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


def dependency_cycle(waits: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle of ``waits`` (who waits for whom), from and back to its first
    member, each waiting for the next; [] when there is none. Names outside
    ``waits`` are not waited for."""
    try:
        graphlib.TopologicalSorter({k: [b for b in v if b in waits] for k, v in waits.items()}).prepare()
    except graphlib.CycleError as err:
        found = list(err.args[1])  # [a, ..., a]: each waits for the previous one
        return found[::-1]
    return []


# --- Telling the issue -------------------------------------------------------


def refusal_comment(error: RallyError) -> str:
    """The comment posted on the issue when its tasks (or the run) are refused.

    The problems quote the issue's own text, so they go in a code block: a
    quoted ``@team`` or Markdown in a teammate name must not ping or render.
    """
    problems = error.problems if isinstance(error, TasksRefused) else None
    lines = [f"{p.location}: {p.message}" if p.location else p.message for p in problems] if problems \
        else [error.message]
    body = "\n".join(lines)
    fence = code_fence(body)
    out = [
        "**rally-gh did not start**: " + ("the `rally` block of this issue was refused." if problems
                                         else "the run was refused."),
        "",
        f"{fence}text",
        body,
        fence,
        "",
    ]
    if error.hint:
        out += [f"What to do: {error.hint}", ""]
    if problems:
        out += [
            "A `rally` block names the teammates that run (the others do not) and gives each a task:",
            "",
            "````markdown",
            "```rally",
            "api: Implement the /orders endpoint",
            "web:",
            "  task: Add the orders page",
            "  done_when: [src/web/orders.tsx]",
            "```",
            "````",
            "",
            "Ownership, agents, timeouts and budgets come only from `rally.yml` on the base branch.",
        ]
    return "\n".join(out) + "\n"

