"""The ownership map, ``rally.yml``: models, loading and validation.

The models are the contract the rest of the package codes against. Loading
keeps the position of every key and list item so that any later check (the
overlap proof, a control-file grant) can point at ``rally.yml:LINE:COL``.

Loading is three passes over the file, each reporting every problem it finds
rather than the first: YAML is composed into nodes (no Python objects are
built, so aliases and tags cannot expand or execute anything) and read into
plain dicts and tuples with their positions; pydantic checks the shape; then
the checks that span teammates (names, ``blocked_by``, cycles, team size).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from rally_gh import docs_url
from rally_gh.errors import ConfigError, PatternError, UsageError
from rally_gh.limits import MAX_PARALLEL_PLAIN, MAX_TEAM, NAME_RE
from rally_gh.ownership.globs import compile_glob
from rally_gh.ownership.paths import hostile_reason

KeyPath = tuple[str | int, ...]

CONFIG_CANDIDATES = ("rally.yml", ".github/rally.yml")

MAX_CONFIG_BYTES = 1024 * 1024  # pure-Python YAML parses about 0.2 MB/s: 1 MiB is seconds, not minutes
MAX_DEPTH = 16  # the deepest key of the schema is 4 levels down
MAX_MESSAGE_LINES = 200  # beyond this the message says how to get the rest
MAX_TIMEOUT_SECONDS = 24 * 3600

DOCS = docs_url("rally-yml.md")


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One finding of ``validate``: an error makes the map unusable, a warning does not."""

    severity: Literal["error", "warning"]
    code: str  # schema | overlap | cycle | name | pattern | control-file | unmatched | unowned | ...
    message: str
    location: Location | None = None
    teammates: tuple[str, ...] = ()
    example: str | None = None

    def __str__(self) -> str:
        # As compilers write them: file:line:col: error: key: message.
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.severity}: {self.message}"


@dataclass(frozen=True)
class SourceMap:
    """Where each key path of the loaded document was written."""

    file: str
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath) -> Location:
        """The position of ``path``, else of its nearest written ancestor."""
        while path and path not in self.positions:
            path = path[:-1]
        line, col = self.positions.get(path, (1, 1))
        return Location(self.file, line, col)


def format_key_path(path: KeyPath) -> str:
    """``("teammates", 1, "exclusive_write", 0)`` -> ``teammates[1].exclusive_write[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class ConfigInvalid(ConfigError):
    """The map cannot be used. ``problems`` holds each finding with its position,
    for ``validate --format json``; the message lists them one a line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems, key=problem_order)
        super().__init__(_problem_lines(self.problems))


def problem_order(p: Problem) -> tuple[str, int, int]:
    """Problems in the order a person reads the file: by file, line, column (numbers, not text)."""
    loc = p.location
    return (loc.file, loc.line, loc.column) if loc else ("", 0, 0)


def _problem_lines(problems: Sequence[Problem]) -> str:
    lines = [f"{p.location}: {p.message}" if p.location else p.message for p in problems]
    if len(lines) > MAX_MESSAGE_LINES:
        rest = len(lines) - MAX_MESSAGE_LINES
        lines = [*lines[:MAX_MESSAGE_LINES],
                 f"... and {rest} more problems (rally-gh validate --format json lists them all)"]
    return "\n".join(lines)


# --- Values with a syntax of their own --------------------------------------

_DURATION_RE = re.compile(r"(?:(\d{1,6}(?:\.\d{1,6})?)h)?(?:(\d{1,6}(?:\.\d{1,6})?)m)?(?:(\d{1,6}(?:\.\d{1,6})?)s)?")
DURATION_HINT = "write a number with a unit: 45s, 20m, 1h30m, 2h"


def parse_duration(text: str) -> float:
    """``45s``, ``20m``, ``1h30m``, ``1.5h``, ``0.5s`` -> seconds. ValueError says how to write it."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration; {DURATION_HINT}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r} is no time at all; {DURATION_HINT}")
    if total > MAX_TIMEOUT_SECONDS:
        raise ValueError(f"{text!r} is more than 24h; a teammate that needs longer should be split in two")
    return total


def format_duration(seconds: float) -> str:
    """Seconds as ``rally.yml`` writes them, ``parse_duration`` read backwards: ``45s``, ``20m``,
    ``1h30m``, and ``0.5s`` under a minute."""
    if seconds < 60 and seconds != int(seconds):
        return f"{round(seconds, 2):g}s"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs and not hours else "")


def stop_words(timeout_s: float) -> str:
    """What ``timeout`` means, as every message says it: ``expected 2s, stopped at 4s``."""
    return f"expected {format_duration(timeout_s)}, stopped at {format_duration(2 * timeout_s)}"


def ref_problem(name: str) -> str | None:
    """Why ``name`` cannot be part of a git branch name (``git check-ref-format``), or None."""
    if not name:
        return "is empty"
    if name.startswith("-"):
        return "starts with '-' (git would read it as an option)"
    bad = sorted({c for c in name if c in " ~^:?*[\\" or ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        return "contains " + ", ".join(repr(c) for c in bad)
    if ".." in name or "@{" in name or "//" in name or name == "@":
        return "contains '..', '@{' or '//', or is '@'"
    if name.startswith("/") or name.endswith("/") or name.endswith("."):
        return "starts or ends with '/', or ends with '.'"
    for component in name.split("/"):
        if component.startswith(".") or component.endswith(".lock"):
            return f"has a component {component!r} that starts with '.' or ends with '.lock'"
    return None


_PATTERN_REASONS = {
    "has a '..' segment": "pattern escapes the repository",
    "absolute path": "pattern is an absolute path (one leading '/' anchors a pattern at the root; two are refused)",
    "has a '.git' segment": "pattern reaches into .git, which nobody may write",
    "contains a NUL byte": "pattern contains a NUL byte",
    "contains a control character": "pattern contains a control character",
}


def pattern_problem(pattern: str) -> str | None:
    """Why an ownership pattern is refused (hostile, empty, or not in the pattern language), or None."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body.strip("/"):
        return f"empty pattern {pattern!r}; write a path or a wildcard such as 'src/api/**'"
    if body != body.strip():
        return f"pattern has leading or trailing spaces: {pattern!r}"
    # A single leading '/' is CODEOWNERS' anchor, not an absolute path.
    reason = hostile_reason(body[1:] if body.startswith("/") else body)
    if reason is not None:
        return f"{_PATTERN_REASONS.get(reason, f'pattern refused ({reason})')}: {pattern!r}"
    # What the language itself refuses ('a//b', a lone final backslash), said here where
    # the pattern's line is known rather than later by whatever reads the map first.
    try:
        compile_glob(pattern)
    except PatternError as err:
        return f"{err.message}; {err.hint}" if err.hint else err.message
    return None


