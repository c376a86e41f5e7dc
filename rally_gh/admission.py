"""Who may start a run and what it is asked to do (SPEC section 5): the start of a one-job
``rally-gh run`` in Actions, and all of ``rally-gh admit``, the first job of the ready workflows;
for a comment or a review, the answer (``/rally`` commands, review routing), and the run that a
``/rally approve`` lets go on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TextIO

from rally_gh import publish
from rally_gh.config import Config
from rally_gh.errors import EXIT_FAILED, EXIT_OK, RallyError
from rally_gh.github import conversation, review
from rally_gh.github.actions import ActionsContext, GitHubRun, issue_text_from_github
from rally_gh.config import LoadedConfig
from rally_gh.github import approval
from rally_gh.github.approval import Continuation
from rally_gh.github.endpoint import IssueNumber
from rally_gh.github.events import Trigger
from rally_gh.run import assess, planning, published
from rally_gh.state import RunState
from rally_gh.tasks import RunTasks


@dataclass(frozen=True)
class Asked:
    """What a run is asked to do: for which issue, who runs, how many at once, whether only to plan."""

    issue: int | None
    issue_text: str | None
    only: tuple[str, ...]
    max_parallel: int | None
    dry_run: bool


def admitted(github: GitHubRun, actions: ActionsContext, asked: Asked, the_run: str,
             stdout: TextIO) -> Asked | int:
    """What the trigger asks of the run once its sender is admitted; an exit code when it
    starts no run (an event rally-gh ignores, a sender who may not)."""
    trigger = github.trigger
    if not trigger.starts_run:
        stdout.write(f"rally-gh: nothing to run: {trigger.reason or trigger.kind}\n")
        return EXIT_OK
    decision = publish.admit(github.endpoint, trigger, actions.inputs.bot_allowlist, run_id=the_run,
                             triggering_actor=actions.triggering_actor)
    if not decision.allowed:
        stdout.write(f"rally-gh: refused: {decision.reason}\n")
        return EXIT_FAILED
    asked = as_triggered(trigger, asked)
    if asked.issue is not None and asked.issue_text is None:
        asked = replace(asked, issue_text=issue_text_from_github(github.endpoint, asked.issue))
    return asked


def as_triggered(trigger: Trigger, asked: Asked) -> Asked:
    """What the trigger asks of the run: its issue, and a dispatch's inputs."""
    asked = replace(asked, issue=trigger.issue if trigger.issue is not None else asked.issue)
    if trigger.inputs is None:
        return asked
    # Who runs: the dispatch's choice, else the action's. How many at once: the lowest of
    # those given; the run never lets it pass the map's max_parallel.
    return replace(asked, only=trigger.inputs.teammates or asked.only,
                   max_parallel=min((n for n in (asked.max_parallel, trigger.inputs.max_parallel) if n is not None),
                                    default=None),
                   dry_run=asked.dry_run or trigger.inputs.dry_run)


@dataclass(frozen=True)
class Answered:
    """What a comment or review event came to: the exit code, and the run it lets go on, if any."""

    code: int
    continuation: Continuation | None = None


def answer_event(github: GitHubRun, config: Config, actions: ActionsContext, stdout: TextIO, *,
                 act: conversation.Act | None = None, follow_up: review.FollowUp | None = None) -> Answered:
    """A comment on a run's issue or pull request (its ``/rally`` command), or a review on a run's
    pull request (each inline comment routed to the teammate that owns its file, and answered).
    ``act`` carries out ``/rally retry`` and ``drop``, ``follow_up`` a review's rounds, where agents
    may run (``conversation.answer``, ``review.route_review``); without them they are answered only."""
    if github.trigger.kind == "review":
        return Answered(_route_review(github, config, actions, stdout, follow_up))
    answered = conversation.answer(github.endpoint, github.trigger, bot_allowlist=actions.inputs.bot_allowlist,
                                   config=config, act=act, triggering_actor=actions.triggering_actor)
    if answered is None:
        stdout.write("rally-gh: nothing to do: the comment gives no `/rally` command\n")
        return Answered(EXIT_OK)
    stdout.write(f"rally-gh: {'done' if answered.acted else 'not acted on'}: {answered.reply.splitlines()[0]}\n")
    return Answered(EXIT_FAILED if answered.refused else EXIT_OK, answered.continuation)


def _route_review(github: GitHubRun, config: Config, actions: ActionsContext, stdout: TextIO,
                  follow_up: review.FollowUp | None) -> int:
    routing = review.route_review(github.endpoint, github.trigger, config, bot_allowlist=actions.inputs.bot_allowlist,
                                  follow_up=follow_up, triggering_actor=actions.triggering_actor)
    if routing.skipped:
        stdout.write(f"rally-gh: review not routed: {routing.skipped}\n")
        return EXIT_FAILED if routing.refused else EXIT_OK
    for item in routing.routed:
        stdout.write(f"rally-gh: {item.path}: {item.owner or 'nobody (a person must change it)'}\n")
    if routing.handed_on:
        stdout.write("rally-gh: the follow-up rounds are handed on to the agents' job\n")
    for name, addressed in (routing.rounds or {}).items():
        stdout.write(f"rally-gh: {name}'s follow-up round: {addressed.commit or 'no commit: ' + addressed.why}\n")
    if routing.not_routed:
        stdout.write(f"rally-gh: the review's text: not routed: {routing.not_routed}\n")
    return EXIT_OK


