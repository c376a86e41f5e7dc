"""Ownership enforcement: which writes of a commit range (or of the staged index)
a teammate was not allowed to make.

A write is anything git can record: an added, modified or deleted path (a rename
is both), a mode change, a symlink, a gitlink, a path that is hostile or that
collides with another by case or Unicode normalization. The map always comes
from a commit the teammate cannot have changed: the base of the range for
``check``, HEAD for the hook.
"""

from __future__ import annotations

import posixpath
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from rally_gh import git
from rally_gh.config import CONFIG_CANDIDATES, LoadedConfig, Location, load_config_text
from rally_gh.limits import TEAMMATE_NAME
from rally_gh.errors import GitError, UsageError
from rally_gh.fasthook import branch_teammate
from rally_gh.ownership.paths import hostile_reason, is_control_file
from rally_gh.ownership.rules import Ownership



# The names inside a directory ('' for the root) of the tree the writes produce.
NamesInDir = Callable[[str], list[str]]


def _location(value: object) -> object:
    """A rule location as records hold it, ``rally.yml@1a2b3c4d5e:12:5``, read back."""
    if isinstance(value, str):
        file, line, column = value.rsplit(":", 2)
        return Location(file, int(line), int(column))
    return value


# Written as check's JSON always wrote it: file:line:col.
_RuleLocation = Annotated[Location, BeforeValidator(_location), PlainSerializer(str, return_type=str)]


class Violation(BaseModel):
    """One write a teammate was not allowed to make: what, why, and the rule that owns the path.

    The one record of a violation, from ``check`` and the hook to a run's state,
    its report and its check runs: nothing on the way drops the reason or the rule.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    teammate: str
    path: str
    kind: str  # added | modified | deleted | mode | symlink | gitlink | control-file | hostile | collision
    owner: str | None  # the teammate that owns the path; None: nobody (or more than one)
    commit: str | None = None  # None for the staged index
    reason: str = ""  # a sentence for a person ("" in records written before it was kept)
    rule: _RuleLocation | None = None  # where the owner's pattern is written

    def message(self) -> str:
        where = f" in commit {git.short(self.commit)}" if self.commit else ""
        rule = f" (rule at {self.rule})" if self.rule else ""
        return f"{self.path}: {self.reason}{where}{rule}"


@dataclass(frozen=True)
class Start:
    """The commit a teammate's worktree started from, and how that was found."""

    sha: str
    source: str  # for a person: "from the run's records", "on the work of utils, replayed"


@dataclass(frozen=True)
class CheckResult:
    teammate: str
    commits_checked: int
    violations: tuple[Violation, ...]
    start: Start | None = None  # where the teammate's own commits begin, when not at the base

    @property
    def ok(self) -> bool:
        return not self.violations


# --- Reading the map from a commit ----------------------------------------


def map_at(repo: git.Repository, rev: str, config_path: str | None = None) -> LoadedConfig | None:
    """The map as committed at ``rev`` (None when that commit has none)."""
    candidates = (config_path,) if config_path else CONFIG_CANDIDATES
    for name in candidates:
        data = git.read_blob(repo, rev, name)
        if data is not None:
            return load_config_text(data, f"{name}@{git.short(git.resolve(repo, rev))}")
    return None


def require_map_at(repo: git.Repository, rev: str, config_path: str | None = None) -> LoadedConfig:
    loaded = map_at(repo, rev, config_path)
    if loaded is None:
        names = config_path or " or ".join(CONFIG_CANDIDATES)
        raise UsageError(
            f"no ownership map ({names}) in commit {git.short(git.resolve(repo, rev))}",
            hint="the map is read from the base commit so that no teammate can grant itself paths: "
            "commit rally.yml on the base branch first",
        )
    return loaded


def map_for_run(repo: git.Repository, config_path: str | None = None) -> tuple[LoadedConfig, str | None]:
    """The map a run obeys: as committed at the run's base commit, never the work
    tree (a teammate, or a pull request head, could otherwise grant itself paths).
    Returns it with a note when the work tree's copy differs (so it is not used)."""
    loaded = require_map_at(repo, "HEAD", config_path)
    base_ref = loaded.config.base or git.head_branch(repo) or "HEAD"
    base_sha = git.resolve(repo, base_ref)
    if base_sha != git.head_sha(repo):
        loaded = require_map_at(repo, base_sha, config_path)
    note = None
    name = config_path or next((n for n in CONFIG_CANDIDATES if git.read_blob(repo, base_sha, n) is not None), None)
    if name is not None and not git.is_bare(repo):
        on_disk = git.workdir(repo) / name
        if on_disk.is_file() and on_disk.read_bytes() != git.read_blob(repo, base_sha, name):
            note = (f"{name} has changes that are not committed on {base_ref}: the run uses the committed map "
                    "(commit the changes to use them)")
    return loaded, note