# --- Models -----------------------------------------------------------------
#
# Validators raise PydanticCustomError whose type is the problem code
# ("pattern", "name", "schema") and whose context may name the key the problem
# is about ("key"), so that a model-level check still points at a key.


def _refuse(message: str, code: str = "schema", key: str | None = None) -> PydanticCustomError:
    context: dict[str, Any] = {"message": message}
    if key is not None:
        context["key"] = key
    return PydanticCustomError(code, "{message}", context)


def _check_pattern(pattern: str) -> str:
    problem = pattern_problem(pattern)
    if problem is not None:
        raise _refuse(problem, "pattern")
    return pattern


def _check_ref(name: str) -> str:
    problem = ref_problem(name)
    if problem is not None:
        raise _refuse(f"{name!r} cannot be part of a git branch name: it {problem}")
    return name


def _duration_seconds(value: object, info: ValidationInfo) -> object:
    """A duration string becomes seconds. From Python a number is taken as seconds; in
    ``rally.yml`` a bare number is refused, since ``timeout: 20`` reads as 20 minutes
    to some and 20 seconds to others, and a wrong guess kills every agent."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as err:
            raise _refuse(str(err)) from None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _refuse(f"expected a duration, got {describe_value(value)}; {DURATION_HINT}")
    if info.context and info.context.get("from_file"):
        raise _refuse(f"a bare number ({value}) is ambiguous; {DURATION_HINT}")
    return value


Duration = Annotated[
    float,
    BeforeValidator(_duration_seconds),
    Field(gt=0, allow_inf_nan=False),
    WithJsonSchema({
        "type": "string",
        "minLength": 2,
        "pattern": r"^(\d+(\.\d+)?h)?(\d+(\.\d+)?m)?(\d+(\.\d+)?s)?$",
        "examples": ["45s", "20m", "1h30m"],
    }),
]
def _check_host(entry: str) -> str:
    """An egress allow-list entry: a host name (port 443), ``host:port``, or ``*.domain`` (any name below it)."""
    if not EGRESS_HOST_RE.fullmatch(entry):
        raise _refuse(f"{entry!r} is not a host: write a name such as api.anthropic.com, *.example.com, "
                      "or name:port (no scheme, no path)")
    return entry.lower()


EGRESS_HOST_RE = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
                            r"(:[1-9][0-9]{0,4})?")
Pattern = Annotated[str, AfterValidator(_check_pattern)]
EgressHost = Annotated[str, AfterValidator(_check_host)]
# true: the network as the machine has it; false: loopback only; a list: only those hosts, over
# HTTPS through rally-gh's proxy (the egress allow-list, docs/security.md).
def _network_shape(value: object) -> object:
    if isinstance(value, (bool, list, tuple)):
        return value
    raise _refuse(f"expected true, false or a list of hosts such as [api.anthropic.com], got {describe_value(value)}")


Network = Annotated[bool | tuple[EgressHost, ...], BeforeValidator(_network_shape)]
RefName = Annotated[str, AfterValidator(_check_ref)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# A CODEOWNERS owner, as rally_gh.ownership.codeowners reads one: @user, @org/team, or an e-mail address.
CodeOwner = Annotated[str, Field(pattern=r"^(@\S+|[^@\s]+@\S+)$")]
Preset = Literal["claude", "codex", "aider", "command"]
Checkout = Literal["full", "sparse"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False, allow_inf_nan=False)


class AgentSpec(_Model):
    """How a teammate's agent is started: a preset for a real agent CLI, or any program."""

    preset: Preset = Field(
        default="command",
        description="claude, codex or aider build the command for that agent CLI; "
        "command runs the program given in `command`.",
    )
    command: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="For preset command: the program and its arguments, e.g. [./agent.sh, --fast]. "
        "With shell: true, one string run by /bin/sh. The prompt arrives on standard input "
        "and in $RALLY_PROMPT_FILE.",
        json_schema_extra={"anyOf": [{"type": "array", "items": {"type": "string"}, "minItems": 1},
                                     {"type": "string"}, {"type": "null"}]},
    )
    args: tuple[str, ...] = Field(default=(), description="Extra arguments appended to the command.")
    model: str | None = Field(default=None, description="The model a preset asks its agent CLI for.")
    shell: bool = Field(
        default=False,
        description="Run `command`, one string, through /bin/sh (preset command only).",
    )
    env: tuple[EnvName, ...] = Field(
        default=(),
        description="Names of the runner's environment variables passed to the agent; "
        "everything else is withheld. Each one is shown as a risk in the report.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shell_string(cls, data: Any) -> Any:
        """``shell: true`` takes one string; it is kept as a one-item ``command``."""
        if isinstance(data, dict) and data.get("shell") is True and isinstance(data.get("command"), str):
            return {**data, "command": (data["command"],)}
        return data

    @model_validator(mode="after")
    def _preset_and_command(self) -> AgentSpec:
        if self.shell and self.command is not None and len(self.command) != 1:
            raise _refuse(f"with shell: true, command is one string run by /bin/sh; got {len(self.command)} items",
                          key="command")
        if self.preset == "command" and self.command is None:
            raise _refuse("preset command needs command: the program and its arguments, "
                          "e.g. command: [./agent.sh]; or choose a preset: claude, codex, aider", key="command")
        if self.preset != "command" and self.command is not None:
            raise _refuse(f"preset {self.preset} builds its own command; remove command (use args to add "
                          "arguments), or set preset: command", key="command")
        if self.preset != "command" and self.shell:
            raise _refuse(f"shell applies to preset command only, not to preset {self.preset}", key="shell")
        return self


class Defaults(_Model):
    """Values for every teammate that does not set its own."""

    agent: AgentSpec = Field(default=AgentSpec(preset="claude"), description="The agent of every teammate without one.")
    timeout: Duration = Field(
        default=20 * 60,
        description="Expected duration of a teammate, e.g. 20m; it is stopped at twice this.",
        json_schema_extra={"default": "20m"},
    )
    retries: int = Field(default=1, ge=0, le=5, description="Replacements after a crash or timeout (0 to 5).")
    checkout: Checkout = Field(
        default="full",
        description="full: a whole worktree per teammate; sparse: only its owned and read paths.",
    )
    network: Network = Field(
        default=True,
        description="Whether agents reach the network (their model's API): true, false (loopback only), "
                    "or a list of the only hosts they may reach over HTTPS, e.g. [api.anthropic.com].",
    )


class Budget(_Model):
    """Limits of a whole run; once spent, no new teammate starts."""

    max_cost_usd: float | None = Field(default=None, ge=0, description="Total agent cost, in US dollars.")
    max_minutes: float | None = Field(default=None, gt=0, description="Wall-clock minutes for the run.")


class MergeSpec(_Model):
    """How teammates' work is integrated."""

    order: Literal["dependency", "listed"] = Field(
        default="dependency",
        description="dependency: blockers first, then as listed; listed: as listed.",
    )
    on_conflict: Literal["skip", "stop"] = Field(
        default="skip",
        description="skip: leave out the conflicting teammate and go on; stop: stop integrating.",
    )
    verify: tuple[str, ...] = Field(
        default=(),
        description="Shell commands run on the integrated result; a failure is bisected to the teammates "
        "that caused it.",
    )
    env: tuple[EnvName, ...] = Field(
        default=(),
        description="Names of the runner's environment variables passed to merge.verify; everything else "
        "is withheld. Each one is shown as a risk in the report.",
    )
    network: bool = Field(
        default=True,
        description="false: merge.verify reaches no network but its own loopback, as a teammate with "
        "network: false (the teammates' code runs there: a test, a conftest.py).",
    )


class Approval(_Model):
    """When a run needs a person's approval before any agent starts: any rule that holds asks for it."""

    teammates: int | None = Field(
        default=None, ge=2, le=MAX_TEAM, description="A run of at least this many teammates.")
    high_risk: tuple[str, ...] = Field(
        default=(), description="Teammates whose work always needs approval (names of this map).")
    paths: tuple[Pattern, ...] = Field(
        default=(), description="Paths whose writers need approval (CODEOWNERS syntax), such as migrations/** or "
                                ".github/**: a run in which a teammate may write one of them.")


class Teammate(_Model):
    """One agent, its task and the paths only it may write."""

    name: str = Field(
        pattern=NAME_RE,
        description="Unique; lowercase letters, digits and '-', at most 39 characters. "
        "Used in branch names (rally/<run>/<name>).",
    )
    role: str = Field(default="", description="One line shown in the prompt and the report.")
    task: str = Field(default="", description="What to do; the issue text is added to it.")
    exclusive_write: tuple[Pattern, ...] = Field(
        min_length=1,
        description="CODEOWNERS patterns this teammate alone may write; a later '!pattern' (quoted) "
        "takes paths back out.",
    )
    read: tuple[Pattern, ...] = Field(
        default=(), description="Patterns named in the prompt as context; they grant no write."
    )
    blocked_by: tuple[str, ...] = Field(
        default=(),
        description="Teammates whose work this one starts from; it runs in a later wave.",
    )
    agent: AgentSpec | None = Field(default=None, description="This teammate's agent (default: defaults.agent).")
    timeout: Duration | None = Field(default=None, description="Expected duration (default: defaults.timeout).")
    retries: int | None = Field(default=None, ge=0, le=5, description="Replacements (default: defaults.retries).")
    checkout: Checkout | None = Field(default=None, description="full or sparse (default: defaults.checkout).")
    network: Network | None = Field(default=None, description="Whether its agent reaches the network: true, "
                                                              "false or a list of hosts (default: defaults.network).")
    mode: Literal["write", "plan"] = Field(
        default="write",
        description="write: the agent writes from the start; plan: it first runs read-only and writes a plan, "
        "which a person approves before it runs for real with the plan in its prompt.",
    )
    verify: tuple[str, ...] = Field(
        default=(), description="Shell commands that must pass in the teammate's worktree when it is done."
    )
    done_when: tuple[Pattern, ...] = Field(
        default=(), description="Paths that must exist and be changed when the teammate is done."
    )
    codeowners: tuple[CodeOwner, ...] = Field(
        default=(),
        description="GitHub owners who review this teammate's paths (@user, @org/team or an e-mail address), "
        "for `rally-gh codeowners export`; `rally-gh codeowners import` keeps a CODEOWNERS file's.",
    )


class Config(_Model):
    """The ownership map."""

    model_config = ConfigDict(title="rally.yml")

    version: Literal[1] = Field(default=1, description="The format version; always 1.")
    team: str = Field(min_length=1, description="The team's name, shown in prompts and reports.")
    base: RefName | None = Field(
        default=None, description="The branch teammates start from (default: the repository's default branch)."
    )
    branch_prefix: RefName = Field(
        default="rally",
        description="Teammate branches are <prefix>/<run>/<teammate>, the integration branch <prefix>/<run>.",
    )
    max_parallel: int = Field(
        default=4, ge=1, le=MAX_TEAM,
        description="Teammates running at once: 1 to 8; 9 needs allow_large_team: true.",
    )
    allow_large_team: bool = Field(default=False, description="Allow max_parallel: 9.")
    defaults: Defaults = Field(
        default=Defaults(),
        description="Values for teammates that do not set their own.",
        json_schema_extra={"default": {"agent": {"preset": "claude"}, "timeout": "20m", "retries": 1,
                                       "checkout": "full"}},
    )
    budget: Budget = Field(default=Budget(), description="Limits of a run.")
    merge: MergeSpec = Field(default=MergeSpec(), description="How the teammates' work is integrated.")
    approval: Approval = Field(default=Approval(), description="When a run needs approval before agents start.")
    teammates: tuple[Teammate, ...] = Field(min_length=1, description="The team: at least one teammate (a run takes up to 9 of them at once).")

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True == 1 in Python, but not in a file
            raise _refuse(f"must be 1 (the only format so far), got {describe_value(value)}")
        return value

    def teammate(self, name: str) -> Teammate:
        for t in self.teammates:
            if t.name == name:
                return t
        raise KeyError(name)

    def agent_of(self, t: Teammate) -> AgentSpec:
        return t.agent if t.agent is not None else self.defaults.agent

    def timeout_of(self, t: Teammate) -> float:
        return t.timeout if t.timeout is not None else self.defaults.timeout

    def retries_of(self, t: Teammate) -> int:
        return t.retries if t.retries is not None else self.defaults.retries

    def checkout_of(self, t: Teammate) -> str:
        return t.checkout if t.checkout is not None else self.defaults.checkout

    def network_of(self, t: Teammate) -> Network:
        return t.network if t.network is not None else self.defaults.network


@dataclass(frozen=True)
class LoadedConfig:
    """A validated map together with where each of its keys was written."""

    config: Config
    source: SourceMap
    path: Path | None = None  # None when read from a git blob

    def locate(self, *path: str | int) -> Location:
        return self.source.locate(tuple(path))


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft-07, which yaml-language-server reads) of ``rally.yml``."""
    schema = Config.model_json_schema(mode="validation", ref_template="#/definitions/{model}")
    schema["definitions"] = schema.pop("$defs", {})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://github.com/rally-gh/rally-gh/rally.schema.json",
        **schema,
    }


# --- Finding and loading ----------------------------------------------------


def find_config(root: Path, explicit: Path | None = None) -> Path:
    """``explicit`` if given, else ``rally.yml``, else ``.github/rally.yml`` under ``root``."""
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(f"--config {explicit}: no such file",
                             hint="give the path of a rally.yml, or leave --config out to use ./rally.yml")
        return explicit
    for name in CONFIG_CANDIDATES:
        candidate = root / name
        if candidate.is_file():
            return candidate
    # A missing file is the user's mistake (exit 2), as a missing --config FILE is.
    raise UsageError(
        f"no ownership map: neither {root / CONFIG_CANDIDATES[0]} nor {root / CONFIG_CANDIDATES[1]} exists",
        hint=f"start one with `rally-gh init` (from your CODEOWNERS, else the repository's layout), "
        f"or write it by hand ({DOCS}); or name it with --config FILE",
    )


def load_config(path: Path, display_name: str | None = None) -> LoadedConfig:
    """Read and validate the map at ``path``. Messages name ``display_name``, by
    default the path relative to the current directory."""
    name = display_name or _display_name(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:  # refused before reading a byte
            raise _too_big(name, size)
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)  # a device or a FIFO reports no size
    except OSError as err:
        raise UsageError(f"{name}: cannot read the ownership map: {err.strerror or err}") from None
    loaded = load_config_text(data, name)
    return LoadedConfig(loaded.config, loaded.source, path)


def load_config_text(text: str | bytes, filename: str = "rally.yml") -> LoadedConfig:
    """Validate a map given as text (for instance a blob of the base commit)."""
    if len(text) > MAX_CONFIG_BYTES:
        raise _too_big(filename, len(text))
    source = _decode(text, filename)
    root = compose_yaml(source, filename)
    reader = NodeReader(filename)
    data = reader.read_document(root)
    problems = list(reader.problems)
    config: Config | None = None
    if isinstance(data, dict):  # otherwise the reader has said why not
        config, schema_problems = _validate(data, reader)
        problems += schema_problems
        problems += _team_problems(data, reader)
    if problems or config is None:
        raise ConfigInvalid(_unique(problems))
    return LoadedConfig(config, SourceMap(filename, reader.positions))


def _display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _single(message: str, code: str, location: Location | None = None) -> ConfigInvalid:
    return ConfigInvalid([Problem("error", code, message, location)])


def _too_big(filename: str, size: int) -> ConfigInvalid:
    return _single(
        f"{filename}: the map is {size / 1e6:.1f} MB; the limit is {MAX_CONFIG_BYTES // 1024} KiB "
        "(a team of nine with long tasks fits in a few KiB): put long task text in the issue instead",
        "syntax",
    )


def _unique(problems: Iterable[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


# --- Text to nodes ----------------------------------------------------------


def _decode(text: str | bytes, filename: str) -> str:
    if isinstance(text, str):
        return text.removeprefix("\ufeff")
    try:
        return text.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        before = text[:err.start].decode("utf-8", "replace")
        line, column = _line_col(before, len(before))
        raise _single(
            f"not valid UTF-8 (byte 0x{text[err.start]:02x}); save the file as UTF-8",
            "syntax", Location(filename, line, column),
        ) from None


def _line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of ``text[offset]``."""
    before = text[:offset]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


