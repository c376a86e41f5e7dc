"""``rally-gh validate``: is the map right, and what should its authors know."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from rally_gh import git
from rally_gh.config import Problem, find_config, load_config, problem_order
from rally_gh.errors import EXIT_FAILED, EXIT_OK, ConfigError, GitError
from rally_gh.ownership.validation import problem_dict, validate_map


def run(cwd: Path, stdout: TextIO, *, config_path: Path | None = None, fmt: str = "text") -> int:
    try:
        repo = git.open_repo(cwd)
        root: Path = git.workdir(repo)
    except GitError:
        repo, root = None, cwd  # a map can be checked outside a repository, minus the tree checks
    path = find_config(root, config_path)
    try:
        loaded = load_config(path)
    except ConfigError as err:
        problems: list[Problem] = list(getattr(err, "problems", [])) or [Problem("error", "schema", str(err))]
        return _emit(problems, fmt, stdout, path, summary=None)
    tracked = git.tracked_paths(repo) if repo is not None else None
    branches = None if repo is None else git.branch_names(repo)
    problems = validate_map(loaded, tracked, branches)
    n = len(loaded.config.teammates)
    patterns = sum(len(t.exclusive_write) for t in loaded.config.teammates)
    summary = f"{path.name}: {n} teammate{'s' * (n != 1)}, {patterns} pattern{'s' * (patterns != 1)}"
    return _emit(problems, fmt, stdout, path, summary)


def _emit(problems: list[Problem], fmt: str, stdout: TextIO, path: Path, summary: str | None) -> int:
    valid = not any(p.severity == "error" for p in problems)
    if fmt == "json":
        json.dump({"valid": valid, "problems": [problem_dict(p) for p in problems]}, stdout, indent=2)
        stdout.write("\n")
    else:
        for p in sorted(problems, key=lambda p: (p.severity != "error", problem_order(p))):
            stdout.write(f"{p}\n")
        errors = sum(p.severity == "error" for p in problems)
        warnings = len(problems) - errors
        verdict = "valid" if valid else "INVALID"
        stdout.write(f"{summary or path.name}: {verdict} ({errors} error{'s' * (errors != 1)}, "
                     f"{warnings} warning{'s' * (warnings != 1)})\n")
    return EXIT_OK if valid else EXIT_FAILED
