"""Run history: one record per run, kept in git under ``refs/rally/history``.

The ref points at a commit chain whose tree holds one small JSON file per run,
``runs/<yyyy>/<mm>/<run-id>.json``, and a marker file saying what the tree is.
A file per run rather than one growing JSON-lines blob: an append writes one
blob and three small trees, whatever the length of the history, and two
histories fetched from different CI runners merge without a conflict. Nothing
here touches the work tree or the index; the ref moves by compare-and-swap, so
concurrent appends retry on the new tip instead of losing each other's record.

A ref we did not write (a foreign tool's, or damaged) is never overwritten:
reading it says what it is and how to move it aside. A single unreadable
record is skipped with a warning; appends keep it in the tree untouched.

From the history, ``suggestions`` proposes changes to ``max_parallel``,
timeouts and budgets, each with the runs that support it, and
``apply_suggestion`` writes one into ``rally.yml`` keeping its comments and layout.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rally_gh import git
from rally_gh.config import Config, KeyPath, format_duration, format_key_path, load_config_text, stop_words
from rally_gh.limits import MAX_PARALLEL_PLAIN
from rally_gh.errors import ConfigError, GitError, RallyError
from rally_gh.plan import waves as plan_waves
from rally_gh.report import Report
from rally_gh.state import check_ref_component

HISTORY_REF = "refs/rally/history"
history_refspec = HISTORY_REF  # what the orchestrator fetches and pushes: `git push origin refs/rally/history`
RUNS_DIR = "runs"
MARKER_FILE = "rally-history.json"
FORMAT_NAME = "rally-gh run history"
FORMAT_VERSION = 1
MIN_RUNS_FOR_SUGGESTIONS = 3
RECENT_RUNS = 10  # suggestions weigh the latest runs: older ones ran under an older map
CAS_ATTEMPTS = 50


class HistoryError(GitError):
    """The history ref holds something we cannot read or must not overwrite."""


# --- Records -------------------------------------------------------------------


class _Model(BaseModel):
    # Records written by a newer rally-gh may have more fields: an older one still reads them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class TeammateRun(_Model):
    name: str
    outcome: str
    duration_s: float = 0.0
    timeout_s: float = 0.0  # the expected duration it had; it was stopped at twice this
    cost_usd: float = 0.0
    attempts: int = 0
    reason: str = ""


class Record(_Model):
    """One run, as the trend and the suggestions need it."""

    version: int = FORMAT_VERSION
    run_id: str
    team: str
    recorded_at: float  # epoch seconds
    status: str  # done | partial | failed
    size: int  # teammates that ran
    waves: tuple[tuple[str, ...], ...] = ()
    max_parallel: int = 1
    wall_s: float = 0.0
    cost_usd: float = 0.0
    budget_cost_usd: float | None = None
    budget_minutes: float | None = None
    conflicts: int = 0
    violations: int = 0
    tes: int = 0
    tes_parts: dict[str, float] = {}
    teammates: tuple[TeammateRun, ...] = ()

    @property
    def widest_wave(self) -> int:
        return max((len(w) for w in self.waves), default=self.size)


def record_of_run(report: Report, config: Config, recorded_at: float) -> Record:
    """The history record of a finished run: outcomes and score from its report,
    the settings it ran under from the map."""
    known = {t.name for t in config.teammates}

    def timeout_of(name: str) -> float:
        return config.timeout_of(config.teammate(name)) if name in known else config.defaults.timeout

    return Record(
        run_id=check_ref_component(report.run_id, "run id"),  # it names a file of the history tree
        team=report.team or config.team,
        recorded_at=recorded_at,
        status=report.status,
        size=len(report.teammates),
        waves=tuple(tuple(w) for w in plan_waves(config, [t.name for t in report.teammates if t.name in known])),
        max_parallel=config.max_parallel,
        wall_s=report.wall_s,
        cost_usd=round(report.cost_usd, 4),
        budget_cost_usd=config.budget.max_cost_usd,
        budget_minutes=config.budget.max_minutes,
        conflicts=len(report.conflicts),
        violations=len(report.violations),
        tes=report.tes,
        tes_parts=dict(report.tes_parts),
        teammates=tuple(
            TeammateRun(name=t.name, outcome=t.outcome, duration_s=t.duration_s, timeout_s=timeout_of(t.name),
                        cost_usd=t.cost_usd, attempts=t.attempts, reason=t.reason[:300])
            for t in report.teammates
        ),
    )


def record_path(record: Record) -> str:
    """Where a record lives in the history tree. A run recorded again (a resumed
    run) replaces its earlier record rather than counting twice."""
    when = datetime.fromtimestamp(record.recorded_at, tz=timezone.utc)
    # Run ids are checked ref components (rally_gh.state), safe as a file name.
    return f"{RUNS_DIR}/{when:%Y}/{when:%m}/{record.run_id}.json"


def _record_bytes(record: Record) -> bytes:
    return (json.dumps(record.model_dump(mode="json"), sort_keys=True, separators=(",", ":")) + "\n").encode()


# --- Reading -------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    records: tuple[Record, ...]  # oldest first
    unreadable: tuple[tuple[str, str], ...] = ()  # (path in the history tree, why)
    tip: git.Sha | None = None


def read_history(repo: git.Repository) -> History:
    """Every readable record, oldest first, and the paths of those that are not."""
    tip = _tip(repo)
    if tip is None:
        return History(())
    records: list[Record] = []
    unreadable: list[tuple[str, str]] = []
    for path, data in git.blobs_under(repo, tip, RUNS_DIR):
        if not path.endswith(".json"):
            continue
        try:
            records.append(Record.model_validate_json(data))
        except ValidationError as err:
            first = err.errors()[0]
            where = format_key_path(tuple(p for p in first["loc"] if isinstance(p, (str, int))))
            unreadable.append((path, f"{where + ': ' if where else ''}{first['msg']}"))
    records.sort(key=lambda r: (r.recorded_at, r.run_id))
    return History(tuple(records), tuple(unreadable), tip)


def load_history(repo: git.Repository) -> list[Record]:
    """The records, oldest first (``read_history`` also says which were skipped)."""
    return list(read_history(repo).records)


def _tip(repo: git.Repository) -> git.Sha | None:
    """The history's tip commit, or None when there is no history yet.
    Refuses a ref that is not a history this version of rally-gh wrote."""
    target = git.ref_target(repo, HISTORY_REF)
    if target is None:
        return None
    if target.kind != "commit":
        what = "an object missing from the repository" if target.kind == "missing" else f"a {target.kind}"
        raise _foreign(target.sha, what)
    marker = git.read_blob(repo, target.sha, MARKER_FILE)
    try:
        found = json.loads(marker) if marker is not None else None
    except ValueError:
        found = None
    if not isinstance(found, dict) or found.get("format") != FORMAT_NAME:
        raise _foreign(target.sha, "a commit whose tree is not a rally-gh history (no " + MARKER_FILE + ")")
    version = found.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise HistoryError(
            f"{HISTORY_REF} was written by a newer rally-gh (history format {version!r}, this one reads "
            f"{FORMAT_VERSION}); nothing was read or written",
            hint="upgrade rally-gh (pip install -U rally-gh)",
        )
    return target.sha


def _foreign(sha: str, what: str) -> HistoryError:
    return HistoryError(
        f"{HISTORY_REF} points at {sha[:10]}, {what}; rally-gh neither reads nor overwrites it, so nothing "
        "in it is lost",
        hint=(f"keep it under another name and start a new history: `git update-ref refs/rally/history-old {sha}` "
              f"then `git update-ref -d {HISTORY_REF}`"),
    )


# --- Appending -------------------------------------------------------------------


def append_record(repo: git.Repository, record: Record, *, who: git.Identity = git.RALLY_COMMITTER) -> git.Sha:
    """Add (or replace, for the same run id and month) one record; the new tip."""
    return append_records(repo, [record], who=who)


def append_records(repo: git.Repository, records: Sequence[Record], *,
                   who: git.Identity = git.RALLY_COMMITTER) -> git.Sha:
    """Add several records in one commit (an import, a backfill); the new tip.

    Compare-and-swap on the ref: when another process appended meanwhile, the
    commit is rebuilt on its tip and tried again, after a short random pause so
    that racing writers spread out."""
    if not records:
        raise ValueError("append_records needs at least one record")
    files = {record_path(r): _record_bytes(r) for r in records}
    files[MARKER_FILE] = (json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}) + "\n").encode()
    title = (f"rally-gh history: {records[0].run_id} ({records[0].status}, score {records[0].tes})"
             if len(records) == 1 else f"rally-gh history: {len(records)} runs")
    for attempt in range(CAS_ATTEMPTS):
        tip = _tip(repo)
        new = git.commit_with_files(repo, tip, files, title, who)
        if git.update_ref_if(repo, HISTORY_REF, new, tip):
            return new
        time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
    raise HistoryError(
        f"{HISTORY_REF} kept moving while rally-gh appended to it ({CAS_ATTEMPTS} attempts); the record was not "
        "written",
        hint="another process is writing the history in a loop; stop it and run again",
    )


def record_run(repo: git.Repository, report: Report, config: Config,
               clock: Callable[[], float] = time.time) -> Record | None:
    """Append the record of a finished run; None for a dry run (it ran nothing to learn from)."""
    if report.dry_run:
        return None
    record = record_of_run(report, config, clock())
    append_record(repo, record)
    return record


# --- Sharing the history through a remote ------------------------------------------
#
# CI runners start from fresh clones, so a run appends to the remote's history:
# fetch it, append, push it as a fast-forward. Two runs racing: the loser
# fetches again and appends its record on top (a run's record replaces its own).


def fetch_history(repo: git.Repository, remote: git.Remote) -> git.Sha | None:
    """Make the local history at least the remote's; the remote's tip (None: it has none)."""
    theirs = git.remote_ref_shas(git.workdir(repo), remote, [HISTORY_REF])[HISTORY_REF]
    if theirs is None:
        return None
    ours = _tip(repo)
    if ours is None or (ours != theirs and git.is_ancestor(repo, ours, theirs)):
        git.update_ref_if(repo, HISTORY_REF, theirs, ours)
    return theirs


def share_record(repo: git.Repository, record: Record, remote: git.Remote, attempts: int = 3) -> None:
    """Append ``record`` to the remote's history (fast-forward pushes only)."""
    for _ in range(attempts):
        theirs = fetch_history(repo, remote)
        ours = _tip(repo)
        if ours is None or (theirs is not None and not git.is_ancestor(repo, theirs, ours)):
            # Diverged (or nothing here): start again from the remote's history.
            if theirs is not None:
                git.update_ref_if(repo, HISTORY_REF, theirs, ours)
            append_record(repo, record)
        elif git.read_blob(repo, ours, record_path(record)) is None:
            append_record(repo, record)
        tip = _tip(repo)
        assert tip is not None
        (pushed,) = git.push_refs(git.workdir(repo), remote,
                                  [git.RefPush(HISTORY_REF, tip, expected_old=theirs, lease=True)])
        if pushed.ok:
            return
    raise HistoryError(f"{HISTORY_REF}: the push to {remote} was refused {attempts} times (other runs raced us)",
                       hint="the record is kept in the local history; it is shared with the next run")


