"""Who owns a path under ``rally.yml`` (SPEC section 1).

Every teammate's ``exclusive_write`` is read like a gitignore list: the last of
its patterns that matches a path decides, and a ``!pattern`` takes the path
back out. Ownership is exclusive: a path claimed by two teammates may be written
by neither. Control files are granted only by a pattern that names them
literally; no wildcard ever reaches them.

All teammates' patterns sit in one GlobSet, so a path costs one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rally_gh.errors import PatternError
from rally_gh.ownership.globs import Glob, GlobSet, compile_glob
from rally_gh.ownership.paths import is_control_file

if TYPE_CHECKING:  # pydantic is slow to import; `owner --codeowners` never needs it
    from rally_gh.config import Config


@dataclass(frozen=True)
class Grant:
    """One pattern of one teammate's ``exclusive_write``."""

    teammate: int  # position in config.teammates
    index: int  # position in that teammate's exclusive_write
    glob: Glob


class Ownership:
    """The ownership map of one config, ready to answer for many paths."""

    __slots__ = ("names", "grants", "_globs")

    def __init__(self, names: Iterable[str], grants: Iterable[Grant]) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self.grants: tuple[Grant, ...] = tuple(grants)
        self._globs = GlobSet(g.glob for g in self.grants)

    @classmethod
    def from_config(cls, config: Config) -> Ownership:
        """Raises PatternError naming the teammate and pattern when one is refused."""
        grants: list[Grant] = []
        for t_pos, teammate in enumerate(config.teammates):
            for index, pattern in enumerate(teammate.exclusive_write):
                try:
                    glob = compile_glob(pattern)
                except PatternError as err:
                    raise PatternError(
                        f"teammates[{t_pos}].exclusive_write[{index}] ({teammate.name}): {err.message}",
                        hint=err.hint,
                    ) from None
                grants.append(Grant(t_pos, index, glob))
        return cls((t.name for t in config.teammates), grants)

    def _decisions(self, path: str) -> dict[int, Grant]:
        """For each teammate with a pattern matching ``path``, the pattern that decides."""
        control = is_control_file(path)
        decided: dict[int, Grant] = {}
        grants = self.grants
        for k in self._globs.matching(path):  # ascending: teammate order, then list order
            grant = grants[k]
            if control and not grant.glob.negated and grant.glob.literal != path:
                continue  # a wildcard (or a directory) never grants a control file
            decided[grant.teammate] = grant
        return decided

    def owners_of(self, path: str) -> tuple[str, ...]:
        """Every teammate that claims ``path``, in the map's order (more than one is an overlap)."""
        names = self.names
        return tuple(names[t] for t, g in self._decisions(path).items() if not g.glob.negated)

    def owner_of(self, path: str) -> str | None:
        """The one teammate that may write ``path``; None when nobody or more than one claims it."""
        owners = self.owners_of(path)
        return owners[0] if len(owners) == 1 else None

    def rule_of(self, teammate: str, path: str) -> int | None:
        """Index in ``teammate``'s exclusive_write of the pattern deciding ``path`` for it
        (a ``!`` pattern when it takes the path out); None when none of its patterns does."""
        try:
            position = self.names.index(teammate)
        except ValueError:
            return None
        grant = self._decisions(path).get(position)
        return None if grant is None else grant.index

    def owned_paths(self, teammate: str, paths: Iterable[str]) -> list[str]:
        """The paths among ``paths`` that ``teammate`` alone owns, in order."""
        return [p for p in paths if self.owner_of(p) == teammate]
