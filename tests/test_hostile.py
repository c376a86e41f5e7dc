"""Hostile agents (issue 16, docs/security.md): each attack a whole run, each run contained.

Each test runs ``rally-gh run`` with one attacker from tests/agents/hostile/
beside an honest teammate, and checks what containment means: the attacker
``violated`` or ``failed`` with the reason where its attempt can be seen, the
honest teammate's work intact and integrated, nothing planted outside the
attacker's own checkout (the user's refs, git config, home, the run's state,
processes), and the report true to what happened.

An ``xfail(strict=True)`` names what is still missing: such a test fails on
its containment assertion today, and passes (so the mark must go) once it is
contained.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rally_gh.testing import RALLY_CLI, git, init_repo

HOSTILE = Path(__file__).parent / "agents" / "hostile"
TOKEN = f"rally-hostile-{uuid.uuid4().hex}"  # the orchestrator's secret: only this value is ever searched for
HONEST = "honest.py"


@dataclass(frozen=True)
class Mate:
    name: str
    script: str
    args: tuple[str, ...] = ()
    owns: tuple[str, ...] = ()
    blocked_by: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # runner variables the map passes to its agent


def _map(mates: list[Mate], extra: str = "") -> str:
    lines = ["version: 1", "team: hostile", "defaults: {timeout: 30s, retries: 0}", "teammates:"]
    for m in mates:
        command = [sys.executable, str(HOSTILE / m.script), *m.args]
        agent = {"preset": "command", "command": command, **({"env": list(m.env)} if m.env else {})}
        lines += [f"  - name: {m.name}", f"    exclusive_write: {json.dumps(list(m.owns or (f'src/{m.name}/**',)))}",
                  f"    agent: {json.dumps(agent)}"]
        if m.blocked_by:
            lines.append(f"    blocked_by: {json.dumps(list(m.blocked_by))}")
    return "\n".join(lines) + "\n" + extra


@dataclass(frozen=True)
class Run:
    repo: Path
    run_id: str
    base: str
    report: dict[str, Any]
    output: str  # what the command printed, both streams

    def teammate(self, name: str) -> dict[str, Any]:
        return next(t for t in self.report["teammates"] if t["name"] == name)

    def integrated_file(self, path: str) -> str | None:
        done = subprocess.run(["git", "show", f"{self.report['integration_branch']}:{path}"], cwd=self.repo,
                              capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else None


def _environment(home: Path, **extra: str) -> dict[str, str]:
    """The orchestrator's whole environment, built from nothing: the test's token and no other secret."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1", "LANG": "C.UTF-8", "GITHUB_TOKEN": TOKEN,
            "GIT_AUTHOR_NAME": "Ada Tester", "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada Tester", "GIT_COMMITTER_EMAIL": "ada@example.com",
            # Which token is this test's, without giving it away: the attacker of attack 2 looks for its own
            # run's alone (tests on other workers hold theirs, in processes of their own that may be starting).
            "RALLY_HOSTILE_TOKEN_TAIL": TOKEN[-8:], **extra}


def _repo(tmp_path: Path, mates: list[Mate], files: dict[str, str | bytes | None] | None = None,
          extra: str = "") -> Path:
    return init_repo(tmp_path / "repo", {"README.md": "# project\n", "rally.yml": _map(mates, extra), **(files or {})})


