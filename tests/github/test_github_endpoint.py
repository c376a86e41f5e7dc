from __future__ import annotations

from rally_gh.github.endpoint import BODY_LIMIT, GitHubEndpoint, cut_body, run_marker, with_marker
from rally_gh.github.real import RealGitHub


def test_short_bodies_are_untouched() -> None:
    assert cut_body("report") == "report"
    assert cut_body("x" * BODY_LIMIT) == "x" * BODY_LIMIT


def test_long_bodies_are_cut_at_a_line_with_a_pointer() -> None:
    body = "".join(f"| line {i} |\n" for i in range(10_000))
    cut = cut_body(body, pointer="the job summary of run 7-1")
    assert len(cut) <= BODY_LIMIT
    kept, note = cut.split("\n\n---\n")
    assert kept.endswith("|") and body.startswith(kept)
    assert note == ("**Report cut to GitHub's 65,536-character limit: the full report is in"
                    " the job summary of run 7-1.**\n")


def test_an_open_code_fence_is_closed_before_the_note() -> None:
    body = "intro\n```mermaid\n" + "a --> b\n" * 10_000
    cut = cut_body(body)
    assert len(cut) <= BODY_LIMIT
    assert cut.count("```") == 2


def test_a_single_huge_line_is_cut_too() -> None:
    assert len(cut_body("y" * (BODY_LIMIT * 2))) <= BODY_LIMIT


def test_marker() -> None:
    marker = run_marker("7-1")
    assert marker == "<!-- rally-gh:run:7-1 -->"
    assert with_marker("body", marker) == f"{marker}\nbody"
    assert with_marker(f"{marker}\nbody", marker) == f"{marker}\nbody"
    # A marker quoted further down is not the comment's own: the comment is led by its marker.
    assert with_marker(f"x {marker}", marker) == f"{marker}\nx {marker}"


def test_the_real_client_satisfies_the_interface(gh: RealGitHub) -> None:
    endpoint: GitHubEndpoint = gh  # mypy checks the signatures; isinstance checks the names
    assert isinstance(endpoint, GitHubEndpoint)
