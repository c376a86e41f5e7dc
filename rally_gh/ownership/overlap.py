"""The static overlap proof: which teammates' ``exclusive_write`` lists own a common path.

Exact and from the patterns alone. Each pattern becomes a small NFA over
characters; for two teammates the proof is a breadth-first search over the
product of their automata, determinized on the fly (a ``!pattern`` exclusion
needs the complement, which the subset construction gives for free), together
with an automaton of valid repository paths. Breadth-first order with the
alphabet in a readable order yields the shortest, then smallest, example path.

A pattern's language is tracked twice at once: *full* (a pattern that matches a
directory owns everything under it) and *strict* (that rule dropped for a
file-ish last segment such as ``*.c`` or ``test_*``). A path is owned *strictly*
when a positive pattern claims it strictly and no later exclusion takes it back
(exclusions always count in full, so a strict example is a real one). An overlap
with a strict example is an error; one that only exists in full is a warning:
it needs a directory named like a file (``lib/x.c/y.h`` for ``**/*.c`` and
``**/*.h``).

Only pattern pairs whose anchored literal prefixes are compatible (one a prefix
of the other) can share a path, so candidates come from a prefix index rather
than from all pairs; a pair where one side later excludes exactly the other's
pattern is disjoint without a search (the shape of every map imported from
CODEOWNERS).
"""

from __future__ import annotations

import bisect
import functools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from rally_gh.config import LoadedConfig, Problem
from rally_gh.ownership import globs
from rally_gh.ownership.globs import GLOBSTAR, Glob, Segment, Wildcard, compile_glob

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Overlap:
    """Two teammates' positive patterns that own a common path.

    ``teammate_a`` comes before ``teammate_b`` in the map; the indexes are
    positions in each ``exclusive_write`` list. ``example`` is the shortest
    path owned by both through these two patterns (for an error, the shortest
    that needs no directory named like a file), with a name before a bare dot
    where the patterns allow one (``src/a.py``, not ``src/.py``).
    """

    teammate_a: str
    pattern_a: str
    index_a: int
    teammate_b: str
    pattern_b: str
    index_b: int
    example: str
    severity: Severity

    def message(self) -> str:
        both = (
            f"{self.teammate_a}: {self.pattern_a} and {self.teammate_b}: {self.pattern_b}"
            f" both own {self.example}"
        )
        if self.severity == "warning":
            anchoring = _anchoring(self.teammate_a, self.pattern_a, self.teammate_b, self.pattern_b)
            return f"{both}, but only where a directory is named like a file" + (f"; {anchoring}" if anchoring else "")
        return f"{both}; {suggest_fix(self.teammate_a, self.pattern_a, self.teammate_b, self.pattern_b)}"


def suggest_fix(name_a: str, pattern_a: str, name_b: str, pattern_b: str) -> str:
    """The change that resolves an overlap of two patterns and keeps what each meant.

    - A bare name that matches at any depth (``docs/``) clashing only below the
      root is anchored (``/docs/``).
    - Otherwise the more specific pattern keeps its paths: the broader one's
      teammate excludes it (``utils: src/click/utils.py`` against ``core:
      src/click/*.py`` adds ``!src/click/utils.py`` to core, never the other way,
      which would leave utils' pattern owning nothing).
    - Two patterns that own exactly the same paths: one of them goes.
    """
    anchoring = _anchoring(name_a, pattern_a, name_b, pattern_b)
    if anchoring is not None:
        return anchoring
    a, b = compile_pattern(pattern_a), compile_pattern(pattern_b)
    a_in_b, b_in_a = _covers(b, a), _covers(a, b)
    if a_in_b and b_in_a:
        return (f"both patterns own exactly the same paths: remove {pattern_b} from {name_b} "
                f"(or {pattern_a} from {name_a})")
    if a_in_b:  # a is the more specific: b gives its paths up
        return (f'keep such paths with {name_a}, whose pattern is the more specific: add "!{pattern_a}" '
                f"to {name_b} after {pattern_b}")
    if b_in_a:
        return (f'keep such paths with {name_b}, whose pattern is the more specific: add "!{pattern_b}" '
                f"to {name_a} after {pattern_a}")
    return f'give such paths to one of them, e.g. add "!{pattern_b}" to {name_a} after {pattern_a}'


