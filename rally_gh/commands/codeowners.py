"""``rally-gh codeowners import|export``: between CODEOWNERS and rally.yml, exactly."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from rally_gh.ownership.codeowners import export_codeowners, import_codeowners
from rally_gh.userfiles import read_codeowners_file, repository_root, under
from rally_gh.config import find_config, load_config, load_config_text
from rally_gh.limits import MAX_TEAM
from rally_gh.errors import UsageError


def import_(cwd: Path, file: Path, team: str | None, output: Path | None, stdout: TextIO) -> int:
    """Write a rally.yml with one teammate per owner list of ``file`` (to ``output`` or stdout)."""
    text = read_codeowners_file(cwd, file, str(file))
    team_name = team or repository_root(cwd).name or "team"
    yaml_text = import_codeowners(text, team_name, str(file))
    n = yaml_text.count("\n  - name: ")
    # The map we write must load; a failure here is our bug, not the user's file.
    load_config_text(yaml_text, str(output or "rally.yml"))
    if output is None:
        stdout.write(yaml_text)
        return 0
    _write(cwd, output, yaml_text)
    if n > MAX_TEAM:
        next_step = (f"a run takes at most {MAX_TEAM} teammates: pick them with a `rally` block in the issue "
                     "or `--tasks FILE`; replace their placeholder agents, then")
    else:
        next_step = "replace the placeholder agents, then"
    stdout.write(f"wrote {output}: {n} teammate{'s' * (n != 1)} from {file}; "
                 f"next: {next_step} `rally-gh validate --config {output}`\n")
    return 0


def export(cwd: Path, config_path: Path | None, output: Path | None, stdout: TextIO) -> int:
    """Write a CODEOWNERS file that keeps every path's review owners (to ``output`` or stdout)."""
    explicit = None if config_path is None else under(cwd, config_path)
    path = find_config(repository_root(cwd), explicit)
    text = export_codeowners(load_config(path).config)
    if output is None:
        stdout.write(text)
        return 0
    _write(cwd, output, text)
    n = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    stdout.write(f"wrote {output}: {n} line{'s' * (n != 1)} from {path.name}; "
                 f"check a path with `rally-gh owner --codeowners {output} PATH`\n")
    return 0


def _write(cwd: Path, output: Path, text: str) -> None:
    """Write ``-o FILE``, making its folder (``.github/``) when it is not there yet."""
    target = under(cwd, output)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"-o {output}: cannot write it: {err.strerror or err}",
                         hint="give a file path in a folder you can write") from None
