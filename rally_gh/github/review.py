"""Review feedback on a run's pull request, routed to the teammate that owns each file.

A review submitted on a run's pull request (its head is ``<prefix>/<run>/_integration``) that
requests changes, or whose text gives ``/rally fix``, is split by file: each inline comment
belongs to the one teammate that owns its path under the map, and each thread gets one reply
saying whose it is (or that no teammate owns the path, so a person must change it). The
reviewer is admitted as for the label (write access asked of the API, fail closed, bots by
allow-list); a reply is found again by a hidden marker with the comment's id, so a re-delivered
event or a re-run answers nothing twice. Review text is data: it is quoted back harmless and
never reaches a shell or a ref name.

This version routes and answers; running the owners' follow-up rounds from their branches,
with the comments in their prompts, is still to come (the reply says so).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from rally_gh.config import Config
from rally_gh.github.endpoint import CommentId, GitHubEndpoint, ReviewComment
from rally_gh.github.events import Trigger, authorize
from rally_gh.ownership.rules import Ownership
from rally_gh.state import INTEGRATION_NAME

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Routed:
    comment: CommentId
    path: str
    owner: str | None
    """The teammate that owns the path; None when nobody does."""


@dataclass(frozen=True)
class ReviewRouting:
    """What became of a review: each inline comment's owner, or why nothing was routed."""
    routed: tuple[Routed, ...] = ()
    skipped: str = ""
    """Why the review was not routed (not a run's pull request, not asking for changes, a refused reviewer)."""
    refused: bool = False


def reply_marker(comment: CommentId) -> str:
    return f"<!-- rally-gh:review:{int(comment)} -->"


def route_review(endpoint: GitHubEndpoint, trigger: Trigger, config: Config, *,
                 bot_allowlist: Collection[str] = ()) -> ReviewRouting:
    """Route the inline comments of the review ``trigger`` carries, and answer each thread once."""
    review = trigger.review
    if review is None:
        return ReviewRouting(skipped="not a review")
    run = run_of_pull_head(review.head_ref, config.branch_prefix)
    if run is None:
        return ReviewRouting(skipped=f"#{review.pull} is not the pull request of a rally-gh run")
    if review.state != "changes_requested" and not re.search(r"(?m)^\s*/rally fix\b", review.body):
        return ReviewRouting(skipped="the review neither requests changes nor says `/rally fix`")
    decision = authorize(trigger, endpoint, bot_allowlist)
    if not decision.allowed:
        return ReviewRouting(skipped=f"refused: {decision.reason}", refused=True)
    ownership = Ownership.from_config(config)
    routed = []
    for comment in endpoint.review_comments(review.pull, review.id):
        if comment.in_reply_to is not None:
            continue  # an answer in a thread, not a request
        owner = ownership.owner_of(comment.path)
        endpoint.reply_to_review_comment(review.pull, comment.id, reply_marker(comment.id),
                                         _reply(comment, owner, config.branch_prefix, run))
        routed.append(Routed(comment.id, comment.path, owner))
    return ReviewRouting(tuple(routed))


def run_of_pull_head(head_ref: str, prefix: str) -> str | None:
    """The run whose integration branch ``head_ref`` is (``<prefix>/<run>/_integration``; the
    prefix may hold ``/``); None for any other branch."""
    start, end = prefix + "/", "/" + INTEGRATION_NAME
    if not (head_ref.startswith(start) and head_ref.endswith(end)):
        return None
    run = head_ref[len(start):-len(end)]
    return run if _RUN_ID.fullmatch(run) else None


def _reply(comment: ReviewComment, owner: str | None, prefix: str, run: str) -> str:
    path = _code(comment.path)
    if owner is None:
        return (f"No teammate owns {path} in the map: no agent may change it. A person must, on this pull "
                "request's branch.")
    return (f"{path} is **{owner}**'s (its `exclusive_write`): this comment is routed to {owner}. This version of "
            f"rally-gh does not yet run {owner}'s follow-up round; until it does, the change belongs on "
            f"`{prefix}/{run}/{owner}` or in a new run.")


def _code(text: str) -> str:
    cleaned = "".join(c if c.isprintable() and c != "`" else "?" for c in text)
    return f"`{cleaned if len(cleaned) <= 120 else cleaned[:117] + '...'}`"