# --- Suggestions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    """One change to ``rally.yml``, with the runs that support it."""

    key_path: KeyPath  # where it goes, e.g. ("teammates", 1, "timeout")
    value: int | float | str  # as it is written in rally.yml
    current: str  # what is in effect now, as a person reads it
    why: str
    evidence: tuple[str, ...]

    @property
    def setting(self) -> str:
        return format_key_path(self.key_path)


def suggestions(records: Sequence[Record], config: Config) -> list[Suggestion]:
    """Changes worth making to the map, from this team's latest runs; none before three runs."""
    runs = [r for r in records if r.team == config.team][-RECENT_RUNS:]
    if len(runs) < MIN_RUNS_FOR_SUGGESTIONS:
        return []
    return [*_timeouts(runs, config), *_parallelism(runs, config), *_budgets(runs, config)]


def _timeouts(runs: Sequence[Record], config: Config) -> list[Suggestion]:
    out: list[Suggestion] = []
    for position, teammate in enumerate(config.teammates):
        timeout = config.timeout_of(teammate)
        seen = [(r, t) for r in runs for t in r.teammates if t.name == teammate.name and t.attempts > 0]
        timed_out = [(r, t) for r, t in seen if t.outcome == "timed_out"]
        key: KeyPath = ("teammates", position, "timeout")
        # A timeout is the expected duration and the agent is stopped at twice it: durations are
        # compared with the expected duration, stops with the stop, and a suggestion says both.
        if len(timed_out) >= 2:
            # It ran up to its stop every time: at least that long is to be expected.
            proposed = _round_duration(timeout * 2)
            out.append(Suggestion(
                key, format_duration(proposed), format_duration(timeout),
                f"{teammate.name} was stopped at {format_duration(2 * timeout)} (twice its expected "
                f"{format_duration(timeout)}) in {len(timed_out)} of its last {len(seen)} runs: raise its timeout "
                f"to {format_duration(proposed)} ({stop_words(proposed)}), or split its task",
                tuple(f"{r.run_id}: timed out, {stop_words(t.timeout_s)}" for r, t in timed_out)))
            continue
        finished = [(r, t) for r, t in seen if t.outcome not in ("timed_out", "skipped")]
        if len(finished) < MIN_RUNS_FOR_SUGGESTIONS or len(finished) < len(seen):
            continue
        longest = max(t.duration_s for _, t in finished)
        # The longest run seen is what to expect; the stop at twice it is the margin.
        proposed = _round_duration(max(longest, 60.0))
        if longest < timeout / 4 and proposed < timeout:
            out.append(Suggestion(
                key, format_duration(proposed), format_duration(timeout),
                f"{teammate.name} finished every one of its last {len(finished)} runs within "
                f"{format_duration(longest)}, a fraction of its expected {format_duration(timeout)}: lower its "
                f"timeout to {format_duration(proposed)} ({stop_words(proposed)}) so that a stuck agent is "
                "stopped sooner",
                tuple(f"{r.run_id}: {t.outcome} in {format_duration(t.duration_s)} (expected "
                      f"{format_duration(t.timeout_s)})" for r, t in finished)))
    return out


