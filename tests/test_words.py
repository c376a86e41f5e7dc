from __future__ import annotations

from rally_gh.words import aside, code_fence, noun_for, plural, possessive


def test_a_count_agrees_with_its_noun() -> None:
    assert [plural(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]
    assert plural(["a", "b"], "path") == "2 paths" and plural(("a",), "path") == "1 path"
    assert plural(2, "pass") == "2 passes" and plural(3, "entry") == "3 entries"
    assert plural(2, "wave") == "2 waves" and plural(2, "person", "people") == "2 people"
    assert noun_for(1, "commit") == "commit" and noun_for(2, "was") == "were"


def test_a_name_ending_in_s_takes_the_apostrophe_alone() -> None:
    assert possessive("api") == "api's" and possessive("models") == "models'"
    assert possessive("docs-2") == "docs-2's"


def test_an_aside_never_doubles_a_parenthesis() -> None:
    assert aside("attempt 1") == " (attempt 1)"
    assert aside("stopped at 4s (after 2 attempts)") == ": stopped at 4s (after 2 attempts)"
    assert aside("") == ""



def test_a_code_fence_is_longer_than_any_run_of_backticks_in_the_text() -> None:
    assert code_fence("plain") == "```" and code_fence("a ``` b") == "````"
    assert code_fence("x", least=1) == "`" and code_fence("a `b` c", least=1) == "``"
    assert code_fence("`" * 7 + "\n" + "``") == "`" * 8
