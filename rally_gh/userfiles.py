"""Files and folders a user names on the command line, found without opening the
repository: ``owner`` answers hundreds of thousands of paths and must start fast,
and ``codeowners`` reads the same kind of files."""

from __future__ import annotations

from pathlib import Path

from rally_gh.errors import ConfigError, UsageError


def under(cwd: Path, path: Path) -> Path:
    """A path from the command line, read from the command's folder."""
    return path if path.is_absolute() else cwd / path


def repository_root(cwd: Path) -> Path:
    """The nearest folder holding ``.git`` (no need to open the repository to find the map)."""
    for folder in (cwd, *cwd.parents):
        if (folder / ".git").exists():
            return folder
    return cwd


def read_codeowners_file(cwd: Path, path: Path, label: str) -> str:
    """The text of a CODEOWNERS file that the user named (``label`` says how)."""
    try:
        return under(cwd, path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        # A path that is not there is a usage error (exit 2); a file that is not text, a wrong file (1).
        kind = ConfigError if isinstance(err, UnicodeDecodeError) else UsageError
        raise kind(f"{label}: cannot read it: {getattr(err, 'strerror', None) or err}",
                   hint="give the path of a CODEOWNERS file, e.g. .github/CODEOWNERS") from None
