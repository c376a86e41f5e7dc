"""``/rally`` commands in comments on a run's issue or pull request.

``parse_command`` reads the one command a comment gives (pure: text in, a
value out); ``answer`` acts on it against the ``GitHubEndpoint``:

- the comment is acknowledged with a reaction (``eyes``: seen; ``confused``:
  refused or not understood), which GitHub keeps once per user and content;
- the reply is one comment keyed by the command's comment id (a hidden
  marker), edited in place however often the event is delivered or its
  workflow re-run: a command is answered once;
- who may command a run is decided as for the label (``events.authorize``):
  write permission asked of the API, fail closed, bots only by allow-list;
- comment text is data: it is parsed here and never reaches a shell, a ref
  name or an agent (an agent would get it only through its prompt file).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from rally_gh.config import Config
from rally_gh.github import approval
from rally_gh.github.approval import Continuation
from rally_gh.github.endpoint import CommentId, GitHubEndpoint, IssueNumber, PullNumber
from rally_gh.errors import RallyError
from rally_gh.github.events import CommentRef, Trigger, authorize_attempt
from rally_gh.github.review import run_of_pull
from rally_gh.limits import TEAMMATE_NAME
from rally_gh.state import RunState

Verb = Literal["status", "retry", "drop", "cancel", "approve", "help"]

# What each command does, in the order ``/rally help`` lists them.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("/rally status", "where the run stands: its workflow run and its progress comment"),
    ("/rally retry NAME...", "run those teammates again on top of the run's integration"),
    ("/rally drop NAME", "take a teammate's work out of the integration and the pull request (its branch is kept)"),
    ("/rally cancel", "cancel the run's workflow run in progress"),
    ("/rally approve [NAME...]", "let a run that waits for approval go on (all of it, or the teammates named)"),
    ("/rally help", "this list"),
)
# Commands that change a run: acted on by the caller's ``Act``, once per comment.
CHANGES: frozenset[Verb] = frozenset({"retry", "drop"})

_COMMAND_LINE = re.compile(r"^/rally(?:\s+(?P<rest>.*))?$")
_MAX_NAMES = 20


@dataclass(frozen=True)
class Command:
    verb: Verb
    names: tuple[str, ...] = ()
    problem: str = ""
    """Why the command cannot be acted on as written (an unknown verb, a bad name); empty when it can."""


def parse_command(body: str) -> Command | None:
    """The ``/rally`` command a comment gives: its first line that starts with ``/rally``
    outside quotes and code blocks; None when it gives none."""
    fenced = False
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced or line.startswith(">"):
            continue
        found = _COMMAND_LINE.match(line)
        if found is not None:
            return _command(found.group("rest") or "")
    return None


_VERBS: dict[str, Verb] = {v: v for v in ("status", "retry", "drop", "cancel", "approve", "help")}


def _command(rest: str) -> Command:
    words = rest.split()
    verb = _VERBS.get(words[0].lower()) if words else None
    if verb is None:
        return Command("help", problem=f"`{_shown(words[0])}` is not a `/rally` command" if words
                       else "`/rally` needs a command")
    names = tuple(words[1:])
    return Command(verb, names, _problem(verb, names))


def _problem(verb: Verb, names: tuple[str, ...]) -> str:
    bad = [n for n in names if not TEAMMATE_NAME.match(n)]
    if bad:
        return f"`{_shown(bad[0])}` is not a teammate name"
    if len(names) > _MAX_NAMES:
        return f"at most {_MAX_NAMES} teammates a command"
    if verb in ("retry", "drop") and not names:
        return f"`/rally {verb}` needs the teammates to {verb}"
    if verb == "drop" and len(names) > 1:
        return "`/rally drop` takes one teammate a comment"
    if verb in ("status", "cancel", "help") and names:
        return f"`/rally {verb}` takes no names"
    return ""


def _shown(text: str, limit: int = 40) -> str:
    """Someone's words, safe to quote back on one line: no backtick to break out of code,
    no mention that pings (a word joiner follows ``@``), at most ``limit`` characters."""
    cleaned = "".join(c if c.isprintable() and c != "`" else "?" for c in text)
    cleaned = cleaned if len(cleaned) <= limit else cleaned[:limit - 3] + "..."
    return cleaned.replace("@", "@\u2060")


def help_text() -> str:
    rows = "\n".join(f"| `{usage}` | {what} |" for usage, what in COMMANDS)
    return ("Commands, in a comment on the run's issue or pull request, from someone with write access:\n\n"
            f"| command | does |\n|---|---|\n{rows}")


def reply_marker(comment: CommentId) -> str:
    """The hidden line that finds the reply to one command again (one reply per command)."""
    return f"<!-- rally-gh:command:{int(comment)} -->"


# --- Acting on a command ------------------------------------------------------


Act = Callable[[str, Command], str | None]
"""Carries out a command that changes run ``run_id`` (``CHANGES``) and returns the reply's text, or None
when it handed the command on to later jobs (the split workflow's agents' and publish jobs: the publish
job edits the reply, ``command_done``); given by the command layer, which holds the repository. Raises
RallyError when it cannot be done."""


@dataclass(frozen=True)
class Answer:
    """What was done about a command: whether it was acted on (or its sender refused), and the reply it got."""
    acted: bool
    reply: str
    refused: bool = False
    continuation: Continuation | None = None
    """A run that goes on in this workflow run (``/rally approve``): its next jobs run it."""


def answer(endpoint: GitHubEndpoint, trigger: Trigger, *, config: Config,
           bot_allowlist: Collection[str] = (), act: Act | None = None,
           triggering_actor: str | None = None) -> Answer | None:
    """Act on the ``/rally`` command of a comment event; None when the comment gives none.
    ``config`` is the map on the base commit; ``act`` carries out ``retry`` and ``drop`` (without it
    they are answered "not yet"); ``triggering_actor``: who started this attempt of the workflow run,
    admitted as the sender is. ``approve`` lets a run that waits for approval go on: the answer's
    ``continuation``, which the caller runs."""
    teammates = {t.name for t in config.teammates}
    comment = trigger.comment
    if comment is None:
        return None
    command = parse_command(comment.body)
    if command is None:
        return None
    issue = comment.issue
    decision = authorize_attempt(trigger, endpoint, bot_allowlist, triggering_actor)
    if not decision.allowed:
        return _reply(endpoint, comment, "confused", False,
                      f"@{trigger.sender}: refused: {decision.reason}. `/rally` commands are taken from people "
                      "with write access to this repository.", refused=True)
    unknown = [n for n in command.names if n not in teammates]
    if command.problem or unknown:
        why = command.problem or f"no teammate named {', '.join(f'`{n}`' for n in unknown)} in the map"
        return _reply(endpoint, comment, "confused", False, f"{why}.\n\n{help_text()}")
    if command.verb == "help":
        return _reply(endpoint, comment, "eyes", True, help_text())
    run_id = latest_run(endpoint, issue, config.branch_prefix)
    if run_id is None:
        return _reply(endpoint, comment, "confused", False,
                      f"no rally-gh run on #{issue} yet: add the `rally:parallel` label to start one.")
    if command.verb in CHANGES and act is not None:
        return _once(endpoint, comment, run_id, command, act)
    if command.verb in CHANGES:
        return _reply(endpoint, comment, "confused", False,
                      f"`/rally {command.verb} {' '.join(command.names)}` is not acted on here: this job holds a "
                      "token that writes, and no agent (nor `merge.verify`) runs beside one. Take it where agents "
                      f"may run: `rally-gh run --event` on a runner of your own. Run `{run_id}` is unchanged.")
    if command.verb == "approve":
        return _approve(endpoint, trigger, comment, run_id, command.names, config)
    if command.verb == "cancel":
        return _reply(endpoint, comment, "eyes", True, _cancel(endpoint, run_id))
    return _reply(endpoint, comment, "eyes", True, _status(endpoint, run_id))


def _once(endpoint: GitHubEndpoint, comment: CommentRef, run_id: str, command: Command, act: Act) -> Answer:
    """A command that changes the run, carried out once per comment: its reply is written before
    anything is done and marks it taken, so an event delivered twice, or a workflow re-run, finds the
    reply and does nothing more (a run cut short midway says so in its reply, to be asked again)."""
    if endpoint.comment_with(comment.issue, reply_marker(comment.id)) is not None:
        return Answer(False, f"comment {int(comment.id)} was acted on already: its reply says how it went")
    what = f"`/rally {command.verb} {' '.join(command.names)}`"
    _reply(endpoint, comment, "eyes", True, f"{what} on run `{run_id}`: working on it. This reply is edited "
                                             "when it is done; if it never is, the job was stopped: ask again.")
    try:
        text = act(run_id, command)
    except RallyError as err:
        return _reply(endpoint, comment, "confused", False, not_done(command, err))
    if text is None:
        return Answer(True, f"{what} on run `{run_id}`: handed on to the agents' job")
    command_done(endpoint, comment, text)
    return Answer(True, text)


def not_done(command: Command, err: RallyError) -> str:
    """The reply to a command that changes a run when it could not be done."""
    return (f"`/rally {command.verb} {' '.join(command.names)}` was not done: {err.message}"
            + (f" ({err.hint})" if err.hint else ""))


def command_done(endpoint: GitHubEndpoint, comment: CommentRef, text: str) -> None:
    """The reply to ``comment``'s command edited to say how it went (``text``)."""
    endpoint.upsert_comment(comment.issue, reply_marker(comment.id), f"{_quoted(comment)}\n\n{text}")