# --- Who is writing -------------------------------------------------------


def teammate_from_branch(branch: str | None, prefix: str) -> str | None:
    """``rally/<run>/<teammate>`` -> ``<teammate>``."""
    name = branch_teammate(branch, prefix)
    if name is None or not TEAMMATE_NAME.match(name):
        return None  # e.g. the integration branch <prefix>/<run>/_integration
    return name


def who_is_writing(
    repo: git.Repository,
    loaded: LoadedConfig,
    explicit: str | None,
    environ: Mapping[str, str],
    branch: str | None = None,
    *,
    pull_head: str | None = None,
) -> tuple[str | None, str]:
    """The teammate making the writes and where that came from.

    Order: the option, ``RALLY_TEAMMATE``, the branch name (``branch``, else the checked-out
    one, else ``pull_head``: a pull request's checkout in CI is detached), ``git config rally.teammate``.
    """
    prefix = loaded.config.branch_prefix
    head_branch = branch if branch is not None else (git.head_branch(repo) or pull_head)
    sources: list[tuple[str | None, str]] = [
        (explicit, "--teammate"),
        (environ.get("RALLY_TEAMMATE") or None, "RALLY_TEAMMATE"),
        (teammate_from_branch(head_branch, prefix), f"branch {head_branch}"),
        (git.config_value(repo, "rally.teammate"), "git config rally.teammate"),
    ]
    for name, source in sources:
        if name:
            names = [t.name for t in loaded.config.teammates]
            if name not in names:
                raise UsageError(
                    f"{source} names teammate {name!r}, which {loaded.source.file} does not list",
                    hint="teammates are: " + ", ".join(names),
                )
            return name, source
    return None, "nobody"


# --- The rules ------------------------------------------------------------


def _owner_sentence(ownership: Ownership, path: str) -> tuple[str | None, str]:
    owners = ownership.owners_of(path)
    if len(owners) == 1:
        return owners[0], f"owned by {owners[0]}"
    if len(owners) > 1:
        return None, f"claimed by {' and '.join(owners)} (an overlap: nobody may write it)"
    if is_control_file(path):
        return None, "a control file: only a teammate whose exclusive_write names it literally may write it"
    return None, "owned by nobody"


_VERB = {"added": "added", "modified": "modified", "deleted": "deleted", "typechange": "changed the type of"}


def _rule_location(loaded: LoadedConfig, ownership: Ownership, owner: str | None, path: str) -> Location | None:
    if owner is None:
        return None
    index = ownership.rule_of(owner, path)
    if index is None:
        return None
    position = next(i for i, t in enumerate(loaded.config.teammates) if t.name == owner)
    return loaded.locate("teammates", position, "exclusive_write", index)


def _link_target_outside(repo: git.Repository, ownership: Ownership, teammate: str,
                         path: str, blob_id: str) -> str | None:
    """Why a symlink at ``path`` points somewhere the teammate does not own, or None."""
    raw = git.blob_text(repo, blob_id)
    try:
        target = raw.decode()
    except UnicodeDecodeError:
        return "a symlink whose target is not valid UTF-8"
    if target.startswith("/"):
        return f"a symlink to an absolute path ({target!r})"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        return f"a symlink that escapes the repository ({target!r})"
    if ownership.owner_of(resolved) != teammate:
        return f"a symlink to {resolved}, which {teammate} does not own"
    return None


def violations_in(
    repo: git.Repository,
    changes: Sequence[git.Change],
    teammate: str,
    loaded: LoadedConfig,
    ownership: Ownership,
    commit: str | None,
    names_in_dir: NamesInDir,
) -> list[Violation]:
    """Every write in ``changes`` that ``teammate`` may not make."""
    out: list[Violation] = []

    def add(change: git.Change, kind: str, reason: str, owner: str | None = None) -> None:
        out.append(Violation(teammate=teammate, path=change.path, kind=kind, owner=owner, commit=commit,
                             reason=reason, rule=_rule_location(loaded, ownership, owner, change.path)))

    for change in changes:
        path = change.path
        bad = hostile_reason(path)
        if bad is not None:
            add(change, "hostile", f"a hostile path ({bad}): refused whoever owns it")
            continue
        owner, sentence = _owner_sentence(ownership, path)
        if owner != teammate:
            kind = "control-file" if is_control_file(path) and owner is None else (
                "mode" if change.mode_changed else change.status)
            verb = "changed the mode of" if change.mode_changed else _VERB.get(change.status, change.status)
            add(change, kind, f"{teammate} {verb} it, but it is {sentence}", owner)
            continue
        if change.new_mode == git.MODE_GITLINK and ownership.owner_of(".gitmodules") != teammate:
            add(change, "gitlink",
                f"{teammate} added a submodule (gitlink); only a teammate that owns .gitmodules literally may", owner)
        elif change.new_mode == git.MODE_LINK and change.new_id is not None:
            why = _link_target_outside(repo, ownership, teammate, path, change.new_id)
            if why is not None:
                add(change, "symlink", f"{teammate} wrote {why}", owner)
    out.extend(_collisions(changes, teammate, commit, names_in_dir))
    return out


