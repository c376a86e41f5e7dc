"""What every part of rally-gh agrees on about a team: how large, and how a teammate is named.

One home for each, importing nothing, so that the parts that must start fast (the
hook's fast path, ``owner --codeowners``, the GitHub event reader) share them
without loading pydantic.
"""

from __future__ import annotations

import re

# A run takes at most 9 teammates, 9 at once only with allow_large_team; 10 or more are refused
# (coordination costs more than parallelism gains). A map may name any number.
MAX_TEAM = 9
MAX_PARALLEL_PLAIN = 8  # more than this at once needs allow_large_team

NAME_RE = r"^[a-z0-9][a-z0-9-]{0,38}$"
TEAMMATE_NAME = re.compile(NAME_RE)
