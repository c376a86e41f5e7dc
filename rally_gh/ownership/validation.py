"""Everything ``validate`` says about a map that loaded: overlaps, control-file
grants, a branch prefix that existing branches make unusable, patterns that
match no tracked file, tracked files nobody owns."""

from __future__ import annotations

from collections.abc import Sequence

from rally_gh.config import LoadedConfig, Problem
from rally_gh.ownership.globs import GlobSet, compile_glob, is_literal
from rally_gh.limits import MAX_TEAM
from rally_gh.ownership.overlap import dead_patterns, overlap_problems
from rally_gh.ownership.paths import is_control_file
from rally_gh.ownership.rules import Ownership


def validate_map(loaded: LoadedConfig, tracked: Sequence[str] | None = None,
                 branches: Sequence[str] | None = None) -> list[Problem]:
    """Problems of a map that passed schema validation; ``tracked`` (the files
    at HEAD) enables the checks that need the tree, ``branches`` (the
    repository's branch names, remote ones as ``origin/main``) the prefix check."""
    problems = list(overlap_problems(loaded))
    problems += patterns_owning_nothing(loaded)
    problems += control_file_grants(loaded)
    problems += team_size(loaded)
    if branches is not None:
        problems += branch_prefix_collisions(loaded, branches)
    if tracked is not None:
        problems += unmatched_patterns(loaded, tracked)
        problems += unowned_files(loaded, tracked)
    return problems


def team_size(loaded: LoadedConfig) -> list[Problem]:
    """A map may describe ownership for a large organisation (an imported
    CODEOWNERS file); only a run of 10 or more teammates is refused."""
    n = len(loaded.config.teammates)
    if n <= MAX_TEAM:
        return []
    return [Problem(
        "warning", "team-size",
        f"{n} teammates: the map is valid for ownership checks, but `rally-gh run` refuses teams of 10 or more; "
        "choose who runs with a `rally` block in the issue or `--tasks FILE`",
        loaded.locate("teammates"), (),
    )]


def branch_prefix_collisions(loaded: LoadedConfig, branches: Sequence[str]) -> list[Problem]:
    """A run creates ``<prefix>/<run>/<teammate>``: git cannot, when ``<prefix>``
    (or a leading part of it, ``team`` for ``team/rally``) is a branch already,
    since one ref name cannot be both a branch and a folder of branches."""
    prefix = loaded.config.branch_prefix
    parts = prefix.split("/")
    blocking = {"/".join(parts[:n]) for n in range(1, len(parts) + 1)}
    found = []
    for branch in branches:
        local = branch
        if branch.startswith("remotes/"):  # remotes/<remote>/<branch>: a push would collide on the remote
            local = branch.split("/", 2)[2] if branch.count("/") >= 2 else ""
        if local in blocking:
            found.append(branch.removeprefix("remotes/"))
    if not found:
        return []
    names = ", ".join(sorted(set(found)))
    return [Problem(
        "error", "branch-prefix",
        f"branch_prefix: {prefix!r} collides with the existing branch {names}: a run's branches "
        f"{prefix}/<run>/<teammate> cannot be created beside it (git keeps a ref name either a branch or a folder "
        f"of branches); choose another prefix, e.g. branch_prefix: rally",
        loaded.locate("branch_prefix"), (),
    )]


def patterns_owning_nothing(loaded: LoadedConfig) -> list[Problem]:
    """A pattern that a later ``!pattern`` of the same teammate takes back entirely
    owns nothing: often an overlap fixed the wrong way round."""
    return [_pattern_warning(loaded, i, j, "owns-nothing",
                             f"owns nothing: {why} back every path it matches; remove one of them, "
                             "or exclude something narrower")
            for i, t in enumerate(loaded.config.teammates) for j, why in dead_patterns(t.exclusive_write)]


def control_file_grants(loaded: LoadedConfig) -> list[Problem]:
    """A literal grant of a control file works, but is a risk worth a warning."""
    out = []
    for i, t in enumerate(loaded.config.teammates):
        for j, pattern in enumerate(t.exclusive_write):
            path = pattern.lstrip("/")
            if is_literal(pattern) and not pattern.startswith("!") and is_control_file(path):
                out.append(Problem(
                    "warning", "control-file",
                    f"teammates[{i}].exclusive_write[{j}]: {t.name} may write the control file {path}; "
                    "it steers git, CI or agents, so review its changes closely",
                    loaded.locate("teammates", i, "exclusive_write", j), (t.name,), path,
                ))
    return out


def unmatched_patterns(loaded: LoadedConfig, tracked: Sequence[str]) -> list[Problem]:
    """Patterns that own no tracked file yet (often a typo; fine for new directories)."""
    where: list[tuple[int, int]] = []
    globs = []
    for i, t in enumerate(loaded.config.teammates):
        for j, pattern in enumerate(t.exclusive_write):
            if not pattern.startswith("!"):
                where.append((i, j))
                globs.append(compile_glob(pattern))
    if not globs:
        return []
    matcher = GlobSet(globs)
    unseen = set(range(len(globs)))
    for path in tracked:
        if not unseen:
            break
        unseen.difference_update(matcher.matching(path))
    return [_pattern_warning(loaded, *where[k], "unmatched",
                             "matches no tracked file (fine for files still to be written; otherwise check "
                             "the spelling)")
            for k in sorted(unseen)]


def _pattern_warning(loaded: LoadedConfig, i: int, j: int, code: str, says: str) -> Problem:
    """A warning about pattern ``j`` of teammate ``i``, at the line that writes it."""
    t = loaded.config.teammates[i]
    return Problem(
        "warning", code, f"teammates[{i}].exclusive_write[{j}]: {t.exclusive_write[j]!r} ({t.name}) {says}",
        loaded.locate("teammates", i, "exclusive_write", j), (t.name,),
    )


def unowned_files(loaded: LoadedConfig, tracked: Sequence[str]) -> list[Problem]:
    ownership = Ownership.from_config(loaded.config)
    unowned = [p for p in tracked if ownership.owner_of(p) is None]
    if not unowned:
        return []
    sample = ", ".join(unowned[:3]) + (", ..." if len(unowned) > 3 else "")
    return [Problem(
        "warning", "unowned",
        (f"{len(unowned)} of {len(tracked)} tracked files are owned by no teammate ({sample}); no teammate may "
         "change them") if len(unowned) != 1 else
        (f"1 of {len(tracked)} tracked file{'s' * (len(tracked) != 1)} is owned by no teammate ({sample}); "
         "no teammate may change it"),
        loaded.locate("teammates"), (), unowned[0],
    )]


def problem_dict(problem: Problem) -> dict[str, object]:
    loc = problem.location
    return {
        "severity": problem.severity,
        "code": problem.code,
        "message": problem.message,
        "file": None if loc is None else loc.file,
        "line": None if loc is None else loc.line,
        "column": None if loc is None else loc.column,
        "teammates": list(problem.teammates),
        "example": problem.example,
    }
