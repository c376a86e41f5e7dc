from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from rally_gh.ownership import globs
from rally_gh.ownership.globs import GLOBSTAR
from rally_gh.config import Config, LoadedConfig, Location, SourceMap, Teammate
from rally_gh.errors import PatternError
from rally_gh.ownership.overlap import (
    Overlap,
    compile_pattern,
    dead_patterns,
    find_overlaps,
    matches,
    overlap_problems,
    owns,
    read_pattern,
)


def pair(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int, str, str]]:
    return [(o.index_a, o.index_b, o.example, o.severity)
            for o in find_overlaps([("alpha", a), ("beta", b)])]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (["src/**"], ["src/api/*.py"], [(0, 0, "src/api/a.py", "error")]),
        (["*.md"], ["docs/"], [(0, 0, "docs/a.md", "error")]),
        # docs/* owns docs/x (a file) and nothing inside docs/x; docs/x/ only what is inside.
        (["docs/*"], ["docs/x/"], []),
        (["docs/*"], ["docs/x"], [(0, 0, "docs/x", "error")]),
        (["docs/*"], ["/*"], []),
        (["docs/***"], ["docs/x/"], [(0, 0, "docs/x/a", "error")]),  # only a final '/*' stops at children
        (["/*"], ["a/"], []),  # '/*' owns only what sits at the root
        (["/*"], ["/a"], [(0, 0, "a", "error")]),
        (["**/*.c"], ["**/*.h"], [(0, 0, "a.c/a.h", "warning")]),
        (["lib/*.c"], ["lib/**/*.h"], [(0, 0, "lib/a.c/a.h", "warning")]),
        (["test_*"], ["*.py"], [(0, 0, "test_.py", "error")]),
        (["test_*"], ["/lib/x.*"], [(0, 0, "lib/x./test_", "warning")]),
        (["test_*/"], ["/lib/x.*"], [(0, 0, "lib/x./test_/a", "warning")]),
        (["test_*/"], ["/lib/x"], [(0, 0, "lib/x/test_/a", "error")]),  # 'test_*/' says "a directory"
        (["/a"], ["a"], [(0, 0, "a", "error")]),
        (["a"], ["b/a/c"], [(0, 0, "b/a/c", "error")]),
        (["*"], ["/*"], [(0, 0, "a", "error")]),
        (["src/**", "!src/gen/**"], ["src/gen/**"], []),
        (["src/**", "!src/gen/**"], ["src/ge*/**"], [(0, 0, "src/ge/a", "error")]),
        # A trailing slash excludes only what is inside: the file src/gen stays.
        (["src/**", "!src/gen/"], ["src/gen"], [(0, 0, "src/gen", "error")]),
        # Exclusions count in full, directories named like files included.
        (["src/**", "!*.gen"], ["src/x.gen/**"], []),
        # A later positive pattern takes back what an exclusion took out.
        (["src/**", "!src/gen/**", "src/gen/keep"], ["src/gen/**"], [(2, 0, "src/gen/keep", "error")]),
        (["/\\*"], ["/a"], []),
        (["\\*"], ["*"], [(0, 0, "*", "error")]),
        (["a\\?"], ["a?"], [(0, 0, "a?", "error")]),
        (["/[abc]"], ["/b"], []),
        (["[abc]"], ["?abc?"], [(0, 0, "[abc]", "error")]),
        (["/src/foo"], ["src/foobar/**"], []),
        (["/src/foo"], ["src/foo/x"], [(0, 0, "src/foo/x", "error")]),
        (["x/**"], ["/x"], [(0, 0, "x/a", "error")]),
        (["a/**/b"], ["a/b"], [(0, 0, "a/b", "error")]),
        (["/Docs/"], ["/docs/"], []),  # case-sensitive
        (["**/*.c", "src/**"], ["**/*.h"], [(0, 0, "a.c/a.h", "warning"), (1, 0, "src/a.h", "error")]),
        # '.' and '..' are never path segments
        (["?"], [".*"], [(0, 0, "a/.a", "error")]),
    ],
)
def test_hand_picked(a: list[str], b: list[str], expected: list[tuple[int, int, str, str]]) -> None:
    assert pair(a, b) == expected
    for _, _, example, _ in expected:
        assert reference_owns(a, example) and reference_owns(b, example)


def test_reports_every_overlapping_pair_of_teammates_in_map_order() -> None:
    team = [("api", ["src/api/**"]), ("docs", ["docs/**"]), ("all", ["**/*.md", "src/**"])]
    assert [(o.teammate_a, o.teammate_b, o.pattern_a, o.pattern_b, o.example) for o in find_overlaps(team)] == [
        ("api", "all", "src/api/**", "**/*.md", "src/api/a.md"),
        ("api", "all", "src/api/**", "src/**", "src/api/a"),
        ("docs", "all", "docs/**", "**/*.md", "docs/a.md"),
    ]


