"""Helpers for tests and benchmarks: real repositories with pinned identities.

Importable (not conftest) so benchmarks and the demo can build the same
repositories. Uses the git CLI so that tests exercise what users run.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

from rally_gh import process
from rally_gh.state import RunState, TeammateRecord

# The rally-gh command line of the running interpreter (no PATH lookup).
RALLY_CLI: tuple[str, ...] = (sys.executable, "-m", "rally_gh")

PINNED_DATE = "2026-01-01T00:00:00+00:00"

PINNED_ENV: dict[str, str] = {
    "GIT_AUTHOR_NAME": "Ada Tester",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_AUTHOR_DATE": PINNED_DATE,
    "GIT_COMMITTER_NAME": "Ada Tester",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_COMMITTER_DATE": PINNED_DATE,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(PINNED_ENV)
    if extra:
        env.update(extra)
    return env


def git(cwd: Path | str, *args: str, env: Mapping[str, str] | None = None, check: bool = True,
        input: str | bytes | None = None) -> str:
    """Run git in ``cwd`` with pinned identities and dates; return its stdout."""
    data = input.encode() if isinstance(input, str) else input
    proc = process.run(["git", *args], cwd=cwd, env=git_env(env), input=data)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed ({proc.returncode}) in {cwd}:\n{proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout.decode(errors="replace")


def tree_files(repo: Path, rev: str) -> dict[str, str]:
    """Every file at ``rev`` in ``repo`` with its blob id."""
    out = {}
    for line in git(repo, "ls-tree", "-r", "-z", rev).split("\0"):
        if line:
            meta, path = line.split("\t", 1)
            out[path] = meta.split()[2]
    return out


def write_files(root: Path, files: Mapping[str, str | bytes | None]) -> None:
    """Write (or, for ``None``, delete) files under ``root``."""
    for rel, content in files.items():
        p = root / rel
        if content is None:
            if p.is_symlink() or p.exists():
                p.unlink()
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


def init_repo(path: Path, files: Mapping[str, str | bytes | None] | None = None, *,
              branch: str = "main", message: str = "initial") -> Path:
    """A new repository at ``path`` with ``files`` committed (if any) on ``branch``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    git(path, "config", "user.name", PINNED_ENV["GIT_AUTHOR_NAME"])
    git(path, "config", "user.email", PINNED_ENV["GIT_AUTHOR_EMAIL"])
    git(path, "config", "commit.gpgsign", "false")
    if files:
        commit(path, files, message)
    return path


def commit(path: Path, files: Mapping[str, str | bytes | None], message: str, *,
           env: Mapping[str, str] | None = None) -> str:
    """Write ``files``, stage everything, commit; return the new commit's sha."""
    write_files(path, files)
    git(path, "add", "-A")
    git(path, "commit", "-q", "--no-verify", "--allow-empty", "-m", message, env=env)
    return git(path, "rev-parse", "HEAD").strip()


SAMPLE_MAP = """\
version: 1
team: sample
teammates:
  - name: api
    role: Backend
    task: Build the API.
    exclusive_write: [src/api/**, tests/api/]
    agent: {preset: command, command: ["true"]}
  - name: web
    role: Frontend
    task: Build the web client.
    exclusive_write: [src/web/**]
    blocked_by: [api]
    agent: {preset: command, command: ["true"]}
"""


# A three-teammate shop used by the enforcement tests and benchmarks.
SHOP_MAP = """\
version: 1
team: shop
teammates:
  - name: api
    exclusive_write: [src/api/**, tests/api/, "!src/api/generated/**"]
    agent: {preset: command, command: ["true"]}
  - name: web
    exclusive_write: [src/web/**]
    agent: {preset: command, command: ["true"]}
  - name: infra
    exclusive_write: [/.gitmodules, /vendor/]
    agent: {preset: command, command: ["true"]}
"""

SHOP_FILES: dict[str, str | bytes | None] = {
    "rally.yml": SHOP_MAP,
    "README.md": "shop\n",
    "src/api/app.py": "print('api')\n",
    "src/api/README.md": "api\n",
    "src/api/generated/schema.py": "# generated\n",
    "src/web/app.js": "console.log('web')\n",
    "tests/api/test_app.py": "def test(): pass\n",
}


# --- Scripted agents (preset: command), for runs in tests ------------------------

# Python scripts that a teammate's agent runs in its checkout. ``web`` is blocked by ``api``:
# it fails unless its checkout already holds api's ``src/api/orders.py``. ``stray`` writes its
# own file and ``README.md``, which it does not own.
AGENT_SCRIPTS: dict[str, str] = {
    "web": """
        import pathlib, sys
        if not pathlib.Path("src/api/orders.py").exists():
            sys.exit("api's work is missing from web's checkout")
        pathlib.Path("src/web").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/web/app.js").write_text("fetch('/orders')\\n")
    """,
    "stray": """
        import pathlib
        pathlib.Path("src/stray").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/stray/x.py").write_text("x = 1\\n")
        pathlib.Path("README.md").write_text("rewritten by stray\\n")
    """,
}


def write_agent_scripts(folder: Path, scripts: Mapping[str, str]) -> dict[str, Path]:
    """Each script of ``scripts`` (indented as in the test) written to ``folder/<name>.py``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, body in scripts.items():
        paths[name] = folder / f"{name}.py"
        paths[name].write_text(textwrap.dedent(body))
    return paths


# --- Run states, for tests of what is made from a finished run -------------------

T0 = 1_000_000.0


def teammate_record(name: str, outcome: str, **extra: object) -> TeammateRecord:
    """A finished teammate of run r1 (10 s of work); ``extra`` sets any other field."""
    fields: dict[str, object] = {"name": name, "branch": f"rally/r1/{name}", "outcome": outcome, "attempts": 1,
                                 "duration_s": 10.0, "started_at": T0, "finished_at": T0 + 10,
                                 "owns": (f"src/{name}/**",)}
    fields.update(extra)
    return TeammateRecord.model_validate(fields)


def run_state(*teammates: TeammateRecord, **extra: object) -> RunState:
    """Run r1, finished after 12 s, integrating the teammates marked integrated."""
    fields: dict[str, object] = {
        "run_id": "r1", "team": "t", "base_ref": "main", "base_sha": "b" * 40, "config_digest": "d",
        "started_at": T0, "finished_at": T0 + 12, "status": "finished", "max_parallel": 4,
        "teammates": teammates, "phases": {"run": 10.0}, "integration_branch": "rally/r1/_integration",
        "integration_sha": "c" * 40, "integrated": tuple(t.name for t in teammates if t.integrated),
    }
    fields.update(extra)
    return RunState.model_validate(fields)


def live_processes_with(marker: str) -> list[int]:
    """Host pids of the live (not zombie) processes whose environment holds ``marker``:
    how a test finds an agent's processes when a PID namespace hides their real pids."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in environ and stat[stat.rfind(")") + 2] != "Z":
            found.append(int(entry.name))
    return found
