from __future__ import annotations

from rally_gh.cli import main

if __name__ == "__main__":
    main()
