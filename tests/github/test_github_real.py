"""The real PyGithub client against the fake, over HTTP, for every operation."""

from __future__ import annotations

import re
from typing import Any
from pathlib import Path

import pytest

from github_testing import TEST_LIMITS
from rally_gh.errors import GitHubError
from rally_gh.github.endpoint import (
    Annotation,
    ChecksForbiddenError,
    CommitSha,
    GitHubPermissionError,
    IssueNumber,
    PullNumber,
    RequestLimits,
    publish_check,
    run_marker,
)
from rally_gh.github.actions import connect, read
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.github.real import RealGitHub, retry_delay
from rally_gh.testing import commit, git, init_repo

MARKER = run_marker("7-1")


@pytest.fixture
def branches(fake_github: FakeGitHubServer, tmp_path: Path) -> dict[str, CommitSha]:
    """``main`` and ``rally/7-1`` (one commit ahead) pushed to the fake over HTTP."""
    work = init_repo(tmp_path / "work", {"README.md": "hello\n"})
    git(work, "push", "-q", fake_github.authenticated_git_url, "main")
    git(work, "checkout", "-q", "-b", "rally/7-1")
    head = commit(work, {"src/api/orders.py": "pass\n"}, "rally(api): orders")
    git(work, "push", "-q", fake_github.authenticated_git_url, "rally/7-1")
    return {"main": CommitSha(git(work, "rev-parse", "main").strip()), "rally/7-1": CommitSha(head)}


