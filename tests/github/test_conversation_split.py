"""The same afternoon through rally-comment.yml's three jobs, against the fake over HTTP with the real client:
the command job (``rally-gh admit``: a token, no agent) takes the run up and hands it on; the agents' job
(``rally-gh run --again --results``: no token, it asks GitHub nothing) runs the teammates again; the publish
job (``rally-gh publish --again``: the write token) judges what they made against the run as published,
which it fetches itself, and publishes it to the same pull request. Each job is a fresh clone; what passes
between them is what the workflow passes: the command job's outputs and the two artifacts.

A `/rally retry web` fixes the failed teammate in the same pull request, a `/rally drop` takes one out, a
review's two inline comments run two follow-up rounds and get two replies naming commits; and an agents'
job that tampers with its results (a retried teammate started elsewhere or writing another's file, a
teammate it was not asked to run moved) is refused by the publish job, which says why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from github_testing import SHOP_RUN as RUN
from github_testing import Shop, SplitJobs

from rally_gh import git as rgit
from rally_gh.errors import RallyError, UsageError
from rally_gh.results import RECORD_FILE, write_results
from rally_gh.run import published
from rally_gh.run.published import Again, published_ref
from rally_gh.state import RunState
from rally_gh.testing import commit, git


def _progress(shop: Shop) -> str:
    (body,) = [c["body"] for c in shop.fake.comments.values() if c["body"].startswith(f"<!-- rally-gh:run:{RUN} -->")]
    return str(body)


def test_retry_then_drop_through_the_three_jobs_update_the_same_pull_request(shop: Shop) -> None:
    fake = shop.fake
    api_before = shop.head("api")
    said, payload = shop.comment("/rally retry web", "alice")
    jobs = shop.split("issue_comment", payload, 4300)
    assert jobs.code == 0 and jobs.outputs is not None, jobs.out
    # The command job ran no agent and changed nothing: it acknowledged, and handed the run on.
    assert (jobs.outputs["admitted"], jobs.outputs["run-id"]) == ("true", RUN)
    record = shop.fake.refs()[published_ref(RUN)]
    assert Again.model_validate_json(jobs.outputs["again"]) == Again(run_id=RUN, record=record, retry=("web",))
    assert "working on it" in shop.reply(said) and shop.head("web") != shop.head("_integration")
    assert sorted(p.name for p in jobs.handed.iterdir()) == ["run.bundle", "taken-up.json"]

    code, out = jobs.through()
    assert code == 0, out
    shop.web_retried(said, api_before)
    assert "src/api/work.txt" in shop.files("web") and "2/2 done" in _progress(shop)  # web went on from api's

    # Delivered again: the command job finds its reply, and the next jobs do not run.
    heads = (shop.head("web"), shop.head("_integration"))
    again = shop.split("issue_comment", payload, 4300)
    assert again.code == 0 and not again.admitted and "acted on already" in again.out
    assert (shop.head("web"), shop.head("_integration")) == heads

    # `/rally drop api` on the pull request: out of the integration, its branch kept.
    (number,) = fake.pulls
    said, payload = shop.comment("/rally drop api", "alice", on=number)
    code, out = shop.split("issue_comment", payload, 4302).through()
    assert "**api**: out of the integration" in shop.reply(said), out
    files = set(shop.files("_integration").split())
    assert "src/api/work.txt" not in files and "src/web/work.txt" in files
    assert shop.head("api") == api_before and "taken out of the integration by alice" in fake.issues[number]["body"]


def test_commands_that_cannot_apply_are_answered_by_the_command_job_and_nothing_runs(shop: Shop) -> None:
    before = shop.fake.refs()
    for command, why in (("/rally retry api", "api is done and its work is in the pull request"),
                         ("/rally drop api", "dropping api would leave nothing in the pull request (close the "
                                             "pull request instead")):
        said, payload = shop.comment(command, "alice")
        jobs = shop.split("issue_comment", payload, 4301)
        assert jobs.code == 0 and not jobs.admitted
        assert f"was not done: {why}" in shop.reply(said)
    assert shop.fake.refs() == before


def test_a_reviews_two_inline_comments_run_two_rounds_and_get_two_replies_naming_commits(shop: Shop) -> None:
    fake = shop.fake
    assert shop.job("issue_comment", shop.comment("/rally retry web", "alice")[1], 4300)[0] == 0
    pull, review, comments = shop.two_teammates_reviewed()
    jobs = shop.split("pull_request_review", shop.review(pull, review, "Please use logging everywhere."), 4400)
    assert jobs.outputs is not None and jobs.admitted, jobs.out
    assert Again.model_validate_json(jobs.outputs["again"]).follow_up == ("api", "web")
    assert not [c for c in fake.review_comments.values() if c["in_reply_to"]]  # answered once published
    code, out = jobs.through()
    assert code == 0, out
    taken = shop.threads_answered(pull, comments)
    assert "the follow-up rounds are done" in taken and "**web**: 1 comment: `" in taken

    # Delivered again: the command job finds the review taken, and the next jobs do not run.
    again = shop.split("pull_request_review", shop.review(pull, review, "Please use logging everywhere."), 4400)
    assert again.code == 0 and not again.admitted and "taken already" in again.out


def test_an_agents_job_that_left_no_results_is_said_in_the_reply_and_nothing_is_published(shop: Shop) -> None:
    said, payload = shop.comment("/rally retry web", "alice")
    jobs = shop.split("issue_comment", payload, 4305)
    before = shop.fake.refs()
    assert jobs.outputs is not None
    jobs.outputs["run-id"] = "issue-1-4305"
    with pytest.raises(UsageError, match="name different runs"):
        jobs.publish()  # the run-id of another workflow run than its `again`
    jobs.outputs["run-id"] = RUN
    with pytest.raises(RallyError, match="no records of a run"):
        jobs.publish()  # the agents' job was lost before it uploaded anything
    assert "`/rally retry web` was not done: " in shop.reply(said) and "no records of a run" in shop.reply(said)
    assert shop.fake.refs() == before


def test_a_publish_job_run_again_after_it_published_changes_nothing_and_its_reply_stands(shop: Shop) -> None:
    """GitHub's "re-run failed jobs" runs the publish job again with the same outputs and artifacts: judged
    against the run it published itself, web's retry would be taken for work that does not start at the
    integration, and refused out of the pull request."""
    said, payload = shop.comment("/rally retry web", "alice")
    jobs = shop.split("issue_comment", payload, 4300)
    assert jobs.through()[0] == 0
    before, reply = shop.fake.refs(), shop.reply(said)
    code, out = jobs.publish()
    assert code == 0 and f"published for comment {said} already" in out, out
    assert shop.fake.refs() == before and shop.reply(said) == reply and "**web**: done, in the pull request" in reply
    assert "src/web/work.txt" in shop.files("_integration")
    # Its earlier attempt stopped after it published, before it edited the reply: the reply is edited now.
    (reply_id,) = [i for i, c in shop.fake.comments.items() if c["body"] == reply]
    shop.fake.comments[reply_id]["body"] = reply.split("\n\n")[0] + "\n\nworking on it"
    assert jobs.publish()[0] == 0 and shop.reply(said) == reply and shop.fake.refs() == before


def test_a_command_taken_up_before_another_one_published_is_not_published_over_it(shop: Shop) -> None:
    """Two `/rally retry web` taken up from the same published run before either is published: the second
    publish job finds the run published again since (for the first), and publishes nothing over it."""
    first, payload = shop.comment("/rally retry web", "alice")
    jobs = shop.split("issue_comment", payload, 4300)
    second, payload2 = shop.comment("/rally retry web", "alice")
    late = shop.split("issue_comment", payload2, 4301)
    assert jobs.admitted and late.admitted, late.out
    assert jobs.through()[0] == 0
    before = shop.fake.refs()
    code, out = late.agents()
    assert code == 0, out
    with pytest.raises(RallyError, match="published again since"):
        late.publish()
    assert shop.fake.refs() == before and "**web**: done, in the pull request" in shop.reply(first)
    reply = shop.reply(second)
    assert "`/rally retry web` was not done: " in reply and f"published again since this job's command job took it " \
        f"up (for comment {first})" in reply, reply
    assert "src/web/work.txt" in shop.files("_integration")


# --- The publish job refuses what the agents' job was not asked to make -----------------------------


def _tampered(jobs: SplitJobs, name: str, onto: Callable[[RunState], str], files: dict[str, str]) -> None:
    """The agents' job's results rewritten before they leave it, as a job an agent took over could:
    ``name``'s branch moved to a new commit writing ``files`` on top of ``onto``."""
    clone = jobs.shop.tmp / f"job{jobs.shop.jobs}"  # the agents' job's clone
    state = RunState.model_validate_json((jobs.results / RECORD_FILE).read_text())
    git(clone, "checkout", "-q", "--detach", onto(state))
    head = commit(clone, files, f"{name}: not what it was asked")
    git(clone, "update-ref", f"refs/heads/rally/{RUN}/{name}", head)
    write_results(clone, state.with_teammate(state.teammate(name).model_copy(update={"head_sha": head})),
                  jobs.results)


