#!/usr/bin/env python3
"""A whole run's overhead, and worktree creation, on this machine.

1. Eight teammates that each sleep 2 s and write a few files, max_parallel 8, each
   in its sandbox (bubblewrap, where it works here): the whole run's wall time against
   the slowest teammate (target: under 1 s over it).
2. Repositories and checkouts for 8 teammates on a 20,000-file repository, made
   as the orchestrator makes them (each its own repository borrowing the user's
   objects, all in parallel): sparse ones (each teammate's own directory, 2,000 files; target:
   all 8 in under 1 s) and full ones against the peer, 8 `git worktree add` one after
   the other (target: no slower). Each figure is the best of --repeat tries, sparse
   first and the disk synced between tries, so that neither kind pays for the other's
   files. Creating files is most of the time, and what a busy machine slows down
   most: the load average is printed.
3. What the sandbox adds to an agent's start: `true` started in the sandbox a teammate's
   agent gets (its spec as the run builds it) against `true` started plainly, the
   median of --starts each (target: under 50 ms more).

Figures before and after teammates got repositories of their own and the sandbox: bench/RESULTS.md.

Run: .venv/bin/python bench/bench_run.py [--files 20000] [--repeat 3] [--starts 30]
         [--skip-run] [--skip-worktrees] [--skip-sandbox]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rally_gh import git, plan, process, sandbox  # noqa: E402
from rally_gh.run import pipeline  # noqa: E402
from rally_gh.config import load_config_text  # noqa: E402
from rally_gh.testing import git as run_git  # noqa: E402
from rally_gh.testing import init_repo  # noqa: E402

TEAMMATES = 8
SLEEP_S = 2.0

AGENT = """
    import os, pathlib, time
    time.sleep({sleep})
    me = os.environ["RALLY_TEAMMATE"]
    for i in range(5):
        path = pathlib.Path("src", me, f"file{{i}}.py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"x = {{i}}\\n")
"""


def bench_run(where: Path) -> dict[str, float]:
    script = where / "agent.py"
    script.write_text(textwrap.dedent(AGENT.format(sleep=SLEEP_S)))
    lines = ["version: 1", "team: bench", f"max_parallel: {TEAMMATES}", "defaults: {timeout: 30s, retries: 0}",
             "teammates:"]
    for i in range(TEAMMATES):
        lines += [f"  - name: t{i}", f"    exclusive_write: [src/t{i}/**]",
                  f"    agent: {{preset: command, command: [{json.dumps(sys.executable)}, {json.dumps(str(script))}]}}"]
    rally_yml = "\n".join(lines) + "\n"
    repo = init_repo(where / "repo", {"README.md": "bench\n", "rally.yml": rally_yml})
    started = time.monotonic()
    state = pipeline.run(repo, load_config_text(rally_yml, "rally.yml"), "bench", None, time.time,
                         dict(os.environ))
    total = time.monotonic() - started
    outcomes = {t.outcome for t in state.teammates}
    assert outcomes == {"done"}, outcomes
    slowest = max(t.duration_s for t in state.teammates)
    return {"total_s": total, "run_phase_s": state.phases["run"], "slowest_teammate_s": slowest,
            "overhead_s": total - slowest, **{f"phase_{k}_s": v for k, v in state.phases.items()}}


def big_repo(where: Path, files: int) -> Path:
    """``files`` files in 8 teammate directories and a shared one, written with fast-import."""
    repo = init_repo(where / "big")
    stream = ["commit refs/heads/main", "committer Ada <ada@example.com> 1767225600 +0000", "data 4", "big"]
    for i in range(files):
        owner = f"t{i % TEAMMATES}" if i % 10 else "shared"
        stream += [f"M 100644 inline {owner}/d{i % 50}/f{i}.txt", "data 8", f"{i:07d}\n"]
    run_git(repo, "fast-import", "--quiet", input="\n".join(stream) + "\n")
    run_git(repo, "reset", "-q", "--hard", "main")
    return repo


def bench_worktrees(where: Path, files: int, repeat: int) -> dict[str, float]:
    """Seconds to add 8 worktrees of each kind (the best of ``repeat``) and to remove them."""
    repo_path = big_repo(where, files)
    repo = git.open_repo(repo_path)
    start = git.resolve(repo, "HEAD")
    results: dict[str, float] = {}
    for kind in ("sparse", "full"):
        for attempt in range(repeat):
            root = where / f"wt-{kind}-{attempt}"

            def add(i: int, kind: str = kind, root: Path = root) -> None:
                path = root / f"t{i}"
                git.create_private_repo(git.open_repo(repo_path), path, f"bench-{kind}/t{i}", start)
                sparse = plan.sparse_directories([f"t{i}/**"]) if kind == "sparse" else None
                git.populate_worktree(path, sparse)

            os.sync()
            began = time.monotonic()
            with ThreadPoolExecutor(TEAMMATES) as pool:
                list(pool.map(add, range(TEAMMATES)))
            took = time.monotonic() - began
            results[f"{kind}_add_8_s"] = min(took, results.get(f"{kind}_add_8_s", took))
            results[f"{kind}_files_per_worktree"] = sum(1 for _ in (root / "t0").rglob("*.txt"))
            began = time.monotonic()
            for i in range(TEAMMATES):
                git.remove_worktree(repo, root / f"t{i}")
            took = time.monotonic() - began
            results[f"{kind}_remove_8_s"] = min(took, results.get(f"{kind}_remove_8_s", took))
            for i in range(TEAMMATES):
                run_git(repo_path, "branch", "-q", "-D", f"bench-{kind}/t{i}")
    for attempt in range(repeat):  # the peer: what a user (and rally-gh before) would run
        root = where / f"wt-peer-{attempt}"
        os.sync()
        began = time.monotonic()
        for i in range(TEAMMATES):
            run_git(repo_path, "worktree", "add", "-q", "--detach", str(root / f"t{i}"), start)
        took = time.monotonic() - began
        results["peer_add_8_s"] = min(took, results.get("peer_add_8_s", took))
        run_git(repo_path, "worktree", "remove", "--force", str(root / "t0"))
        shutil.rmtree(root, ignore_errors=True)
        run_git(repo_path, "worktree", "prune")
    return results


def bench_sandbox(where: Path, starts: int) -> dict[str, float] | None:
    """Median seconds to start and end `true`, plainly and in a teammate's sandbox (None: no sandbox here)."""
    probe = process.sandbox_probe(os.environ.get("PATH"))
    if probe.bwrap is None:
        print(f"sandbox: none here ({probe.problem}): skipped")
        return None
    checkout, home, files, hidden = (where / n for n in ("checkout", "home", "files", "hidden"))
    for folder in (checkout / ".git", home, files, hidden):
        folder.mkdir(parents=True, exist_ok=True)
    true = shutil.which("true") or "/bin/true"
    spec = sandbox.teammate_spec(checkout=checkout, git_dir=checkout / ".git", home=home, files=files,
                                 env={"PATH": os.environ.get("PATH", os.defpath)}, hidden=(hidden,),
                                 read_only=sandbox.program_paths([true], os.environ.get("PATH")))
    wrapped = sandbox.bwrap_command(probe.bwrap.path, spec, [true])

    def median(argv: tuple[str, ...], env: dict[str, str]) -> float:
        took = []
        for _ in range(starts):
            began = time.monotonic()
            subprocess.run(argv, env=env, check=True)
            took.append(time.monotonic() - began)
        return statistics.median(took)

    plain = median((true,), dict(spec.env))
    boxed = median(wrapped.argv, dict(wrapped.env))
    return {"plain_s": plain, "sandboxed_s": boxed, "added_s": boxed - plain}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--starts", type=int, default=30)
    parser.add_argument("--skip-run", action="store_true")
    parser.add_argument("--skip-worktrees", action="store_true")
    parser.add_argument("--skip-sandbox", action="store_true")
    args = parser.parse_args()
    where = Path(tempfile.mkdtemp(prefix="rally-bench-run-"))
    try:
        if not args.skip_run:
            run = bench_run(where)
            print(f"8 teammates x {SLEEP_S:g}s sleep, max_parallel 8: whole run {run['total_s']:.2f}s, "
                  f"slowest teammate {run['slowest_teammate_s']:.2f}s, overhead {run['overhead_s']:.2f}s "
                  f"(target: under 1s) -> {'OK' if run['overhead_s'] < 1 else 'MISSED'}")
            print("  phases: " + ", ".join(f"{k[6:-2]} {v:.2f}s" for k, v in run.items() if k.startswith("phase_")))
        if not args.skip_worktrees:
            wt = bench_worktrees(where, args.files, args.repeat)
            for kind in ("sparse", "full"):
                print(f"{kind:>6} worktrees on {args.files} files: 8 added in {wt[f'{kind}_add_8_s']:.2f}s "
                      f"({wt[f'{kind}_files_per_worktree']:.0f} files each, best of {args.repeat}), removed in "
                      f"{wt[f'{kind}_remove_8_s']:.2f}s")
            sparse, full, peer = wt["sparse_add_8_s"], wt["full_add_8_s"], wt["peer_add_8_s"]
            print(f"  peer, 8 x git worktree add (full, one after the other): {peer:.2f}s; rally-gh's full ones "
                  f"take {full / peer:.2f}x of that -> {'OK' if full <= peer else 'MISSED'}")
            print(f"  sparse/full: {sparse / full:.2f} of the time for "
                  f"{wt['sparse_files_per_worktree'] / wt['full_files_per_worktree']:.2f} of the files; "
                  f"8 sparse in under 1s -> {'OK' if sparse < 1 else 'MISSED'}")
            # Creating files is most of a checkout's time, and it is what a busy machine slows down most.
            print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (figures hold on an idle machine)")
        if not args.skip_sandbox:
            box = bench_sandbox(where / "sandbox", args.starts)
            if box is not None:
                print(f"sandbox start: `true` {box['plain_s'] * 1000:.1f} ms plainly, {box['sandboxed_s'] * 1000:.1f} ms in "
                      f"a teammate's sandbox: +{box['added_s'] * 1000:.1f} ms (target: under 50 ms) -> "
                      f"{'OK' if box['added_s'] < 0.05 else 'MISSED'} (median of {args.starts})")
    finally:
        shutil.rmtree(where, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
