"""What a run does on GitHub at its edges (SPEC section 5).

``announce`` when a run is accepted, ``progress`` while it runs, and at the end
``publish_run``: the ownership checks, the one pull request, the final
comment, the outcome label, the job summary and the step outputs. ``refuse``
when a run is not allowed. Everything goes through ``GitHubEndpoint``: this
module never imports PyGithub, and every write it makes is idempotent (labels,
the comment found by its marker, the pull request found by head and base), so
a retried or re-run job leaves one comment and one pull request.

Issue titles, labels, branch names, file paths and reasons are untrusted text:
they are only ever data in an API request's JSON. Where they land in Markdown
they are defused (no @-mention pings, no closing keyword that would close
another issue on merge, no broken table).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rally_gh.errors import GitHubError, RallyError
from rally_gh.github.endpoint import (
    Annotation,
    CheckConclusion,
    CheckPublication,
    CommentId,
    CommitSha,
    GitHubEndpoint,
    Issue,
    IssueNumber,
    PullRequest,
    StatusState,
    STATUS_DESCRIPTION_LIMIT,
    cut_body,
    publish_check,
    run_marker,
)
from rally_gh.github.actions import ActionsContext
from rally_gh.github.events import Decision, Trigger, authorize_attempt
from rally_gh.report import Report, report_markdown, run_status, step_complete_text
from rally_gh.ownership.enforce import Violation
from rally_gh.state import RunState, TeammateRecord
from rally_gh.words import noun_for, plural

OWNERSHIP_CHECK = "rally-gh/ownership"
RUNNING = "rally:running"
PULL_LABEL = "rally"
OUTCOME_LABELS: dict[str, str] = {"done": "rally:done", "partial": "rally:partial", "failed": "rally:failed"}
LABELS: dict[str, tuple[str, str]] = {
    RUNNING: ("fbca04", "A rally-gh run is in progress"),
    "rally:done": ("0e8a16", "rally-gh: every teammate done and integrated"),
    "rally:partial": ("d93f0b", "rally-gh: some teammates made it, some did not"),
    "rally:failed": ("b60205", "rally-gh: nothing was integrated"),
    PULL_LABEL: ("5319e7", "Opened by rally-gh"),
}
TITLE_LIMIT = 256
"""GitHub refuses longer pull request titles."""
STEP_SUMMARY_LIMIT = 1024 * 1024
"""Actions drops a step summary over 1 MiB (bytes) whole: cut it instead."""

# --- Untrusted text in Markdown ----------------------------------------------

_WORD_JOINER = "\u2060"
# Not the @ of an e-mail address (after a letter, digit or _). GitHub takes any other character before
# the @ for the start of a mention (``.@x``, ``-@x``, ``é@x`` ping @x): its word characters are ASCII's.
_MENTION = re.compile(r"(?<![A-Za-z0-9_])@(?=[A-Za-z0-9])")
_AT_ENTITY = re.compile(r"&(?:#0*64|#[xX]0*40|commat);")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CLOSING = re.compile(r"(?<![A-Za-z0-9_])(clos|fix|resolv)(e[sd]?)?(?=\s*:?\s+(?:[\w.-]*(?:/[\w.-]+)?#\d|https?://\S+/(?:issues|pull)/\d))",
                      re.IGNORECASE)


_CLOSING_REFERENCE = re.compile(
    r"(?<![A-Za-z0-9_])(?:clos|fix|resolv)(?:e[sd]?)?[ \t]*:?\s+(?:[\w.-]*(?:/[\w.-]+)?#\d+|https?://\S+/(?:issues|pull)/\d+)",
    re.IGNORECASE)


def closing_references(text: str) -> list[str]:
    """The closing keywords ``text`` holds, each with what it names (``Fixes #12``), on one line: in the
    message of a commit that reaches the default branch, GitHub closes what they name."""
    return [" ".join(found.group(0).split()) for found in _CLOSING_REFERENCE.finditer(text)]


def defuse(text: str) -> str:
    """``text`` as it reads, minus its power: no mention pings, no closing keyword.

    A word joiner after ``@`` keeps a login from being a mention; one inside
    ``closes`` keeps GitHub from closing an issue when the pull request merges
    (only our own ``Closes #N`` line may do that). An ``@`` written as an HTML
    entity (``&#64;``) renders as one, so it is made a plain ``@`` first.
    """
    text = _MENTION.sub("@" + _WORD_JOINER, _AT_ENTITY.sub("@", text))
    return _CLOSING.sub(lambda m: m.group(1) + _WORD_JOINER + (m.group(2) or ""), text)


def _cell(text: str) -> str:
    """One Markdown table cell: no line break or pipe may end the row early."""
    return defuse(" ".join(text.split())).replace("|", "\\|")


def _one_line(text: str, limit: int) -> str:
    flat = _CONTROL.sub("", " ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- Start of a run ----------------------------------------------------------


def ensure_labels(endpoint: GitHubEndpoint, names: Sequence[str]) -> None:
    for name in names:
        color, description = LABELS[name]
        endpoint.ensure_label(name, color, description)


def _remove_labels(endpoint: GitHubEndpoint, issue: IssueNumber, labels: Iterable[str]) -> None:
    """Remove those of ``labels`` the issue has: one read instead of a paced write per label."""
    present = set(endpoint.issue(issue).labels)
    for label in labels:
        if label in present:
            endpoint.remove_label(issue, label)


def announce(endpoint: GitHubEndpoint, issue: IssueNumber, run_id: str) -> CommentId:
    """The run is accepted: 👀 on the issue, ``rally:running``, the progress comment."""
    endpoint.add_reaction(issue, "eyes")
    ensure_labels(endpoint, [RUNNING])
    _remove_labels(endpoint, issue, OUTCOME_LABELS.values())  # a second run on the same issue starts over
    endpoint.add_labels(issue, [RUNNING])
    return endpoint.upsert_comment(issue, run_marker(run_id),
                                   f"## rally-gh run `{run_id}`: starting\n\nPlanning the team...\n")


def progress(endpoint: GitHubEndpoint, issue: IssueNumber, run_id: str, state: RunState,
             pull: PullRequest | None = None, summary_url: str | None = None) -> CommentId:
    """Re-render the run's one progress comment from its state."""
    return endpoint.upsert_comment(issue, run_marker(run_id), progress_comment(state, pull, summary_url))


def progress_comment(state: RunState, pull: PullRequest | None = None, summary_url: str | None = None) -> str:
    headline = {"planned": "dry run, nothing started", "interrupted": "interrupted", "waiting": "waiting for approval",
                "running": "running", "finished": run_status(state)}[state.status]
    done = sum(t.outcome == "done" for t in state.teammates)
    lines = [run_marker(state.run_id), f"## rally-gh run `{state.run_id}`: {headline}", "",
             f"**Team** {_cell(state.team)} · {done}/{len(state.teammates)} done", "",
             "| teammate | role | state | attempts | files changed | note |", "|---|---|---|---|---|---|"]
    lines += [_teammate_row(t) for t in state.teammates]
    if pull is not None:
        lines += ["", f"Pull request: #{pull.number}" + (" (draft)" if pull.draft else "")]
    elif state.status == "finished":
        lines += ["", "No pull request: nothing was integrated."]
    if summary_url:
        lines += ["", f"Full report: [job summary]({summary_url})"]
    return "\n".join(lines) + "\n"


def _teammate_row(t: TeammateRecord) -> str:
    note = t.reason if t.outcome != "done" else ""
    return (f"| {t.name} | {_cell(t.role)} | {t.outcome} | {t.attempts} | {len(t.files_changed)} | "
            f"{_cell(_one_line(note, 200))} |")


@dataclass
class ProgressComment:
    """An event sink that keeps the progress comment current without flooding GitHub.

    The run emits many events; GitHub asks for writes at least a second apart
    and a comment edited every second helps nobody. So the comment is rendered
    from the saved state at most every ``min_interval_s``, and failures are
    reported once and otherwise ignored: progress must never stop a run.
    """

    endpoint: GitHubEndpoint
    issue: IssueNumber
    run_id: str
    load: Callable[[], RunState]
    clock: Callable[[], float]
    min_interval_s: float = 15.0
    warn: Callable[[str], None] = lambda message: None
    _last: float = float("-inf")
    _failed: bool = False
    # Agents' events arrive from the runner's threads.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, name: str, state: str, detail: str) -> None:
        now = self.clock()
        with self._lock:
            if self._failed or now - self._last < self.min_interval_s:
                return
            try:
                current = self.load()
            except RallyError:
                return  # the first events come before run.json is written: wait for it
            self._last = now
            try:
                progress(self.endpoint, self.issue, self.run_id, current)
            except (GitHubError, OSError) as err:
                self._failed = True
                self.warn(f"rally-gh: the progress comment could not be updated ({err}); the run goes on")


# --- Refusal -------------------------------------------------------------------

REFUSAL_MARKER = "<!-- rally-gh:refusal -->"


def refuse(endpoint: GitHubEndpoint, issue: IssueNumber, reason: str, *, run_id: str | None = None) -> CommentId:
    """Say on the issue why no run starts; one comment per run id (a re-run edits it)."""
    marker = run_marker(run_id) if run_id else REFUSAL_MARKER
    body = (f"{marker}\n### rally-gh: no run\n\n{defuse(reason)}\n\n"
            "Nothing was started. A run needs write, maintain or admin permission on this repository "
            "(bots only when allow-listed), and a map `rally.yml` on the base branch.\n")
    return endpoint.upsert_comment(issue, marker, body)


def refuse_run(endpoint: GitHubEndpoint, issue: IssueNumber, run_id: str, error: RallyError) -> CommentId:
    """Say on the issue, in the run's own comment, why the run does not go on (its tasks, or
    what ``assess`` found): the problems quoted as ``tasks.refusal_comment`` writes them."""
    from rally_gh.tasks import refusal_comment

    marker = run_marker(run_id)
    return endpoint.upsert_comment(issue, marker, f"{marker}\n{refusal_comment(error)}")


def admit(endpoint: GitHubEndpoint, trigger: Trigger, bot_allowlist: Sequence[str] = (),
          run_id: str | None = None, triggering_actor: str | None = None) -> Decision:
    """``authorize``, and the refusal comment when it says no (for events that name an issue).

    ``triggering_actor``: who started this attempt (``GITHUB_TRIGGERING_ACTOR``). A re-run keeps
    the original event, sender included, but may be started by someone else: both are asked."""
    decision = authorize_attempt(trigger, endpoint, bot_allowlist, triggering_actor if trigger.starts_run else None)
    if not decision.allowed and trigger.kind != "ignored" and trigger.issue is not None:
        refuse(endpoint, trigger.issue, decision.reason, run_id=run_id)
    return decision


# --- Checks ----------------------------------------------------------------------


def _annotations(violations: Sequence[Violation]) -> list[Annotation]:
    """One annotation per violating file, however many commits touched it."""
    by_path: dict[str, list[Violation]] = {}
    for v in violations:
        by_path.setdefault(v.path, []).append(v)
    out = []
    for path, found in by_path.items():
        first = found[0]
        kinds = ", ".join(dict.fromkeys(v.kind for v in found))
        shas = list(dict.fromkeys((v.commit or "")[:10] for v in found))
        owner = f"owned by {first.owner}" if first.owner else "owned by no teammate"
        # The reasons enforce wrote say it best; a record from before they were kept has only kinds and owner.
        what = "; ".join(dict.fromkeys(v.reason for v in found if v.reason)) or f"{kinds} by {first.teammate}; {owner}"
        rule = f", rule at {first.rule}" if first.rule else ""
        out.append(Annotation(path=path, title=f"{first.teammate} wrote a file it does not own",
                              message=f"{what}{rule} ({noun_for(shas, 'commit')} {', '.join(shas)})"))
    return out


def _check_text(who: str, violations: Sequence[Violation]) -> tuple[CheckConclusion, str, str]:
    if not violations:
        return "success", f"{who}: every file written is owned", f"{who} wrote only what it owns."
    files = len({v.path for v in violations})
    title = f"{who}: {plural(files, 'file')} written outside its ownership"
    rows = ["| path | teammate | owner | kind | commit | reason | rule |", "|---|---|---|---|---|---|---|"]
    for v in violations:
        rule = f"`{_cell(str(v.rule))}`" if v.rule else "none"
        rows.append(f"| `{_cell(v.path)}` | {v.teammate} | {v.owner or 'nobody'} | {v.kind} | "
                    f"`{(v.commit or '')[:10]}` | {_cell(v.reason)} | {rule} |")
    return "failure", title, "\n".join(rows) + "\n"


def publish_checks(endpoint: GitHubEndpoint, state: RunState,
                   violations_by_teammate: Mapping[str, Sequence[Violation]] | None = None,
                   details_url: str | None = None) -> dict[str, CheckPublication]:
    """``rally-gh/ownership`` on each teammate head and on the integration head.

    ``violations_by_teammate`` defaults to what the run recorded. Once the
    token proves unable to write checks, the rest go straight to statuses.
    """
    found = violations_by_teammate if violations_by_teammate is not None else {
        t.name: t.violations for t in state.teammates}
    # A teammate that committed nothing has the commit it started from as its head: not its work to judge.
    targets: list[tuple[str, str, Sequence[Violation]]] = [
        (t.name, t.head_sha, found.get(t.name, ())) for t in state.teammates
        if t.head_sha and t.head_sha not in (t.start_sha, state.base_sha)]
    if state.integration_sha:
        integrated = [v for name in state.integrated for v in found.get(name, ())]
        targets.append(("integration", state.integration_sha, integrated))
    published: dict[str, CheckPublication] = {}
    statuses_only = False
    for who, sha, violations in targets:
        conclusion, title, summary = _check_text(who, violations)
        if statuses_only:
            endpoint.create_status(CommitSha(sha), _status_state(conclusion), OWNERSHIP_CHECK,
                                   _one_line(title, STATUS_DESCRIPTION_LIMIT), details_url)
            published[who] = CheckPublication("status", None, "the token cannot write checks")
            continue
        published[who] = publish_check(
            endpoint, OWNERSHIP_CHECK, CommitSha(sha), conclusion=conclusion, title=_one_line(title, 255),
            summary=summary, annotations=_annotations(violations), external_id=f"{state.run_id}:{who}",
            details_url=details_url)
        statuses_only = published[who].kind == "status"
    return published


def _status_state(conclusion: CheckConclusion) -> StatusState:
    return "success" if conclusion == "success" else "failure"


# --- Pull request ------------------------------------------------------------------


def pull_title(state: RunState, issue: Issue | None) -> str:
    """``rally: <issue title> (#N)``. A squash merge makes the title its commit's, whose closing keywords
    GitHub acts on: the issue author's ``Fixes #3`` must not close #3 (mentions there ping nobody)."""
    if issue is None:
        return _one_line(f"rally: {state.team}", TITLE_LIMIT)
    suffix = f" (#{issue.number})"
    title = _CLOSING.sub(lambda m: m.group(1) + _WORD_JOINER + (m.group(2) or ""), issue.title)
    return _one_line(f"rally: {title}", TITLE_LIMIT - len(suffix)) + suffix


def pull_body(state: RunState, issue: Issue | None, report_md: str, summary_url: str | None = None) -> str:
    """The report, defused, cut to GitHub's limit; ``Closes #N`` first, and only when complete."""
    head = f"Closes #{issue.number}\n\n" if issue is not None and _complete(state) else ""
    pointer = f"the [job summary]({summary_url})" if summary_url else "the job summary"
    return cut_body(head + defuse(report_md), pointer=pointer)


def _complete(state: RunState) -> bool:
    return bool(state.teammates) and all(t.outcome == "done" for t in state.teammates)


def open_pull(endpoint: GitHubEndpoint, state: RunState, issue: Issue | None, report_md: str,
              summary_url: str | None = None) -> PullRequest | None:
    """The run's one pull request (found again on a re-run), or None when nothing was integrated."""
    if not state.integration_sha or not state.integration_branch:
        return None
    draft = run_status(state) != "done"
    pull = endpoint.find_or_create_pull(state.integration_branch, state.base_ref, pull_title(state, issue),
                                        pull_body(state, issue, report_md, summary_url), draft)
    ensure_labels(endpoint, [PULL_LABEL])
    endpoint.add_labels(IssueNumber(pull.number), [PULL_LABEL])
    return pull


# --- End of a run ---------------------------------------------------------------------


def outcome_label(state: RunState) -> str | None:
    if state.dry_run or state.status == "planned":
        return None
    return OUTCOME_LABELS[run_status(state)]


def fail_run(endpoint: GitHubEndpoint, issue: IssueNumber, run_id: str, why: str, run_url: str | None) -> None:
    """A run that ends with nothing to publish (its agents' job failed, timed out or was
    cancelled before it left its results, or left results the publish job cannot use): the
    progress comment says so, with a link to the workflow run, and ``rally:running`` becomes
    ``rally:failed``, so the issue never stays "running"."""
    marker = run_marker(run_id)
    where = f"[the workflow run]({run_url})" if run_url else "the workflow run's log"
    endpoint.upsert_comment(issue, marker, f"{marker}\n## rally-gh run `{run_id}`: failed\n\n"
                                           f"Nothing was published: {defuse(_one_line(why, 1000))}\n\n"
                                           f"What happened is in {where}.\n")
    label = OUTCOME_LABELS["failed"]
    ensure_labels(endpoint, [label])
    endpoint.add_labels(issue, [label])
    _remove_labels(endpoint, issue, [RUNNING, *(other for other in OUTCOME_LABELS.values() if other != label)])


def finish(endpoint: GitHubEndpoint, issue: IssueNumber, run_id: str, state: RunState,
           pull: PullRequest | None = None, summary_url: str | None = None) -> str | None:
    """The last edit of the progress comment; ``rally:running`` becomes the outcome label."""
    progress(endpoint, issue, run_id, state, pull, summary_url)
    label = outcome_label(state)
    if label is not None:
        ensure_labels(endpoint, [label])
        endpoint.add_labels(issue, [label])
    _remove_labels(endpoint, issue, [RUNNING, *(other for other in OUTCOME_LABELS.values() if other != label)])
    return label


def write_step_summary(path: Path | None, report_md: str) -> bool:
    """Append the report to the step summary file (``ActionsContext.summary_file``); False outside Actions."""
    if path is None:
        return False
    text = report_md
    if len(text.encode("utf-8")) > STEP_SUMMARY_LIMIT:
        # Characters bound bytes from below: cut by characters until the bytes fit.
        room = STEP_SUMMARY_LIMIT // 4
        text = cut_body(text, pointer="`rally-gh report --format md` and the run folder", limit=room)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")
    return True


_OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_outputs(outputs: Mapping[str, str], delimiter: Callable[[], str] | None = None) -> str:
    """``$GITHUB_OUTPUT`` lines: ``name=value``, or the heredoc form for multi-line values.

    A heredoc's delimiter is random and checked against the value, so a value
    (a report holding untrusted text) can never end it early and set other outputs.
    """
    make = delimiter or (lambda: f"ghadelimiter_{secrets.token_hex(16)}")
    out = []
    for name, value in outputs.items():
        if not _OUTPUT_NAME.fullmatch(name):
            raise ValueError(f"not an output name: {name!r}")
        if "\n" not in value and "\r" not in value:
            out.append(f"{name}={value}\n")
            continue
        mark = make()
        if mark in value:
            raise ValueError(f"output {name}: its value contains the delimiter")
        out.append(f"{name}<<{mark}\n{value}\n{mark}\n")
    return "".join(out)


def write_outputs(path: Path | None, outputs: Mapping[str, str]) -> bool:
    """Append ``outputs`` to the step's outputs file (``ActionsContext.output_file``); False outside Actions."""
    if path is None:
        return False
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(format_outputs(outputs))
    return True


def run_outputs(report: Report, pull: PullRequest | None) -> dict[str, str]:
    from rally_gh.handoff import nexus_handoff

    status = "dry-run" if report.dry_run else report.status
    # For agent pipelines: the next step reads the _STEP_COMPLETE block or the handoff summary.
    return {"run-id": report.run_id, "status": status, "pr-number": str(pull.number) if pull else "",
            "pr-url": pull.url if pull else "", "report-json": json.dumps(report.as_json(), indent=2),
            "step-complete": step_complete_text(report), "handoff": nexus_handoff(report)}


def publish_run(endpoint: GitHubEndpoint, state: RunState, report: Report, trigger: Trigger,
                actions: ActionsContext) -> dict[str, str]:
    """Everything a finished run shows on GitHub, in the order a reader meets it; the step outputs.

    Checks first (the pull request shows them as soon as it exists), then the
    pull request, then the comment pointing at it and the outcome label.
    The branches must already be on GitHub (the run's publish step pushes them).
    """
    link = actions.job_url
    issue = endpoint.issue(trigger.issue) if trigger.issue is not None else None
    report_md = report_markdown(report)
    pull: PullRequest | None = None
    if not state.dry_run:
        publish_checks(endpoint, state, details_url=link)
        pull = open_pull(endpoint, state, issue, report_md, link)
    if issue is not None:
        finish(endpoint, issue.number, state.run_id, state, pull, link)
    write_step_summary(actions.summary_file, report_md)
    outputs = run_outputs(report, pull)
    write_outputs(actions.output_file, outputs)
    return outputs


def outputs_file_values(path: Path) -> dict[str, str]:
    """Read a ``$GITHUB_OUTPUT`` file back the way the runner does (for tests and the action's own checks)."""
    values: dict[str, str] = {}
    lines = iter(path.read_text(encoding="utf-8").split("\n"))
    for line in lines:
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, mark = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == mark:
                    break
                body.append(inner)
            else:
                raise ValueError(f"output {name}: no closing delimiter {mark}")
            values[name] = "\n".join(body)
        else:
            name, _, value = line.partition("=")
            values[name] = value
    return values
