"""Who may start a run and what it is asked to do (SPEC section 5): the start of a one-job
``rally-gh run`` in Actions, and all of ``rally-gh admit``, the first job of the ready workflows."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TextIO

from rally_gh import publish
from rally_gh.errors import EXIT_FAILED, EXIT_OK
from rally_gh.github.actions import ActionsContext, GitHubRun, issue_text_from_github
from rally_gh.github.events import Trigger


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
