"""A starter ``rally.yml`` for ``rally-gh init``: from the repository's CODEOWNERS, else its layout.

Both are valid as written (``validate`` passes) and say in comments what to
change. From CODEOWNERS the ownership is exactly the file's (``codeowners.py``'s
import, owners kept in ``codeowners:``); from the layout, each top-level directory
is a teammate (``/src/``) and the files at the root are one more (``/*``, which
owns the root's own files only), so no two teammates overlap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from rally_gh import docs_url
from rally_gh.ownership.codeowners import imported_teammates, quote, team_size_note, teammate_yaml
from rally_gh.ownership.paths import is_control_file

# Where GitHub looks for CODEOWNERS, in its order.
CODEOWNERS_PLACES = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
ROOT_FILES_TEAMMATE = "root"

_HEAD = [
    "# rally.yml: who is on the team, what each teammate does, and which paths each one alone may write.",
    f"# Reference: {docs_url('rally-yml.md')}",
]
_CHANGE = [
    "# What to change before a run:",
    "#  - role and task of each teammate: what you want done (a run adds the issue's text to the task);",
    "#  - exclusive_write: the paths only that teammate may write (CODEOWNERS syntax; no two may overlap);",
    "#  - defaults.agent: the coding agent (claude, codex, aider, or any program with preset: command);",
    "#  - merge.verify: the commands that must pass on the integrated result (your test suite).",
    "# Then: `rally-gh validate`, `rally-gh run --dry-run` to see the plan, and `rally-gh run`.",
]
_SETTINGS = [
    "defaults:",
    "  agent: {preset: claude}     # claude | codex | aider | command",
    "  timeout: 20m                # expected duration of a teammate; it is stopped at twice this",
    "  retries: 1                  # replacements after a crash or timeout",
    "merge:",
    "  verify: []                  # e.g. [\"pytest -q\"]: run on the integrated result, a failure is bisected",
]


def from_codeowners(text: str, source: str, team: str) -> str:
    """The starter map of a repository with a CODEOWNERS file (``source`` names it)."""
    teammates = imported_teammates(text, source)
    out = [*_HEAD,
           f"# Made by `rally-gh init` from {source}: one teammate per owner list, owning exactly what",
           "# CODEOWNERS gives it; `codeowners:` keeps the owners for `rally-gh codeowners export`.",
           *_CHANGE]
    if len(teammates) > 9:
        out.append(team_size_note(len(teammates)))
    out += ["version: 1", f"team: {quote(team)}", *_SETTINGS, "teammates:"]
    for t in teammates:
        out += teammate_yaml(t)
    return "\n".join(out) + "\n"


def from_layout(paths: Iterable[str], team: str) -> str:
    """The starter map of a repository without CODEOWNERS, from its files (``paths``)."""
    dirs: set[str] = set()
    root_files = False
    for path in paths:
        top, slash, _ = path.partition("/")
        if top.startswith(".") or is_control_file(top if not slash else path):
            continue  # .github/, .vscode/, rally.yml, ...: no teammate writes them
        if slash:
            dirs.add(top)
        else:
            root_files = True
    out = [*_HEAD,
           "# Made by `rally-gh init` from the repository's top-level layout: a teammate per directory,",
           "# and one for the files at the root.",
           *_CHANGE,
           "version: 1", f"team: {quote(team)}", *_SETTINGS, "teammates:"]
    names = _names(sorted(dirs))
    for directory in sorted(dirs):
        out += _teammate(names[directory], f"Owner of {directory}/", f"Work on what is in {directory}/.",
                         "/" + _escape(directory) + "/")
    if root_files or not dirs:
        out += _teammate(_unique(ROOT_FILES_TEAMMATE, set(names.values())), "Owner of the files at the root",
                         "Work on the files at the root of the repository (README, build files).", "/*")
    if not dirs and not root_files:
        out += _teammate("src", "Owner of src/", "Write the code in src/.", "/src/")
    return "\n".join(out) + "\n"


def _teammate(name: str, role: str, task: str, pattern: str) -> list[str]:
    return [f"  - name: {quote(name)}",  # a folder named 2024 or null is still a name
            f"    role: {quote(role)}",
            f"    task: {quote(task)}",
            f"    exclusive_write: [{quote(pattern)}]"]


def _escape(name: str) -> str:
    """A directory name as a literal pattern: wildcards and blanks escaped."""
    return re.sub(r"([*?\\ #])", r"\\\1", name)


def _names(dirs: list[str]) -> dict[str, str]:
    """Valid, unique teammate names for directories: ``Web_App`` -> ``web-app``."""
    names: dict[str, str] = {}
    for directory in dirs:
        base = re.sub(r"[^a-z0-9]+", "-", directory.lower()).strip("-")[:39].strip("-") or "dir"
        names[directory] = _unique(base, set(names.values()))
    return names


def _unique(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base[: 39 - len(str(n)) - 1].rstrip('-')}-{n}"
    return name


def find_codeowners(root: Path) -> Path | None:
    """The CODEOWNERS file GitHub would read, None when there is none."""
    for place in CODEOWNERS_PLACES:
        if (root / place).is_file():
            return root / place
    return None