def _anchoring(name_a: str, pattern_a: str, name_b: str, pattern_b: str) -> str | None:
    """Anchoring a bare name that matches at any depth, when that alone ends the overlap."""
    for name, pattern, other in ((name_a, pattern_a, pattern_b), (name_b, pattern_b, pattern_a)):
        anchored = _anchored(pattern)
        if anchored is not None and not _overlap(compile_pattern(anchored), compile_pattern(other)):
            return (f'if {name} means only the top-level {pattern}, anchor it: "{anchored}" '
                    f"(unanchored, {pattern} matches at any depth)")
    return None


def _anchored(pattern: str) -> str | None:
    """``/docs/`` for a bare name such as ``docs/`` or ``build`` (no slash but a trailing one, no wildcard)."""
    body = pattern.rstrip("/")
    if "/" in body or not body or any(c in body for c in "*?\\[") or pattern.startswith("!"):
        return None
    return "/" + pattern


def _overlap(a: Automaton, b: Automaton) -> bool:
    return _shortest_common((a, ()), (b, ()))[0] is not None


def _covers(outer: Automaton, inner: Automaton) -> bool:
    """Whether every path ``inner`` owns, ``outer`` owns too: no path is owned by
    ``inner`` with ``outer`` as its exclusion."""
    return _shortest_common((inner, (outer,)), (inner, ()))[0] is None


def dead_patterns(patterns: Sequence[str]) -> list[tuple[int, str]]:
    """(index, what takes it back) of each positive pattern that the exclusions
    after it take back entirely: such a pattern owns nothing."""
    listed = _TeammateList.build(0, patterns)
    out: list[tuple[int, str]] = []
    for entry in listed.positives:
        if listed.excludes_later(entry.index, entry.pattern):
            out.append((entry.index, f"the later {patterns[listed.last_exclusion[entry.pattern.language]]!r} takes"))
            continue
        later = listed.exclusion_texts_after(entry.index, entry.pattern.prefix)
        if not later:
            continue
        # Most patterns are alive, and one path they own shows it without building the exclusions' automata.
        witness = _witness(entry)
        if witness is not None and not any(globs.matches(text, witness) for text in later):
            continue
        exclusions = listed.exclusions_after(entry.index, entry.pattern.prefix)
        if _shortest_common((entry.automaton, exclusions), (entry.automaton, ()))[0] is None:
            alone = [e.pattern.text for e in exclusions if _covers(e, entry.automaton)]
            out.append((entry.index, f"the later {alone[0]!r} takes" if alone else
                        "the later " + ", ".join(repr(e.pattern.text) for e in exclusions) + " together take"))
    return out


def _witness(entry: _Entry) -> str | None:
    """A path the pattern owns: itself when it names one, else its shortest."""
    pattern = entry.pattern
    if all(seg != GLOBSTAR and not any(isinstance(t, Wildcard) for t in seg) for seg in pattern.segments):
        return pattern.prefix + "a" if pattern.glob.dir_only else pattern.prefix
    return _shortest_common((entry.automaton, ()), (entry.automaton, ()))[0]


def find_overlaps(teammates: Sequence[tuple[str, Sequence[str]]]) -> list[Overlap]:
    """Every pair of positive patterns of two different teammates that own a common path.

    ``teammates`` are names with their ``exclusive_write`` lists, in map order.
    Sound and exact: a pair is missing only if no path is owned by both.
    """
    lists = [_TeammateList.build(t, patterns) for t, (_, patterns) in enumerate(teammates)]
    positives = _PrefixIndex([e for tl in lists for e in tl.positives])
    found: list[tuple[tuple[int, int, int, int], Overlap]] = []
    for a in positives.items:
        if lists[a.teammate].excludes_later(a.index, a.pattern):
            continue  # taken back entirely by its own teammate
        for b in positives.compatible(a.pattern.prefix):
            if b.teammate <= a.teammate:
                continue
            side_a, side_b = lists[a.teammate], lists[b.teammate]
            if (side_a.excludes_later(a.index, b.pattern) or side_b.excludes_later(b.index, a.pattern)
                    or side_b.excludes_later(b.index, b.pattern)):
                continue
            deeper = max(a.pattern.prefix, b.pattern.prefix, key=len)
            full, strict = _shortest_common(
                (a.automaton, side_a.exclusions_after(a.index, deeper)),
                (b.automaton, side_b.exclusions_after(b.index, deeper)),
            )
            if full is None:
                continue
            name_a, name_b = teammates[a.teammate][0], teammates[b.teammate][0]
            sides = ((a.automaton, side_a.exclusions_after(a.index, deeper)),
                     (b.automaton, side_b.exclusions_after(b.index, deeper)))
            overlap = Overlap(
                name_a, a.pattern.text, a.index,
                name_b, b.pattern.text, b.index,
                _named(strict, "strict", *sides) if strict is not None else _named(full, "full", *sides),
                "error" if strict is not None else "warning",
            )
            found.append(((a.teammate, b.teammate, a.index, b.index), overlap))
    return [o for _, o in sorted(found, key=lambda f: f[0])]