def _parallelism(runs: Sequence[Record], config: Config) -> list[Suggestion]:
    current = config.max_parallel
    widest = max(r.widest_wave for r in runs)
    key: KeyPath = ("max_parallel",)
    queued = [r for r in runs if r.widest_wave > r.max_parallel]
    calm = all(r.conflicts == 0 and r.violations == 0 for r in queued)
    limit = MAX_PARALLEL_PLAIN + (1 if config.allow_large_team else 0)
    if len(queued) * 2 >= len(runs) and calm and current < min(widest, limit):
        proposed = min(widest, limit)
        return [Suggestion(
            key, proposed, str(current),
            f"in {len(queued)} of the last {len(runs)} runs more teammates were ready than max_parallel "
            f"({current}) lets start, without a conflict or violation among them: raise it to {proposed}",
            tuple(f"{r.run_id}: a wave of {r.widest_wave} with max_parallel {r.max_parallel}, wall "
                  f"{format_duration(r.wall_s)}" for r in queued))]
    if current > widest and all(r.max_parallel == current for r in runs):
        return [Suggestion(
            key, widest, str(current),
            f"no run used more than {widest} slots of max_parallel {current} (the widest wave): lower it to "
            f"{widest}, which says what the team really runs and holds fewer runners",
            tuple(f"{r.run_id}: widest wave {r.widest_wave}" for r in runs))]
    return []


