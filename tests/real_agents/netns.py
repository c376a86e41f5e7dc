"""Where the real CLIs are, and running one scenario in a network namespace of its own."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Decided when this module is imported, before the test fixtures give each
# test an empty HOME: the cache is the one install.sh filled, under the real
# HOME, unless RALLY_AGENT_CACHE names another.
AGENT_CACHE = Path(os.environ.get("RALLY_AGENT_CACHE") or Path.home() / ".cache" / "rally-gh-agents")
AGENT_BIN = AGENT_CACHE / "bin"
LATEST = "-latest"  # claude-latest: the latest release, installed next to the pinned one
DRIVER = Path(__file__).with_name("drive.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


def preset(cli: str) -> str:
    """The preset that drives ``cli`` (``claude`` for ``claude`` and ``claude-latest``)."""
    return cli.removesuffix(LATEST)


def agent_bin(cli: str) -> Path:
    """The folder whose ``claude``, ``codex`` or ``aider`` is this release of the CLI."""
    return AGENT_CACHE / "latest" / "bin" if cli.endswith(LATEST) else AGENT_BIN


def installed(cli: str) -> bool:
    return os.access(agent_bin(cli) / preset(cli), os.X_OK)


def skip_reason(cli: str) -> str:
    return (f"{cli} is not installed in {agent_bin(cli)}: run tests/real_agents/install.sh "
            "(or set RALLY_AGENT_CACHE to where it installed)")


@functools.cache
def unshare_prefix() -> tuple[str, ...]:
    """The command that gives a process tree only loopback, or () where the kernel refuses it."""
    for prefix in (("unshare", "-n"), ("unshare", "-rn")):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            continue
    return ()


def run_scenario(cli: str, job: dict[str, Any], timeout_s: float = 120) -> dict[str, Any]:
    """Run ``drive.py`` on ``job`` with ``cli``'s release first on PATH, under ``unshare -n``
    (plain loopback if not permitted); its result."""
    prefix = unshare_prefix()
    job = {**job, "netns": bool(prefix)}
    env = {**os.environ, "PATH": f"{agent_bin(cli)}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
           "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([*prefix, sys.executable, str(DRIVER)], input=json.dumps(job), capture_output=True,
                          text=True, env=env, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"the driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    result["netns"] = bool(prefix)
    return result
