"""``rally-gh run`` on a person's machine: what the shell around it holds does not change what a run is."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

from rally_gh.commands import run as run_cmd
from rally_gh.commands.run import RunOptions
from rally_gh.github.actions import read
from rally_gh.testing import init_repo

# Writes what it was given, so the test can look; fails when it sees a token.
AGENT = """\
import json, os, pathlib, sys
name = os.environ["RALLY_TEAMMATE"]
pathlib.Path(name).mkdir(exist_ok=True)
pathlib.Path(f"{name}/work.txt").write_text("work\\n")
leaked = sorted(k for k in ("GITHUB_TOKEN", "GH_TOKEN") if k in os.environ)
sys.exit(f"a token reached the agent: {leaked}" if leaked else 0)
"""


def _repo(tmp_path: Path, **map_extra: str) -> Path:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    lines = ["version: 1", "team: t", "defaults: {timeout: 20s, retries: 0}",
             'merge: {verify: ["test -z \\"$GH_TOKEN$GITHUB_TOKEN\\""]}', "teammates:"]
    for name in ("api", "web"):
        lines += [f"  - name: {name}", f"    exclusive_write: [{name}/**]",
                  f"    agent: {{preset: command, command: [{json.dumps(sys.executable)}, {json.dumps(str(agent))}],"
                  " env: [GH_TOKEN, GITHUB_TOKEN]}"]
    return init_repo(tmp_path / "repo", {"README.md": "# r\n", "rally.yml": "\n".join(lines) + "\n"})


@pytest.mark.parametrize("held", [("GH_TOKEN",), ("GITHUB_TOKEN",), ("GITHUB_TOKEN", "GH_TOKEN")])
def test_a_local_shell_with_a_token_runs_locally_and_passes_the_token_to_nobody(
        tmp_path: Path, held: tuple[str, ...], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _repo(tmp_path)
    for name in held:
        monkeypatch.setenv(name, "gho_secret")  # verify sees the process environment
    env = {**os.environ, **{name: "gho_secret" for name in held}}
    out = io.StringIO()
    code = run_cmd.run(repo, read(env), out, options=RunOptions(run_id="local1"), progress_stream=io.StringIO())
    err = capsys.readouterr().err
    assert code == 0, out.getvalue()
    assert "Done" in out.getvalue() and "gho_secret" not in out.getvalue()
    notes = [line for line in err.splitlines() if "local run" in line]
    one = len(held) == 1
    assert notes == [f"rally-gh: note: {' and '.join(held)} {'is' if one else 'are'} set, but this is a local run "
                     f"(not GitHub Actions, no --event): {'the token is' if one else 'the tokens are'} not used and "
                     "not passed on"]


def test_github_mode_is_for_actions_and_an_event_is_needed_there(tmp_path: Path) -> None:
    from rally_gh.errors import UsageError

    repo = _repo(tmp_path)
    env = {**os.environ, "GITHUB_TOKEN": "ghs_x", "GITHUB_ACTIONS": "true"}
    with pytest.raises(UsageError, match="needs an event") as refused:
        run_cmd.run(repo, read(env), io.StringIO(), options=RunOptions(run_id="gh1"), progress_stream=io.StringIO())
    assert "GITHUB_TOKEN" not in (refused.value.hint or "")


def test_the_environment_of_a_run(tmp_path: Path) -> None:
    local = {"GH_TOKEN": "a", "PATH": "/bin"}
    assert dict(read(local).for_run().environ) == {"PATH": "/bin"} and read(local).for_run().token is None
    given = read(local, event_path=tmp_path).for_run()
    # In GitHub mode the token is the context's alone: never in what children start from.
    assert dict(given.environ) == {"PATH": "/bin"} and given.token == "a"
    actions = {**local, "GITHUB_ACTIONS": "true"}
    assert dict(read(actions).for_run().environ) == {"PATH": "/bin", "GITHUB_ACTIONS": "true"}
    assert read(actions).for_run().token == "a"
    assert dict(read({"PATH": "/bin", "GITHUB_ACTIONS": "false", "GITHUB_TOKEN": "x"}).for_run().environ) == {
        "PATH": "/bin", "GITHUB_ACTIONS": "false"}
