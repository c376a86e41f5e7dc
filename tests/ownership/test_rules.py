from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rally_gh.config import Config, Teammate
from rally_gh.errors import PatternError
from rally_gh.ownership.globs import matches
from rally_gh.ownership.rules import Ownership

from pattern_strategies import pattern_lists


def make_config(**lists: list[str]) -> Config:
    return Config(
        team="t",
        teammates=tuple(Teammate(name=name, exclusive_write=tuple(patterns)) for name, patterns in lists.items()),
    )


def ownership(**lists: list[str]) -> Ownership:
    return Ownership.from_config(make_config(**lists))


def test_single_owner_and_nobody() -> None:
    own = ownership(api=["src/api/**", "tests/api/"], web=["web/"])
    assert own.owner_of("src/api/x.py") == "api"
    assert own.owner_of("tests/api/a/b.py") == "api"
    assert own.owner_of("web/index.html") == "web"
    assert own.owner_of("README.md") is None
    assert own.owners_of("README.md") == ()


def test_two_claimants_means_nobody_may_write() -> None:
    own = ownership(a=["src/**"], b=["*.py"])
    assert own.owners_of("src/x.py") == ("a", "b")
    assert own.owner_of("src/x.py") is None
    assert own.owner_of("src/x.c") == "a"
    assert own.owner_of("lib/x.py") == "b"


def test_later_negation_takes_paths_back_out() -> None:
    own = ownership(api=["src/**", "!src/shared/**", "src/shared/api.py"], shared=["src/shared/**", "!src/shared/api.py"])
    assert own.owner_of("src/a.py") == "api"
    assert own.owner_of("src/shared/util.py") == "shared"
    assert own.owner_of("src/shared/api.py") == "api"  # the last matching pattern decides
    assert own.rule_of("api", "src/shared/api.py") == 2
    assert own.rule_of("api", "src/shared/util.py") == 1  # the '!' that took it out
    assert own.rule_of("api", "src/a.py") == 0
    assert own.rule_of("shared", "src/a.py") is None
    assert own.rule_of("nobody-such", "src/a.py") is None


def test_negation_before_a_pattern_does_nothing() -> None:
    own = ownership(a=["!docs/**", "docs/**"])
    assert own.owner_of("docs/x.md") == "a"


def test_control_files_need_a_literal_grant() -> None:
    own = ownership(ci=["**", "/.github/workflows/ci.yml", "CODEOWNERS"], docs=["docs/"])
    assert own.owner_of("src/a.py") == "ci"
    assert own.owner_of(".github/workflows/ci.yml") == "ci"
    assert own.owner_of(".github/workflows/other.yml") is None  # '**' never grants it
    assert own.owner_of("CODEOWNERS") == "ci"
    assert own.owner_of("rally.yml") is None
    assert own.owner_of("AGENTS.md") is None
    assert own.owner_of(".claude/settings.json") is None
    assert own.rule_of("ci", ".github/workflows/ci.yml") == 1
    assert own.rule_of("ci", ".github/workflows/other.yml") is None


def test_a_directory_literal_does_not_grant_control_files_inside() -> None:
    own = ownership(ci=[".github/", ".github/workflows"])
    assert own.owner_of(".github/workflows/ci.yml") is None
    assert own.owner_of(".github/workflows") == "ci"  # names that exact path


def test_a_negation_still_takes_a_literal_grant_back() -> None:
    own = ownership(ci=["rally.yml", "!rally.yml"])
    assert own.owner_of("rally.yml") is None


def test_owned_paths() -> None:
    own = ownership(a=["src/"], b=["docs/"])
    assert own.owned_paths("a", ["src/x", "docs/y", "src/z/w", "x"]) == ["src/x", "src/z/w"]


def test_refused_pattern_names_the_teammate() -> None:
    # The config loader refuses it first; Ownership must not trust that it ran.
    config = make_config(a=["src/"], b=["docs/"])
    bad = config.model_copy(update={"teammates": (
        config.teammates[0], Teammate.model_construct(name="b", exclusive_write=("../etc",)),
    )})
    with pytest.raises(PatternError, match=r"teammates\[1\]\.exclusive_write\[0\] \(b\).*'\.\.' segment"):
        Ownership.from_config(bad)


# --- Property: one pass over all globs equals the definition, teammate by teammate ---

PATHS = st.lists(st.sampled_from(["src", "docs", "a", "b.py", "x1", "CODEOWNERS", ".github"]), min_size=1, max_size=4)


def _claims(patterns: list[str], path: str) -> bool:
    """The definition: the last pattern of the list that matches decides."""
    from rally_gh.ownership.paths import is_control_file

    decision = False
    for p in patterns:
        negated = p.startswith("!")
        body = p[1:] if negated else p
        if is_control_file(path) and not negated and body.lstrip("/") != path:
            continue
        if matches(body, path):
            decision = not negated
    return decision


@settings(max_examples=200, deadline=None)
@given(st.lists(pattern_lists(), min_size=1, max_size=3), st.lists(PATHS, min_size=1, max_size=6))
def test_owners_follow_the_definition(lists: list[list[str]], paths: list[list[str]]) -> None:
    names = [f"t{i}" for i in range(len(lists))]
    own = ownership(**dict(zip(names, lists)))
    for parts in paths:
        path = "/".join(parts)
        expected = tuple(n for n, patterns in zip(names, lists) if _claims(patterns, path))
        assert own.owners_of(path) == expected
        assert own.owner_of(path) == (expected[0] if len(expected) == 1 else None)