def test_a_teammate_never_overlaps_itself() -> None:
    assert find_overlaps([("solo", ["src/**", "src/api/**", "**"])]) == []


def test_overlap_problems_point_at_the_later_pattern() -> None:
    config = Config(team="t", teammates=(
        Teammate(name="alpha", exclusive_write=("docs/**", "src/**")),
        Teammate(name="beta", exclusive_write=("lib/**", "src/api/*.py")),
    ))
    source = SourceMap("rally.yml", {("teammates", 1, "exclusive_write", 1): (9, 25)})
    [problem] = overlap_problems(LoadedConfig(config, source))
    assert problem.severity == "error" and problem.code == "overlap"
    assert problem.location == Location("rally.yml", 9, 25)
    assert problem.teammates == ("alpha", "beta") and problem.example == "src/api/a.py"
    assert problem.message.startswith("teammates[1].exclusive_write[1]: alpha: src/** and beta: src/api/*.py both own src/api/a.py")
    assert '"!src/api/*.py"' in problem.message


def test_a_warning_says_why() -> None:
    [o] = find_overlaps([("c", ["*.c"]), ("h", ["*.h"])])
    assert o.message() == "c: *.c and h: *.h both own a.c/a.h, but only where a directory is named like a file"


def test_many_teammates_stay_fast() -> None:
    # 400 teammates, 4,000 patterns, a nest of prefixes sharing their first characters.
    team = [(f"t{i}", [f"/pkg/p{i}/**", f"/pkg/p{i}0/*.ts", f"docs/p{i}/", f"/pkg/p{i}/src/*",
                       "!" + f"/pkg/p{i}/gen/**", f"/test/p{i}_*", f"/pkg/p{i}1/**", f"/a/p{i}/b",
                       f"/a/p{i}/c/", f"/a/p{i}/d.md"]) for i in range(400)]
    start = time.perf_counter()
    found = find_overlaps(team)
    assert time.perf_counter() - start < 20
    # t1 and t10 collide: /pkg/p10/** and /pkg/p10/*.ts (of t1); likewise /pkg/p11/** of t1 and t11.
    assert Overlap("t1", "/pkg/p10/*.ts", 1, "t10", "/pkg/p10/**", 0, "pkg/p10/a.ts", "error") in found
    assert all(reference_owns(team[int(o.teammate_a[1:])][1], o.example) for o in found)


# ---------------------------------------------------------------------------
# Against the reference matcher


def reference_owns(patterns: Sequence[str], path: str) -> bool:
    for pattern in reversed(patterns):
        if globs.matches(pattern, path):
            return not pattern.startswith("!")
    return False


def fileish(pattern: str) -> bool:
    """The spec's 'a last segment that mixes wildcards with text', said independently."""
    body = pattern.removeprefix("!")
    if body.endswith("/"):
        return False
    last = body.split("/")[-1]
    if last == "**" or (last == "*" and "/" in body):
        return False
    return bool(set(last) & set("*?")) and bool(set(last) - set("*?"))


def reference_strict(pattern: str, path: str) -> bool:
    # A literal appended to the last segment of both keeps every match but those
    # through a directory: no directory of the path ends with it.
    if fileish(pattern):
        return globs.matches(pattern + "Z", path + "Z")
    return globs.matches(pattern, path)


def owned_via(patterns: Sequence[str], index: int, path: str, *, strict: bool) -> bool:
    """``patterns[index]`` claims ``path`` and no later exclusion takes it back."""
    claimed = (reference_strict if strict else globs.matches)(patterns[index], path)
    return claimed and not any(p.startswith("!") and globs.matches(p, path) for p in patterns[index + 1:])


SEGMENT_CHARS = "ab.*?"
# File-ish segments are drawn on purpose: warnings hinge on them.
segment = st.one_of(st.just("**"), st.sampled_from(["*.a", "a*", "?b"]),
                    st.text(SEGMENT_CHARS, min_size=1, max_size=3))


@st.composite
def patterns(draw: st.DrawFn, max_segments: int = 3) -> str:
    body = "/".join(draw(st.lists(segment, min_size=1, max_size=max_segments)))
    body = draw(st.sampled_from(["", "/"])) + body + draw(st.sampled_from(["", "/"]))
    try:
        globs.compile_glob(body)
    except PatternError:
        assume(False)
    return body


path_segment = st.text("ab.", min_size=1, max_size=3).filter(lambda s: s not in (".", ".."))
paths = st.lists(path_segment, min_size=1, max_size=4).map("/".join)


