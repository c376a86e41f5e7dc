"""Benchmark: replaying 16 teammates x 50 commits onto a 20,000-file repository.

    .venv/bin/python bench/bench_integrate.py [--where shm|tmp] [--repeat N]

Builds the repository with `git fast-import` (one directory per teammate, each
commit changing two files and adding one), then integrates the 800 commits
three ways, each in a fresh copy of the object database:

- rally-gh: plan_integration + integrate (in memory, rally_gh.git.replay_commit)
- `git rebase --onto` branch after branch, in a work tree (worktree creation not timed)
- `git merge-tree --write-tree` + `git commit-tree` per commit

and checks that the three final trees are identical. Targets: at most 1/8 of
git rebase's time and 1/3 of merge-tree's. The repository goes on /dev/shm
(tmpfs) when present, else /tmp; `--where tmp` measures on /tmp (disk, unless
/tmp is itself a tmpfs: the output says which filesystem it is).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rally_gh import git as rgit  # noqa: E402
from rally_gh.git import Identity, Sha  # noqa: E402
from rally_gh.integrate import TeammateBranch, integrate, plan_integration  # noqa: E402
from rally_gh.testing import git, git_env  # noqa: E402

TEAMMATES = 16
COMMITS = 50
FILES = 20_000
SUBDIRS = 10  # per teammate directory
COMMITTER = Identity("rally-gh", "rally-gh@users.noreply.github.com", 1767225600, 0)


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n%s\n" % (len(raw), raw)


def _content(path: str, version: int) -> str:
    return "".join(f"{path} line {i}{' v' + str(version) if i == 3 else ''}\n" for i in range(12))


def fast_import_stream() -> Iterator[bytes]:
    """The base commit with FILES files, then each teammate's branch of COMMITS commits."""
    per_teammate = FILES // TEAMMATES
    yield b"commit refs/heads/main\nmark :1\ncommitter Ada Tester <ada@example.com> 1767225600 +0000\n" + _data("base")
    for t in range(TEAMMATES):
        for f in range(per_teammate):
            path = f"team/t{t:02d}/d{f % SUBDIRS}/f{f}.txt"
            yield b"M 100644 inline " + path.encode() + b"\n" + _data(_content(path, 0))
    yield b"\n"
    for t in range(TEAMMATES):
        for c in range(COMMITS):
            yield (f"commit refs/heads/rally/bench/t{t:02d}\ncommitter Agent {t} <t{t}@example.com> "
                   f"{1767225600 + c} +0000\n").encode() + _data(f"t{t:02d}: step {c}")
            yield b"from :1\n" if c == 0 else b""
            for k in range(2):
                f = (c * 7 + k * 13) % per_teammate
                path = f"team/t{t:02d}/d{f % SUBDIRS}/f{f}.txt"
                yield b"M 100644 inline " + path.encode() + b"\n" + _data(_content(path, c + 1))
            new = f"team/t{t:02d}/d{c % SUBDIRS}/new{c}.txt"
            yield b"M 100644 inline " + new.encode() + b"\n" + _data(_content(new, 0))
            yield b"\n"


def build(root: Path) -> Path:
    repo = root / "source.git"
    git(root, "init", "-q", "--bare", str(repo))
    proc = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=repo, env=git_env(), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for chunk in fast_import_stream():
        proc.stdin.write(chunk)
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    return repo


def fresh_copy(source: Path, root: Path, name: str) -> Path:
    dest = root / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    return dest


def branches(repo: Path) -> tuple[str, list[tuple[str, str]]]:
    base = git(repo, "rev-parse", "main").strip()
    heads = [(f"t{t:02d}", git(repo, "rev-parse", f"rally/bench/t{t:02d}").strip()) for t in range(TEAMMATES)]
    return base, heads


