from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the real home folder or the user's git config."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for var in ("GITHUB_TOKEN", "GH_TOKEN", "RALLY_TEAMMATE", "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT"):
        monkeypatch.delenv(var, raising=False)
    (home / ".gitconfig").write_text("[user]\n\tname = Ada Tester\n\temail = ada@example.com\n[init]\n\tdefaultBranch = main\n")
    yield
    assert not (Path(os.path.expanduser("~")) / ".rally").exists()


@pytest.fixture(autouse=True)
def _unpaced_github(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' real GitHub client talks to the fake: no second between writes (GitHub's advice
    against its secondary rate limits), which would make the scenarios wait most of their time."""
    from rally_gh.github import actions
    from rally_gh.github.endpoint import RequestLimits

    monkeypatch.setattr(actions, "DEFAULT_LIMITS", RequestLimits(write_interval_s=0))


# Every real agent CLI that tests/real_agents drives (cli_params there): pinned and latest.
REAL_CLIS = tuple(cli + release for cli in ("claude", "codex", "aider") for release in ("", "-latest"))
_REAL_CLI_TEST = re.compile(r"^tests/real_agents/.*\[(?P<cli>[a-z-]+)\]$")
_real_cli_runs: dict[str, str] = {}  # cli -> "ran", or why its tests skipped


# Why tests/report/test_mermaid.py did not draw the report's diagrams with Mermaid (its tests skip
# only when the renderer is missing).
_mermaid_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid.startswith("tests/report/test_mermaid.py::") and report.skipped and not _mermaid_skipped:
        longrepr = report.longrepr
        _mermaid_skipped.append(str(longrepr[2] if isinstance(longrepr, tuple) else longrepr))
    m = _REAL_CLI_TEST.match(report.nodeid)
    if m is None or m["cli"] not in REAL_CLIS:
        return
    if report.when == "call" and not report.skipped:
        _real_cli_runs[m["cli"]] = "ran"
    elif report.skipped and m["cli"] not in _real_cli_runs:
        longrepr = report.longrepr
        _real_cli_runs[m["cli"]] = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr).removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A skipped real CLI must not pass for coverage: say loudly which ones no test ran.
    The same for the report's diagrams, which only Mermaid itself can check."""
    for why in _mermaid_skipped:
        terminalreporter.write_sep("=", why.removeprefix("Skipped: "), yellow=True, bold=True)
    missing = [cli for cli in REAL_CLIS if _real_cli_runs.get(cli) != "ran"]
    if not missing:
        terminalreporter.write_line(f"real agent CLIs exercised: {', '.join(REAL_CLIS)}", green=True)
        return
    terminalreporter.write_sep("=", f"real agent CLIs NOT exercised: {', '.join(missing)}", yellow=True, bold=True)
    for cli in missing:
        why = _real_cli_runs.get(cli, "no test of it was run")
        terminalreporter.write_line(f"  {cli}: {why}", yellow=True)