class _AliasNode(ScalarNode):
    """Stands where a ``*alias`` was written: maps have no use for aliases, and
    refusing them here means a "billion laughs" file is never expanded."""


class _AliasRefusingComposer(Composer):
    """Composes nodes as usual, except that an alias becomes an ``_AliasNode``."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.get_event()
            return _AliasNode("tag:rally-gh:alias", event.anchor, event.start_mark, event.end_mark)
        return super().compose_node(parent, index)


def compose_yaml(text: str, filename: str) -> Node | None:
    """The YAML node tree of ``text`` (None when empty), with aliases refused and
    nesting bounded; raises ConfigInvalid with line:col for a syntax error. Shared
    by every YAML that rally-gh reads: rally.yml, an issue's rally block, a handoff."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Composer = _AliasRefusingComposer
    yaml.max_depth = MAX_DEPTH + 2  # deep nesting fails fast instead of recursing
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reused anchors are harmless without aliases
            return yaml.compose(text)  # type: ignore[no-any-return]
    except MarkedYAMLError as err:
        raise _syntax_error(err, text, filename) from None
    except ReaderError as err:
        line, column = _line_col(text, err.position)
        character = chr(err.character) if isinstance(err.character, int) else err.character
        raise _single(
            f"character {character!r} is not allowed in YAML; remove it or write it as an escape "
            "in a double-quoted string", "syntax", Location(filename, line, column),
        ) from None
    except (YAMLError, RecursionError) as err:
        raise _single(f"{filename}: not valid YAML: {err}", "syntax") from None