def _budgets(runs: Sequence[Record], config: Config) -> list[Suggestion]:
    out: list[Suggestion] = []
    budget = config.budget
    # The runner's reasons: "budget: $25.00 spent of $25.00", "budget: 91.0 of 90 minutes spent".
    spent = [r for r in runs if _skipped_for(r, "budget: $")]
    out_of_time = [r for r in runs if _skipped_for(r, "minutes spent")]
    costliest = max(r.cost_usd for r in runs)
    longest = max(r.wall_s for r in runs)
    if budget.max_cost_usd is not None and spent:
        proposed = _round_money(max(costliest, budget.max_cost_usd) * 1.5)
        out.append(Suggestion(
            ("budget", "max_cost_usd"), proposed, f"{budget.max_cost_usd:g}",
            f"the budget stopped teammates from starting in {len(spent)} of the last {len(runs)} runs: raise "
            f"max_cost_usd to {proposed:g}, or run fewer teammates",
            tuple(f"{r.run_id}: {sum(t.outcome == 'skipped' for t in r.teammates)} skipped, ${r.cost_usd:.2f} spent"
                  for r in spent)))
    elif budget.max_cost_usd is not None and costliest > 0 and costliest < budget.max_cost_usd * 0.3:
        proposed = _round_money(costliest * 2)
        out.append(Suggestion(
            ("budget", "max_cost_usd"), proposed, f"{budget.max_cost_usd:g}",
            f"no run cost more than ${costliest:.2f}, under a third of max_cost_usd ${budget.max_cost_usd:g}: "
            f"lower it to {proposed:g} so that a runaway agent is stopped sooner",
            tuple(f"{r.run_id}: ${r.cost_usd:.2f}" for r in runs)))
    elif budget.max_cost_usd is None and costliest > 0:
        proposed = _round_money(costliest * 2)
        out.append(Suggestion(
            ("budget", "max_cost_usd"), proposed, "none",
            f"runs have no cost budget and cost up to ${costliest:.2f}: set max_cost_usd to {proposed:g} "
            "so that a runaway agent cannot spend without limit",
            tuple(f"{r.run_id}: ${r.cost_usd:.2f}" for r in runs)))
    if budget.max_minutes is not None and out_of_time:
        proposed_minutes = max(10, math.ceil(max(longest / 60, budget.max_minutes) * 1.5 / 5) * 5)
        out.append(Suggestion(
            ("budget", "max_minutes"), proposed_minutes, f"{budget.max_minutes:g}",
            f"time ran out before every teammate could start in {len(out_of_time)} of the last {len(runs)} runs: "
            f"raise max_minutes to {proposed_minutes}, or run fewer teammates",
            tuple(f"{r.run_id}: {sum(t.outcome == 'skipped' for t in r.teammates)} skipped, wall "
                  f"{format_duration(r.wall_s)}" for r in out_of_time)))
    elif budget.max_minutes is not None and 0 < longest < budget.max_minutes * 60 * 0.3 \
            and max(10, math.ceil(longest * 2 / 60 / 5) * 5) < budget.max_minutes:
        proposed_minutes = max(10, math.ceil(longest * 2 / 60 / 5) * 5)  # never below 10 minutes
        out.append(Suggestion(
            ("budget", "max_minutes"), proposed_minutes, f"{budget.max_minutes:g}",
            f"no run took more than {format_duration(longest)}, under a third of max_minutes "
            f"{budget.max_minutes:g}: lower it to {proposed_minutes}",
            tuple(f"{r.run_id}: wall {format_duration(r.wall_s)}" for r in runs)))
    return out