def continued(github: GitHubRun, continuation: Continuation, asked: Asked) -> Asked:
    """What a run that goes on after approval is asked to do: its issue (its text read now), its teammates."""
    return replace(asked, issue=int(continuation.issue), only=continuation.teammates,
                   issue_text=issue_text_from_github(github.endpoint, continuation.issue))


def approval_step(github: GitHubRun, loaded: LoadedConfig, tasks: RunTasks | None, asked: Asked, run_id: str,
                  actions: ActionsContext, stdout: TextIO) -> Literal["go", "wait", "plan"]:
    """Whether the run must wait for a person's approval before agents start (the map's ``approval``
    rules hold for who runs): ``wait``, and the issue's progress comment says why and how to approve,
    the step outputs say ``needs-approval``, nothing starts now; ``plan`` when teammates in plan mode
    write their plans first (the run then waits with them); ``go`` when nothing asks for approval."""
    chosen, selected = assess.select(loaded, tasks, asked.only or None, asked.max_parallel)
    reasons = assess.approval_reasons(chosen, selected)
    if not reasons:
        return "go"
    if planning.planners(chosen.config, selected):
        return "plan"
    names = [t.name for t in chosen.config.teammates if selected is None or t.name in selected]
    wait(github, asked.issue, run_id, reasons, names, {}, actions, stdout, asked.issue_text)
    return "wait"


def wait(github: GitHubRun, issue: int | None, run_id: str, reasons: Sequence[str], names: Sequence[str],
         plans: Mapping[str, str], actions: ActionsContext, stdout: TextIO, issue_text: str | None = None) -> None:
    """The run waits for approval: said on the issue (with the plans written, if any), in the step
    outputs and on standard output."""
    via = actions.inputs.approval
    if issue is not None:
        approval.wait_for_approval(github.endpoint, IssueNumber(issue), run_id, reasons, names, plans, via=via)
        github.endpoint.remove_label(IssueNumber(issue), publish.RUNNING)
    publish.write_outputs(actions.output_file, {"run-id": run_id, "admitted": "false", "needs-approval": "true",
                                                "issue": "" if issue is None else str(issue),
                                                "issue-text": issue_text or ""})
    how = ("a required reviewer of the environment `rally-approval` approves the agents' job" if via == "environment"
           else f"`/rally approve` on issue #{issue}" if issue is not None
           else "(no issue to approve it on: dispatch it for an issue, or approve through an environment)")
    stdout.write(f"rally-gh: run {run_id} waits for approval before agents "
                 f"{'write' if plans else 'start'}: {'; '.join(reasons)}. To go on: {how}\n")


def answer_again(github: GitHubRun, root: Path, config: Config, actions: ActionsContext, again: published.Again,
                 before: RunState, after: RunState | None, refused: Mapping[str, str], *,
                 failed: RallyError | None = None) -> None:
    """The publish job of a taken-up run (rally-comment.yml) answers what the command job handed on:
    the ``/rally retry`` or ``drop`` reply edited to say how it went, or each thread of the review
    answered with the commit that addresses it, or why not (its round refused here, its work not in
    the pull request). What is answered comes from the event; ``failed``: nothing could be published."""
    trigger = github.trigger
    if trigger.comment is not None:
        command = conversation.parse_command(trigger.comment.body)
        if command is not None and command.verb in conversation.CHANGES:
            text = conversation.changed(after, command) if after is not None \
                else conversation.not_done(command, failed or RallyError("no results to publish"))
            conversation.command_done(github.endpoint, trigger.comment, text)
        return
    asks = review.read_review(github.endpoint, trigger, config, bot_allowlist=actions.inputs.bot_allowlist,
                             triggering_actor=actions.triggering_actor)
    if isinstance(asks, review.ReviewRouting):
        return
    _, why = published.in_pull(before, asks.prompts)
    rounds = {n: review.Addressed(None, reason) for n, reason in why.items()}
    for name in again.follow_up:
        if after is None:
            rounds[name] = review.Addressed(None, f"its round's results could not be published: {failed}")
        elif name in refused:
            rounds[name] = review.Addressed(None, f"the publish job refused its round: {refused[name]}")
        else:
            rounds[name] = review.Addressed(*published.answering_commit(root, before, after, name))
    review.answer_review(github.endpoint, asks, rounds, config.branch_prefix)