def overlap_problems(loaded: LoadedConfig) -> list[Problem]:
    """``find_overlaps`` on a loaded map, as ``validate`` problems.

    The location is the pattern of the later teammate: the one that claims what
    an earlier teammate already owns.
    """
    team = loaded.config.teammates
    position = {t.name: i for i, t in reversed(list(enumerate(team)))}
    return [
        Problem(
            severity=o.severity,
            code="overlap",
            message=f"teammates[{position[o.teammate_b]}].exclusive_write[{o.index_b}]: {o.message()}",
            location=loaded.locate("teammates", position[o.teammate_b], "exclusive_write", o.index_b),
            teammates=(o.teammate_a, o.teammate_b),
            example=o.example,
        )
        for o in find_overlaps([(t.name, t.exclusive_write) for t in team])
    ]


# ---------------------------------------------------------------------------
# Patterns


@dataclass(frozen=True)
class Pattern:
    """One parsed pattern (``globs.Glob``, the one parse of the language) as the proof reads it.

    ``segments`` start at the root: an unanchored pattern's begin with a
    GLOBSTAR, and a repeated GLOBSTAR is one.
    """

    glob: Glob
    segments: tuple[Segment, ...]
    language: str  # equal for two patterns with the same meaning, whatever their spelling
    prefix: str  # the text every path the pattern matches starts with

    @property
    def text(self) -> str:
        return self.glob.text

    @property
    def negated(self) -> bool:
        return self.glob.negated

    @property
    def extends_into_directories(self) -> bool:
        """Whether a path whose directory matches the pattern is owned too."""
        return not (self.glob.dir_only or self.glob.direct_children_only or self.segments[-1] == GLOBSTAR)

    @property
    def fileish(self) -> bool:
        """A last segment that mixes wildcards with text (``*.c``, ``test_*``): meant for files."""
        last = self.segments[-1]
        if not self.extends_into_directories or last == GLOBSTAR:
            return False
        return any(isinstance(t, Wildcard) for t in last) and any(isinstance(t, str) for t in last)


@functools.lru_cache(maxsize=1 << 16)
def read_pattern(pattern: str) -> Pattern:
    """``pattern`` in CODEOWNERS syntax, with an optional leading ``!``.

    Raises PatternError for a pattern the language refuses.
    """
    glob = compile_glob(pattern)
    segments: list[Segment] = [] if glob.anchored else [GLOBSTAR]
    for segment in glob.segments:
        if not (segment == GLOBSTAR and segments and segments[-1] == GLOBSTAR):
            segments.append(segment)
    inside_only = glob.dir_only
    spelled = [_spelled(s) for s in segments]
    if spelled[-1] == GLOBSTAR and len(spelled) > 1 and not inside_only:
        spelled[-1] = ""  # 'x/**' and 'x/' both own what is inside x, and only that
    # Only a final '/*' as written: 'docs/***' reads as 'docs/*' but owns what is below.
    language = "/".join(spelled) + "/" * inside_only + " children" * glob.direct_children_only
    return Pattern(glob, tuple(segments), language, _literal_prefix(segments, inside_only))


def _spelled(segment: Segment) -> str:
    if segment == GLOBSTAR:
        return GLOBSTAR
    return "".join(t.value if isinstance(t, Wildcard) else t.translate(_ESCAPED) for t in segment)


_ESCAPED = str.maketrans({c: "\\" + c for c in "*?\\/"})


