"""The pattern language of ``rally.yml``: GitHub's CODEOWNERS syntax (SPEC section 1).

A pattern is translated once into an RE2 regular expression that must match a
whole repository path (``src/a/b.py``, no leading slash). RE2 guarantees time
linear in the path, so no pattern a teammate writes can stall the hook or the
CI check (the backtracking trap ``*a*a*a...`` vs ``aaaa...b`` included).

The rules, as GitHub and hmarr/codeowners read them:

- ``*`` and ``?`` never cross ``/``; ``**`` as a whole segment spans
  directories (``**/x``, ``x/**``, ``x/**/y``, ``**``); elsewhere it is ``*``.
- ``\\`` makes the next character literal; ``[`` and ``]`` are literal (GitHub
  has no character classes, unlike gitignore).
- A leading ``/`` or a slash inside anchors the pattern at the root; a pattern
  whose only slash is a trailing one matches at any depth.
- A trailing ``/`` matches only what is inside that directory.
- A pattern that matches a directory matches everything under it, except that
  a final lone ``*`` segment (``docs/*``) matches only direct children.
- ``!`` in front (rally.yml only) takes paths back out within one teammate's list.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import re2  # type: ignore[import-untyped]

from rally_gh.errors import PatternError
from rally_gh.ownership.paths import hostile_reason

# The DFA budget of the RE2 set. With the default 8 MiB a set of thousands of
# patterns may not fit even a few DFA states, and then RE2::Set::Match silently
# reports "no match". Above that, a full cache is reset and matching goes on (a set
# never gives up for slowness), so the budget bounds memory, not correctness.
# Keeping literal globs out of the set (see GlobSet) keeps real files far below it.
_SET_MAX_MEM = 64 << 20


class Wildcard(enum.Enum):
    STAR = "*"  # any run of characters other than '/' ('**' inside a segment too)
    ANY = "?"  # one character other than '/'


Token = str | Wildcard  # a str token is a run of literal text, escapes resolved
GLOBSTAR: Literal["**"] = "**"  # a whole segment '**': any number of directories
Segment = tuple[Token, ...] | Literal["**"]


@dataclass(frozen=True)
class Glob:
    """One pattern, parsed: the one reading of the language that matching
    (``regex``) and the overlap proof (``segments``) share.

    ``segments`` are the pattern's path segments as written (an unanchored
    pattern may sit under any directory), without the leading and trailing
    slash. ``literal`` is the path the pattern names when it has no wildcard
    (escapes resolved, no leading or trailing slash), else None.
    """

    text: str
    negated: bool
    anchored: bool
    dir_only: bool
    literal: str | None
    direct_children_only: bool
    segments: tuple[Segment, ...]

    @functools.cached_property
    def regex(self) -> str:
        """RE2 source that must match a whole path (use it with ``fullmatch`` or an
        ``ANCHOR_BOTH`` set). Built when first asked for: the overlap proof and
        the literal globs of a GlobSet never need it."""
        return _to_regex(self.segments, self.anchored, self.dir_only, self.direct_children_only)


def compile_glob(pattern: str, *, allow_negation: bool = True) -> Glob:
    """Compile one pattern (cached). ``allow_negation=False`` reads a leading ``!``
    as a literal character, as CODEOWNERS does.

    Raises PatternError for hostile or broken patterns.
    """
    return _compile(pattern, allow_negation)


@functools.lru_cache(maxsize=65536)
def _compile(pattern: str, allow_negation: bool) -> Glob:
    negated = allow_negation and pattern.startswith("!")
    body = pattern[1:] if negated else pattern
    segments, anchored, dir_only = _parse(pattern, body)
    return Glob(
        text=pattern,
        negated=negated,
        anchored=anchored,
        dir_only=dir_only,
        literal=_literal_text(segments),
        # 'docs/*' and '/*' own direct children only ('docs/**' and a lone '*' own everything;
        # so does 'docs/***', as GitHub reads only a final '/*' this way).
        direct_children_only=body.endswith("/*"),
        segments=segments,
    )


def _fail(pattern: str, what: str, todo: str) -> PatternError:
    return PatternError(f"pattern {pattern!r}: {what}", hint=todo)


def _parse(pattern: str, body: str) -> tuple[tuple[Segment, ...], bool, bool]:
    """Split ``body`` into segments of tokens; return (segments, anchored, dir_only)."""
    if not body:
        raise _fail(pattern, "empty pattern", "write a path or a glob such as 'src/**'")
    if _MAYBE_HOSTILE.search(body):
        reason = hostile_reason(_unescaped(body).lstrip("/") or "/")
        if reason and reason != "absolute path":
            raise _fail(
                pattern,
                f"refused: {reason}",
                "patterns name paths inside the repository; '..', '.git' and control characters are never allowed",
            )
    leading_slash = body.startswith("/")
    if leading_slash:
        body = body[1:]
    dir_only = body.endswith("/")
    if dir_only:
        body = body[:-1]
    if not body:
        raise _fail(pattern, "names no path", "write the directory or file after the '/'")
    raw_segments = body.split("/")
    last = len(raw_segments) - 1
    segments = tuple(_segment(pattern, raw, i == last and not dir_only) for i, raw in enumerate(raw_segments))
    anchored = leading_slash or len(segments) > 1
    return segments, anchored, dir_only


# A cheap superset of what hostile_reason refuses, so most patterns skip it.
_MAYBE_HOSTILE = re.compile(r"[\x00-\x1f\x7f\\]|\.\.|\.[gG][iI][tT]|~1|[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
_SEGMENT_TOKEN = re.compile(r"\\(.?)|(\*+)|(\?)|([^\\*?]+)", re.S)


def _segment(pattern: str, raw: str, is_last: bool) -> Segment:
    if not raw:
        raise _fail(pattern, "has an empty path segment ('//')", "remove the doubled slash")
    if raw == "**":
        return GLOBSTAR
    if not _HAS_SPECIAL.search(raw):
        return (raw,)
    tokens: list[Token] = []
    literal: list[str] = []
    for m in _SEGMENT_TOKEN.finditer(raw):
        escaped, stars, qmark, plain = m.groups()
        if escaped is not None:
            if not escaped:
                if is_last:
                    raise _fail(pattern, "ends with a lone backslash", "write '\\\\' for a literal backslash")
                raise _fail(pattern, "escapes a '/'", "a slash always separates directories; remove the backslash")
            literal.append(escaped)
            continue
        if plain is not None:
            literal.append(plain)
            continue
        if literal:
            tokens.append("".join(literal))
            literal.clear()
        tokens.append(Wildcard.STAR if stars else Wildcard.ANY)  # '**' inside a segment is '*'
    if literal:
        tokens.append("".join(literal))
    return tuple(tokens)


_HAS_SPECIAL = re.compile(r"[\\*?]")


def _unescaped(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


def _segment_regex(segment: tuple[Token, ...]) -> str:
    parts: list[str] = []
    for tok in segment:
        if tok is Wildcard.STAR:
            parts.append("[^/]*")
        elif tok is Wildcard.ANY:
            parts.append("[^/]")
        else:
            # RE2 reads a backslash before any non-alphanumeric ASCII character as
            # that character, which is all re.escape ever adds (and it is much faster).
            parts.append(re.escape(tok))
    return "".join(parts)


def _to_regex(
    segments: tuple[Segment, ...], anchored: bool, dir_only: bool, direct_children_only: bool
) -> str:
    # Unanchored patterns are one segment that may sit under any directory.
    out = [] if anchored else ["(?:.+/)?"]
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        if seg == GLOBSTAR:
            if i == 0 and i == last:
                out.append(".+")
            elif i == last:
                out.append(".+")  # 'x/**': anything below x
            else:
                out.append("(?:.+/)?")  # '**/' and '/**/': zero or more directories
            continue
        assert isinstance(seg, tuple)
        out.append(_segment_regex(seg))
        if i != last:
            out.append("/")
    if dir_only:
        out.append("/.+")
    elif not direct_children_only and segments[-1] != GLOBSTAR:
        # Whatever names a directory names everything inside it.
        out.append("(?:/.+)?")
    return "".join(out)


def _literal_text(segments: tuple[Segment, ...]) -> str | None:
    parts: list[str] = []
    for seg in segments:
        if seg == GLOBSTAR or len(seg) != 1 or not isinstance(seg[0], str):
            return None
        parts.append(seg[0])
    return "/".join(parts)


def matches(pattern: str, path: str) -> bool:
    """Does ``pattern`` (CODEOWNERS syntax) match repository path ``path``?

    A negated pattern (``!x``) matches what ``x`` matches: negation only means
    something inside a list, where it takes paths back out.
    """
    return _regex(compile_glob(pattern).regex).fullmatch(path) is not None


@functools.lru_cache(maxsize=65536)
def _regex(source: str) -> re2._Regexp:
    return re2.compile(source)


def glob_regex(glob: Glob) -> re2._Regexp:
    """The compiled (cached) RE2 object of ``glob``, for ``fullmatch``."""
    return _regex(glob.regex)


def is_literal(pattern: str) -> bool:
    """True when ``pattern`` has no wildcard: it names one path (and what is under it)."""
    return compile_glob(pattern).literal is not None


def literal_prefix(glob: Glob) -> str:
    """The literal directory every path the glob matches lies in, ``""`` for none.

    ``src/api/**`` -> ``src/api/``; ``src/*.py`` -> ``src/``; ``docs`` (unanchored) -> ``""``.
    The result always ends with ``/`` when not empty, so ``startswith`` on two
    prefixes decides whether two globs can possibly overlap.
    """
    if not glob.anchored:
        return ""
    segments = glob.segments
    prefix: list[str] = []
    for seg in segments if glob.dir_only else segments[:-1]:
        if seg == GLOBSTAR or len(seg) != 1 or not isinstance(seg[0], str):
            break
        prefix.append(seg[0] + "/")
    return "".join(prefix)


class GlobSet:
    """Many globs matched against a path in one pass.

    Literal globs (most of a real CODEOWNERS file) never reach RE2: anchored
    ones sit in a trie of path segments walked once per path, unanchored ones
    are found by segment name. Only wildcard globs go through the one RE2 set,
    whose DFA stays small that way.
    """

    __slots__ = (
        "globs", "_trie", "_best_trie", "_anywhere", "_anywhere_dir", "_anywhere_names", "_set_match", "_set_index",
        "_set_always", "_set_gate_names",
    )

    def __init__(self, globs: Iterable[Glob]) -> None:
        self.globs: tuple[Glob, ...] = tuple(globs)
        self._trie = _TrieNode()
        # segment name -> literal unanchored globs (any segment / only a directory's)
        self._anywhere: dict[str, list[int]] = {}
        self._anywhere_dir: dict[str, list[int]] = {}
        wildcard: list[int] = []
        # Whether every path needs the RE2 set; else only paths under a trie node
        # marked wild_below (a wildcard glob's literal directory prefix) do.
        self._set_always = False
        gate_names: set[str] = set()  # or paths with one of these segments do
        for i, g in enumerate(self.globs):
            if g.literal is None:
                wildcard.append(i)
                prefix = literal_prefix(g)
                if not prefix:
                    name = _required_segment(g)
                    if name is None:
                        self._set_always = True
                    else:
                        gate_names.add(name)
                    continue
                node = self._trie
                for part in prefix[:-1].split("/"):
                    node = node.children.setdefault(part, _TrieNode())
                node.wild_below = True
            elif g.anchored:
                node = self._trie
                for part in g.literal.split("/"):
                    node = node.children.setdefault(part, _TrieNode())
                (node.inside if g.dir_only else node.here).append(i)
            else:
                (self._anywhere_dir if g.dir_only else self._anywhere).setdefault(g.literal, []).append(i)
        self._anywhere_names = frozenset(self._anywhere) | frozenset(self._anywhere_dir)
        self._set_gate_names = frozenset(gate_names)
        self._best_trie = _best_trie(self._trie)
        self._set_index: tuple[int, ...] = tuple(wildcard)
        self._set_match = _set_matcher(self.globs[i].regex for i in wildcard) if wildcard else None

    def __len__(self) -> int:
        return len(self.globs)

    def matching(self, path: str) -> list[int]:
        """Indices of every glob that matches ``path``, ascending."""
        found, need_set = self._literal_hits(path)
        if need_set and self._set_match is not None:
            hits = self._set_match(path.encode())
            if hits:
                index = self._set_index
                found.extend([index[h] for h in hits])
        found.sort()
        return found

    def last_match(self, path: str) -> int:
        """The highest index of a glob matching ``path``, -1 for none (CODEOWNERS' rule)."""
        # The hot loop of `owner`: the trie walk of _literal_hits on a compact trie that
        # keeps only the highest index per node.
        best = -1
        parts = path.split("/")
        children = self._best_trie
        need_set = self._set_always
        for part in parts[:-1]:
            node = children.get(part)
            if node is None:
                break
            children, here, inside, wild_below = node
            if wild_below:
                need_set = True
            if here > best:
                best = here
            if inside > best:
                best = inside
        else:
            node = children.get(parts[-1])
            if node is not None and node[1] > best:
                best = node[1]
        if self._anywhere_names:
            for name in self._anywhere_names.intersection(parts):
                more = self._anywhere.get(name)
                if more and more[-1] > best:
                    best = more[-1]
                more = self._anywhere_dir.get(name)
                if more and more[-1] > best and name in parts[:-1]:
                    best = more[-1]
        if not need_set and self._set_gate_names and not self._set_gate_names.isdisjoint(parts):
            need_set = True
        if need_set and self._set_match is not None:
            hits = self._set_match(path.encode())
            if hits:
                best = max(best, self._set_index[max(hits)])
        return best

    def _literal_hits(self, path: str) -> tuple[list[int], bool]:
        """The literal globs matching ``path``, and whether a wildcard glob may match it."""
        found: list[int] = []
        parts = path.split("/")
        last = len(parts) - 1
        node = self._trie
        need_set = self._set_always
        for n, part in enumerate(parts):
            child = node.children.get(part)
            if child is None:
                break
            if child.here:
                found.extend(child.here)
            if n != last:
                if child.inside:
                    found.extend(child.inside)
                if child.wild_below:
                    need_set = True
            node = child
        if self._anywhere_names:
            for name in self._anywhere_names.intersection(parts):
                more = self._anywhere.get(name)
                if more:
                    found.extend(more)
                more = self._anywhere_dir.get(name)
                if more and name in parts[:-1]:
                    found.extend(more)
        if not need_set and self._set_gate_names and not self._set_gate_names.isdisjoint(parts):
            need_set = True
        return found, need_set


def _required_segment(glob: Glob) -> str | None:
    """A whole path segment every path the glob matches has (``**/moon.yml`` -> ``moon.yml``)."""
    for seg in reversed(glob.segments):
        if seg != GLOBSTAR and len(seg) == 1 and isinstance(seg[0], str):
            return seg[0]
    return None


BestTrie = dict[str, tuple["BestTrie", int, int, bool]]


def _best_trie(node: _TrieNode) -> BestTrie:
    """The trie as nested dicts of (children, highest 'here' index, highest 'inside' index, wild_below)."""
    return {
        part: (_best_trie(child), max(child.here, default=-1), max(child.inside, default=-1), child.wild_below)
        for part, child in node.children.items()
    }


class _TrieNode:
    """One directory or file of the literal anchored globs."""

    __slots__ = ("children", "here", "inside", "wild_below")

    def __init__(self) -> None:
        self.children: dict[str, _TrieNode] = {}
        self.here: list[int] = []  # globs naming this path: it and all below it
        self.inside: list[int] = []  # 'dir/' globs: only what is below it
        self.wild_below = False  # a wildcard glob may match paths below this directory


def _set_matcher(regexes: Iterable[str]) -> Callable[[bytes], list[int]]:
    """The match function of an RE2 set of ``regexes``, anchored at both ends, taking UTF-8."""
    options = re2.Options()
    options.max_mem = _SET_MAX_MEM
    regex_set = re2.Set.FullMatchSet(options)
    for source in regexes:
        regex_set.Add(source)
    regex_set.Compile()
    # The wrapper's Match re-checks and re-encodes on every call; on hundreds of
    # thousands of paths that is a third of the time, so call the extension directly.
    raw = getattr(regex_set, "_set", None)
    if raw is not None and hasattr(raw, "Match"):
        return raw.Match  # type: ignore[no-any-return]
    return lambda text: regex_set.Match(text) or []


def compile_globs(patterns: Sequence[str], *, allow_negation: bool = True) -> GlobSet:
    """A GlobSet of ``patterns``, in order (indices are positions in ``patterns``)."""
    return GlobSet(compile_glob(p, allow_negation=allow_negation) for p in patterns)
