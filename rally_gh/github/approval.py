"""A run that waits for a person's approval before any agent starts, on GitHub (the map's ``approval``).

The run's progress comment is where it waits: ``waiting_comment`` says why (each rule that holds,
with its line in the map), who would run, each plan of a teammate in plan mode (shown as text,
never as Markdown), and how to approve. A hidden line names the teammates, so that ``approve``,
acting on a writer's ``/rally approve [NAME...]`` in another workflow run, continues the same run
(same id, same issue) with the same team, or with the named teammates and those that need no
approval of their own. The comment is rewritten when the run goes on, so a second approval finds
nothing waiting.

What comes back from the comment is checked as any input is: names must be teammate names of the
map on the base commit; a plan is text that reaches its own teammate's prompt as data, as the issue
text does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from rally_gh import plan
from rally_gh.config import Config
from rally_gh.github.endpoint import CommentId, GitHubEndpoint, IssueNumber, run_marker
from rally_gh.limits import TEAMMATE_NAME
from rally_gh.words import code_fence

PLAN_LIMIT = 6000
"""Characters of a plan shown and kept: nine of them fit a comment (65,536 characters)."""

_WAITING = re.compile(r"<!-- rally-gh:awaiting-approval:([a-z0-9,-]*) -->")
_PLAN = re.compile(r"<!-- rally-gh:plan:([a-z0-9-]+) -->")
_FENCE = re.compile(r"(`{3,})text")

Via = Literal["comment", "environment"]
"""How a run is approved: ``/rally approve`` in a comment, or a required reviewer of a GitHub Environment."""


@dataclass(frozen=True)
class Waiting:
    """A run waiting for approval, as its progress comment holds it."""

    run_id: str
    teammates: tuple[str, ...]
    plans: tuple[tuple[str, str], ...] = ()
    """(teammate, plan) of the teammates in plan mode whose plans are written."""


@dataclass(frozen=True)
class Continuation:
    """A run that goes on in a new workflow run: the same id, on the same issue."""

    run_id: str
    issue: IssueNumber
    teammates: tuple[str, ...]
    """Who runs now."""
    left_out: tuple[str, ...] = ()
    """Teammates that needed approval of their own and were not named: they do not run in this run."""
    plans: tuple[tuple[str, str], ...] = ()


def waiting_comment(run_id: str, reasons: Sequence[str], teammates: Sequence[str],
                    plans: Mapping[str, str] | None = None, *, via: Via = "comment") -> str:
    """The progress comment of a run that waits for approval."""
    from rally_gh.publish import defuse

    lines = [run_marker(run_id), f"## rally-gh run `{run_id}`: waiting for approval", "",
             "The map asks a person to approve this run before its agents " +
             ("write" if plans else "start") + ":", ""]
    lines += [f"- {defuse(reason)}" for reason in reasons]
    lines += ["", f"**Teammates** {', '.join(teammates)}"]
    for name, text in (plans or {}).items():
        shown = text if len(text) <= PLAN_LIMIT else text[:PLAN_LIMIT] + f"\n... (cut: {len(text) - PLAN_LIMIT:,} " \
                                                                          "more characters)"
        # Written by the agent: shown as text in a fence it cannot close, never as Markdown.
        fence = code_fence(shown)
        lines += ["", f"### The plan of {name}", "", f"<!-- rally-gh:plan:{name} -->", f"{fence}text", shown, fence]
    lines += [""]
    if via == "environment":
        lines += ["A required reviewer of the environment `rally-approval` approves the workflow run's `agents` job "
                  "(its page: Review deployments); no agent starts before."]
    else:
        lines += ["To let it go on, someone with write access comments on this issue:", "",
                  "- `/rally approve`: every teammate above runs" + (", each with its plan" if plans else ""),
                  "- `/rally approve NAME...`: the teammates named run, with those that need no approval of their "
                  "own; the others are left out of this run (their work is not done; start a new run for it)"]
    lines += ["", f"<!-- rally-gh:awaiting-approval:{','.join(teammates)} -->"]
    return "\n".join(lines) + "\n"


def wait_for_approval(endpoint: GitHubEndpoint, issue: IssueNumber, run_id: str, reasons: Sequence[str],
                      teammates: Sequence[str], plans: Mapping[str, str] | None = None, *,
                      via: Via = "comment") -> CommentId:
    """Say on the issue, in the run's progress comment, that the run waits and why; 👀 that it was seen."""
    endpoint.add_reaction(issue, "eyes")
    return endpoint.upsert_comment(issue, run_marker(run_id),
                                   waiting_comment(run_id, reasons, teammates, plans, via=via))


def waiting_of(run_id: str, body: str) -> Waiting | None:
    """The waiting run a progress comment holds; None when the run does not wait (or the comment was not ours)."""
    if not body.startswith(run_marker(run_id)):
        return None
    lines = body.splitlines()
    found = None
    plans: list[tuple[str, str]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        named = _PLAN.fullmatch(line)
        fence = _FENCE.fullmatch(lines[index + 1]) if named and index + 1 < len(lines) else None
        if named and fence:
            end = next((i for i in range(index + 2, len(lines)) if lines[i] == fence.group(1)), None)
            if end is None:
                break  # cut short: what follows is not whole
            plans.append((named.group(1), "\n".join(lines[index + 2:end])))
            index = end + 1
            continue
        waiting = _WAITING.fullmatch(line)
        if waiting:
            found = tuple(n for n in waiting.group(1).split(",") if n)
        index += 1
    if found is None or not all(TEAMMATE_NAME.match(n) for n in found):
        return None
    return Waiting(run_id, found, tuple(p for p in plans if p[0] in found))


def approve(endpoint: GitHubEndpoint, issue: IssueNumber, run_id: str, named: Sequence[str],
            config: Config) -> Continuation | str:
    """What approving ``run_id`` (all of it, or the teammates ``named``) lets run now; the reason as
    text when nothing does (the run does not wait, a name is not of the run, too few would run)."""
    body = endpoint.comment_with(issue, run_marker(run_id))
    waiting = waiting_of(run_id, body) if body is not None else None
    if waiting is None:
        return f"run `{run_id}` does not wait for approval: there is nothing to approve"
    team = tuple(n for n in waiting.teammates if any(t.name == n for t in config.teammates))
    # A plan goes only to a teammate the map puts in plan mode: the agents' job that wrote the plans is
    # untrusted, and one of its agents must not hand another teammate a "plan" to carry out.
    planners = {t.name for t in config.teammates if t.mode == "plan"}
    waiting = replace(waiting, plans=tuple(p for p in waiting.plans if p[0] in planners))
    foreign = [n for n in named if n not in team]
    if foreign:
        return (f"{', '.join(f'`{n}`' for n in foreign)} {'is' if len(foreign) == 1 else 'are'} not in run `{run_id}` "
                f"(its teammates: {', '.join(team)})")
    if not named:
        return Continuation(run_id, issue, team, (), waiting.plans)
    # Named: those run, with every teammate that needs no approval of its own; a rule about the
    # whole run (how many run) is approved by whoever approves at all.
    own = {r.teammate for r in plan.approval_reasons(config, team) if r.teammate is not None}
    running = tuple(n for n in team if n in named or n not in own)
    left_out = tuple(n for n in team if n not in running)
    if len(running) < 2:
        return (f"approving only {', '.join(running) or 'nobody'} leaves {len(running)} teammate to run "
                f"(a run needs at least two; {', '.join(left_out)} need approval of their own): name more, "
                "or `/rally approve` all of it")
    return Continuation(run_id, issue, running, left_out, tuple(p for p in waiting.plans if p[0] in running))

