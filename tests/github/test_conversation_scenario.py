"""A maintainer's afternoon with a run on GitHub, against the fake over HTTP with the real client.

A run ends with web failed (its agent needs api's work, which it did not have); `/rally retry web`
from a writer runs web again on top of the run's integration, in a later workflow run on a fresh
runner, and the same pull request is updated; a reader's `/rally retry` is refused; the same comment
delivered twice acts once; `/rally drop` takes a teammate out of the pull request and keeps its branch;
a review routes each inline comment to the owner of its file, whose follow-up round answers it.
Every job starts from a fresh clone: what a later job knows of the run comes from what the publish
side pushed (``refs/rally/published/<run>`` and the branches), nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

from github_testing import SHOP_RUN as RUN
from github_testing import Shop

from rally_gh.github import review
from rally_gh.github.conversation import COMMANDS, Command, changed, parse_command
from rally_gh.github.endpoint import CommentId, ReviewComment
from rally_gh.state import RunState, TeammateRecord
from rally_gh.testing import git

def test_a_writer_retries_the_failed_teammate_and_the_same_pull_request_is_updated(shop: Shop) -> None:
    fake = shop.fake
    api_before = shop.head("api")
    said, payload = shop.comment("Looks like web needed the api.\n\n/rally retry web", "alice")
    code, out = shop.job("issue_comment", payload, 4300)
    assert code == 0, out
    shop.web_retried(said, api_before)
    reply = shop.reply(said)
    (progress,) = [c["body"] for c in fake.comments.values() if c["body"].startswith(f"<!-- rally-gh:run:{RUN} -->")]
    assert "2/2 done" in progress
    # web's branch holds the retry, which started on the run's integration (api's work in it).
    assert "src/api/work.txt" in shop.files("web")

    # The same comment delivered again (or the workflow re-run): nothing is done twice.
    heads = (shop.head("web"), shop.head("_integration"))
    code, out = shop.job("issue_comment", payload, 4300)
    assert code == 0 and "acted on already" in out
    assert (shop.head("web"), shop.head("_integration")) == heads and shop.reply(said) == reply


def test_a_readers_retry_is_refused_with_a_reply_and_nothing_runs(shop: Shop) -> None:
    before = shop.fake.refs()
    said, payload = shop.comment("/rally retry web", "bob")
    code, out = shop.job("issue_comment", payload, 4301)
    assert code == 1 and "not acted on" in out
    reply = shop.reply(said)
    assert "refused" in reply and "read permission" in reply
    assert shop.fake.refs() == before


def test_a_job_whose_token_writes_answers_a_retry_and_runs_no_agent(shop: Shop) -> None:
    """The shipped commands workflow's job writes comments: no agent runs beside its token."""
    before = shop.fake.refs()
    said, payload = shop.comment("/rally retry web", "alice")
    code, out = shop.job("issue_comment", payload, 4304, RALLY_AGENTS="false")
    assert code == 0 and "not acted on here" in shop.reply(said), out
    assert shop.fake.refs() == before


def test_drop_takes_a_teammate_out_of_the_pull_request_and_keeps_its_branch(shop: Shop) -> None:
    said, payload = shop.comment("/rally retry web", "alice")
    assert shop.job("issue_comment", payload, 4300)[0] == 0
    web = shop.head("web")
    (pull,) = shop.fake.pulls
    said, payload = shop.comment("/rally drop api", "alice", on=pull)  # on the pull request this time
    code, out = shop.job("issue_comment", payload, 4302)
    reply = shop.reply(said)
    assert "**api**: out of the integration" in reply, (out, reply)
    files = set(shop.files("_integration").split())
    assert "src/api/work.txt" not in files and "src/web/work.txt" in files
    assert "src/api/work.txt" in shop.files("api") and shop.head("web") == web
    (number,) = shop.fake.pulls
    assert "taken out of the integration by alice" in shop.fake.issues[number]["body"]
    # What cannot apply is said, and nothing runs.
    said, payload = shop.comment("/rally drop api", "alice")
    before = shop.fake.refs()
    assert shop.job("issue_comment", payload, 4303)[0] == 0
    assert "was not done: api's work is not in the pull request" in shop.reply(said)
    assert shop.fake.refs() == before


