"""The ownership map, ``rally.yml``: models, loading and validation.

The models are the contract the rest of the package codes against. Loading
keeps the position of every key and list item so that any later check (the
overlap proof, a control-file grant) can point at ``rally.yml:LINE:COL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

KeyPath = tuple[str | int, ...]

CONFIG_CANDIDATES = ("rally.yml", ".github/rally.yml")

NAME_RE = r"^[a-z0-9][a-z0-9-]{0,38}$"
MAX_TEAM = 9  # 9 needs allow_large_team; 10 or more is refused


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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


Preset = Literal["claude", "codex", "aider", "command"]


class AgentSpec(_Model):
    preset: Preset = "command"
    command: tuple[str, ...] | None = None  # argv for preset command
    args: tuple[str, ...] = ()  # extra arguments appended to a preset's command
    model: str | None = None
    shell: bool = False  # run ``command`` (a single string) through /bin/sh
    env: tuple[str, ...] = ()  # names of runner variables passed through (a risk)


class Defaults(_Model):
    agent: AgentSpec = AgentSpec(preset="claude")
    timeout: float = 20 * 60  # seconds, expected duration; stopped at 2x
    retries: int = Field(default=1, ge=0, le=5)
    checkout: Literal["full", "sparse"] = "full"


class Budget(_Model):
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_minutes: float | None = Field(default=None, gt=0)


class MergeSpec(_Model):
    order: Literal["dependency", "listed"] = "dependency"
    on_conflict: Literal["skip", "stop"] = "skip"
    verify: tuple[str, ...] = ()


class Teammate(_Model):
    name: str = Field(pattern=NAME_RE)
    role: str = ""
    task: str = ""
    exclusive_write: tuple[str, ...] = Field(min_length=1)
    read: tuple[str, ...] = ()
    blocked_by: tuple[str, ...] = ()
    agent: AgentSpec | None = None  # None: defaults.agent
    timeout: float | None = None  # None: defaults.timeout
    retries: int | None = Field(default=None, ge=0, le=5)
    checkout: Literal["full", "sparse"] | None = None
    verify: tuple[str, ...] = ()
    done_when: tuple[str, ...] = ()


class Config(_Model):
    version: Literal[1] = 1
    team: str = Field(min_length=1)
    base: str | None = None
    branch_prefix: str = "rally"
    max_parallel: int = Field(default=4, ge=1, le=9)
    allow_large_team: bool = False
    defaults: Defaults = Defaults()
    budget: Budget = Budget()
    merge: MergeSpec = MergeSpec()
    teammates: tuple[Teammate, ...] = Field(min_length=1)

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


@dataclass(frozen=True)
class LoadedConfig:
    """A validated map together with where each of its keys was written."""

    config: Config
    source: SourceMap
    path: Path | None = None  # None when read from a git blob

    def locate(self, *path: str | int) -> Location:
        return self.source.locate(tuple(path))
