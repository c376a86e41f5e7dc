"""``rally-gh schema``: the JSON Schema of ``rally.yml``, for editors.

Save it next to the map (``rally-gh schema > rally.schema.json``) and point
yaml-language-server at it with a first line
``# yaml-language-server: $schema=./rally.schema.json``.
"""

from __future__ import annotations

import json
from typing import TextIO

from rally_gh.config import json_schema
from rally_gh.errors import EXIT_OK


def run(stdout: TextIO) -> int:
    json.dump(json_schema(), stdout, indent=2)
    stdout.write("\n")
    return EXIT_OK