def _put(mapping: Any, key: str, value: Any) -> Any:
    """Set ``key``; a new top-level key goes before ``teammates``, where a person would write it."""
    if key not in mapping and "teammates" in mapping:
        mapping.insert(list(mapping).index("teammates"), key, value)
    else:
        mapping[key] = value
    return mapping[key]


def _skipped_for(record: Record, reason: str) -> bool:
    return any(t.outcome == "skipped" and reason in t.reason for t in record.teammates)


def _round_duration(seconds: float) -> float:
    """Up to a whole minute, to five minutes past ten minutes: a timeout a person would write."""
    step = 300 if seconds > 600 else 60
    return float(max(step, math.ceil(seconds / step) * step))


def _round_money(amount: float) -> float:
    step = 5.0 if amount > 20 else 1.0
    return max(step, math.ceil(amount / step) * step)


# --- Writing a suggestion into rally.yml -----------------------------------------------


def apply_suggestion(config_path: Path, suggestion: Suggestion) -> str:
    """Write one suggestion into the map, keeping its comments, quotes, order and
    indentation (ruamel.yaml round trip); returns the new text. The result is
    validated before the file is replaced, atomically."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.compat import StringIO
    from ruamel.yaml.util import load_yaml_guess_indent

    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{config_path}: cannot read the map: {err.strerror or err}") from None
    _, indent, block_seq_indent = load_yaml_guess_indent(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long task
    # The guess gives the indent of a list item's content and of its dash; a
    # mapping is indented by the difference (2 in `  - name:` under 4).
    sequence = indent or 2
    offset = block_seq_indent or 0
    yaml.indent(mapping=max(1, sequence - offset), sequence=sequence, offset=offset)
    data = yaml.load(text)
    here: Any = data
    value = suggestion.value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 40, not 40.0
    try:
        for part in suggestion.key_path[:-1]:
            if isinstance(part, int):
                here = here[part]
            elif here.get(part) is None:
                here = _put(here, part, CommentedMap())
            else:
                here = here[part]
        last = suggestion.key_path[-1]
        if not isinstance(here, dict) or isinstance(last, int):
            raise TypeError(last)
    except (KeyError, IndexError, TypeError, AttributeError):
        raise RallyError(f"{config_path}: {suggestion.setting}: the map has changed shape since the suggestion "
                         "was made", hint="run `rally-gh history` again and pick the suggestion anew") from None
    _put(here, last, value)
    out = StringIO()
    yaml.dump(data, out)
    new_text = out.getvalue()
    if text.startswith("---") and not new_text.startswith("---"):
        new_text = "---\n" + new_text
    load_config_text(new_text, str(config_path))  # never write a map that does not load
    fd, tmp = tempfile.mkstemp(prefix=".rally-", suffix=".yml.tmp", dir=config_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        os.chmod(tmp, config_path.stat().st_mode & 0o7777)  # mkstemp makes it 0600
        os.replace(tmp, config_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return new_text