def _literal_prefix(segments: Sequence[Segment], inside_only: bool) -> str:
    """The text every path the pattern matches starts with ('' for an unanchored one)."""
    prefix = ""
    for i, segment in enumerate(segments):
        if segment == GLOBSTAR:
            return prefix
        for token in segment:
            if isinstance(token, Wildcard):
                return prefix
            prefix += token
        if i < len(segments) - 1 or inside_only:
            prefix += "/"
    return prefix


# ---------------------------------------------------------------------------
# Automata


@dataclass(frozen=True)
class Automaton:
    """An epsilon-free NFA of one pattern; state sets are bit masks.

    A state accepts *fully* or also *strictly*; ``universal`` states accept every
    continuation (so an exclusion in one of them can never be escaped).
    """

    pattern: Pattern
    literals: frozenset[str]
    start: int
    full: int
    strict: int
    universal: int
    on_literal: tuple[dict[str, int], ...]  # per state: its own literal edges -> next states
    on_other: tuple[int, ...]  # per state: any character but '/' (added to a literal's too)
    on_slash: tuple[int, ...]
    # Caches of determinized steps, (states, character) -> states, and of the
    # characters a state set can read; they do not take part in equality, and
    # filling them in keeps the automaton the same.
    steps: dict[tuple[int, str], int] = field(default_factory=dict, compare=False, repr=False)
    readable: dict[int, tuple[frozenset[str], bool]] = field(default_factory=dict, compare=False, repr=False)

    def step(self, states: int, char: str) -> int:
        key = (states, char)
        cached = self.steps.get(key)
        if cached is not None:
            return cached
        out = 0
        for s in _bits(states):
            if char == "/":
                out |= self.on_slash[s]
            else:
                out |= self.on_literal[s].get(char, 0) | self.on_other[s]
        self.steps[key] = out
        return out

    def can_read(self, states: int) -> tuple[frozenset[str], bool]:
        """The characters ``states`` reads as themselves (literals and '/'), and whether
        a wildcard reads any other character but '/'."""
        out = self.readable.get(states)
        if out is None:
            chars: set[str] = set()
            wildcard = False
            for s in _bits(states):
                chars.update(self.on_literal[s])
                if self.on_slash[s]:
                    chars.add("/")
                wildcard = wildcard or bool(self.on_other[s])
            out = self.readable[states] = (frozenset(chars), wildcard)
        return out

    def run(self, path: str) -> int:
        states = self.start
        for char in path:
            states = self.step(states, char)
            if not states:
                break
        return states


def matches(automaton: Automaton, path: str, *, strict: bool = False) -> bool:
    """Whether the pattern matches ``path`` (strictly: without a file-ish directory)."""
    return bool(automaton.run(path) & (automaton.strict if strict else automaton.full))


def owns(patterns: Sequence[str], path: str, *, strict: bool = False) -> bool:
    """Whether a list with ``!`` exclusions owns ``path``: the last matching pattern is positive.

    Strictly: some positive pattern matches strictly and no later exclusion matches.
    """
    automata = [compile_pattern(p) for p in patterns]
    for i in reversed(range(len(automata))):
        automaton = automata[i]
        if automaton.pattern.negated:
            if matches(automaton, path):
                return False
        elif matches(automaton, path, strict=strict):
            return True
    return False


_ANY_CHAR = "any"
_NOT_SLASH = "not-slash"


class _Builder:
    """An epsilon-NFA under construction; edges are labelled with a character or a class."""

    def __init__(self) -> None:
        self.edges: list[list[tuple[str, int]]] = []
        self.epsilon: list[list[int]] = []

    def state(self) -> int:
        self.edges.append([])
        self.epsilon.append([])
        return len(self.edges) - 1

    def universal(self, source: int, label: str) -> int:
        u = self.state()
        self.edges[source].append((label, u))
        self.edges[u].append((_ANY_CHAR, u))
        return u


