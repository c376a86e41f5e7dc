"""A review and its inline comments are one: GitHub sends a submitted review's event
(``pull_request_review``) and one event for each of its inline comments (``pull_request_review_comment``),
in no promised order. Whichever comes first takes the review (the comment's ``pull_request_review_id``,
the review read from the API); the others find it taken and do nothing. Against the fake over HTTP with
the real client: the one job (``rally-gh run --event``) with the comment's event first, and
rally-comment.yml's three jobs with the review's event first.
"""

from __future__ import annotations

from typing import Any

from github_testing import SHOP_RUN
from github_testing import Shop

from rally_gh.run.published import Again

BODY = "Please use logging everywhere."


def _review_with_two_comments(shop: Shop) -> tuple[int, int, int, int]:
    """A review requesting changes on the run's pull request: a comment on api's file (api is in the pull
    request: one round) and one on the README nobody owns. The pull request, the review, the two comments."""
    fake = shop.fake
    (pull,) = fake.pulls
    review = fake.add_review(pull, "alice", "CHANGES_REQUESTED", body=BODY,
                             comments=(("src/api/work.txt", 1, "print is not logging"),
                                       ("README.md", 1, "say what the shop sells")))
    api, readme = sorted(c for c, v in fake.review_comments.items() if v["review"] == review)
    return pull, review, api, readme


def _comment_event(shop: Shop, pull: int, comment: int) -> dict[str, Any]:
    """The event of inline comment ``comment`` created, as GitHub writes it: the comment names its review,
    and carries neither the review's state nor its text."""
    found = shop.fake.review_comments[comment]
    payload = shop.review(pull, found["review"], "")
    del payload["review"]
    return {**payload, "action": "created",
            "comment": {"id": comment, "pull_request_review_id": found["review"], "path": found["path"],
                        "line": found["line"], "body": found["body"], "user": {"login": found["user"]}}}


def _replies(shop: Shop) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for c in shop.fake.review_comments.values():
        if c["in_reply_to"] is not None:
            found.setdefault(c["in_reply_to"], []).append(c["body"])
    return found


def test_the_comments_event_first_takes_the_review_and_the_reviews_event_then_does_nothing(shop: Shop) -> None:
    pull, review, api, readme = _review_with_two_comments(shop)
    code, out = shop.job("pull_request_review_comment", _comment_event(shop, pull, api), 4400)
    assert code == 0, out
    assert "src/api/work.txt: api" in out and "README.md: nobody" in out
    replies = _replies(shop)
    assert set(replies) == {api, readme} and all(len(r) == 1 for r in replies.values())
    assert "Addressed by `" in replies[api][0] and "**api**'s follow-up round" in replies[api][0]
    assert "No teammate owns `README.md`" in replies[readme][0]
    (taken,) = [c["body"] for c in shop.fake.comments.values() if c["issue"] == pull]
    assert "the follow-up rounds are done" in taken and "**api**: 1 comment: `" in taken

    # The review's own event, then the other comment's: the review is taken; nothing runs or is said twice.
    heads = {n: shop.head(n) for n in ("api", "web", "_integration")}
    for name, payload in (("pull_request_review", shop.review(pull, review, BODY)),
                          ("pull_request_review_comment", _comment_event(shop, pull, readme))):
        code, out = shop.job(name, payload, 4401)
        assert code == 0 and f"review {review} was taken already" in out, out
    assert {n: shop.head(n) for n in heads} == heads
    assert _replies(shop) == replies
    assert [c["body"] for c in shop.fake.comments.values() if c["issue"] == pull] == [taken]


def test_through_the_three_jobs_the_reviews_event_first_and_its_comments_event_then_finds_it_taken(
        shop: Shop) -> None:
    pull, review, api, readme = _review_with_two_comments(shop)
    jobs = shop.split("pull_request_review", shop.review(pull, review, BODY), 4400)
    assert jobs.outputs is not None and jobs.admitted, jobs.out
    assert Again.model_validate_json(jobs.outputs["again"]).follow_up == ("api",)
    code, out = jobs.through()
    assert code == 1 and "Status: PARTIAL" in out, out  # web, failed and not in the pull request, still is
    replies = _replies(shop)
    assert set(replies) == {api, readme} and "Addressed by `" in replies[api][0]

    # Queued behind it in the same concurrency group (rally-comment.yml): the command job finds the review
    # taken, and the agents' and publish jobs do not run.
    published = shop.fake.refs()[f"refs/heads/rally/{SHOP_RUN}/_integration"]
    again = shop.split("pull_request_review_comment", _comment_event(shop, pull, api), 4401)
    assert again.code == 0 and not again.admitted and f"review {review} was taken already" in again.out
    assert _replies(shop) == replies
    assert shop.fake.refs()[f"refs/heads/rally/{SHOP_RUN}/_integration"] == published


def test_a_comment_whose_review_someone_else_wrote_is_refused_and_nothing_runs(shop: Shop) -> None:
    """A payload that says alice sent a comment of mallory's review (none GitHub writes) fails closed."""
    fake = shop.fake
    (pull,) = fake.pulls
    review = fake.add_review(pull, "mallory", "CHANGES_REQUESTED", comments=(("src/api/work.txt", 1, "x"),))
    (comment,) = [c for c, v in fake.review_comments.items() if v["review"] == review]
    payload = _comment_event(shop, pull, comment)
    payload["sender"] = {"login": "alice", "type": "User"}
    code, out = shop.job("pull_request_review_comment", payload, 4400)
    assert code == 1 and "refused: review" in out and "not by `alice`" in out, out
    assert not _replies(shop) and not [c for c in fake.comments.values() if c["issue"] == pull]