def _staged_names(repo: git.Repository, changes: Sequence[git.Change]) -> NamesInDir:
    """Names the index would commit: HEAD's tree plus what is staged, less deleted
    files (reading the whole index per directory would cost O(index) per path)."""
    in_head = git.entry_names_at(repo, git.head_sha(repo))
    added: dict[str, set[str]] = {}
    deleted: dict[str, set[str]] = {}
    for change in changes:
        parts = change.path.split("/")
        if change.status == "deleted":
            deleted.setdefault("/".join(parts[:-1]), set()).add(parts[-1])
            continue
        for depth in range(len(parts)):
            added.setdefault("/".join(parts[:depth]), set()).add(parts[depth])

    def names(directory: str) -> list[str]:
        found = set(in_head(directory))
        found -= deleted.get(directory, set())
        return sorted(found | added.get(directory, set()))

    return names


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _collisions(changes: Sequence[git.Change], teammate: str, commit: str | None,
                names_in_dir: NamesInDir) -> list[Violation]:
    """Added paths that another entry of the same directory equals on a
    case-insensitive or normalizing filesystem (macOS, Windows)."""
    out = []
    seen: set[str] = set()
    for change in changes:
        if change.status != "added" or hostile_reason(change.path):
            continue
        parts = change.path.split("/")
        for depth in range(len(parts)):
            directory, name = "/".join(parts[:depth]), parts[depth]
            key = f"{directory}/{name}"
            if key in seen:
                continue
            seen.add(key)
            others = [n for n in names_in_dir(directory) if n != name and _fold(n) == _fold(name)]
            if others:
                other = f"{directory}/{others[0]}" if directory else others[0]
                same_nfc = unicodedata.normalize("NFC", others[0]) == unicodedata.normalize("NFC", name)
                how = "Unicode normalization" if same_nfc else "case"
                out.append(Violation(
                    teammate=teammate, path=change.path, kind="collision", owner=None, commit=commit,
                    reason=f"collides with {other} by {how}: they would be one file on macOS and Windows"))
                break
    return out


# --- Entry points ----------------------------------------------------------


def check_commits(repo: git.Repository, loaded: LoadedConfig, teammate: str,
                  base: str | None, head: str, start: Start | None = None) -> CheckResult:
    """Violations in every commit reachable from ``head`` and not from ``base``
    (nor from ``start``, where the teammate's own commits begin)."""
    ownership = Ownership.from_config(loaded.config)
    commits = git.commits_between(repo, base, head, also_hide=(start.sha,) if start is not None else ())
    violations: list[Violation] = []
    cache = git.new_tree_cache()
    for sha in commits:
        changes = git.commit_changes(repo, sha, cache)
        names = git.entry_names_at(repo, sha)
        violations.extend(violations_in(repo, changes, teammate, loaded, ownership, sha, names))
    return CheckResult(teammate, len(commits), tuple(violations), start)


def check_staged(repo: git.Repository, loaded: LoadedConfig, teammate: str,
                 index_file: str | None = None) -> CheckResult:
    """Violations in what committing the index now would write. ``index_file``:
    the index git names to its hooks in GIT_INDEX_FILE (see git.StagedIndex)."""
    ownership = Ownership.from_config(loaded.config)
    changes = git.staged_changes(repo, index_file)
    violations = violations_in(repo, changes, teammate, loaded, ownership, None, _staged_names(repo, changes))
    return CheckResult(teammate, 0, tuple(violations))


def teammate_start(repo: git.Repository, loaded: LoadedConfig, teammate: str, branch: str | None,
                   base: str, head: str) -> Start | None:
    """Where ``teammate``'s own commits begin on ``branch`` (``<prefix>/<run>/<teammate>``),
    when that is after ``base``: a teammate with ``blocked_by`` starts from an
    integration tip that already holds its blockers' work, and those commits
    are theirs, not its own.

    1. The run's records (``<git common dir>/rally/runs/<run>/run.json``), where
       the run happened.
    2. Elsewhere (CI, where only refs are fetched): the commits from ``base`` up
       that replay a blocker's commit, each the same change with the same
       author, date and message as one on the blocker's branch
       ``<prefix>/<run>/<blocker>`` (local or remote-tracking). A teammate cannot
       hide its own writes this way: only a change its blocker really made counts.
    """
    run = _run_of(branch, loaded.config.branch_prefix, teammate)
    if run is None or not loaded.config.teammate(teammate).blocked_by:
        return None
    recorded = _recorded_start(repo, run, teammate)
    # The base may have moved since the teammate started (a commit landed on main during
    # the run): its start need not descend from the base, only lead to the head.
    if recorded is not None and recorded != base and git.is_ancestor(repo, recorded, head):
        return Start(recorded, "from the run's records")
    return _replayed_start(repo, loaded, teammate, run, base, head)


