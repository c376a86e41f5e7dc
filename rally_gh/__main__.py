"""``python -m rally_gh`` and the ``rally-gh`` console script.

``hook pre-commit`` runs on every commit: try its fast path (rally_gh.fasthook)
before importing the command line (click, pydantic and pygit2 cost more than
the check itself).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    if sys.argv[1:] == ["hook", "pre-commit"]:
        from rally_gh.fasthook import is_clean

        try:
            if is_clean(os.environ):
                raise SystemExit(0)
        except (OSError, ValueError, KeyError, IndexError, ImportError):
            pass  # anything odd: the full path decides and explains
    from rally_gh import process

    # Whatever the command, a token may be in this process's environment: out of reach of other
    # processes of the same user (docs/security.md). The hook's fast path above holds none.
    process.undumpable()
    from rally_gh.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