def _approve(endpoint: GitHubEndpoint, trigger: Trigger, comment: CommentRef, run_id: str, names: Sequence[str],
             config: Config) -> Answer:
    """``/rally approve [NAME...]``: the waiting run goes on, once however often the comment is delivered."""
    earlier = endpoint.comment_with(comment.issue, reply_marker(comment.id))
    if earlier is not None:
        # Answered before (a second delivery, a re-run): what was done then stands.
        return Answer(False, earlier.split("\n\n", 1)[-1])
    decided = approval.approve(endpoint, comment.issue, run_id, names, config)
    if isinstance(decided, str):
        return _reply(endpoint, comment, "confused", False, f"{decided}.")
    left = (f" Left out of this run, not approved: {', '.join(decided.left_out)} (their work is not done; a new "
            "run can do it)." if decided.left_out else "")
    answered = _reply(endpoint, comment, "eyes", True,
                      f"Approved by @{trigger.sender}: run `{run_id}` goes on with {', '.join(decided.teammates)}."
                      + left)
    return replace(answered, continuation=decided)


def _reply(endpoint: GitHubEndpoint, comment: CommentRef, reaction: Literal["eyes", "confused"], acted: bool,
           text: str, *, refused: bool = False) -> Answer:
    endpoint.add_comment_reaction(comment.id, reaction)
    endpoint.upsert_comment(comment.issue, reply_marker(comment.id), f"{_quoted(comment)}\n\n{text}")
    return Answer(acted, text, refused)


