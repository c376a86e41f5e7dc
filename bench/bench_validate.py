#!/usr/bin/env python3
"""Speed of the static overlap proof (``find_overlaps``) on real and synthetic maps.

- Every CODEOWNERS file of the shared data (kibana: 3,443 rules, 149 owner
  sets), imported twice: by ``codeowners import`` and by the plain
  transformation (one teammate per distinct owner set, whose list is its own
  lines with every other later line as a ``!`` exclusion, as CODEOWNERS' last
  match wins). Target: kibana under 30 s; an imported map has no overlap error.
- A small hand-written map with an overlap, and a synthetic one of 400
  teammates with nested prefixes, where the product search really runs.

Shared data: ``../shared`` next to the repository, or ``$RALLY_SHARED``.

Run: python bench/bench_validate.py [--runs 3] [--only kibana]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rally_gh.ownership.codeowners import import_rules, parse_codeowners  # noqa: E402
from rally_gh.ownership import globs  # noqa: E402
from rally_gh.ownership.overlap import Overlap, compile_pattern, find_overlaps, read_pattern  # noqa: E402

Team = list[tuple[str, list[str]]]

KIBANA_TARGET_S = 30.0

# One overlap on purpose: docs claims web's README.
SMALL_MAP: Team = [
    ("schema", ["/db/migrations/**", "/src/models/**"]),
    ("api", ["/src/api/**", "/tests/api/", "!/src/api/generated/**"]),
    ("web", ["/web/**", "/tests/web/", "/styles/**/*.css"]),
    ("docs", ["/docs/", "/*.md", "/web/README.md"]),
    ("gen", ["/src/api/generated/**", "/tools/codegen/**"]),
]


def shared_dir() -> Path:
    return Path(os.environ.get("RALLY_SHARED") or REPO.parent / "shared")


_PATTERN = re.compile(r"(?:\\.|[^\s\\])+\\?")


def read_rules(text: str) -> list[tuple[str, str]]:
    """(pattern, owners) of each rule; owners '' for a line that un-owns its paths."""
    rules: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _PATTERN.match(line)
        assert m is not None
        owners: list[str] = []
        for word in line[m.end():].split():
            if word.startswith("#"):
                break
            owners.append(word)
        pattern = m.group()
        # In rally.yml a leading '!' excludes; in CODEOWNERS it is a character.
        rules.append(("\\" + pattern if pattern.startswith("!") else pattern, " ".join(sorted(set(owners)))))
    return rules


def team_from_rules(rules: Sequence[tuple[str, str]]) -> Team:
    """One teammate per owner set; every other owner's later line excludes (last match wins),
    whether or not it can matter: the plain transformation, with the longest lists."""
    first_line: dict[str, int] = {}
    for i, (_, owners) in enumerate(rules):
        if owners:
            first_line.setdefault(owners, i)
    team: Team = []
    for n, (owners, start) in enumerate(first_line.items()):
        patterns = [p if o == owners else "!" + p for p, o in rules[start:]]
        team.append((f"t{n}", patterns))
    return team


def imported_team(text: str, source: str) -> Team:
    """The teammates ``codeowners import`` makes (it leaves out exclusions that cannot matter)."""
    return [(t.name, list(t.exclusive_write)) for t in import_rules(parse_codeowners(text, source))]


def positives_only(team: Team) -> Team:
    """The same lists without their exclusions: a map dense with overlaps."""
    return [(name, [p for p in patterns if not p.startswith("!")]) for name, patterns in team]


def synthetic(teammates: int = 400) -> Team:
    """Nested, shared-character prefixes so the search runs (t1 and t10 overlap, by design)."""
    return [(f"t{i}", [f"/pkg/p{i}/**", f"/pkg/p{i}0/*.ts", f"docs/p{i}/", f"/pkg/p{i}/src/*",
                       f"!/pkg/p{i}/gen/**", f"/test/p{i}_*", f"/pkg/p{i}1/**", f"/a/p{i}/b",
                       f"/a/p{i}/c/", f"/a/p{i}/d.md"]) for i in range(teammates)]


def best_of(runs: int, fn: Callable[[], list[Overlap]]) -> tuple[float, list[Overlap]]:
    best = float("inf")
    result: list[Overlap] = []
    for _ in range(runs):
        # Each run starts cold, as validate does: the parse (compile_glob's), the proof's reading, the automata.
        globs._compile.cache_clear()
        read_pattern.cache_clear()
        compile_pattern.cache_clear()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def report(name: str, team: Team, runs: int) -> tuple[float, list[Overlap]]:
    seconds, found = best_of(runs, lambda: find_overlaps(team))
    patterns = sum(len(p) for _, p in team)
    errors = sum(o.severity == "error" for o in found)
    print(f"{name:>16}: {len(team):4d} teammates {patterns:8,d} patterns  {seconds:8.3f} s"
          f"  {errors} errors, {len(found) - errors} warnings")
    return seconds, found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--only", help="just this CODEOWNERS dataset (e.g. kibana)")
    parser.add_argument("--dense", action="store_true",
                        help="also kibana without its exclusions: tens of thousands of overlaps (slow)")
    args = parser.parse_args(argv)

    failed = False
    _, found = report("small map", SMALL_MAP, max(args.runs, 100))
    for o in found:
        print(f"{'':>18}{o.severity}: {o.message()}")
    report("synthetic", synthetic(), args.runs)

    data = shared_dir() / "data" / "codeowners"
    files = sorted(data.glob("*.CODEOWNERS"))
    if not files:
        print(f"no CODEOWNERS files in {data} (set RALLY_SHARED)", file=sys.stderr)
        return 1
    for path in files:
        name = path.name.removesuffix(".CODEOWNERS")
        if args.only and name != args.only:
            continue
        text = path.read_text()
        imported = imported_team(text, path.name)
        runs = 1 if name == "kibana" else args.runs
        # Both imports own exactly what CODEOWNERS gives each owner list: no overlap.
        for label, team in ((name, imported), ("  every later", team_from_rules(read_rules(text)))):
            seconds, found = report(label, team, runs)
            for o in [o for o in found if o.severity == "error"][:5]:
                print(f"{'':>18}unexpected error: {o.message()}")
            failed = failed or any(o.severity == "error" for o in found)
            if name == "kibana" and seconds > KIBANA_TARGET_S:
                print(f"{'':>18}over the {KIBANA_TARGET_S:.0f} s target")
                failed = True
        if args.dense and name == "kibana":
            report("  no exclusions", positives_only(imported), 1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
