"""CODEOWNERS files: parse them, answer "who owns this path", convert to and from rally.yml.

Reading follows GitHub (and hmarr/codeowners): the last matching line wins; a
line with no owners makes its paths unowned; ``#`` at the start of a line or of
a word after the pattern starts a comment; ``\\ `` and ``\\#`` are a space and a
``#`` inside a pattern. Words after the pattern that are not owners (``@user``,
``@org/team``, an e-mail address) are ignored, as GitHub ignores them.
GitLab's ``[Section]`` headers are not GitHub syntax and are read as patterns.
"""

from __future__ import annotations

import bisect
import heapq
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from typing import TYPE_CHECKING

from rally_gh.errors import ConfigError, PatternError
from rally_gh.ownership.globs import Glob, GlobSet, compile_glob, literal_prefix
from rally_gh.limits import MAX_TEAM
from rally_gh.words import plural
from rally_gh.ownership.paths import is_control_file
from rally_gh.ownership.rules import Ownership

if TYPE_CHECKING:  # pydantic is slow to import; `owner --codeowners` never needs it
    from rally_gh.config import Config

_OWNER_RE = re.compile(r"@\S+|[^@\s]+@\S+")


@dataclass(frozen=True)
class Rule:
    """One line of a CODEOWNERS file that names a pattern."""

    line: int  # 1-based
    pattern: str  # as written, escapes kept (CODEOWNERS and rally.yml share the syntax)
    owners: tuple[str, ...]
    glob: Glob

    @property
    def owner(self) -> str | None:
        """The owners joined by one space, None for a line that un-owns its paths."""
        return " ".join(self.owners) or None