def with_rally(repo: Path) -> tuple[float, str]:
    base, heads = branches(repo)
    r = rgit.open_repo(repo, allow_bare=True)
    started = time.perf_counter()
    plan = plan_integration(r, Sha(base), [TeammateBranch(n, Sha(h), Sha(base)) for n, h in heads])
    result = integrate(r, plan, "skip", COMMITTER)
    elapsed = time.perf_counter() - started
    assert all(o.status == "integrated" for o in result.outcomes), result.outcomes
    assert len(result.commit_map) == TEAMMATES * COMMITS
    return elapsed, git(repo, "rev-parse", f"{result.tip}^{{tree}}").strip()


def with_rebase(repo: Path) -> tuple[float, str]:
    base, heads = branches(repo)
    wt = repo.parent / (repo.name + "-wt")
    git(repo, "worktree", "add", "-q", "--detach", str(wt), base)
    started = time.perf_counter()
    tip = base
    for _, head in heads:
        git(wt, "rebase", "-q", "--onto", tip, base, head)
        tip = git(wt, "rev-parse", "HEAD").strip()
    elapsed = time.perf_counter() - started
    git(repo, "worktree", "remove", "--force", str(wt))
    return elapsed, git(repo, "rev-parse", f"{tip}^{{tree}}").strip()


def with_merge_tree(repo: Path) -> tuple[float, str]:
    base, heads = branches(repo)
    started = time.perf_counter()
    tip = base
    for _, head in heads:
        for commit in git(repo, "rev-list", "--reverse", f"{base}..{head}").split():
            tree = git(repo, "merge-tree", "--write-tree", tip, commit).split()[0]
            tip = git(repo, "commit-tree", tree, "-p", tip, "-m", "replayed").strip()
    elapsed = time.perf_counter() - started
    return elapsed, git(repo, "rev-parse", f"{tip}^{{tree}}").strip()


def filesystem_of(path: Path) -> str:
    out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True).stdout.split()
    return out[-1] if out else "unknown"


def best_of(n: int, source: Path, root: Path, label: str, fn: Callable[[Path], tuple[float, str]]) -> tuple[float, str]:
    times, trees = [], set()
    for i in range(n):
        elapsed, tree = fn(fresh_copy(source, root, f"{label}-{i}.git"))
        times.append(elapsed)
        trees.add(tree)
    assert len(trees) == 1, f"{label}: runs disagree"
    print(f"  {label:<11} {min(times):7.3f} s   (runs: {', '.join(f'{t:.3f}' for t in times)})", flush=True)
    return min(times), trees.pop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--where", choices=["shm", "tmp"], default="shm" if Path("/dev/shm").is_dir() else "tmp")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the rally-gh engine (best is kept)")
    parser.add_argument("--repeat-git", type=int, default=1, help="runs of each git CLI way")
    parser.add_argument("--keep", action="store_true", help="leave the repositories behind")
    args = parser.parse_args()
    parent = "/dev/shm" if args.where == "shm" else "/tmp"
    root = Path(tempfile.mkdtemp(prefix="rally-bench-", dir=parent))
    try:
        started = time.perf_counter()
        source = build(root)
        print(f"repository: {FILES} files, {TEAMMATES} teammates x {COMMITS} commits, in {root} "
              f"({filesystem_of(root)}), built in {time.perf_counter() - started:.1f} s")
        print(f"git {git(root, '--version').split()[-1]}, pygit2 via rally_gh.git; best of the runs:")
        ours, ours_tree = best_of(args.repeat, source, root, "rally-gh", with_rally)
        merge_tree, merge_tree_tree = best_of(args.repeat_git, source, root, "merge-tree", with_merge_tree)
        rebase, rebase_tree = best_of(args.repeat_git, source, root, "git rebase", with_rebase)
        same = ours_tree == merge_tree_tree == rebase_tree
        print(f"final trees identical: {same} ({ours_tree})")
        print(f"rally-gh / git rebase = 1/{rebase / ours:.1f} (target at most 1/8)")
        print(f"rally-gh / merge-tree = 1/{merge_tree / ours:.1f} (target at most 1/3)")
        ok = same and ours * 8 <= rebase and ours * 3 <= merge_tree
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")
    raise SystemExit(main())
