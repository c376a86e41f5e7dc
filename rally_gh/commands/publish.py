"""``rally-gh publish --results DIR``: the publish job of a run whose agents ran in a job without a write token.

It runs no code that an agent, a branch or the issue wrote: it imports the agents' job's
results as untrusted input and checks them against the map of this checkout's base commit
(``rally_gh.results``), then pushes what passed with leases and writes the pull request,
checks, comment, labels and job summary as a one-job run does.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from rally_gh import git
from rally_gh.admission import answer_again, wait
from rally_gh.results import ResultLimits, import_again, import_results, waiting_plans
from rally_gh.run.assess import approval_reasons
from rally_gh import publish as publish_mod
from rally_gh.errors import EXIT_OK, RallyError, UsageError
from rally_gh.github.actions import ActionsContext, GitHubRun, github_of_run, issue_of, read_event
from rally_gh.github.endpoint import IssueNumber
from rally_gh.ownership.enforce import map_for_run
from rally_gh.run import fanin, published
from rally_gh.run.context import Lease, Policy, RunContext, no_events
from rally_gh.run.finish import finish_run
from rally_gh.run.ledger import Ledger
from rally_gh.state import check_ref_component, new_run_id


@dataclass(frozen=True)
class PublishOptions:
    results: Path
    """The folder the agents' job wrote with ``rally-gh run --results`` (the downloaded artifact)."""
    run_id: str | None = None
    """Default: the id the agents' job gave the run in this workflow run (the issue's number and the run's id)."""
    config_path: Path | None = None
    limits: ResultLimits = ResultLimits()
    again: published.Again | None = None
    """A run taken up again (``/rally retry``, ``drop``, a review's rounds): what the command job said to do
    again (its ``again`` output). The run as published is fetched here and the results judged against it."""


def publish(cwd: Path, actions: ActionsContext, stdout: TextIO, *, options: PublishOptions) -> int:
    repo = git.open_repo(cwd)
    root = git.workdir(repo)
    loaded, note = map_for_run(repo, None if options.config_path is None else options.config_path.as_posix())
    if note:
        sys.stderr.write(f"rally-gh: note: {note}\n")
    event = read_event(actions)
    github = github_of_run(actions, event)
    if options.again is not None:
        return _publish_again(root, options.again, github, actions, stdout, options)
    run_id = options.run_id
    if run_id is None:
        if actions.workflow_run_id is None:
            raise UsageError("which run to publish: give --run-id (outside a workflow run there is no default)")
        run_id = new_run_id(issue_of(event, None)[0], actions.workflow_run_id, time.time)
    check_ref_component(run_id, "run id")
    try:
        waiting = waiting_plans(options.results, loaded, options.limits)
        if waiting is None:
            imported = import_results(root, loaded, run_id, options.results, time.time(), options.limits,
                                      dry_run=_asked_dry_run(github))
    except RallyError as err:
        # No results to publish (the agents' job failed before it left them, or left none that can be
        # used): the issue is told the run failed, instead of showing it running for ever.
        if github is not None and github.trigger.issue is not None:
            publish_mod.fail_run(github.endpoint, github.trigger.issue, run_id,
                                 f"the results of the agents' job cannot be published: {err}", actions.job_url)
        raise
    if waiting is not None:
        # Only the plans of teammates in plan mode were written: shown on the issue, the run waits.
        names, plans = waiting
        if github is not None:
            issue = github.trigger.issue
            wait(github, None if issue is None else int(issue), run_id, approval_reasons(loaded, names), names, plans,
                 actions, stdout)
        return EXIT_OK
    for refusal in imported.refusals:
        sys.stderr.write(f"rally-gh: refused: {refusal.who}: {refusal.reason}\n")
    # A handle opened before the import does not see the objects it brought (libgit2 lists packs once):
    # a re-run's new commits, compared with what an earlier attempt pushed, would be "not found".
    repo = git.open_repo(cwd)
    common = git.common_dir(repo)
    ledger = Ledger(common, imported.state)
    # In Actions the run publishes to origin; a local try only when asked (RALLY_REMOTE).
    remote = actions.publish_to if github is not None else actions.local_remote
    ctx = RunContext(root, common, loaded, run_id, None, time.time, actions.environ, no_events, Policy(remote=remote))
    fanin.publish_integration(ctx, ledger, repo, imported.integration)
    ledger.update_run(status="finished")
    return finish_run(repo, ledger.state, loaded.config, actions, stdout, github=github)