TAMPERS = {
    "a retried teammate that starts elsewhere": (
        "web", lambda s: s.base_sha, {"src/web/work.txt": "from the base\n"},
        "web skipped (refused by the publish job: its work does not start from"),
    "a retried teammate that writes another's file": (
        "web", lambda s: s.teammate("web").head_sha, {"src/api/work.txt": "web was here\n"},
        "refused by the publish job: it wrote 1 path it does not own under the map of the base commit: src/api/work.txt"),
    "a teammate it was not asked to run, moved": (
        "api", lambda s: s.teammate("api").head_sha, {"src/api/more.txt": "more\n"},
        "publish job: api: its branch in the results is at"),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_the_publish_job_refuses_results_a_retry_was_not_asked_to_make(shop: Shop, tamper: str) -> None:
    name, onto, files, refused = TAMPERS[tamper]
    api_before = shop.head("api")
    said, payload = shop.comment("/rally retry web", "alice")
    jobs = shop.split("issue_comment", payload, 4300)
    code, out = jobs.agents()
    assert code == 0, out
    _tampered(jobs, name, onto, files)
    code, out = jobs.publish()
    (pull,) = shop.fake.pulls
    body = shop.fake.issues[pull]["body"]
    assert refused in body.replace("\\", ""), body
    assert shop.head("api") == api_before  # published work is never lost, nor moved
    integrated = git(shop.fake.bare_repo, "show", f"rally/{RUN}/_integration:src/api/work.txt")
    assert integrated == "api v1\n" and "src/api/more.txt" not in shop.files("_integration")
    if name == "web":
        assert ", not integrated: refused by the publish job: " in shop.reply(said)
        assert "src/web/work.txt" not in shop.files("_integration")


def test_a_teammate_the_agents_job_left_out_is_said_with_its_reason(shop: Shop) -> None:
    """The agents' job ran api as published but left it out of the integration (its merge.verify blamed
    it, or so it says): the pull request says so, with the job's reason as text, and api's branch stays."""
    api_before = shop.head("api")
    said, payload = shop.comment("/rally retry web", "alice")
    jobs = shop.split("issue_comment", payload, 4400)
    code, out = jobs.agents()
    assert code == 0, out
    state = RunState.model_validate_json((jobs.results / RECORD_FILE).read_text())
    clone = shop.tmp / f"job{shop.jobs}"  # the agents' job's clone
    state = state.with_teammate(state.teammate("api").model_copy(update={
        "integrated": False, "outcome": "unverified",
        "reason": "merge.verify `make test` failed with api's work: **dropped**"}))
    write_results(clone, state.model_copy(update={"integrated": tuple(n for n in state.integrated if n != "api")}),
                  jobs.results)
    code, out = jobs.publish()
    (pull,) = shop.fake.pulls
    body = shop.fake.issues[pull]["body"].replace("\\", "")
    assert "left out of the integration by the agents' job, which ran it as published: merge.verify" in body, body
    assert "**dropped**" in body and "<strong>" not in body  # the job's words, as text
    (row,) = [line for line in body.splitlines() if line.startswith("| api |  | command |")]
    assert " unverified |" in row, row  # as a run shows a teammate merge.verify dropped
    assert shop.head("api") == api_before


def _everyone_left_out(shop: Shop) -> None:
    """A `/rally retry web` whose agents' job leaves every teammate out of the integration (its merge.verify
    failed with each, or so it says): nothing is integrated, and the pull request's branch stays as it was."""
    said, payload = shop.comment("/rally retry web", "alice")
    jobs = shop.split("issue_comment", payload, 4300)
    code, out = jobs.agents()
    assert code == 0, out
    state = RunState.model_validate_json((jobs.results / RECORD_FILE).read_text())
    for name in ("api", "web"):
        state = state.with_teammate(state.teammate(name).model_copy(update={"integrated": False}))
    write_results(shop.tmp / f"job{shop.jobs}", state.model_copy(update={"integrated": ()}), jobs.results)
    jobs.publish()
    assert "nothing is integrated" in shop.reply(said)


def _a_persons_commit_on_the_pull_request(shop: Shop) -> str:
    person = shop.tmp / "person"
    git(shop.tmp, "clone", "-q", "--branch", f"rally/{RUN}/_integration", shop.fake.authenticated_git_url, str(person))
    mine = commit(person, {"NOTES.md": "a person's fix\n"}, "a person's fix")
    git(person, "push", "-q", "origin", f"rally/{RUN}/_integration")
    return mine


def test_a_persons_commit_on_the_pull_request_after_nothing_was_integrated_is_not_overwritten(shop: Shop) -> None:
    """The pull request's branch, left as it was when nothing was integrated, is still in the run's record:
    a person's commit on it later is found by the next command, which does nothing rather than overwrite it."""
    _everyone_left_out(shop)
    mine = _a_persons_commit_on_the_pull_request(shop)
    said, payload = shop.comment("/rally retry api", "alice")
    jobs = shop.split("issue_comment", payload, 4301)
    assert not jobs.admitted and "someone else moved it, and rally-gh overwrites nobody's commits" in shop.reply(said)
    assert shop.head("_integration") == mine


def test_a_record_without_an_integration_is_published_only_where_no_integration_branch_is(shop: Shop) -> None:
    """A record that says nothing is integrated (as rally-gh wrote one when nothing was integrated again):
    the publish job leases on the integration branch's absence, never on whatever it holds now."""
    _everyone_left_out(shop)
    remote = rgit.Remote(shop.fake.authenticated_git_url)
    clone = shop.tmp / "recorder"
    git(shop.tmp, "clone", "-q", shop.fake.authenticated_git_url, str(clone))
    record = published.fetch(clone, remote, RUN)
    state = record.state.model_copy(update={"integration_sha": None, "integrated_onto": None})
    assert published.share(clone, record.model_copy(update={"state": state}), remote) is None
    mine = _a_persons_commit_on_the_pull_request(shop)
    said, payload = shop.comment("/rally retry api", "alice")
    code, out = shop.split("issue_comment", payload, 4301).through()
    assert shop.head("_integration") == mine, out
    assert "which is not part of this integration; it was left as it is" in shop.fake.issues[shop.issue]["body"] \
        or "left as it is" in out


def test_results_that_claim_a_dry_run_are_published_as_the_run_they_are(shop: Shop) -> None:
    """A dry run publishes nothing: results that claim one (the agents' job's say) would leave the run's
    branches pushed without their checks, pull request and record, and every later command refused."""
    said, payload = shop.comment("/rally retry web", "alice")
    jobs = shop.split("issue_comment", payload, 4300)
    record = shop.fake.refs()[published_ref(RUN)]
    code, out = jobs.agents()
    assert code == 0, out
    state = RunState.model_validate_json((jobs.results / RECORD_FILE).read_text())
    write_results(shop.tmp / f"job{shop.jobs}", state.model_copy(update={"dry_run": True}), jobs.results)
    code, out = jobs.publish()
    assert code == 0, out
    assert shop.fake.refs()[published_ref(RUN)] != record and "**web**: done, in the pull request" in shop.reply(said)
    (pull,) = shop.fake.pulls
    rows = [line for line in shop.fake.issues[pull]["body"].splitlines() if line.startswith("| web |")]
    assert "src/web/work.txt" in shop.files("_integration") and " done |" in rows[0], rows
