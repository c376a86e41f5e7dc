"""A run's whole conversation with GitHub, as a user's session would see it, then a re-run."""

from __future__ import annotations

from pathlib import Path

from github_testing import TEST_LIMITS
from rally_gh.github.endpoint import Annotation, CommitSha, IssueNumber, PullRequest, publish_check, run_marker
from rally_gh.github.events import authorize, parse_event
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.github.real import RealGitHub
from rally_gh.testing import commit, git, init_repo

STATUS_LABELS = [("rally:running", "fbca04", "A rally-gh run is in progress"),
                 ("rally:done", "0e8a16", "Every teammate finished"), ("rally", "5319e7", "Made by rally-gh")]


def publish_run(gh: RealGitHub, run_id: str, issue: IssueNumber, head: CommitSha) -> PullRequest:
    """What the orchestrator's publish step asks of GitHub, in order."""
    marker = run_marker(run_id)
    gh.add_reaction(issue, "eyes")
    for name, color, description in STATUS_LABELS:
        gh.ensure_label(name, color, description)
    gh.add_labels(issue, ["rally:running"])
    gh.upsert_comment(issue, marker, f"rally-gh run {run_id}: 2 teammates started")
    publish_check(gh, "rally-gh/ownership", head, conclusion="failure", title="1 ownership violation",
                  summary="web wrote src/api/x.py", external_id=run_id,
                  annotations=[Annotation("src/api/x.py", "owned by api, written by web")])
    pull = gh.find_or_create_pull(f"rally/{run_id}", "main", f"rally: Add orders (#{issue})",
                                  f"## rally-gh report\n\nCloses #{issue}\n", draft=False)
    gh.add_labels(IssueNumber(pull.number), ["rally"])
    gh.remove_label(issue, "rally:running")
    gh.add_labels(issue, ["rally:done"])
    gh.upsert_comment(issue, marker, f"rally-gh run {run_id}: done, see #{pull.number}")
    return pull


def test_a_run_and_its_rerun_leave_one_comment_and_one_pull_request(
        fake_github: FakeGitHubServer, tmp_path: Path) -> None:
    fake_github.set_permission("alice", "write")
    issue = IssueNumber(fake_github.create_issue("Add orders", "Build /orders", user="alice",
                                                 labels=("rally:parallel",)))
    trigger = parse_event("issues", {"action": "labeled", "label": {"name": "rally:parallel"},
                                     "issue": {"number": issue}, "sender": {"login": "alice", "type": "User"}})
    gh = RealGitHub(fake_github.token, "owner/repo", base_url=fake_github.api_url, limits=TEST_LIMITS)
    assert authorize(trigger, gh).allowed

    work = init_repo(tmp_path / "work", {"README.md": "hello\n"})
    git(work, "push", "-q", fake_github.authenticated_git_url, "main")
    git(work, "checkout", "-q", "-b", "rally/1-1")
    head = CommitSha(commit(work, {"src/api/orders.py": "pass\n"}, "rally(api): orders"))
    git(work, "push", "-q", fake_github.authenticated_git_url, "rally/1-1")

    pull = publish_run(gh, "1-1", issue, head)
    assert (pull.number, pull.created) == (500, True)
    short = head[:7]
    world = fake_github.state()
    assert world == (
        "repository owner/repo (default branch main)\n"
        "label rally #5319e7 Made by rally-gh\n"
        "label rally:done #0e8a16 Every teammate finished\n"
        "label rally:parallel #ededed\n"
        "label rally:running #fbca04 A rally-gh run is in progress\n"
        "issue #1 [open] 'Add orders' by alice labels=['rally:done', 'rally:parallel']\n"
        "  comment 100001 by github-actions[bot]:\n"
        "    | <!-- rally-gh:run:1-1 -->\n"
        "    | rally-gh run 1-1: done, see #500\n"
        "  reaction eyes by github-actions[bot]\n"
        "pull #500 [open] 'rally: Add orders (#1)' by github-actions[bot] labels=['rally']\n"
        "  rally/1-1 -> main draft=False\n"
        "  | ## rally-gh report\n"
        "  | \n"
        "  | Closes #1\n"
        f"check-run 700001 rally-gh/ownership on {short} completed/failure external_id='1-1'"
        " title='1 ownership violation' annotations=1\n"
        f"ref refs/heads/main {fake_github.refs()['refs/heads/main'][:7]}\n"
        f"ref refs/heads/rally/1-1 {short}\n"
    )

    # The job is re-run and GitHub stumbles: an edit answered too late, a check run answered 502.
    # The lookup before the retry finds the identical check run of the first attempt and keeps it.
    fake_github.inject_stall("PATCH", r"/issues/comments/\d+$", stall_s=TEST_LIMITS.timeout_s + 0.5)
    fake_github.inject("POST", r"/check-runs$", 502)
    again = publish_run(gh, "1-1", issue, head)
    assert (again.number, again.created) == (500, False)
    assert fake_github.state() == world
    assert (fake_github.count("POST", r"/comments$"), fake_github.count("POST", r"/pulls$")) == (1, 1)