def _run_of(branch: str | None, prefix: str, teammate: str) -> str | None:
    if not branch:
        return None
    parts = branch.removeprefix("refs/heads/").split("/")
    head_parts = prefix.split("/")
    if parts[:len(head_parts)] != head_parts or len(parts) != len(head_parts) + 2 or parts[-1] != teammate:
        return None
    return parts[-2]


def _recorded_start(repo: git.Repository, run: str, teammate: str) -> str | None:
    from rally_gh.errors import RallyError
    from rally_gh.state import load_state

    try:
        state = load_state(git.common_dir(repo), run)
        start = state.teammate(teammate).start_sha
    except (RallyError, KeyError, ValueError):
        return None
    return start if start and git.object_exists(repo, start) else None


def _replayed_start(repo: git.Repository, loaded: LoadedConfig, teammate: str, run: str,
                    base: str, head: str) -> Start | None:
    from rally_gh.plan import blockers_closure

    prefix = loaded.config.branch_prefix
    cache = git.new_tree_cache()
    theirs: dict[tuple[object, ...], str] = {}
    for blocker in blockers_closure(loaded.config, teammate):
        tip = git.branch_tip(repo, f"{prefix}/{run}/{blocker}")
        if tip is None:
            continue
        for sha in git.commits_between(repo, base, tip):
            theirs.setdefault(git.replay_key(repo, sha, cache), blocker)
    start: str | None = None
    whose: list[str] = []
    for commit in git.commit_summaries(repo, base, head):
        parent = commit.parents[0] if len(commit.parents) == 1 else None
        owner = theirs.get(git.replay_key(repo, commit.sha, cache))
        follows = parent == start if start is not None else parent is not None and git.is_ancestor(repo, parent, base)
        if owner is None or not follows:
            break  # the teammate's own work begins here
        start = commit.sha
        if owner not in whose:
            whose.append(owner)
    if start is None:
        return None
    return Start(start, "on the work of " + ", ".join(whose) + ", replayed")


def default_base(repo: git.Repository, head: str, pull_base: str | None = None) -> str:
    """The commit a range check starts from when --base is not given: the merge
    base of ``head`` with the base branch (``pull_base``, the pull request's base
    in CI, else the remote's default branch, else main or master)."""
    candidates: list[str] = []
    if pull_base:
        candidates += [f"origin/{pull_base}", pull_base]
    candidates += ["origin/HEAD", "origin/main", "main", "origin/master", "master"]
    for name in candidates:
        try:
            git.resolve(repo, name)
        except GitError:
            continue
        found = git.merge_base(repo, name, head)
        if found is not None:
            return found
    raise UsageError(
        "cannot tell which commits to check: no base branch found (tried "
        + ", ".join(candidates) + ")",
        hint="pass --base REV (in CI, fetch the base branch: actions/checkout with fetch-depth: 0)",
    )



# --- Rendering --------------------------------------------------------------


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(result: CheckResult, fmt: str) -> str:
    """The result as text for people, JSON for machines, or GitHub workflow commands."""
    if fmt == "json":
        import json

        return json.dumps({
            "teammate": result.teammate,
            "ok": result.ok,
            "commits_checked": result.commits_checked,
            "start": None if result.start is None else {"sha": result.start.sha, "source": result.start.source},
            "violations": [v.model_dump(mode="json") for v in result.violations],
        }, indent=2) + "\n"
    if fmt == "github":
        lines = [
            f"::error file={_escape_property(v.path)},title={_escape_property('rally-gh ownership: ' + v.kind)}"
            f"::{_escape_data(v.message())}"
            for v in result.violations
        ]
        lines.append(f"::notice title=rally-gh ownership::{_escape_data(_summary(result))}")
        return "\n".join(lines) + "\n"
    lines = [f"  {v.message()}" for v in result.violations]
    return "\n".join([_summary(result), *lines]) + "\n"


def _summary(result: CheckResult) -> str:
    n = result.commits_checked
    scope = f"{n} commit{'s' * (n != 1)}" if n or result.start is not None else "the staged changes"
    if result.start is not None:
        scope += f" after {git.short(result.start.sha)}, where it started ({result.start.source})"
    if result.ok:
        return f"rally-gh: {result.teammate} wrote only what it owns ({scope} checked)"
    n = len(result.violations)
    return f"rally-gh: {result.teammate} wrote {n} path{'s' * (n != 1)} it does not own ({scope} checked):"