def _syntax_error(err: MarkedYAMLError, text: str, filename: str) -> ConfigInvalid:
    mark = err.problem_mark or err.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = err.problem or "invalid YAML"
    context = f" ({err.context})" if err.context else ""
    message = f"YAML syntax error: {problem}{context}"
    # The error may be reported lines after its cause (an unclosed '['): look from where it began.
    first = err.context_mark.line if err.context_mark else line - 1
    nearby = "\n".join(text.splitlines()[max(0, min(first, line - 1)):line])
    if "maximum depth" in problem:
        message = "nested too deeply for a rally.yml"
    elif "single document" in str(err.context):
        message = "a rally.yml holds one YAML document; remove this '---' and what follows, or merge them"
    elif "\t" in problem or "\\t" in problem:
        message += "; indent with spaces: YAML does not allow tabs there"
    elif re.search(r"(^|[\s\[,{])![^\s]", nearby, re.MULTILINE):
        message += "; an unquoted '!' starts a YAML tag: quote the pattern (\"!src/shared/**\")"
    elif (pointed := _indentation_problem(problem, text, line)) is not None:
        message, column = pointed
    return _single(message, "syntax", Location(filename, line, column))


def _indentation_problem(problem: str, text: str, line: int) -> tuple[str, int] | None:
    """What ruamel's ``expected <block end>, but found ...`` and ``mapping values are not
    allowed here`` mean, said in the file's terms, with the column the line starts in."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return None
    here = lines[line - 1]
    column = len(here) - len(here.lstrip(" ")) + 1
    snippet = here.strip()[:40]
    if problem.startswith("mapping values are not allowed"):
        before = _previous_key(lines, line)
        if before is None or column <= before[1]:
            if re.match(r"\s*(- )*[^\s:#'\"][^:#]*:\s+[^'\"\s].*?:(\s|$)", here):
                return (f"{snippet!r}: a ': ' inside an unquoted value starts another mapping; quote the value "
                        "('...' or \"...\")", column)
            return None
        return (f"wrong indentation: {snippet!r} starts in column {column}, right of the key on line {before[0]} "
                f"(column {before[1]}), so YAML reads it as part of that key's value; start it in column "
                f"{before[1]} to make it a key of the same mapping", column)
    found = re.match(r"expected <block end>, but found '([^']*)'", problem)
    if found is None:
        return None
    before = _previous_key(lines, line)
    if before is None:
        return None
    if found.group(1) == "?":  # a key where a list expects its items ('- ...')
        return (f"wrong indentation: {snippet!r} starts in column {column}, where the list above has its items "
                f"('- ...'); to belong to the item above, start it in column {before[1]} like the key on line "
                f"{before[0]}, or start a new item with '- '", column)
    side = "right" if column > before[1] else "left"
    return (f"wrong indentation: {snippet!r} starts in column {column}, {side} of the key on line {before[0]} "
            f"(column {before[1]}); the keys of one mapping start in the same column, and a value goes on the "
            "line of its key or indented under a key that ends with ':'", column)


def _previous_key(lines: Sequence[str], line: int) -> tuple[int, int] | None:
    """(line, column) of the key on the last line before ``line`` that has one (after any '- ')."""
    for number in range(line - 1, 0, -1):
        found = re.match(r"^((?:\s*- )*\s*)[^\s#-][^#]*?:(\s|$)", lines[number - 1])
        if found:
            return number, len(found.group(1)) + 1
    return None


# --- Nodes to data ----------------------------------------------------------

_YAML_TAG = "tag:yaml.org,2002:"
_UNREADABLE = object()  # stands for a value already reported; pydantic's complaints about it are dropped


class NodeReader:
    """Turns composed nodes into dicts, tuples and scalars, recording where each key
    path was written and what could not be read (aliases, tags, duplicate keys)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.positions: dict[KeyPath, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.broken: set[KeyPath] = set()

    def location(self, path: KeyPath) -> Location:
        return SourceMap(self.filename, self.positions).locate(path)

    def report(self, path: KeyPath, message: str, code: str = "schema", node: Node | None = None) -> None:
        """A problem at ``path``, located at ``node`` (the value) when given, else at the key."""
        prefix = f"{format_key_path(path)}: " if path else ""
        location = Location(self.filename, *_position(node)) if node is not None else self.location(path)
        self.problems.append(Problem("error", code, prefix + message, location))

    def read_document(self, root: Node | None) -> Any:
        if root is None:
            self.problems.append(Problem(
                "error", "schema",
                f"the map is empty; it needs at least team: and teammates: (see {DOCS})",
                Location(self.filename, 1, 1)))
            return _UNREADABLE
        self.positions[()] = _position(root)
        if not isinstance(root, MappingNode):
            self.problems.append(Problem(
                "error", "schema",
                f"the top level must be a mapping of keys (version, team, teammates, ...), not {_node_kind(root)}",
                self.location(())))
            return _UNREADABLE
        return self.read(root, (), 0)

    def read(self, node: Node, path: KeyPath, depth: int) -> Any:
        if _is_alias(node):
            return self._refuse(node, path, "YAML aliases (*name) are not supported in a rally.yml; "
                                            "write the value out")
        tag = node.tag or ""
        if not tag.startswith(_YAML_TAG):
            return self._refuse(node, path, _tag_message(tag, node), "pattern" if tag.startswith("!") else "schema")
        if depth > MAX_DEPTH:
            return self._refuse(node, path, "nested too deeply for a rally.yml")
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            return self._sequence(node, path, depth)
        return self._scalar(node, path)

    def _refuse(self, node: Node, path: KeyPath, message: str, code: str = "schema") -> object:
        self.report(path, message, code, node)
        self.broken.add(path)
        return _UNREADABLE

    def _mapping(self, node: MappingNode, path: KeyPath, depth: int) -> Any:
        if node.tag != _YAML_TAG + "map":  # !!set, for one
            return self._refuse(node, path, f"unsupported YAML tag {node.tag!r}")
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None:
                continue
            key_path = (*path, key)
            if key in out:
                first_line = self.positions[key_path][0]
                line, column = _position(key_node)
                self.problems.append(Problem(
                    "error", "schema",
                    f"{format_key_path(key_path)}: duplicate key {key!r} (first written on line {first_line}); "
                    "keep one",
                    Location(self.filename, line, column)))
                continue
            self.positions[key_path] = _position(key_node)
            out[key] = self.read(value_node, key_path, depth + 1)
        return out

    def _key(self, key_node: Node, path: KeyPath) -> str | None:
        if isinstance(key_node, ScalarNode) and not _is_alias(key_node) and (
                key_node.tag in (_YAML_TAG + "str", _YAML_TAG + "merge")):
            return str(key_node.value)
        line, column = _position(key_node)
        what = repr(key_node.value) if isinstance(key_node, ScalarNode) else _node_kind(key_node)
        prefix = f"{format_key_path(path)}: " if path else ""
        self.problems.append(Problem(
            "error", "schema", f"{prefix}a key must be a plain name, not {what}",
            Location(self.filename, line, column)))
        return None

    def _sequence(self, node: SequenceNode, path: KeyPath, depth: int) -> Any:
        if node.tag != _YAML_TAG + "seq":
            return self._refuse(node, path, f"unsupported YAML tag {node.tag!r}")
        items = []
        for index, item in enumerate(node.value):
            item_path = (*path, index)
            self.positions[item_path] = _position(item)
            items.append(self.read(item, item_path, depth + 1))
        return tuple(items)

    def _scalar(self, node: Node, path: KeyPath) -> Any:
        kind = (node.tag or "").removeprefix(_YAML_TAG)
        value = str(node.value)
        if kind == "null":
            return None
        if kind == "bool":
            return value.lower() in ("true", "yes", "on", "y")
        if kind in ("int", "float"):
            return _number(value, kind)
        if kind in ("str", "timestamp"):  # nothing in a map is a date: keep what was written
            return value
        return self._refuse(node, path, f"unsupported YAML tag {node.tag!r}")


def _number(text: str, kind: str) -> int | float | str:
    """A YAML number; a form Python cannot read (YAML 1.1's ``1:20``) stays text."""
    plain = text.replace("_", "")
    try:
        if kind == "float":
            lowered = plain.lower()
            if lowered.endswith((".inf", ".nan")):
                return math.nan if lowered.endswith("nan") else (-math.inf if plain.startswith("-") else math.inf)
            return float(plain)
        if plain.lstrip("+-")[:2].lower() in ("0x", "0o", "0b"):
            return int(plain, 0)
        return int(plain, 10)
    except ValueError:
        return text


def _is_alias(node: Node) -> bool:
    return isinstance(node, _AliasNode)


def _position(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _node_kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"the value {str(node.value)!r}"


def _tag_message(tag: str, node: Node) -> str:
    if tag.startswith("!") and isinstance(node, ScalarNode):
        written = f"{tag} {node.value}" if node.value else tag
        return (f"an unquoted '!' starts a YAML tag; quote the pattern: {json.dumps(written)} "
                "(a '!pattern' takes paths back out of the list above it)")
    return f"unsupported YAML tag {tag!r}; rally.yml needs no tags"


# --- Shape: pydantic errors as pointed messages -------------------------------

_EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "finite_number": "a finite number",
}


def _validate(data: Any, reader: NodeReader) -> tuple[Config | None, list[Problem]]:
    try:
        return Config.model_validate(data, strict=True, context={"from_file": True}), []
    except ValidationError as err:
        problems = []
        errors = err.errors(include_url=False)
        misspelt = _misspelt_required_keys([(e["type"], _key_path(e["loc"], data)) for e in errors])
        for error in errors:
            path = _key_path(error["loc"], data)
            if any(path[:len(b)] == b for b in reader.broken):
                continue  # already reported while reading the YAML
            if error["type"] == "too_short" and len(error["input"]) >= error["ctx"]["min_length"]:
                continue  # pydantic counts only the items that validated: their errors say it all
            if error["type"] == "missing" and path in misspelt.values():
                continue  # said once, where the misspelt key is written
            code, path, message = _explain(error, path)
            if path in misspelt:
                message = message.replace("? allowed here:", " (required, and missing)? allowed here:", 1)
            problems.append(Problem("error", code, f"{format_key_path(path)}: {message}" if path else message,
                                    reader.location(path), _teammate_at(path, data)))
        return None, problems


def _misspelt_required_keys(errors: Sequence[tuple[str, KeyPath]]) -> dict[KeyPath, KeyPath]:
    """Unknown keys that are a missing required key misspelt (``exclusive_writes``), each
    with the missing key's path: one message for both, at the key as written."""
    missing = {path for kind, path in errors if kind == "missing" and path}
    out: dict[KeyPath, KeyPath] = {}
    for kind, path in errors:
        if kind != "extra_forbidden" or not path:
            continue
        wanted = [p[-1] for p in missing if p[:-1] == path[:-1] and isinstance(p[-1], str)]
        close = difflib.get_close_matches(str(path[-1]), [str(w) for w in wanted], n=1, cutoff=0.6)
        if close and (*path[:-1], close[0]) not in out.values():
            out[path] = (*path[:-1], close[0])
    return out


def suggested_name(value: object) -> str | None:
    """A valid teammate name close to ``value`` (``'Front End'`` -> ``front-end``), or None."""
    if not isinstance(value, str):
        return None
    plain = "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))
    name = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")[:39].rstrip("-")
    return name if name and re.fullmatch(NAME_RE, name) else None


def _teammate_at(path: KeyPath, data: Any) -> tuple[str, ...]:
    """The name of the teammate whose entry ``path`` is in, when it has one."""
    if len(path) < 2 or path[0] != "teammates" or not isinstance(path[1], int):
        return ()
    teammates = data.get("teammates") if isinstance(data, dict) else None
    entry = teammates[path[1]] if isinstance(teammates, tuple) and path[1] < len(teammates) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    return (name,) if isinstance(name, str) else ()


def _key_path(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """pydantic's ``loc`` as the key path written in the file: union member names
    and other labels that are not keys are dropped."""
    path: list[str | int] = []
    here = data
    for part in loc:
        if isinstance(part, int) and isinstance(here, tuple) and 0 <= part < len(here):
            path.append(part)
            here = here[part]
        elif isinstance(part, str) and isinstance(here, dict):
            path.append(part)
            here = here.get(part)
    return tuple(path)


def _explain(error: Any, path: KeyPath) -> tuple[str, KeyPath, str]:
    """(problem code, key path, what is wrong and what to do) for one pydantic error."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in ("pattern", "name", "schema", "cycle"):  # our own checks: the message is ready
        key_path = (*path, ctx["key"]) if ctx.get("key") else path
        return kind, key_path, str(ctx.get("message", error["msg"]))
    code, message = _explain_pydantic(kind, ctx, error.get("input"), path)
    return code, path, message or str(ctx.get("error") or error["msg"])


def _explain_pydantic(kind: str, ctx: dict[str, Any], value: Any, path: KeyPath) -> tuple[str, str]:
    """(code, message) for pydantic's own error types; an empty message means "use pydantic's"."""
    if kind == "extra_forbidden":
        return "schema", _unknown_key(path)
    if kind == "missing":
        return "schema", _missing_key(path)
    if kind == "string_pattern_mismatch" and path[-1:] == ("name",):
        better = suggested_name(value)
        return "name", (f"{value!r} is not a valid teammate name: use lowercase letters, digits and '-', "
                        "at most 39 characters, starting with a letter or digit"
                        + (f"; write {better!r}" if better else ""))
    if kind == "string_pattern_mismatch" and "env" in path:
        return "schema", (f"{value!r} is not an environment variable name: letters, digits and '_', "
                          "not starting with a digit")
    if kind == "literal_error" and path == ("version",):
        return "schema", f"must be 1 (the only format so far), got {describe_value(value)}"
    if kind == "literal_error":
        return "schema", _not_one_of(str(ctx.get("expected", "")), value)
    if path == ("max_parallel",) and kind == "less_than_equal":
        return "schema", (f"{value} teammates at once is refused: at most {MAX_PARALLEL_PLAIN} "
                          f"({MAX_TEAM} with allow_large_team: true)")
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": "at least", "greater_than": "more than",
                 "less_than_equal": "at most", "less_than": "less than"}[kind]
        limit = next(iter(ctx.values()), "?")
        return "schema", f"must be {bound} {limit}, got {describe_value(value)}"
    if kind in ("too_short", "string_too_short"):
        return "schema", "must not be empty" + (
            "; list at least one pattern, e.g. [src/api/**]" if path[-1:] == ("exclusive_write",) else "")
    if kind == "tuple_type" and path[-1:] == ("command",) and isinstance(value, str):
        return "schema", (f"command is a list of arguments, e.g. [{json.dumps(value)}] for a program without "
                          "arguments; to run a shell line, set shell: true")
    if kind in _EXPECTED:
        return "schema", _wrong_type(_EXPECTED[kind], value)
    return "schema", ""


def _wrong_type(expected: str, value: Any) -> str:
    message = f"expected {expected}, got {describe_value(value)}"
    if expected == "a list" and isinstance(value, str):
        message += f"; write [{json.dumps(value)}]"
    elif isinstance(value, str) and expected != "a string":
        message += "; remove the quotes"
    elif expected == "a string" and isinstance(value, (int, float, bool)):
        message += f"; quote it: \"{value}\""
    return message


def describe_value(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 60 else f"a string of {len(value)} characters"
    if isinstance(value, (tuple, list)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    """The model that the mapping at ``path`` is read as."""
    model: type[BaseModel] | None = Config
    for part in path:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(part)
        model = _model_in(info.annotation) if info is not None else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _unknown_key(path: KeyPath) -> str:
    key = str(path[-1])
    model = _model_at(path[:-1])
    allowed = list(model.model_fields) if model else []
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}; {hint}allowed here: {', '.join(allowed)}"


def _missing_key(path: KeyPath) -> str:
    key = str(path[-1])
    model = _model_at(path[:-1])
    info = model.model_fields.get(key) if model else None
    what = info.description if info is not None and info.description else ""
    if what[1:2].islower():  # "The team" reads as "the team" mid-sentence; "CODEOWNERS" stays
        what = what[:1].lower() + what[1:]
    what = f": {what.rstrip('.')}" if what else ""
    return f"missing required key {key!r}{what}"


def _not_one_of(expected: str, value: Any) -> str:
    choices = re.findall(r"'([^']*)'", expected) or [expected]
    message = f"must be one of {', '.join(choices)}; got {describe_value(value)}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
        if close:
            message += f"; did you mean {close[0]!r}?"
    return message


# --- Checks across teammates ------------------------------------------------


def _team_problems(data: Any, reader: NodeReader) -> list[Problem]:
    """Names, ``blocked_by`` and cycles, on whatever parts of the raw
    data are well formed (so they are reported even when other keys are wrong)."""
    teammates = data.get("teammates") if isinstance(data, dict) else None
    if not isinstance(teammates, tuple):
        return []
    problems: list[Problem] = []

    def report(path: KeyPath, code: str, message: str, names: tuple[str, ...] | None = None) -> None:
        problems.append(Problem("error", code, f"{format_key_path(path)}: {message}", reader.location(path),
                                _teammate_at(path, data) if names is None else names))

    # Team size is not a property of the map: a map imported from CODEOWNERS has
    # hundreds of teammates and must validate. A *run* refuses teams of 10 or
    # more (plan.assess), and validate warns about it.
    first_index: dict[str, int] = {}
    for index, name in _names(teammates):
        if name in first_index:
            report(("teammates", index, "name"), "name",
                   f"duplicate teammate name {name!r} (also teammates[{first_index[name]}]); names must be unique")
        else:
            first_index[name] = index
    edges = _blocked_by_edges(teammates, first_index, report)
    approval = data.get("approval")
    high_risk = approval.get("high_risk") if isinstance(approval, dict) else None
    for index, name in enumerate(high_risk if isinstance(high_risk, tuple) else ()):
        if isinstance(name, str) and name not in first_index:
            report(("approval", "high_risk", index), "name",
                   f"unknown teammate {name!r}; high_risk names teammates of this map", ())
    for cycle, path in _cycles(edges):
        report(path, "cycle", f"dependency cycle: {' -> '.join(cycle)} (each waits for the next); "
                              "remove one of these blocked_by entries", tuple(cycle[:-1]))
    if data.get("max_parallel") == MAX_TEAM and data.get("allow_large_team") is not True:
        report(("max_parallel",), "schema",
               f"{MAX_TEAM} needs allow_large_team: true (at most {MAX_PARALLEL_PLAIN} otherwise)")
    return problems


def _names(teammates: tuple[Any, ...]) -> list[tuple[int, str]]:
    return [(i, t["name"]) for i, t in enumerate(teammates) if isinstance(t, dict) and isinstance(t.get("name"), str)]


Edges = dict[str, list[tuple[str, KeyPath]]]


def _blocked_by_edges(teammates: tuple[Any, ...], known: dict[str, int], report: Any) -> Edges:
    """``name -> [(blocker, key path of the entry)]`` for the entries that name
    another known teammate; the others are reported."""
    edges: Edges = {}
    for index, name in _names(teammates):
        if known[name] != index:
            continue  # a duplicate: its entries are checked with the first
        blockers = teammates[index].get("blocked_by")
        if not isinstance(blockers, tuple):
            continue
        for k, blocker in enumerate(blockers):
            path: KeyPath = ("teammates", index, "blocked_by", k)
            if not isinstance(blocker, str):
                continue
            if blocker == name:
                report(path, "cycle", f"{name!r} is blocked by itself; remove this entry")
            elif blocker not in known:
                close = difflib.get_close_matches(blocker, list(known), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                report(path, "name", f"unknown teammate {blocker!r}; {hint}teammates are: {', '.join(known)}")
            else:
                edges.setdefault(name, []).append((blocker, path))
    return edges


def _cycles(edges: Edges) -> list[tuple[list[str], KeyPath]]:
    """One cycle per strongly connected component, as names from and back to its first
    member, with the key path of the ``blocked_by`` entry that starts it."""
    found = []
    for component in _strongly_connected(edges):
        if len(component) < 2:
            continue
        members = set(component)
        start = component[0]
        cycle, path = _shortest_cycle(start, edges, members)
        found.append((cycle, path))
    return found


def _strongly_connected(edges: Edges) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a long chain must not hit Python's recursion limit)."""
    nodes = list(dict.fromkeys([*edges, *(b for targets in edges.values() for b, _ in targets)]))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = edges.get(node, [])
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child][0]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component, key=nodes.index))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _shortest_cycle(start: str, edges: Edges, members: set[str]) -> tuple[list[str], KeyPath]:
    """Breadth-first from ``start`` back to it, staying inside its component."""
    came_from: dict[str, tuple[str, KeyPath]] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target, path in edges.get(node, []):
            if target not in members:
                continue
            if target == start:
                names = [node]
                while names[-1] != start:
                    names.append(came_from[names[-1]][0])
                names.reverse()
                first_edge = came_from[names[1]][1] if len(names) > 1 else path
                return [*names, start], first_edge
            if target not in came_from:
                came_from[target] = (node, path)
                queue.append(target)
    raise AssertionError("a strongly connected component always has a cycle")  # pragma: no cover