def _quoted(comment: CommentRef) -> str:
    """The command a reply answers, quoted: its first ``/rally`` line, made safe to show."""
    line = next((ln.strip() for ln in comment.body.splitlines() if ln.strip().startswith("/rally")), "/rally")
    return f"> {_shown(line, 80)}"


def latest_run(endpoint: GitHubEndpoint, issue: IssueNumber, branch_prefix: str = "rally") -> str | None:
    """The run whose progress comment is the newest on ``issue``; on a run's pull request (its head
    ``<branch_prefix>/<run>/_integration`` in this repository, not a fork's), that run."""
    runs = endpoint.run_ids(issue)
    if runs:
        return runs[-1]
    if not endpoint.issue(issue).is_pull_request:
        return None
    pull = endpoint.pull(PullNumber(int(issue)))
    return run_of_pull(pull.head_repo, pull.head, endpoint.repo_full_name, branch_prefix)


def workflow_run_of(run_id: str) -> int | None:
    """The workflow run a run id names (``issue-7-4207`` started in workflow run 4207); None for a
    run id made elsewhere (a local run's timestamp)."""
    found = re.fullmatch(r"issue-[0-9]+-([0-9]{1,19})", run_id)
    return int(found.group(1)) if found else None


def _status(endpoint: GitHubEndpoint, run_id: str) -> str:
    number = workflow_run_of(run_id)
    if number is None:
        return f"Run `{run_id}` did not start in a workflow run: its progress comment above is all there is."
    found = endpoint.workflow_run(number)
    if found is None:
        return f"Run `{run_id}`: its workflow run {number} is not found (deleted, or in another repository)."
    state = found.status if found.conclusion is None else f"{found.status}, {found.conclusion}"
    return f"Run `{run_id}`: workflow run [{number}]({found.url}) is {state}; its progress comment above is kept current."


def _cancel(endpoint: GitHubEndpoint, run_id: str) -> str:
    number = workflow_run_of(run_id)
    found = endpoint.workflow_run(number) if number is not None else None
    if number is None or found is None:
        return f"Run `{run_id}` has no workflow run to cancel."
    if found.status == "completed":
        return f"Run `{run_id}` already ended ({found.conclusion}): nothing to cancel."
    endpoint.cancel_workflow_run(number)
    return (f"Cancelling workflow run [{number}]({found.url}) of run `{run_id}`: GitHub stops its job, and "
            "rally-gh, on the signal, its agents.")


def changed(state: RunState, command: Command) -> str:
    """The reply to a ``retry`` or ``drop`` once the run has been integrated, verified and published again."""
    lines = []
    for name in command.names:
        t = state.teammate(name)
        if command.verb == "drop":
            lines.append(f"- **{name}**: out of the integration; its branch `{t.branch}` keeps its work")
            continue
        where = "in the pull request" if t.integrated else "not integrated"
        lines.append(f"- **{name}**: {t.outcome}, {where}" + (f": {_shown(t.reason, 300)}" if t.reason else ""))
    integrated = any(t.integrated for t in state.teammates)
    pull = ("the pull request, its checks and the progress comment are updated" if integrated and state.integration_sha
            else "nothing is integrated now: the pull request's branch is left as it was" if state.integration_sha
            else "nothing is integrated, so there is no pull request to update")
    return f"Run `{state.run_id}`, integrated and verified again: {pull}.\n\n" + "\n".join(lines)
