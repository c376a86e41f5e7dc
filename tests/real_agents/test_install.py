"""install.sh's registry checks, and the line that ends every test run about the real CLIs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

INSTALL_SH = Path(__file__).with_name("install.sh")
REPO_ROOT = Path(__file__).resolve().parents[2]


def install_function(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Call one function of install.sh (its definitions only, not its installs), as it runs: pipefail on."""
    script = (f'set -uo pipefail; eval "$(sed -n "/^[a-z_]*() {{/,/^}}/p; /^[a-z_]*() {{.*}}$/p" {INSTALL_SH})"; '
              f'{name} "$@"')
    return subprocess.run(["bash", "-c", script, "install.sh", *args], capture_output=True, text=True, timeout=60)


def fake_pip(tmp_path: Path) -> Path:
    """A "python" whose ``-m pip index versions`` answers as pip does: the match on its first
    line, then more, written after a reader that stopped at the match has gone."""
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n"
                      "echo 'aider-chat (0.86.2)'\n"
                      "sleep 0.3\n"
                      "for i in $(seq 1 2000); do echo \"Available versions: 0.86.2, 0.86.1, 0.$i.0\"; done\n")
    python.chmod(0o755)
    return python


def test_pip_has_finds_a_version_that_pip_lists_although_grep_stops_at_the_first_match(tmp_path: Path) -> None:
    python = fake_pip(tmp_path)
    assert install_function("pip_has", str(python), "aider-chat", "0.86.2").returncode == 0
    assert install_function("pip_has", str(python), "aider-chat", "9.9.9").returncode != 0
    latest = install_function("pip_latest", str(python), "aider-chat")
    assert (latest.returncode, latest.stdout) == (0, "0.86.2\n")


def test_a_test_run_ends_naming_every_real_cli_it_did_not_exercise(tmp_path: Path) -> None:
    env = {**os.environ, "RALLY_AGENT_CACHE": str(tmp_path / "empty-cache")}
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/real_agents/test_real_clis.py", "-k", "writes_its_file"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "real agent CLIs NOT exercised: claude, claude-latest, codex, codex-latest, aider, aider-latest" in proc.stdout
    assert f"  claude-latest: claude-latest is not installed in {tmp_path / 'empty-cache' / 'latest' / 'bin'}" in proc.stdout


def test_a_run_without_the_real_cli_tests_says_so() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/real_agents/test_install.py", "-k", "pip_has"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "  aider: no test of it was run" in proc.stdout