def test_repository_and_permissions(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    for user, level in [("ada", "admin"), ("mo", "maintain"), ("wu", "write"), ("tri", "triage"), ("rae", "read")]:
        fake_github.set_permission(user, level)
    assert gh.repo_full_name == "owner/repo"
    assert gh.default_branch() == "main"
    assert [gh.permission(u) for u in ("ada", "mo", "wu", "tri", "rae")] == [
        "admin", "maintain", "write", "triage", "read"]


def test_issue_reaction_and_labels(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    number = IssueNumber(fake_github.create_issue("Add orders", "Build it", user="alice", labels=("rally:parallel",)))
    issue = gh.issue(number)
    assert (issue.number, issue.title, issue.body, issue.labels, issue.user) == (
        1, "Add orders", "Build it", ("rally:parallel",), "alice")
    gh.add_reaction(number, "eyes")
    gh.add_reaction(number, "eyes")
    gh.ensure_label("rally:running", "fbca04", "A rally-gh run is in progress")
    gh.ensure_label("rally:running", "#FBCA04", "A rally-gh run is in progress")
    gh.ensure_label("rally:running", "0e8a16", "changed")
    gh.add_labels(number, ["rally:running"])
    gh.remove_label(number, "rally:parallel")
    gh.remove_label(number, "not-there")
    gh.set_labels(number, ["rally:done"])
    assert fake_github.count("POST", r"/labels$") == 2  # one label creation, one add
    assert fake_github.count("PATCH", r"/labels/") == 1  # only the real change
    assert fake_github.state() == (
        "repository owner/repo (default branch main)\n"
        "label rally:done #ededed\n"
        "label rally:parallel #ededed\n"
        "label rally:running #0e8a16 changed\n"
        "issue #1 [open] 'Add orders' by alice labels=['rally:done']\n"
        "  reaction eyes by github-actions[bot]\n"
    )


def test_upsert_comment_edits_the_one_comment_in_place(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    number = IssueNumber(fake_github.create_issue("Add orders"))
    first = gh.upsert_comment(number, MARKER, "Run 7-1: starting")
    again = gh.upsert_comment(number, MARKER, "Run 7-1: done")
    same = gh.upsert_comment(number, MARKER, "Run 7-1: done")
    other = gh.upsert_comment(number, run_marker("8-1"), "Run 8-1: starting")
    assert first == again == same != other
    assert fake_github.count("POST", r"/comments$") == 2
    assert fake_github.count("PATCH", r"/comments/") == 1  # nothing to change the third time
    assert fake_github.comments[first]["body"] == f"{MARKER}\nRun 7-1: done"


def test_a_marker_quoted_inside_another_comment_is_not_the_runs_comment(fake_github: FakeGitHubServer,
                                                                        gh: RealGitHub) -> None:
    """A hostile agent prints another run's marker into its verify output, which the report quotes:
    that comment is not taken for the other run's progress comment."""
    number = IssueNumber(fake_github.create_issue("Add orders"))
    quoting = gh.upsert_comment(number, run_marker("8-1"), f"Run 8-1 failed:\n```\n{MARKER}\n```")
    mine = gh.upsert_comment(number, MARKER, "Run 7-1: starting")
    assert mine != quoting
    assert fake_github.comments[quoting]["body"].endswith(f"{MARKER}\n```")
    assert fake_github.count("POST", r"/comments$") == 2


def test_a_comment_someone_else_starts_with_our_marker_is_never_taken_for_ours(fake_github: FakeGitHubServer,
                                                                               gh: RealGitHub) -> None:
    """Anyone may comment: one that starts with a run's marker (or a command's reply marker, to have
    the command taken for answered) is not ours. The token's login says whose comments are ours."""
    number = IssueNumber(fake_github.create_issue("Add orders"))
    planted = fake_github.add_comment(number, f"{MARKER}\nnothing to see", user="mallory")
    assert gh.comment_with(number, MARKER) is None and gh.run_ids(number) == ()
    mine = gh.upsert_comment(number, MARKER, "Run 7-1: starting")
    assert mine != planted and gh.run_ids(number) == ("7-1",)
    assert fake_github.comments[planted]["body"] == f"{MARKER}\nnothing to see"  # left as written
    assert fake_github.count("GET", r"/user$") == 1  # asked once


def test_a_workflows_token_that_cannot_say_whose_it_is_takes_only_the_workflow_bots_comments_for_its_own(
        fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    """A workflow's GITHUB_TOKEN (an installation token) is refused GET /user: its comments are
    github-actions[bot]'s, never any other bot's (another App could plant our markers)."""
    fake_github.inject("GET", r"/user$", 403)
    number = IssueNumber(fake_github.create_issue("Add orders"))
    fake_github.add_comment(number, f"{MARKER}\nplanted", user="mallory")
    fake_github.add_comment(number, f"{MARKER}\nplanted by an App", user="other-app[bot]")
    kept = fake_github.add_comment(number, f"{MARKER}\nRun 7-1: starting", user="github-actions[bot]")
    assert gh.upsert_comment(number, MARKER, "Run 7-1: done") == kept
    assert gh.run_ids(number) == ("7-1",) and gh.comment_with(number, MARKER) == f"{MARKER}\nRun 7-1: done"


def test_an_app_token_takes_only_the_comments_of_the_bot_it_is_told_it_writes_as(
        fake_app_github: FakeGitHubServer) -> None:
    """A GitHub App's installation token writes as ``<app-slug>[bot]`` and cannot say so (GET /user is
    refused): the action's ``bot-login`` names it, read by github/actions.py and passed down."""
    fake = fake_app_github
    env = {"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": fake.token, "GITHUB_REPOSITORY": "owner/repo",
           "GITHUB_API_URL": fake.api_url, "RALLY_BOT_LOGIN": "rally-app[bot]"}
    app = connect(read(env), limits=TEST_LIMITS)
    number = IssueNumber(fake.create_issue("Add orders"))
    for planter in ("github-actions[bot]", "other-app[bot]"):  # another workflow, another App
        fake.add_comment(number, f"{MARKER}\nplanted", user=planter)
    assert app.comment_with(number, MARKER) is None and app.run_ids(number) == ()
    mine = app.upsert_comment(number, MARKER, "Run 7-1: starting")
    assert app.upsert_comment(number, MARKER, "Run 7-1: done") == mine
    assert fake.comments[mine]["user"] == "rally-app[bot]" and app.run_ids(number) == ("7-1",)
    # Left at the default, the App's own comment would never be found again (a second progress
    # comment, a command acted on twice): the first one it writes says what to set instead.
    unnamed = connect(read({**env, "RALLY_BOT_LOGIN": ""}), limits=TEST_LIMITS)
    with pytest.raises(GitHubError, match=r"as @rally-app\[bot\], but takes comments for its own only from "
                                          r"@github-actions\[bot\]") as err:
        unnamed.upsert_comment(IssueNumber(fake.create_issue("Other")), MARKER, "Run 7-2: starting")
    assert "add rally-app[bot] to the action's input `bot-login`" in (err.value.hint or "")


def test_upsert_comment_finds_its_marker_past_the_first_page(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    number = IssueNumber(fake_github.create_issue("Busy issue"))
    for i in range(120):
        fake_github.comments[200000 + i] = {"id": 200000 + i, "issue": number, "body": f"chatter {i}",
                                            "user": "alice", "created_at": "2026-01-01T00:00:00Z",
                                            "updated_at": "2026-01-01T00:00:00Z"}
    fake_github.comments[300000] = {**fake_github.comments[200000], "id": 300000, "body": f"{MARKER}\nold",
                                    "user": fake_github.actor}  # ours, from an earlier job
    assert gh.upsert_comment(number, MARKER, "new") == 300000
    assert fake_github.count("POST", r"/comments$") == 0


def test_a_comment_accepted_but_timed_out_is_not_posted_twice(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    number = IssueNumber(fake_github.create_issue("Add orders"))
    fake_github.inject_stall("POST", r"/issues/1/comments$", stall_s=TEST_LIMITS.timeout_s + 0.5)
    comment = gh.upsert_comment(number, MARKER, "Run 7-1: starting")
    assert fake_github.count("POST", r"/comments$") == 1
    assert list(fake_github.comments) == [comment]


def test_a_comment_answered_502_after_being_made_is_not_posted_twice(
        fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    number = IssueNumber(fake_github.create_issue("Add orders"))
    fake_github.inject("POST", r"/comments$", 502)
    gh.upsert_comment(number, MARKER, "hello")
    assert fake_github.count("POST", r"/comments$") == 2  # the injected 502 was not performed
    assert len(fake_github.comments) == 1


def test_reads_retry_on_502_and_rate_limits(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    fake_github.create_issue("Add orders")
    fake_github.inject("GET", r"/issues/1$", 502)
    fake_github.inject_rate_limit("GET", r"/issues/1$", retry_after=0.05, status=429)
    fake_github.inject_rate_limit("GET", r"/issues/1$", retry_after=0.05, status=403)
    assert gh.issue(IssueNumber(1)).title == "Add orders"
    assert [r.status for r in fake_github.requests if r.path.endswith("/issues/1")] == [502, 429, 403, 200]


def test_rate_limit_waits_are_honoured(fake_github: FakeGitHubServer) -> None:
    waits: list[float] = []
    gh = RealGitHub(fake_github.token, "owner/repo", base_url=fake_github.api_url, limits=TEST_LIMITS,
                    sleep=waits.append, clock=lambda: 1_000.0)
    fake_github.create_issue("Add orders")
    fake_github.inject_rate_limit("GET", r"/issues/1$", retry_after=3, status=429)
    fake_github.inject("GET", r"/issues/1$", 403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1002"},
                       body={"message": "API rate limit exceeded for installation."})
    gh.issue(IssueNumber(1))
    assert waits == [3.0, 3.0]  # retry-after, then the reset two seconds away plus one


def test_retry_delay_rules() -> None:
    limits = RequestLimits(backoff_s=0.5)
    assert retry_delay(502, {}, "", 2, limits, 0.0) == 2.0
    assert retry_delay(None, {}, "", 0, limits, 0.0) == 0.5
    assert retry_delay(503, {"Retry-After": "7"}, "", 0, limits, 0.0) == 7.0
    assert retry_delay(429, {}, "", 0, limits, 0.0) == 60.0
    assert retry_delay(403, {}, "You have exceeded a secondary rate limit", 0, limits, 0.0) == 60.0
    assert retry_delay(403, {}, "Resource not accessible by integration", 0, limits, 0.0) is None
    assert retry_delay(404, {}, "Not Found", 0, limits, 0.0) is None
    assert retry_delay(422, {}, "Validation Failed", 0, limits, 0.0) is None


def test_gives_up_after_max_attempts_with_a_clear_message(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    fake_github.create_issue("Add orders")
    fake_github.inject("GET", r"/issues/1$", 502, times=10)
    with pytest.raises(GitHubError, match=r"GitHub answered 502 to read issue #1 in owner/repo"):
        gh.issue(IssueNumber(1))
    assert fake_github.count("GET", r"/issues/1$") == TEST_LIMITS.max_attempts


def test_a_wait_longer_than_allowed_is_refused(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    fake_github.create_issue("Add orders")
    fake_github.inject_rate_limit("GET", r"/issues/1$", retry_after=3600, status=429)
    with pytest.raises(GitHubError, match="asks to wait 3600s"):
        gh.issue(IssueNumber(1))


def test_missing_permissions_are_explained(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    fake_github.create_issue("Add orders")
    fake_github.inject("POST", r"/comments$", 403, body={"message": "Resource not accessible by integration"})
    with pytest.raises(GitHubPermissionError) as caught:
        gh.upsert_comment(IssueNumber(1), MARKER, "hi")
    assert "the token cannot write issues" in str(caught.value)
    assert "add `issues: write` to the workflow's permissions" in str(caught.value)
    with pytest.raises(GitHubPermissionError, match=r"read issue #99 in owner/repo \(or it does not exist\)"):
        gh.issue(IssueNumber(99))


def test_bad_token_is_explained(fake_github: FakeGitHubServer) -> None:
    gh = RealGitHub("wrong", "owner/repo", base_url=fake_github.api_url, limits=TEST_LIMITS)
    with pytest.raises(GitHubError, match="refused the token"):
        gh.default_branch()


def test_writes_are_spaced(fake_github: FakeGitHubServer) -> None:
    gh = RealGitHub(fake_github.token, "owner/repo", base_url=fake_github.api_url,
                    limits=RequestLimits(write_interval_s=0.3, timeout_s=2))
    number = IssueNumber(fake_github.create_issue("Add orders"))
    gh.add_labels(number, ["a"])
    gh.add_labels(number, ["b"])
    gh.add_reaction(number, "eyes")
    writes = [r.at for r in fake_github.requests if r.method != "GET"]
    assert len(writes) == 3
    assert all(later - earlier >= 0.29 for earlier, later in zip(writes, writes[1:]))


def test_check_run_with_120_annotations_goes_50_at_a_time(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    annotations = [Annotation(f"src/web/f{i}.py", "owned by web, written by api") for i in range(120)]
    run_id = gh.create_check_run("rally-gh/ownership", branches["rally/7-1"], conclusion="failure",
                                 title="120 ownership violations", summary="api wrote web's files",
                                 annotations=annotations, external_id="7-1")
    sent = [len(r.body["output"]["annotations"]) for r in fake_github.requests if "check-runs" in r.path
            and r.method in ("POST", "PATCH")]
    assert sent == [50, 50, 20]
    assert [a["path"] for a in fake_github.check_runs[run_id]["annotations"]] == [a.path for a in annotations]


def test_check_run_accepted_but_timed_out_is_not_created_twice(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    fake_github.inject_stall("POST", r"/check-runs$", stall_s=TEST_LIMITS.timeout_s + 0.5)
    fake_github.inject("PATCH", r"/check-runs/\d+$", 502)  # not performed: the retry must add them, once
    run_id = gh.create_check_run("rally-gh/ownership", branches["rally/7-1"], conclusion="failure",
                                 title="60 violations", summary="s", external_id="7-1",
                                 annotations=[Annotation(f"f{i}", "m") for i in range(60)])
    assert list(fake_github.check_runs) == [run_id]
    assert len(fake_github.check_runs[run_id]["annotations"]) == 60


def test_annotations_update_answered_502_after_being_applied_is_not_repeated(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    fake_github.inject_stall("PATCH", r"/check-runs/\d+$", stall_s=TEST_LIMITS.timeout_s + 0.5)
    run_id = gh.create_check_run("rally-gh/ownership", branches["rally/7-1"], conclusion="failure",
                                 title="t", summary="s", external_id="7-1",
                                 annotations=[Annotation(f"f{i}", "m") for i in range(55)])
    assert len(fake_github.check_runs[run_id]["annotations"]) == 55


def test_forbidden_checks_fall_back_to_a_commit_status(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    fake_github.inject("POST", r"/check-runs$", 403, body={"message": "Resource not accessible by integration"})
    with pytest.raises(ChecksForbiddenError, match="add `checks: write`"):
        gh.create_check_run("rally-gh/ownership", branches["rally/7-1"], conclusion="success", title="t", summary="s")
    fake_github.inject("POST", r"/check-runs$", 404, body={"message": "Not Found"})
    published = publish_check(gh, "rally-gh/ownership", branches["rally/7-1"], conclusion="failure",
                              title="2 ownership violations", summary="…")
    assert published.kind == "status"
    assert "checks: write" in published.reason
    assert fake_github.state().splitlines()[-3] == "status rally-gh/ownership on " + branches["rally/7-1"][:7] + \
        " failure '2 ownership violations'"
    assert publish_check(gh, "rally-gh/ownership", branches["main"], conclusion="success", title="ok",
                         summary="").kind == "check-run"


def test_find_or_create_pull_makes_exactly_one(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    first = gh.find_or_create_pull("rally/7-1", "main", "rally: Add orders (#1)", "report v1", draft=True)
    second = gh.find_or_create_pull("rally/7-1", "main", "rally: Add orders (#1)", "report v2", draft=True)
    assert (first.number, first.created, second.number, second.created) == (500, True, 500, False)
    assert first.head_sha == branches["rally/7-1"] and first.base == "main" and first.draft
    assert first.url == f"{fake_github.root_url}/owner/repo/pull/500"
    assert fake_github.count("POST", r"/pulls$") == 1
    updated = gh.update_pull(first.number, "rally: Add orders (#1)", "report v3")
    assert updated.body == "report v3"
    gh.add_labels(IssueNumber(first.number), ["rally"])  # a pull request is an issue for labels
    assert "pull #500 [open] 'rally: Add orders (#1)' by github-actions[bot] labels=['rally']" in fake_github.state()


def test_a_forks_pull_request_from_a_branch_of_the_same_name_is_never_taken_for_the_runs(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    """Anyone may fork and open a pull request from a branch named as the run's. A fork in the same
    organisation even matches the ``owner:branch`` filter of GitHub's listing: the head repository decides."""
    same_org = fake_github.add_fork_pull("owner/repo-fork", "rally/7-1", "main", "planted", user="mallory")
    elsewhere = fake_github.add_fork_pull("mallory/repo", "rally/7-1", "main", "planted too", user="mallory")
    ours = gh.find_or_create_pull("rally/7-1", "main", "rally: Add orders (#1)", "report v1", draft=False)
    again = gh.find_or_create_pull("rally/7-1", "main", "rally: Add orders (#1)", "report v2", draft=False)
    assert ours.created and ours.number not in (same_org, elsewhere) and (again.number, again.created) == (
        ours.number, False)
    assert (ours.head_repo, ours.head_sha) == ("owner/repo", branches["rally/7-1"])
    assert [fake_github.issues[n]["body"] for n in (same_org, elsewhere)] == ["", ""]  # neither updated
    fork = gh.pull(PullNumber(same_org))
    assert (fork.head, fork.head_repo, fork.head_sha) == ("rally/7-1", "owner/repo-fork", branches["main"])
    assert f"pull #{same_org} [open] 'planted' by mallory labels=[]\n  owner/repo-fork:rally/7-1 -> main" in \
        fake_github.state()


def test_pull_request_that_appears_meanwhile_is_updated_not_duplicated(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    # Our lookup sees nothing (a stale listing), then the create answers 422 "already exists".
    other = RealGitHub(fake_github.token, "owner/repo", base_url=fake_github.api_url, limits=TEST_LIMITS)
    other.find_or_create_pull("rally/7-1", "main", "old title", "old", draft=False)
    original = fake_github._open_pulls
    stale = [True]

    def open_pulls(head: str | None, base: str | None) -> list[int]:
        if stale:
            stale.pop()
            return []
        return original(head, base)

    fake_github._open_pulls = open_pulls  # type: ignore[method-assign]
    pull = gh.find_or_create_pull("rally/7-1", "main", "new title", "new", draft=True)
    assert (pull.number, pull.title, pull.body, pull.created) == (500, "new title", "new", False)
    assert [r.status for r in fake_github.requests if r.method == "POST"] == [201, 422]
    assert len(fake_github.pulls) == 1


def test_pull_request_accepted_but_timed_out_is_not_created_twice(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    fake_github.inject_stall("POST", r"/pulls$", stall_s=TEST_LIMITS.timeout_s + 0.5)
    pull = gh.find_or_create_pull("rally/7-1", "main", "rally: t", "body", draft=False)
    assert pull.number == 500
    assert len(fake_github.pulls) == 1


def test_pull_request_answered_502_unmade_is_made_once(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    fake_github.inject("POST", r"/pulls$", 502)
    assert gh.find_or_create_pull("rally/7-1", "main", "rally: t", "body", draft=False).created
    assert [r.status for r in fake_github.requests if r.method == "POST"] == [502, 201]
    assert len(fake_github.pulls) == 1


def test_long_bodies_are_cut(fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    report = "| row |\n" * 20_000
    pull = gh.find_or_create_pull("rally/7-1", "main", "rally: t", report, draft=False)
    assert len(pull.body) <= 65_536 and pull.body.rstrip().endswith("the full report is in the job summary.**")
    number = IssueNumber(fake_github.create_issue("x"))
    comment = gh.upsert_comment(number, MARKER, report)
    assert re.match(re.escape(MARKER), fake_github.comments[comment]["body"])


def test_long_check_summaries_are_cut_to_the_checks_limit(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    run_id = gh.create_check_run("rally-gh/ownership", branches["main"], conclusion="success", title="t",
                                 summary="| row |\n" * 20_000)
    assert len(fake_github.check_runs[run_id]["output"]["summary"]) <= 65_535


def test_the_guard_refuses_the_real_api() -> None:
    with pytest.raises(pytest.fail.Exception, match="real api.github.com"):
        RealGitHub("t", "owner/repo")


def test_a_draft_is_marked_ready_when_a_later_run_succeeds(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha]) -> None:
    draft = gh.find_or_create_pull("rally/7-1", "main", "rally: t", "failed run", draft=True)
    assert draft.draft and fake_github.pulls[draft.number]["draft"]
    ready = gh.find_or_create_pull("rally/7-1", "main", "rally: t", "re-run succeeded", draft=False)
    assert (ready.number, ready.draft, fake_github.pulls[draft.number]["draft"]) == (draft.number, False, False)
    assert fake_github.count("POST", r"/graphql$") == 1
    # A later failed run never turns a pull request people may be reviewing back into a draft.
    again = gh.find_or_create_pull("rally/7-1", "main", "rally: t", "failed again", draft=True)
    assert not again.draft and fake_github.count("POST", r"/graphql$") == 1


def test_the_fakes_graphql_answers_an_unknown_node_as_github_does(fake_github: FakeGitHubServer) -> None:
    from github import Auth, Github, UnknownObjectException

    client = Github(auth=Auth.Token(fake_github.token), base_url=fake_github.api_url)
    requester = client.requester
    with pytest.raises(UnknownObjectException):
        requester.graphql_named_mutation("markPullRequestReadyForReview", {"pullRequestId": "PR_nothing"},
                                         "clientMutationId pullRequest { isDraft }")


# Every call of the endpoint, with the request of it that meets the faults.
EVERY_CALL = [
    ("default branch", "GET", r"/repos/owner/repo$", lambda gh, s: gh.default_branch()),
    ("permission", "GET", r"/collaborators/alice/permission$", lambda gh, s: gh.permission("alice")),
    ("issue", "GET", r"/issues/1$", lambda gh, s: gh.issue(IssueNumber(1))),
    ("reaction", "POST", r"/issues/1/reactions$", lambda gh, s: gh.add_reaction(IssueNumber(1), "eyes")),
    ("list comments", "GET", r"/issues/1/comments$", lambda gh, s: gh.upsert_comment(IssueNumber(1), MARKER, "x")),
    ("post comment", "POST", r"/issues/1/comments$", lambda gh, s: gh.upsert_comment(IssueNumber(1), MARKER, "x")),
    ("set labels", "PUT", r"/issues/1/labels$", lambda gh, s: gh.set_labels(IssueNumber(1), ["rally"])),
    ("add labels", "POST", r"/issues/1/labels$", lambda gh, s: gh.add_labels(IssueNumber(1), ["rally"])),
    ("remove label", "DELETE", r"/issues/1/labels/bug$", lambda gh, s: gh.remove_label(IssueNumber(1), "bug")),
    ("ensure label", "POST", r"/labels$", lambda gh, s: gh.ensure_label("rally:new", "ededed", "new")),
    ("check run", "POST", r"/check-runs$",
     lambda gh, s: gh.create_check_run("c", s["main"], conclusion="success", title="t", summary="s")),
    ("status", "POST", r"/statuses/", lambda gh, s: gh.create_status(s["main"], "success", "c", "d")),
    ("list pulls", "GET", r"/pulls$", lambda gh, s: gh.find_or_create_pull("rally/7-1", "main", "t", "b", draft=False)),
    ("open pull", "POST", r"/pulls$", lambda gh, s: gh.find_or_create_pull("rally/7-1", "main", "t", "b", draft=False)),
    ("ready pull", "POST", r"/graphql$", lambda gh, s: (
        gh.find_or_create_pull("rally/7-1", "main", "t", "b", draft=True),
        gh.find_or_create_pull("rally/7-1", "main", "t", "b", draft=False))),
]


@pytest.mark.parametrize("method, path, call", [c[1:] for c in EVERY_CALL], ids=[c[0] for c in EVERY_CALL])
def test_every_call_rides_out_a_502_and_a_rate_limit(
        fake_github: FakeGitHubServer, gh: RealGitHub, branches: dict[str, CommitSha],
        method: str, path: str, call: Any) -> None:
    fake_github.create_issue("Add orders", user="alice", labels=("bug",))
    fake_github.inject(method, path, 502)
    fake_github.inject_rate_limit(method, path, retry_after=0.01, status=429)
    call(gh, branches)
    statuses = [r.status for r in fake_github.requests if r.method == method and re.search(path, r.path)]
    assert statuses[:2] == [502, 429] and statuses[2] < 300, statuses
