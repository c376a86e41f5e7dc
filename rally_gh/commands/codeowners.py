"""``rally-gh codeowners import|export``: between CODEOWNERS and rally.yml, exactly."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from rally_gh.codeowners import export_codeowners, import_codeowners
from rally_gh.commands.owner import read_codeowners_file, repository_root, under
from rally_gh.config import MAX_TEAM, find_config, load_config, load_config_text


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
    under(cwd, output).write_text(yaml_text, encoding="utf-8")
    if n > MAX_TEAM:
        next_step = (f"a run takes at most {MAX_TEAM} teammates: pick them with a `rally` block in the issue "
                     "or `--tasks FILE`; replace their placeholder agents, then")
    else:
        next_step = "replace the placeholder agents, then"
    stdout.write(f"wrote {output}: {n} teammate{'s' * (n != 1)} from {file}; "
                 f"next: {next_step} `rally-gh validate --config {output}`\n")
    return 0


def export(cwd: Path, config_path: Path | None, stdout: TextIO) -> int:
    """Print a CODEOWNERS file that GitHub reads the way rally-gh reads the map."""
    explicit = None if config_path is None else under(cwd, config_path)
    loaded = load_config(find_config(repository_root(cwd), explicit))
    stdout.write(export_codeowners(loaded.config))
    return 0