@functools.lru_cache(maxsize=1 << 16)
def compile_pattern(pattern: str) -> Automaton:
    read = read_pattern(pattern)
    b = _Builder()
    current = b.state()
    start = current
    accept_full: set[int] = set()
    accept_strict: set[int] = set()
    universal: set[int] = set()
    last = len(read.segments) - 1
    for i, segment in enumerate(read.segments):
        if segment == GLOBSTAR and i == last:
            # Everything below: one character or more after the '/' already read
            # ('**/' asks for one more directory level on top).
            u = b.universal(current, _ANY_CHAR)
            if read.glob.dir_only:
                u = b.universal(u, "/")
            accept_full.add(u)
            accept_strict.add(u)
            universal.add(u)
            break
        if segment == GLOBSTAR:
            # Zero or more whole segments, each with its '/': (.*/)?
            after = b.state()
            loop = b.state()
            b.epsilon[current] += [after, loop]
            b.edges[loop] += [(_ANY_CHAR, loop), ("/", after)]
            current = after
            continue
        for token in segment:
            if token is Wildcard.STAR:
                star = b.state()
                b.epsilon[current].append(star)
                b.edges[star].append((_NOT_SLASH, star))
                current = star
            elif token is Wildcard.ANY:
                nxt = b.state()
                b.edges[current].append((_NOT_SLASH, nxt))
                current = nxt
            else:
                for char in token:
                    nxt = b.state()
                    b.edges[current].append((char, nxt))
                    current = nxt
        if i < last:
            nxt = b.state()
            b.edges[current].append(("/", nxt))
            current = nxt
            continue
        if not read.glob.dir_only:
            accept_full.add(current)
            accept_strict.add(current)
        if read.glob.dir_only or read.extends_into_directories:
            u = b.universal(current, "/")
            universal.add(u)
            accept_full.add(u)
            if not read.fileish:
                accept_strict.add(u)
    return _determinizable(read, b, start, accept_full, accept_strict, universal)


def _determinizable(pattern: Pattern, b: _Builder, start: int, accept_full: set[int],
                    accept_strict: set[int], universal: set[int]) -> Automaton:
    """Remove epsilon edges: each state's moves land on epsilon closures."""
    closure = [_closure(b.epsilon, s) for s in range(len(b.edges))]
    literals = frozenset(label for edges in b.edges for label, _ in edges
                         if label not in (_ANY_CHAR, _NOT_SLASH, "/"))

    on_literal: list[dict[str, int]] = []
    on_other: list[int] = []
    on_slash: list[int] = []
    for edges in b.edges:
        literal: dict[str, int] = {}
        other = slash = 0
        for label, target in edges:
            if label == _ANY_CHAR:
                other |= closure[target]
                slash |= closure[target]
            elif label == _NOT_SLASH:
                other |= closure[target]
            elif label == "/":
                slash |= closure[target]
            else:
                literal[label] = literal.get(label, 0) | closure[target]
        on_literal.append(literal)
        on_other.append(other)
        on_slash.append(slash)
    return Automaton(
        pattern=pattern,
        literals=literals,
        start=closure[start],
        full=_mask(accept_full),
        strict=_mask(accept_strict),
        universal=_mask(universal),
        on_literal=tuple(on_literal),
        on_other=tuple(on_other),
        on_slash=tuple(on_slash),
    )


def _closure(epsilon: list[list[int]], state: int) -> int:
    seen = {state}
    todo = [state]
    while todo:
        for t in epsilon[todo.pop()]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return _mask(seen)


def _mask(states: set[int]) -> int:
    return sum(1 << s for s in states)


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


# ---------------------------------------------------------------------------
# Valid repository paths: non-empty segments, no '.' or '..' (git stores neither).

_SEGMENT_START, _DOT, _DOT_DOT, _IN_SEGMENT, _INVALID = range(5)


def _valid_step(state: int, char: str) -> int:
    if char == "/":
        return _SEGMENT_START if state == _IN_SEGMENT else _INVALID
    if char == "." and state in (_SEGMENT_START, _DOT):
        return _DOT if state == _SEGMENT_START else _DOT_DOT
    return _INVALID if state == _INVALID else _IN_SEGMENT


# ---------------------------------------------------------------------------
# The product search

# Characters for examples, most readable first; wildcard positions take the
# first one that no pattern involved gives a meaning to.
_READABLE = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _rank(char: str) -> tuple[int, int]:
    i = _READABLE.find(char)
    if i >= 0:
        return (0, i)
    return (2, 0) if char == "/" else (1, ord(char))


def _alphabet(automata: Sequence[Automaton]) -> list[str]:
    """One character per class that the automata tell apart, in readable order."""
    literals = set().union(*(a.literals for a in automata)) | {"/", "."}
    other = next((c for c in _READABLE if c not in literals), None)
    if other is None:
        other = next(chr(c) for c in range(0xC0, 0x110000) if chr(c) not in literals)
    return sorted(literals | {other}, key=_rank)