def test_a_review_runs_each_owners_follow_up_round_and_each_thread_is_answered_with_its_commit(shop: Shop) -> None:
    fake = shop.fake
    assert shop.job("issue_comment", shop.comment("/rally retry web", "alice")[1], 4300)[0] == 0
    pull, review, comments = shop.two_teammates_reviewed()
    payload = shop.review(pull, review, "Please use logging everywhere.")
    code, out = shop.job("pull_request_review", payload, 4400)
    assert code == 0, out
    # One pull request, updated; the review's text named no teammate and is reported as not routed.
    taken = shop.threads_answered(pull, comments)
    assert "- not routed: the review's text names no teammate" in taken and "**api**: 1 comment: `" in taken
    assert "the review's text: not routed" in out

    # Delivered again: nothing runs, nothing is answered twice.
    heads = {n: shop.head(n) for n in ("api", "web", "_integration")}
    code, out = shop.job("pull_request_review", payload, 4400)
    assert code == 0 and "taken already" in out
    assert {n: shop.head(n) for n in heads} == heads
    assert len([c for c in fake.review_comments.values() if c["in_reply_to"]]) == 3


def test_a_reviews_text_goes_to_the_teammate_it_names_and_one_not_in_the_pull_request_is_told_why(
        shop: Shop) -> None:
    """web failed and is not in the pull request: the review's text names it, and is answered with how to get
    it there; api's thread runs api's round as usual."""
    fake = shop.fake
    (pull,) = fake.pulls
    review = fake.add_review(pull, "alice", "COMMENTED", body="/rally fix\nweb: the page needs a title too.",
                             comments=(("src/api/work.txt", 1, "print is not logging"),))
    (api,) = [c for c, v in fake.review_comments.items() if v["review"] == review]
    web_before = shop.head("web")
    payload = shop.review(pull, review, "/rally fix\nweb: the page needs a title too.", "commented")
    code, out = shop.job("pull_request_review", payload, 4500)
    assert code == 0, out
    (reply,) = [c["body"] for c in fake.review_comments.values() if c["in_reply_to"] == api]
    assert "Addressed by `" in reply and "**api**'s follow-up round" in reply
    (taken,) = [c["body"] for c in fake.comments.values() if c["issue"] == pull]
    assert ("- **web**: the review's text: not addressed (web's work is not in this pull request (failed): "
            "'/rally retry web' first)") in taken, taken
    assert "not routed" not in taken and shop.head("web") == web_before


# --- The docs show what rally-gh takes and says ---------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "github.md"


def test_the_commands_the_docs_show_are_the_ones_rally_gh_takes() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = re.findall(r"^\| `(/rally [^`]*)` \|", text, re.M)
    assert sorted(table) == sorted(usage for usage, _ in COMMANDS)
    examples = re.findall(r"^/rally .*$", text, re.M)  # the commands shown in examples, alone on a line
    assert "/rally retry web" in examples
    for line in examples:
        command = parse_command(line)
        assert command is not None and not command.problem, line


def test_the_replies_the_docs_show_are_the_ones_rally_gh_writes() -> None:
    text = DOC.read_text(encoding="utf-8")
    run = "issue-42-9876543210"
    comment = ReviewComment(CommentId(1), "README.md", 1, "say what the shop sells", "alice")
    for reply in (review._answered("api", review.Addressed("1a2b3c4d5e" + "0" * 30), "rally", run),
                  review._answered("web", review.Addressed(None, "its follow-up round ended unverified: `npm test` "
                                                                   "failed"), "rally", run),
                  review._reply(comment, None, "rally", run)):
        assert reply in text, reply
    state = RunState(run_id=run, team="shop", base_ref="main", base_sha="0" * 40, config_digest="x", started_at=0,
                     integration_sha="1" * 40, teammates=(TeammateRecord(name="web", branch=f"rally/{run}/web",
                                                                         outcome="done", integrated=True),))
    assert changed(state, Command("retry", ("web",))) in text