def instance(pattern: str, tail: str) -> str:
    """A path the pattern is likely to match, so that matches are not all misses."""
    body = pattern.strip("/").replace("**", "a").replace("*", "b").replace("?", "a")
    return body + tail


@settings(max_examples=600, deadline=None)
@given(patterns(), paths, st.sampled_from(["", "/a", "/a/b", "a"]))
def test_automaton_agrees_with_the_reference_matcher(pattern: str, random_path: str, tail: str) -> None:
    for path in (random_path, instance(pattern, tail)):
        automaton = compile_pattern(pattern)
        assert matches(automaton, path) == globs.matches(pattern, path), (pattern, path)
        assert matches(automaton, path, strict=True) == reference_strict(pattern, path), (pattern, path)


def all_paths(max_length: int, alphabet: str = "abc./") -> list[str]:
    out: list[str] = []
    for n in range(1, max_length + 1):
        for chars in itertools.product(alphabet, repeat=n):
            path = "".join(chars)
            segments = path.split("/")
            if all(s and s not in (".", "..") for s in segments):
                out.append(path)
    return out


BRUTE_LENGTH = 5
RANK = {c: i for i, c in enumerate("abc./")}
# Shortest first, then in the order find_overlaps prefers: letters, '.', '/'.
BRUTE_PATHS = sorted(all_paths(BRUTE_LENGTH), key=lambda p: (len(p), [RANK[c] for c in p]))


@functools.cache
def brute_matches(pattern: str, strict: bool) -> frozenset[str]:
    """The brute-force paths ``pattern`` matches, by the reference matcher."""
    match = reference_strict if strict else globs.matches
    found = frozenset(p for p in BRUTE_PATHS if match(pattern.removeprefix("!"), p))
    automaton = compile_pattern(pattern)
    assert found == {p for p in BRUTE_PATHS if matches(automaton, p, strict=strict)}, pattern
    return found


def brute_owned_via(patterns: Sequence[str], index: int, *, strict: bool) -> frozenset[str]:
    owned = brute_matches(patterns[index], strict)
    for p in patterns[index + 1:]:
        if p.startswith("!"):
            owned -= brute_matches(p, False)
    return owned


def first(paths: frozenset[str]) -> str | None:
    return next((p for p in BRUTE_PATHS if p in paths), None)


small_pattern = patterns(max_segments=2).filter(lambda p: len(p) <= 5)


@st.composite
def pattern_lists(draw: st.DrawFn) -> list[str]:
    first = draw(small_pattern)
    rest = draw(st.lists(st.tuples(st.booleans(), small_pattern), max_size=2))
    return [first] + [("!" if negated else "") + p for negated, p in rest]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern_lists(), pattern_lists())
def test_sound_exact_and_shortest_against_brute_force(a: list[str], b: list[str]) -> None:
    found = {(o.index_a, o.index_b): o for o in find_overlaps([("a", a), ("b", b)])}
    event(f"{len(found)} overlapping pattern pairs")
    for i, j in itertools.product(range(len(a)), range(len(b))):
        if a[i].startswith("!") or b[j].startswith("!"):
            assert (i, j) not in found
            continue
        common = brute_owned_via(a, i, strict=False) & brute_owned_via(b, j, strict=False)
        strict = brute_owned_via(a, i, strict=True) & brute_owned_via(b, j, strict=True)
        if (i, j) not in found:
            assert not common, (a, b, i, j, first(common))
            continue
        o = found[(i, j)]
        event(o.severity)
        assert (o.teammate_a, o.pattern_a, o.teammate_b, o.pattern_b) == ("a", a[i], "b", b[j])
        assert reference_owns(a, o.example) and reference_owns(b, o.example)
        assert owns(a, o.example) and owns(b, o.example)
        assert owned_via(a, i, o.example, strict=o.severity == "error")
        assert owned_via(b, j, o.example, strict=o.severity == "error")
        if o.severity == "warning":
            assert not strict, (a, b, first(strict))
        # An error shows the shortest strict example, a warning the shortest of all;
        # either with a name before a bare dot where that keeps it owned alike.
        shortest = first(strict if o.severity == "error" else common)
        if shortest is not None:
            assert named_like(o.example, shortest), (a, b, o, shortest)
        else:
            assert len(o.example) > BRUTE_LENGTH, (a, b, o)


def named_like(example: str, shortest: str) -> bool:
    """``example`` is ``shortest``, but for an ``a`` before some segments that start with a dot."""
    ours, theirs = example.split("/"), shortest.split("/")
    return len(ours) == len(theirs) and all(
        x == y or (y.startswith(".") and x == "a" + y) for x, y in zip(ours, theirs, strict=True))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(small_pattern, min_size=1, max_size=2), min_size=2, max_size=5))