def parse_codeowners(text: str, source: str = "CODEOWNERS") -> tuple[Rule, ...]:
    """The rules of a CODEOWNERS file, in file order. ``source`` names it in errors."""
    rules: list[Rule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, rest = _split_pattern(line)
        owners: list[str] = []
        for word in rest.split():
            if word.startswith("#"):
                break
            if _OWNER_RE.fullmatch(word):
                owners.append(word)
        try:
            glob = compile_glob(pattern, allow_negation=False)
        except PatternError as err:
            raise ConfigError(f"{source}:{number}: {err.message}", hint=err.hint) from None
        rules.append(Rule(number, pattern, tuple(owners), glob))
    return tuple(rules)


def _split_pattern(line: str) -> tuple[str, str]:
    """The pattern (up to the first unescaped blank) and the rest of the line."""
    m = _PATTERN_RE.match(line)
    assert m is not None  # the line is stripped and not empty
    return m.group(), line[m.end() :]


_PATTERN_RE = re.compile(r"(?:\\.|[^\s\\])+\\?")


class CodeownersMatcher:
    """Answers "who owns this path" for one CODEOWNERS file, one RE2 pass a path."""

    __slots__ = ("rules", "_globs", "_owner_by_rule")

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._globs = GlobSet(r.glob for r in self.rules)
        # index -1 (no rule matched) reads the None appended last
        self._owner_by_rule: tuple[str | None, ...] = tuple(r.owner for r in self.rules) + (None,)

    @classmethod
    def from_text(cls, text: str, source: str = "CODEOWNERS") -> CodeownersMatcher:
        return cls(parse_codeowners(text, source))

    def rule_of(self, path: str) -> Rule | None:
        """The deciding line for ``path`` (the last that matches), None when none does."""
        i = self._globs.last_match(path)
        return self.rules[i] if i >= 0 else None

    def owner_of(self, path: str) -> str | None:
        return self._owner_by_rule[self._globs.last_match(path)]

    def owners_of_many(self, paths: Iterable[str]) -> list[str | None]:
        """``owner_of`` for every path, in order."""
        last_match = self._globs.last_match
        owner_by_rule = self._owner_by_rule
        return [owner_by_rule[last_match(p)] for p in paths]


# --- CODEOWNERS -> rally.yml ----------------------------------------------------


def _region_key(glob: Glob) -> str | None:
    """A slash-ended prefix every path the glob matches starts with (after adding a
    trailing '/'), None when it may match anywhere. Two globs whose keys are not
    prefix-related can never match one path."""
    if not glob.anchored:
        return None
    if glob.literal is not None:
        return glob.literal + "/"
    return literal_prefix(glob) or None


def _prefixes(key: str) -> Iterator[str]:
    """``a/b/`` -> ``a/``, ``a/b/``."""
    end = key.find("/")
    while end != -1:
        yield key[: end + 1]
        end = key.find("/", end + 1)


@dataclass(frozen=True)
class ImportedTeammate:
    name: str
    owners: tuple[str, ...]
    exclusive_write: tuple[str, ...]


def import_rules(rules: Sequence[Rule]) -> list[ImportedTeammate]:
    """One teammate per distinct owner list, whose exclusive_write owns exactly the paths
    CODEOWNERS gives that list.

    CODEOWNERS is last-match-wins across the file; a teammate's list is last-match-wins
    within itself. So each list holds its own patterns in file order and, where a later
    line of someone else (or of nobody) can match a path one of its earlier patterns
    matches, ``!`` of that line's pattern at that place.
    """
    lists: dict[tuple[str, ...], list[str]] = {}
    # Earlier patterns' region keys -> owner lists, to find who a later line can overlap.
    by_key: dict[str, set[tuple[str, ...]]] = {}
    by_key_prefix: dict[str, set[tuple[str, ...]]] = {}
    anywhere: set[tuple[str, ...]] = set()  # owners with a pattern that may match anywhere
    for rule in rules:
        key = _region_key(rule.glob)
        overlapping: set[tuple[str, ...]] = set(anywhere)
        if key is None:
            overlapping.update(lists)
        else:
            for prefix in _prefixes(key):
                overlapping.update(by_key.get(prefix, ()))
            overlapping.update(by_key_prefix.get(key, ()))
        text = _as_rally_pattern(rule.pattern)
        for owners in overlapping:
            if owners != rule.owners:
                lists[owners].append("!" + text)
        if not rule.owners:
            continue
        lists.setdefault(rule.owners, []).append(text)
        if key is None:
            anywhere.add(rule.owners)
        else:
            by_key.setdefault(key, set()).add(rule.owners)
            for prefix in _prefixes(key):
                by_key_prefix.setdefault(prefix, set()).add(rule.owners)
    names = _teammate_names(list(lists))
    return [ImportedTeammate(names[o], o, tuple(patterns)) for o, patterns in lists.items()]


def _as_rally_pattern(pattern: str) -> str:
    # CODEOWNERS has no negation: a leading '!' is a literal character there.
    return "\\" + pattern if pattern.startswith("!") else pattern


def _teammate_names(owner_lists: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """Valid (``NAME_RE``), unique names that say whose they are: ``@org/web-team`` -> ``web-team``."""
    names: dict[tuple[str, ...], str] = {}
    taken: set[str] = set()
    for owners in owner_lists:
        words = []
        for owner in owners:
            handle = owner.split("@", 1)[0] if not owner.startswith("@") else owner[1:].rsplit("/", 1)[-1]
            words.append(re.sub(r"[^a-z0-9]+", "-", handle.lower()).strip("-"))
        base = "-".join(w for w in words if w)[:39].strip("-") or "owner"
        name, n = base, 1
        while name in taken:
            n += 1
            suffix = f"-{n}"
            name = base[: 39 - len(suffix)].rstrip("-") + suffix
        taken.add(name)
        names[owners] = name
    return names


def imported_teammates(text: str, source: str = "CODEOWNERS") -> list[ImportedTeammate]:
    """The teammates of ``text`` (``import_rules``); a file that names no owner is an error."""
    teammates = import_rules(parse_codeowners(text, source))
    if not teammates:
        raise ConfigError(
            f"{source}: no line names an owner, so there is no teammate to make",
            hint="add lines such as '/src/ @org/team' first",
        )
    return teammates


def teammate_yaml(t: ImportedTeammate, agent: str | None = None) -> list[str]:
    """The lines of ``t`` in a map's ``teammates:`` list, with ``agent:`` when given."""
    owners = " ".join(t.owners)
    out = [
        f"  - name: {t.name}",
        f"    role: {quote(ROLE_PREFIX + owners)}",
        f"    task: {quote(f'Work on the files CODEOWNERS gives to {owners}.')}",
        f"    codeowners: [{', '.join(quote(o) for o in t.owners)}]",
    ]
    if agent is not None:
        out.append(f"    agent: {agent}")
    out.append("    exclusive_write:")
    out += [f"      - {quote(p)}" for p in t.exclusive_write]
    return out


def import_codeowners(text: str, team: str, source: str = "CODEOWNERS") -> str:
    """A rally.yml whose ownership equals ``text``'s for every path but control files
    (which rally.yml grants only literally), each teammate keeping its original owners
    in ``codeowners:`` so that ``export_codeowners`` gives every path, control files
    included, the review it had."""
    teammates = imported_teammates(text, source)
    out = [
        f"# Made by `rally-gh codeowners import {source}`: one teammate per owner list of {source}.",
        "# Ownership here equals the CODEOWNERS file's; control files (.github/**, CODEOWNERS, ...)",
        "# need a literal pattern to be granted. `codeowners:` keeps each line's owners, so",
        "# `rally-gh codeowners export` gives every path the review it has today.",
        "# Replace the placeholder agents and tasks.",
    ]
    if len(teammates) > MAX_TEAM:
        out.append(team_size_note(len(teammates)))
    out += [
        "version: 1",
        f"team: {quote(team)}",
        "teammates:",
    ]
    for t in teammates:
        out += teammate_yaml(t, '{preset: command, command: ["true"]}')
    return "\n".join(out) + "\n"


def team_size_note(n: int) -> str:
    return (f"# note: {n} teammates. The map checks ownership for all of them; a run takes at most "
            f"{MAX_TEAM}: pick them with a `rally` block in the issue or `rally-gh run --tasks FILE`.")


# The role of an imported teammate, before its owners.
ROLE_PREFIX = "CODEOWNERS: "


def quote(text: str) -> str:
    """``text`` as a YAML scalar that reads back as written."""
    # A JSON string is a valid YAML double-quoted scalar: safe for '!', '*', '#', ': '.
    return json.dumps(text, ensure_ascii=False)


# --- rally.yml -> CODEOWNERS ----------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    teammate: int
    position: int  # in that teammate's exclusive_write
    glob: Glob
    key: str | None  # _region_key


def export_codeowners(config: Config) -> str:
    """A CODEOWNERS file that gives every path the review owners the map gives it.

    Each teammate's patterns become lines owned by its ``codeowners:`` (a teammate
    without them is an error: an invented ``@team/name`` would be an owner GitHub
    does not know), its ``!`` patterns lines with no owner. Lines keep each
    teammate's order; across teammates they are ordered so that a line that takes
    paths out comes before any other teammate's line that gives them back
    (CODEOWNERS' last match then agrees with each list's last match). A control
    file keeps the owners its patterns give it: rally.yml lets no teammate write it
    through a wildcard, but its changes still need review. A literal grant of a
    control file comes again last, so that it wins there as it does in rally.yml.
    Exact for maps with no overlapping teammates (what ``validate`` accepts); an
    overlapping map gets a ``# overlap:`` line saying where the two readings part.
    For a map made by ``import_codeowners``, GitHub reads the export as it read the
    original file, path for path.
    """
    unowned = [t.name for t in config.teammates if not t.codeowners]
    if unowned:
        raise ConfigError(
            f"no GitHub owners for {len(unowned)} teammate{'s' * (len(unowned) != 1)} "
            f"({', '.join(unowned[:5])}{', ...' if len(unowned) > 5 else ''}): a CODEOWNERS line needs "
            "the users or teams that review those paths",
            hint=f"add them to each teammate, e.g. `codeowners: [\"@org/{unowned[0]}\"]` under "
                 f"`- name: {unowned[0]}` (`rally-gh codeowners import` keeps a CODEOWNERS file's owners)",
        )
    ownership = Ownership.from_config(config)
    owner_of_teammate = [" ".join(t.codeowners) for t in config.teammates]
    entries = [
        _Entry(g.teammate, g.index, g.glob, _region_key(g.glob)) for g in ownership.grants
    ]
    order, cyclic = _line_order(entries, len(config.teammates))
    lines = [
        f"# Made by `rally-gh codeowners export` from the ownership map of team {config.team}.",
        "# Each teammate's patterns in its own order; a line with no owner takes paths back out.",
    ]
    from rally_gh.ownership.overlap import find_overlaps  # imports config (pydantic): `owner --codeowners` never needs it

    overlaps = [o for o in find_overlaps([(t.name, t.exclusive_write) for t in config.teammates])
                if o.severity == "error"]
    if overlaps:
        o = overlaps[0]
        lines.append(
            f"# overlap: {plural(overlaps, 'pair')} of patterns claim the same paths, e.g. {o.teammate_a}: "
            f"{o.pattern_a} and {o.teammate_b}: {o.pattern_b} both own {o.example}; rally.yml lets nobody "
            "write such a path, GitHub gives it to the later line. Fix the map (`rally-gh validate`)."
        )
    if cyclic:
        lines.append(
            "# warning: the teammates' exclusions cross each other, so some paths may read "
            "differently here; check with `rally-gh owner --codeowners`."
        )
    for k in order:
        e = entries[k]
        text = _as_codeowners_pattern(e.glob)
        lines.append(text if e.glob.negated else f"{text} {owner_of_teammate[e.teammate]}")
    granted = _control_grants(ownership, owner_of_teammate)
    if granted:
        lines.append("")
        lines.append("# Control files that the map grants literally: their teammate's owners, last.")
        lines.extend(granted)
    return "\n".join(lines) + "\n"


def _as_codeowners_pattern(glob: Glob) -> str:
    text = glob.text[1:] if glob.negated else glob.text
    # CODEOWNERS splits on blanks and starts comments with '#'.
    return re.sub(r"(?<!\\)([ \t#])", r"\\\1", text)


def _control_grants(ownership: Ownership, owner_of_teammate: list[str]) -> list[str]:
    """A line for each control file a literal pattern grants, owned as rally.yml owns it."""
    lines = []
    literals = sorted(
        {g.glob.literal for g in ownership.grants if not g.glob.negated and g.glob.literal is not None}
    )
    for literal in literals:
        owner = ownership.owner_of(literal) if is_control_file(literal) else None
        if owner is not None:
            text = _as_codeowners_pattern(compile_glob(literal))
            lines.append(f"/{text} {owner_of_teammate[ownership.names.index(owner)]}")
    return lines


def _line_order(entries: Sequence[_Entry], teammates: int) -> tuple[list[int], bool]:
    """An order of all entries that keeps each teammate's order and puts a ``!`` entry
    of one teammate before any positive entry of another that may give the same paths
    back, unless a later entry of that other teammate decides those paths anyway.
    Returns the order and whether constraints had to be broken (a cycle)."""
    covers = _Covers.of(entries, teammates)
    positives = _Positives.of(entries, teammates)
    # An entry that a later entry of its own list always overrides decides nothing.
    dead = [covers.last_cover(e, e.teammate) > e.position for e in entries]
    successors: list[list[int]] = [[] for _ in entries]
    indegree = [0] * len(entries)

    def edge(k: int, j: int) -> None:
        successors[k].append(j)
        indegree[j] += 1

    previous: dict[int, int] = {}
    for k, e in enumerate(entries):
        if e.teammate in previous:
            edge(previous[e.teammate], k)
        previous[e.teammate] = k
    for k, x in enumerate(entries):
        if x.glob.negated:
            for j in _held_back(entries, k, covers, positives, dead, teammates):
                edge(k, j)
    return _topological(entries, successors, indegree)


@dataclass(frozen=True)
class _Covers:
    """Per teammate, the last position of its entries that match everything below a key, or
    everything, or what a given regex matches: what a later entry of its list decides anyway."""
    full: list[dict[str, int]]
    dir: list[dict[str, int]]
    same: list[dict[str, int]]
    anywhere_full: list[dict[str, int]]  # unanchored literals
    anywhere_dir: list[dict[str, int]]
    everything: list[int]

    @staticmethod
    def of(entries: Sequence[_Entry], teammates: int) -> _Covers:
        def tables() -> list[dict[str, int]]:
            return [{} for _ in range(teammates)]

        covers = _Covers(tables(), tables(), tables(), tables(), tables(), [-1] * teammates)
        for e in entries:
            g = e.glob
            covers.same[e.teammate][g.regex] = e.position
            if g.literal is not None and g.anchored:
                (covers.dir if g.dir_only else covers.full)[e.teammate][g.literal + "/"] = e.position
            elif g.literal is not None:
                (covers.anywhere_dir if g.dir_only else covers.anywhere_full)[e.teammate][g.literal] = e.position
            elif g.regex in _EVERYTHING:
                covers.everything[e.teammate] = e.position
        return covers

    def last_cover(self, x: _Entry, t: int) -> int:
        """The last position in teammate t's list of an entry matching every path x matches."""
        best = max(self.everything[t], self.same[t].get(x.glob.regex, -1))
        if x.key is None:
            return best
        strict = x.glob.literal is None or x.glob.dir_only  # x never matches its key's own path
        for prefix in _prefixes(x.key):
            best = max(best, self.full[t].get(prefix, -1))
            if strict or prefix != x.key:
                best = max(best, self.dir[t].get(prefix, -1))
        if self.anywhere_full[t] or self.anywhere_dir[t]:
            names = x.key[:-1].split("/")
            for n, name in enumerate(names):
                best = max(best, self.anywhere_full[t].get(name, -1))
                if strict or n < len(names) - 1:
                    best = max(best, self.anywhere_dir[t].get(name, -1))
        return best


@dataclass(frozen=True)
class _Positives:
    """The positive entries (indices into the entry list), found by what they may match."""
    by_key: dict[str, list[int]]
    by_prefix: dict[str, list[int]]
    anywhere: list[int]
    of_teammate: list[list[int]]  # in list order
    positions: list[list[int]]  # the same entries' positions

    @staticmethod
    def of(entries: Sequence[_Entry], teammates: int) -> _Positives:
        found = _Positives({}, {}, [], [[] for _ in range(teammates)], [[] for _ in range(teammates)])
        for k, e in enumerate(entries):
            if e.glob.negated:
                continue
            found.of_teammate[e.teammate].append(k)
            found.positions[e.teammate].append(e.position)
            if e.key is None:
                found.anywhere.append(k)
            else:
                found.by_key.setdefault(e.key, []).append(k)
                for prefix in _prefixes(e.key):
                    found.by_prefix.setdefault(prefix, []).append(k)
        return found


def _held_back(entries: Sequence[_Entry], k: int, covers: _Covers, positives: _Positives, dead: Sequence[bool],
               teammates: int) -> list[int]:
    """The positive entries of other teammates that must come after the ``!`` entry ``k``.
    Per other teammate, only its first positive entry after what covers x needs to wait
    for x: its list order holds the rest back."""
    x = entries[k]
    if x.key is None:  # x may match anywhere: every positive entry may overlap it
        held = []
        for t in range(teammates):
            mine = positives.of_teammate[t]
            if t == x.teammate or not mine:
                continue
            n = bisect.bisect_left(positives.positions[t], covers.last_cover(x, t))
            while n < len(mine) and dead[mine[n]]:
                n += 1
            if n < len(mine):
                held.append(mine[n])
        return held
    overlapping = list(positives.anywhere)
    for prefix in _prefixes(x.key):
        overlapping.extend(positives.by_key.get(prefix, ()))
    overlapping.extend(j for j in positives.by_prefix.get(x.key, ()) if entries[j].key != x.key)
    first: dict[int, int] = {}
    cover: dict[int, int] = {}
    for j in overlapping:
        y = entries[j]
        t = y.teammate
        if t == x.teammate or dead[j]:
            continue
        if t not in cover:
            cover[t] = covers.last_cover(x, t)
        if y.position >= cover[t] and (t not in first or y.position < entries[first[t]].position):
            first[t] = j
    return list(first.values())


def _topological(entries: Sequence[_Entry], successors: list[list[int]], indegree: list[int]) -> tuple[list[int], bool]:
    # Among entries free to go, the map's own order: fewest interleavings to read.
    ready = [(entries[k].teammate, entries[k].position, k) for k in range(len(entries)) if indegree[k] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    done = [False] * len(entries)
    cyclic = False
    while len(order) < len(entries):
        if not ready:
            # A cycle: release the earliest waiting entry in the map's order.
            cyclic = True
            k = min((k for k in range(len(entries)) if not done[k]),
                    key=lambda k: (entries[k].teammate, entries[k].position))
            indegree[k] = 0
            heapq.heappush(ready, (entries[k].teammate, entries[k].position, k))
        _, _, k = heapq.heappop(ready)
        if done[k]:
            continue
        done[k] = True
        order.append(k)
        for j in successors[k]:
            indegree[j] -= 1
            if indegree[j] == 0 and not done[j]:
                heapq.heappush(ready, (entries[j].teammate, entries[j].position, j))
    return order, cyclic


# Regexes of patterns that match every path ('*', '**', '/**').
_EVERYTHING = frozenset({compile_glob("*").regex, compile_glob("**").regex, compile_glob("/**").regex})
