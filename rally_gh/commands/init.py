"""``rally-gh init``: a starter rally.yml (and, with ``--workflows``, the ready GitHub workflows)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TextIO

from rally_gh import docs_url, git
from rally_gh.config import CONFIG_CANDIDATES, load_config_text
from rally_gh.errors import EXIT_OK, ConfigError, RallyError, UsageError
from rally_gh.starter import find_codeowners, from_codeowners, from_layout

# The single-job workflows; docs/split-runs.md explains rally-matrix.yml for runs split across jobs.
WORKFLOWS = ("rally-issue.yml", "rally-dispatch.yml", "rally-pr-check.yml", "rally-comment.yml")


def run(cwd: Path, stdout: TextIO, *, workflows: bool = False, force: bool = False) -> int:
    repo = git.open_repo(cwd)
    root = git.workdir(repo)
    existing = [root / name for name in CONFIG_CANDIDATES if (root / name).is_file()]
    if existing and not force:
        raise UsageError(f"{existing[0]} already exists: init leaves a map alone",
                         hint="edit it and check it with `rally-gh validate`, or start again with `rally-gh init --force`")
    team = root.name or "team"
    codeowners = find_codeowners(root)
    if codeowners is not None:
        source = codeowners.relative_to(root).as_posix()
        try:
            text = codeowners.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{source}: cannot read it: {getattr(err, 'strerror', None) or err}",
                              hint="fix or remove it, then run `rally-gh init` again") from None
        yaml_text = from_codeowners(text, source, team)
        made_from = source
    else:
        yaml_text = from_layout(_files(repo, root), team)
        made_from = "the top-level layout"
    loaded = load_config_text(yaml_text, "rally.yml")  # a starter that does not load is our bug
    target = existing[0] if existing else root / CONFIG_CANDIDATES[0]
    target.write_text(yaml_text, encoding="utf-8")
    n = len(loaded.config.teammates)
    stdout.write(f"wrote {target.relative_to(root)}: {n} teammate{'s' * (n != 1)} from {made_from}\n")
    if workflows:
        _write_workflows(root, force, stdout)
    stdout.write("next: edit each teammate's role and task (and the agent), then `rally-gh validate`, "
                 "`rally-gh run --dry-run` and `rally-gh run`\n")
    return EXIT_OK


def _files(repo: git.Repository, root: Path) -> list[str]:
    """The repository's files: tracked or staged, else (nothing added yet) what is in the folder."""
    paths = git.index_paths(repo)
    if paths:
        return paths
    return [p.relative_to(root).as_posix() + ("/" if p.is_dir() else "") for p in root.iterdir() if p.name != ".git"]


def _write_workflows(root: Path, force: bool, stdout: TextIO) -> None:
    folder = root / ".github" / "workflows"
    shipped = resources.files("rally_gh") / "workflows"
    for name in WORKFLOWS:
        target = folder / name
        if target.exists() and not force:
            stdout.write(f"kept {target.relative_to(root)}: it exists (--force replaces it)\n")
            continue
        try:
            text = (shipped / name).read_text(encoding="utf-8")
        except OSError as err:
            raise RallyError(f"the workflow {name} is missing from this installation of rally-gh: {err}",
                             hint="reinstall rally-gh") from None
        folder.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        stdout.write(f"wrote {target.relative_to(root)}\n")
    stdout.write(f"the workflows need the permissions and secrets of {docs_url('github.md')}; "
                 "commit them with rally.yml\n")