def _publish_again(root: Path, again: published.Again, github: GitHubRun | None, actions: ActionsContext,
                   stdout: TextIO, options: PublishOptions) -> int:
    """A taken-up run published again: judged against the record fetched here (never the artifact),
    pushed with a lease on the integration as published, the same pull request, checks and progress
    comment updated, the record shared again, and the command's reply or the review's threads answered."""
    remote = actions.publish_to if github is not None else actions.local_remote
    if remote is None:
        raise UsageError("a taken-up run is published to the remote its record is on: run this in the publish job",
                         hint="or set RALLY_REMOTE to try it locally")
    if options.run_id is not None and options.run_id != again.run_id:
        raise UsageError(f"--run-id {options.run_id} and --again's run {again.run_id} name different runs",
                         hint="give the command job's run-id and again outputs of the same workflow run")
    record, at = published.fetch_at(root, remote, check_ref_component(again.run_id, "run id"))
    before = record.state
    at_base = published.map_at_base(root, record, None if options.config_path is None
                                     else options.config_path.as_posix())
    answers = _answers(github)
    try:
        if at != again.record:
            if answers is not None and record.answers == answers:
                # This job's earlier attempt published it (a re-run of the workflow's failed jobs): judged
                # again now, the same work would be taken for work that does not start where it should.
                stdout.write(f"rally-gh: run {before.run_id} is published for {answers} already (an earlier attempt "
                             "of this job): nothing more to do\n")
                if github is not None and github.trigger.comment is not None:
                    # The reply, which that attempt may not have lived to edit, says what it published.
                    answer_again(github, root, at_base.config, actions, again, before, before, {})
                return EXIT_OK
            raise RallyError(
                f"run {before.run_id} was published again since this job's command job took it up"
                + (f" (for {_plain_key(record.answers)})" if record.answers else "")
                + ": what the agents' job made was built on the run as it was then, and is not published over it",
                hint="ask again: the run is taken up as it is now")
        imported = import_again(root, at_base, before, again, options.results, time.time(), options.limits)
    except RallyError as err:
        if github is not None:
            answer_again(github, root, at_base.config, actions, again, before, None, {}, failed=err)
        raise
    for refusal in imported.refusals:
        sys.stderr.write(f"rally-gh: refused: {refusal.who}: {refusal.reason}\n")
    repo = git.open_repo(root)  # sees the objects the import brought
    ledger = Ledger(git.common_dir(repo), imported.state)
    # On the integration as published, or its absence: never on whatever the branch holds now (a person's commit).
    lease = Lease(git.Sha(before.integration_sha) if before.integration_sha else None)
    ctx = RunContext(root, git.common_dir(repo), at_base, before.run_id, None, time.time, actions.environ, no_events,
                     Policy(remote=remote, integration_lease=lease))
    fanin.publish_integration(ctx, ledger, repo, imported.integration)
    if ledger.state.integration_sha is None and before.integration_sha:
        # Not moved here (nothing integrated now, or its push refused): the record says where the branch was
        # left, so that the next command leases on it, and refuses when someone else moved it.
        ledger.update_run(integration_branch=before.integration_branch, integration_sha=before.integration_sha,
                          integrated_onto=before.integrated_onto)
    ledger.update_run(status="finished")
    issue = IssueNumber(record.issue) if record.issue is not None else None
    on_issue = None if github is None else GitHubRun(github.endpoint, replace(github.trigger, issue=issue))
    code = finish_run(repo, ledger.state, at_base.config, actions, stdout, github=on_issue, taken_up=(answers, at))
    if github is not None:
        refused = {r.who: r.reason for r in imported.refusals}
        answer_again(github, root, at_base.config, actions, again, before, ledger.state, refused)
    return code


def _answers(github: GitHubRun | None) -> str | None:
    """What a taken-up run published here answers (``PublishedRun.answers``): the command's comment, or the review."""
    trigger = None if github is None else github.trigger
    if trigger is not None and trigger.comment is not None:
        return f"comment {int(trigger.comment.id)}"
    if trigger is not None and trigger.review is not None:
        return f"review {int(trigger.review.id)}"
    return None


def _plain_key(text: str) -> str:
    """A record's ``answers`` as shown in a reply: only what ``_answers`` writes, else nothing to show."""
    return text if re.fullmatch(r"(?:comment|review) [0-9]{1,20}", text) else "something else"


def _asked_dry_run(github: GitHubRun | None) -> bool | None:
    """Whether the event asked for a dry run (a dispatch's `dry-run` input), as this job reads it:
    never the agents' job's word. None without GitHub (a local publish: the results say)."""
    if github is None:
        return None
    inputs = github.trigger.inputs
    return inputs is not None and inputs.dry_run