Side = tuple[Automaton, Sequence[Automaton]]  # a positive pattern and the exclusions after it
_State = tuple[int, int, tuple[int, ...], int, tuple[int, ...]]


def _shortest_common(a: Side, b: Side) -> tuple[str | None, str | None]:
    """The shortest path owned by both sides, and the shortest owned strictly by both."""
    (pos_a, neg_a), (pos_b, neg_b) = a, b
    alphabet = _alphabet([pos_a, pos_b, *neg_a, *neg_b])
    start: _State = (_SEGMENT_START, pos_a.start, tuple(n.start for n in neg_a),
                     pos_b.start, tuple(n.start for n in neg_b))
    parent: dict[_State, tuple[_State, str] | None] = {start: None}
    queue = deque([start])
    full: _State | None = None
    rank = {c: i for i, c in enumerate(alphabet)}
    while queue:
        state = queue.popleft()
        for char in _next_chars(state, a, b, alphabet, rank):
            nxt = _advance(state, char, a, b)
            if nxt is None or nxt in parent:
                continue
            parent[nxt] = (state, char)
            owned = _owned(nxt, a, b)
            if owned == "strict":
                return _word(parent, full or nxt), _word(parent, nxt)
            if owned == "full" and full is None:
                full = nxt
            queue.append(nxt)
    return (None if full is None else _word(parent, full)), None


def _next_chars(state: _State, a: Side, b: Side, alphabet: list[str], rank: dict[str, int]) -> list[str]:
    """The characters worth trying from ``state``, in alphabet order.

    Characters that no automaton reads as themselves from here all lead to the
    same state, so only the most readable of them is tried; and a side without a
    wildcard here reads nothing but its literals.
    """
    _, sa, na, sb, nb = state
    chars_a, wild_a = a[0].can_read(sa)
    chars_b, wild_b = b[0].can_read(sb)
    if not (wild_a and wild_b):
        if wild_a:
            chars = chars_b
        elif wild_b:
            chars = chars_a
        else:
            chars = chars_a & chars_b
        return sorted(chars, key=rank.__getitem__)
    special = {"/", "."} | chars_a | chars_b  # '.' and '/' matter to valid paths
    for side, states in ((a, na), (b, nb)):
        for exclusion, s in zip(side[1], states, strict=True):
            special |= exclusion.can_read(s)[0]
    other = next(c for c in alphabet if c not in special)
    return sorted(special | {other}, key=rank.__getitem__)


def _advance(state: _State, char: str, a: Side, b: Side) -> _State | None:
    """The next product state, or None when no extension can be owned by both."""
    valid, sa, na, sb, nb = state
    valid = _valid_step(valid, char)
    if valid == _INVALID:
        return None
    sa = a[0].step(sa, char)
    sb = b[0].step(sb, char) if sa else 0
    if not sb:
        return None
    next_na = _advance_exclusions(a[1], na, char)
    next_nb = _advance_exclusions(b[1], nb, char) if next_na is not None else None
    if next_na is None or next_nb is None:
        return None
    return (valid, sa, next_na, sb, next_nb)


def _advance_exclusions(exclusions: Sequence[Automaton], states: tuple[int, ...],
                        char: str) -> tuple[int, ...] | None:
    if not exclusions:
        return states
    out = []
    for n, s in zip(exclusions, states, strict=True):
        s = n.step(s, char)
        if s & n.universal:
            return None  # excluded whatever comes next
        out.append(s)
    return tuple(out)


def _owned(state: _State, a: Side, b: Side) -> Literal["strict", "full", None]:
    valid, sa, na, sb, nb = state
    if valid != _IN_SEGMENT or not (sa & a[0].full and sb & b[0].full):
        return None
    if any(s & n.full for n, s in zip(a[1], na, strict=True)) or any(s & n.full for n, s in zip(b[1], nb, strict=True)):
        return None
    return "strict" if sa & a[0].strict and sb & b[0].strict else "full"


def _named(example: str, owned: Literal["strict", "full"], a: Side, b: Side) -> str:
    """``example`` with a name before each bare-dot segment (``src/.py`` -> ``src/a.py``)
    wherever both sides still own it the same way: a shortest example reads like a dotfile."""
    segments = example.split("/")
    for i, segment in enumerate(segments):
        if segment.startswith(".") and segment not in (".", ".."):
            candidate = "/".join([*segments[:i], "a" + segment, *segments[i + 1:]])
            if _owned_path(candidate, a, b) == owned:
                segments[i] = "a" + segment
    return "/".join(segments)