def test_prefix_index_misses_no_pair(team: list[list[str]]) -> None:
    # Many teammates at once go through the prefix index; two at a time, all pairs do.
    named = [(f"t{i}", p) for i, p in enumerate(team)]
    together = find_overlaps(named)
    one_by_one = [o for x, y in itertools.combinations(named, 2) for o in find_overlaps([x, y])]
    assert together == one_by_one


def test_parse_reads_escapes_and_anchors() -> None:
    assert read_pattern("\\*.md").segments[-1] == ("*.md",)  # one literal run: the escaped star is text
    assert not read_pattern("docs/").glob.direct_children_only
    assert read_pattern("docs/*").glob.direct_children_only
    assert not read_pattern("*").glob.direct_children_only
    assert read_pattern("/a/").language != read_pattern("/a").language
    assert read_pattern("!/a").language == read_pattern("/a").language
    assert read_pattern("/a/**").language == read_pattern("/a/").language != read_pattern("a/").language
    assert read_pattern("docs/***").language != read_pattern("docs/*").language


def test_the_proof_reads_the_parse_that_matching_uses() -> None:
    # One parse of the language: the proof's pattern is globs' Glob, and refuses what it refuses.
    assert read_pattern("src/*.py").glob is globs.compile_glob("src/*.py")
    assert read_pattern("docs/").segments == (GLOBSTAR, ("docs",))  # unanchored: under any directory
    assert read_pattern("/a/**/**/b").segments == (("a",), GLOBSTAR, ("b",))
    with pytest.raises(PatternError, match="empty path segment"):
        find_overlaps([("a", ["src//x"]), ("b", ["src/**"])])


@pytest.mark.parametrize(("a", "b", "fix"), [
    # The more specific owner keeps its paths: core gives utils.py up, not utils.
    (("utils", "src/click/utils.py"), ("core", "src/click/*.py"),
     'keep such paths with utils, whose pattern is the more specific: add "!src/click/utils.py" to core '
     "after src/click/*.py"),
    (("core", "src/click/*.py"), ("utils", "src/click/utils.py"),
     'keep such paths with utils, whose pattern is the more specific: add "!src/click/utils.py" to core '
     "after src/click/*.py"),
    # A bare name clashing only below the root: anchoring it is the fix.
    (("docs", "docs/"), ("src", "src/**"),
     'if docs means only the top-level docs/, anchor it: "/docs/" (unanchored, docs/ matches at any depth)'),
    (("a", "/src/**"), ("b", "/src/"), "both patterns own exactly the same paths: remove /src/ from b (or /src/** from a)"),
    (("py", "*.py"), ("src", "src/*"), 'give such paths to one of them, e.g. add "!src/*" to py after *.py'),
])
def test_the_fix_keeps_what_each_pattern_meant(a: tuple[str, str], b: tuple[str, str], fix: str) -> None:
    [o] = find_overlaps([(a[0], [a[1]]), (b[0], [b[1]])])
    assert o.message().endswith("; " + fix)


def test_following_the_hint_leaves_no_overlap_and_no_dead_pattern() -> None:
    team = [("utils", ["src/click/utils.py"]), ("core", ["src/click/*.py", "!src/click/utils.py"])]
    assert find_overlaps(team) == [] and dead_patterns(team[1][1]) == []
    # The old hint's way round: utils' own pattern is dead.
    assert dead_patterns(["src/click/utils.py", "!src/click/*.py"]) == [(0, "the later '!src/click/*.py' takes")]
    assert dead_patterns(["src/a/**", "!src/", "!x"]) == [(0, "the later '!src/' takes")]
    assert dead_patterns(["src/**", "!src/a/"]) == []
    assert dead_patterns(["src/**", "!src/**", "x"]) == [(0, "the later '!src/**' takes")]
    assert dead_patterns(["/a/*", "!/a/*.md", "!/a/*"]) == [(0, "the later '!/a/*' takes")]
    assert dead_patterns(["/a/b*", "!/a/b", "!/a/b?*"]) == [(0, "the later '!/a/b', '!/a/b?*' together take")]
    assert dead_patterns(["/a/b*", "!/a/b", "!/a/b?"]) == []


def test_a_warning_suggests_anchoring_where_it_resolves() -> None:
    [o] = find_overlaps([("docs", ["docs/"]), ("md", ["/*.md"])])
    assert o.severity == "warning" and o.example == "a.md/docs/a"
    assert o.message().endswith('; if docs means only the top-level docs/, anchor it: "/docs/" '
                                "(unanchored, docs/ matches at any depth)")
