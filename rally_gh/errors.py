"""One exception family for everything a user can act on.

Every message says what is wrong, where (``file:line:col``, a path, a
teammate) and what to do next. The CLI prints the message and exits with
``exit_code``; only errors outside this family get a traceback (in a log file).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class RallyError(Exception):
    """An error the user can act on. ``str(err)`` is the whole message."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class UsageError(RallyError):
    """The command line itself is wrong (exit 2)."""

    exit_code = EXIT_USAGE


class ConfigError(RallyError):
    """``rally.yml`` (or another input file) is malformed or invalid."""


class PatternError(ConfigError):
    """A CODEOWNERS-syntax pattern is not acceptable."""


class GitError(RallyError):
    """The repository is not in a state we can work with, or git refused."""


class GitHubError(RallyError):
    """The GitHub API refused or failed."""


class ConflictError(RallyError):
    """Integration met a conflict and ``on_conflict: stop`` was asked for."""


class AgentError(RallyError):
    """A teammate's agent could not be started or configured."""