def _run(repo: Path, run_id: str, env: dict[str, str], *options: str) -> Run:
    base = git(repo, "rev-parse", "HEAD").strip()
    done = subprocess.run([*RALLY_CLI, "run", "--run-id", run_id, *options], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)
    report = subprocess.run([*RALLY_CLI, "report", "--run", run_id, "--format", "json"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    return Run(repo, run_id, base, json.loads(report.stdout), done.stdout + done.stderr)


def _user_side(repo: Path, run_id: str) -> dict[str, str]:
    """What of the user's repository no teammate may change: every ref but the run's own
    branches, the git directory's config, hooks and info."""
    common = repo / ".git"
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    shown = {r.split()[0]: r.split()[1] for r in refs
             if not r.startswith(f"refs/heads/rally/{run_id}/") and not r.startswith("refs/rally/")}
    for name in ("config", "hooks", "info"):
        path = common / name
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        shown.update({str(p.relative_to(common)): p.read_bytes().hex() for p in files if p.is_file()})
    return shown


def _honest_work_integrated(run: Run, *names: str) -> None:
    for name in names:
        mate = run.teammate(name)
        assert mate["outcome"] == "done" and mate["integrated"], mate
        assert run.integrated_file(f"src/{name}/work.txt") == f"{name}'s own work\n"


def _attacker_stopped(run: Run, name: str, why: str) -> None:
    mate = run.teammate(name)
    assert mate["outcome"] in ("violated", "failed"), mate
    assert why in mate["reason"], mate["reason"]
    assert name not in run.report["integrated"]


# --- the ten attacks --------------------------------------------------------------------------


def test_1_a_forged_branch_of_another_teammate_is_never_integrated(tmp_path: Path) -> None:
    repo = _repo(tmp_path, [Mate("alpha", "forge_branch.py", ("beta",)), Mate("beta", HONEST)])
    before = _user_side(repo, "h1")
    run = _run(repo, "h1", _environment(Path(os.environ["HOME"])))
    assert run.integrated_file(".github/workflows/pwn.yml") is None, run.output
    assert run.integrated_file("README.md") == "# project\n"
    assert "pwn.yml" not in git(repo, "ls-tree", "-r", "--name-only", "rally/h1/beta")
    _honest_work_integrated(run, "beta")
    assert run.teammate("alpha")["outcome"] in ("violated", "failed", "no_changes")
    assert _user_side(repo, "h1") == before


def test_2_the_orchestrators_token_is_out_of_reach(tmp_path: Path) -> None:
    repo = _repo(tmp_path, [Mate("alpha", "read_secret.py", env=("RALLY_HOSTILE_TOKEN_TAIL",)), Mate("beta", HONEST)])
    run = _run(repo, "h2", _environment(Path(os.environ["HOME"])))
    reversed_token = TOKEN[::-1]
    leaks = [str(p) for p in (repo / ".git" / "rally").rglob("*") if p.is_file() and reversed_token in p.read_text(errors="replace")]
    assert leaks == [], "the token, reversed, is in the run's files"
    assert reversed_token not in run.output
    _attacker_stopped(run, "alpha", "no token in any process's environment")
    _honest_work_integrated(run, "beta")


def test_2_without_a_sandbox_no_process_s_environment_holds_the_token_either(tmp_path: Path) -> None:
    """Item 5: with --no-sandbox the agent sees every process of the machine, and runs as root here
    (root reads even a non-dumpable process's /proc/<pid>/environ). rally-gh took the token out of its
    own environment once read, wiping the block /proc shows, and nothing it started inherited it."""
    repo = _repo(tmp_path, [Mate("alpha", "read_secret.py", env=("RALLY_HOSTILE_TOKEN_TAIL",)), Mate("beta", HONEST)])
    run = _run(repo, "h2n", _environment(Path(os.environ["HOME"])), "--no-sandbox")
    assert TOKEN[::-1] not in run.output
    _attacker_stopped(run, "alpha", "no token in any process's environment")
    _honest_work_integrated(run, "beta")


def test_3_the_sandbox_cannot_be_remounted_to_plant_in_another_checkout(tmp_path: Path) -> None:
    repo = _repo(tmp_path, [Mate("alpha", "remount.py", ("beta",)), Mate("beta", HONEST, ("--after-peer", "remount"))])
    run = _run(repo, "h3", _environment(Path(os.environ["HOME"])))
    assert "src/beta/planted.txt" not in git(repo, "ls-tree", "-r", "--name-only", "rally/h3/beta"), run.output
    _attacker_stopped(run, "alpha", "cannot write into beta's checkout")
    _honest_work_integrated(run, "beta")


def test_4_the_users_gitconfig_cannot_be_planted(tmp_path: Path) -> None:
    home = tmp_path / "ada"  # a user without a ~/.gitconfig
    home.mkdir()
    loot = tmp_path / "loot"
    repo = _repo(tmp_path, [Mate("alpha", "plant_gitconfig.py", env=("RALLY_HOSTILE_HOME", "RALLY_HOSTILE_LOOT")),
                            Mate("beta", HONEST)])
    run = _run(repo, "h4", _environment(home, RALLY_HOSTILE_HOME=str(home), RALLY_HOSTILE_LOOT=str(loot)))
    assert not (home / ".gitconfig").exists(), run.output
    assert not loot.exists()
    _attacker_stopped(run, "alpha", "cannot write")
    _honest_work_integrated(run, "beta")


def test_5_merge_verify_runs_agent_code_without_reaching_the_token_or_the_git_config(tmp_path: Path) -> None:
    loot = tmp_path / "loot"
    mates = [Mate("alpha", "evil_verify.py", owns=("src/alpha/**", "tools/**"), env=("RALLY_HOSTILE_LOOT",)),
             Mate("beta", HONEST)]
    verify = f"merge:\n  verify: [{json.dumps(f'{sys.executable} tools/check.py')}]\n"
    repo = _repo(tmp_path, mates, {"tools/check.py": "print('ok')\n"}, extra=verify)
    before = _user_side(repo, "h5")
    run = _run(repo, "h5", _environment(Path(os.environ["HOME"]), RALLY_HOSTILE_LOOT=str(loot)))
    assert not loot.exists(), run.output
    assert _user_side(repo, "h5") == before
    _honest_work_integrated(run, "beta")


def test_6_a_replaced_blob_never_reaches_another_teammates_file(tmp_path: Path) -> None:
    mates = [Mate("alpha", "replace_blob.py", ("src/beta/y.txt",)), Mate("beta", HONEST, blocked_by=("alpha",))]
    repo = _repo(tmp_path, mates, {"src/beta/y.txt": "beta's file\n"})
    run = _run(repo, "h6", _environment(Path(os.environ["HOME"])))
    assert run.integrated_file("src/beta/y.txt") == "beta's file\n", run.output
    assert git(repo, "for-each-ref", "refs/replace/") == ""
    _honest_work_integrated(run, "beta")


def test_7_the_base_branch_cannot_be_moved(tmp_path: Path) -> None:
    repo = _repo(tmp_path, [Mate("alpha", "move_base.py"), Mate("beta", HONEST)])
    before = _user_side(repo, "h7")
    run = _run(repo, "h7", _environment(Path(os.environ["HOME"])))
    assert git(repo, "rev-parse", "main").strip() == run.base, run.output
    assert run.report["integrated_onto"] == run.base
    assert run.integrated_file(".github/workflows/pwn.yml") is None
    assert run.integrated_file("README.md") == "# project\n"
    _honest_work_integrated(run, "beta")
    assert _user_side(repo, "h7") == before


def _processes_with(word: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if word.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_8_no_process_of_an_agent_outlives_the_run(tmp_path: Path) -> None:
    marker = f"rally-hostile-orphan-{uuid.uuid4().hex}"
    repo = _repo(tmp_path, [Mate("alpha", "outlive.py", (marker,)), Mate("beta", HONEST)])
    try:
        run = _run(repo, "h8", _environment(Path(os.environ["HOME"])))
        deadline = time.monotonic() + 3
        while _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_with(marker) == [], run.output
        _honest_work_integrated(run, "beta")
    finally:
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_9_no_teammate_acts_as_another(tmp_path: Path) -> None:
    mates = [Mate("alpha", "impersonate.py", ("beta",)), Mate("beta", HONEST, ("--after-peer", "impersonate", "--git"))]
    repo = _repo(tmp_path, mates)
    run = _run(repo, "h9", _environment(Path(os.environ["HOME"])))
    assert "src/beta/planted.txt" not in git(repo, "ls-tree", "-r", "--name-only", "rally/h9/beta"), run.output
    assert not (repo / ".git" / "rally" / "runs" / "h9" / "teammates" / "beta" / "home" / ".gitconfig").exists()
    _attacker_stopped(run, "alpha", "cannot plant in beta's home")
    _honest_work_integrated(run, "beta")


def test_10_the_hooks_cache_cannot_be_poisoned(tmp_path: Path) -> None:
    repo = _repo(tmp_path, [Mate("alpha", "poison_cache.py", ("alpha",)), Mate("beta", HONEST)])
    env = _environment(Path(os.environ["HOME"]))
    subprocess.run([*RALLY_CLI, "hook", "install"], cwd=repo, env=env, check=True, capture_output=True)
    run = _run(repo, "h10", env)
    (repo / "README.md").write_text("# changed by alpha\n")
    git(repo, "add", "README.md")
    commit = subprocess.run(["git", "commit", "-q", "-m", "alpha's change"], cwd=repo, capture_output=True, text=True,
                            env={**env, "RALLY_TEAMMATE": "alpha"}, check=False)
    assert commit.returncode != 0, "the hook accepted alpha's change to README.md\n" + run.output
    assert "README.md" in commit.stdout + commit.stderr
    _attacker_stopped(run, "alpha", "cannot write the hook's cache")
    _honest_work_integrated(run, "beta")
