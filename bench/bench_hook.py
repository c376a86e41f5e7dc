#!/usr/bin/env python3
"""Hook and check speed on a 100,000-file repository.

Peers (same repository, same machine, same run):
- the hook's whole process (as ``rally-gh hook install`` writes it) vs
  ``git diff --cached --name-status`` (target: within 3x);
- ``rally-gh check`` over 1,000 commits (target: a few seconds).

Run: python bench/bench_hook.py [--files 100000] [--commits 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rally_gh.testing import git, git_env  # noqa: E402

TEAMMATES = 8


def rally_map() -> str:
    lines = ["version: 1", "team: bench", "teammates:"]
    for t in range(TEAMMATES):
        lines += [f"  - name: t{t}", f"    exclusive_write: [pkg{t}/**]",
                  "    agent: {preset: command, command: [\"true\"]}"]
    return "\n".join(lines) + "\n"


def build_repo(root: Path, files: int) -> None:
    """A commit of ``files`` files spread over 20 teammates' directories, written
    with fast-import (no work tree: the hook reads only the index and HEAD)."""
    git(root, "init", "-q", "-b", "main")
    per_dir = 100
    stream = ["blob", "mark :1", "data 6", "hello", "", "blob", "mark :2"]
    m = rally_map().rstrip("\n")  # the LF after a data block is the optional one
    stream += [f"data {len(m.encode())}", m]
    stream += ["commit refs/heads/main", "author A <a@e> 1700000000 +0000",
               "committer A <a@e> 1700000000 +0000", "data 4", "base", "M 100644 :2 rally.yml"]
    for i in range(files):
        t = i % TEAMMATES
        stream.append(f"M 100644 :1 pkg{t}/d{i // (per_dir * TEAMMATES)}/f{i}.txt")
    stream.append("")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input="\n".join(stream).encode(),
                   check=True, env=git_env())
    git(root, "read-tree", "main")  # the index, without checking 100k files out
    git(root, "symbolic-ref", "HEAD", "refs/heads/main")


def timed(cmd: list[str], cwd: Path, env: dict[str, str], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return min(times)


def make_commits(root: Path, n: int) -> None:
    """``n`` commits by teammate t0 on branch rally/r/t0, each touching one file (plumbing, fast)."""
    git(root, "checkout", "-q", "-b", "rally/r/t0")
    stream = []
    for i in range(n):
        body = f"v{i}"
        stream += ["commit refs/heads/rally/r/t0", "author A <a@e> 1700000000 +0000",
                   "committer A <a@e> 1700000000 +0000", "data 2", "c" + str(i % 10)]
        if i == 0:
            stream.append("from refs/heads/main")
        stream += [f"M 100644 inline pkg0/d0/f{(i * TEAMMATES) % 100}.txt", f"data {len(body)}", body]
    stream.append("")
    subprocess.run(["git", "fast-import", "--quiet", "--force"], cwd=root, input="\n".join(stream).encode(),
                   check=True, env=git_env())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--commits", type=int, default=1000)
    args = ap.parse_args()
    rally = [sys.executable, "-m", "rally_gh"]
    with tempfile.TemporaryDirectory(prefix="rally-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build_repo(root, args.files)
        print(f"repository: {args.files:,} files built in {time.perf_counter() - t0:.1f}s at {root}")
        # Stage a one-file change by t0.
        blob = git(root, "hash-object", "-w", "--stdin", input="changed\n").strip()
        git(root, "update-index", "--cacheinfo", f"100644,{blob},pkg0/d0/f0.txt")
        env = git_env({"RALLY_TEAMMATE": "t0"})
        subprocess.run(rally + ["hook", "install"], cwd=root, env=env, check=True, capture_output=True)
        hook = [str(root / ".git" / "hooks" / "pre-commit")]
        first = subprocess.run(hook, cwd=root, env=env, capture_output=True, text=True)  # warms the map table
        assert first.returncode == 0, first.stdout + first.stderr
        peer = timed(["git", "diff", "--cached", "--name-status"], root, env)
        ours = timed(hook, root, env)
        module = timed(rally + ["hook", "pre-commit"], root, env)
        print(f"installed hook, one file modified:   {ours * 1000:7.1f} ms")
        print(f"git diff --cached --name-status:     {peer * 1000:7.1f} ms")
        print(f"ratio: {ours / peer:.2f}x (target: within 3x)")
        git(root, "update-index", "--add", "--cacheinfo", f"100644,{blob},pkg0/d0/new.txt")
        added = timed(hook, root, env)
        assert subprocess.run(hook, cwd=root, env=env, capture_output=True).returncode == 0
        peer_added = timed(["git", "diff", "--cached", "--name-status"], root, env)
        print(f"installed hook, plus one file added: {added * 1000:7.1f} ms ({added / peer_added:.2f}x)")
        print(f"  (`python -m rally_gh hook pre-commit`, as the pre-commit framework runs it: "
              f"{module * 1000:.1f} ms, {module / peer:.2f}x)")
        python_startup = timed([sys.executable, "-c", "pass"], root, env)
        bare_startup = timed([sys.executable, "-I", "-S", "-c", "pass"], root, env)
        print(f"  (python startup alone: {python_startup * 1000:.1f} ms; without site: {bare_startup * 1000:.1f} ms)")

        git(root, "reset", "-q")
        make_commits(root, args.commits)
        t = timed(rally + ["check", "--base", "main", "--head", "rally/r/t0"], root, env, runs=3)
        print(f"check over {args.commits:,} commits: {t:.2f}s (target: a few seconds)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