def _owned_path(path: str, a: Side, b: Side) -> Literal["strict", "full", None]:
    (pos_a, neg_a), (pos_b, neg_b) = a, b
    state: _State | None = (_SEGMENT_START, pos_a.start, tuple(n.start for n in neg_a),
                            pos_b.start, tuple(n.start for n in neg_b))
    for char in path:
        assert state is not None
        state = _advance(state, char, a, b)
        if state is None:
            return None
    assert state is not None
    return _owned(state, a, b)


def _word(parent: dict[_State, tuple[_State, str] | None], state: _State) -> str:
    chars: list[str] = []
    link = parent[state]
    while link is not None:
        state, char = link
        chars.append(char)
        link = parent[state]
    return "".join(reversed(chars))


# ---------------------------------------------------------------------------
# Candidate pairs


@dataclass(frozen=True)
class _Entry:
    teammate: int
    index: int
    pattern: Pattern

    @property
    def automaton(self) -> Automaton:
        return compile_pattern(self.pattern.text)  # cached: built only for the pairs searched


E = TypeVar("E", bound=_Entry)


class _PrefixIndex(Generic[E]):
    """Entries by literal prefix, to find those that can share a path with a given prefix."""

    def __init__(self, items: Sequence[E]) -> None:
        self.items = list(items)
        self.by_prefix: dict[str, list[E]] = {}
        for item in self.items:
            self.by_prefix.setdefault(item.pattern.prefix, []).append(item)
        self.prefixes = sorted(self.by_prefix)
        self.lengths = sorted({len(p) for p in self.prefixes})

    def compatible(self, prefix: str) -> Iterator[E]:
        """Entries whose prefix is a prefix of ``prefix`` or extends it."""
        for n in self.lengths:
            if n >= len(prefix):
                break
            yield from self.by_prefix.get(prefix[:n], ())
        lo = bisect.bisect_left(self.prefixes, prefix)
        hi = bisect.bisect_left(self.prefixes, prefix + "\U0010ffff")
        for p in self.prefixes[lo:hi]:
            yield from self.by_prefix[p]


@dataclass
class _TeammateList:
    """One teammate's patterns, compiled, with what a search needs to know about its exclusions."""

    positives: list[_Entry]
    exclusions: list[_Entry]
    last_exclusion: dict[str, int]  # a language -> the last index that excludes it
    _exclusion_index: _PrefixIndex[_Entry] | None = None

    @staticmethod
    def build(teammate: int, patterns: Sequence[str]) -> _TeammateList:
        positives: list[_Entry] = []
        exclusions: list[_Entry] = []
        last_exclusion: dict[str, int] = {}
        for i, pattern in enumerate(patterns):
            entry = _Entry(teammate, i, read_pattern(pattern))
            if entry.pattern.negated:
                exclusions.append(entry)
                last_exclusion[entry.pattern.language] = i
            else:
                positives.append(entry)
        return _TeammateList(positives, exclusions, last_exclusion)

    def excludes_later(self, index: int, other: Pattern) -> bool:
        """Whether an exclusion after ``index`` takes back everything ``other`` matches."""
        return self.last_exclusion.get(other.language, -1) > index

    def exclusion_texts_after(self, index: int, prefix: str) -> list[str]:
        """The exclusions after ``index`` that can match a path starting with ``prefix``, as written."""
        if not self.exclusions:
            return []
        if self._exclusion_index is None:
            self._exclusion_index = _PrefixIndex(self.exclusions)
        return [e.pattern.text for e in self._exclusion_index.compatible(prefix) if e.index > index]

    def exclusions_after(self, index: int, prefix: str) -> list[Automaton]:
        """The exclusions after ``index`` that can match a path starting with ``prefix``, one per language."""
        if not self.exclusions:
            return []
        if self._exclusion_index is None:
            self._exclusion_index = _PrefixIndex(self.exclusions)
        seen: set[str] = set()
        out: list[Automaton] = []
        for e in sorted(self._exclusion_index.compatible(prefix), key=lambda e: e.index):
            language = e.pattern.language
            if e.index > index and language not in seen:
                seen.add(language)
                out.append(e.automaton)
        return out
