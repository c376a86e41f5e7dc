"""The presets with the real Claude Code, Codex and aider, offline, against the model stub.

Each test is one story: the stub plays a scenario (plain data, below), the
real CLI runs through the runner (``agent_command``, ``agent_environment``,
``agent_attempt``) in a real git repository, inside a network namespace with
only loopback (drive.py), and the test reads the outcome as the report would.
install.sh puts the CLIs in a cache outside the repository, each in its pinned
release and its latest (``claude`` and ``claude-latest``: every test runs on
both); a CLI that is not there skips its tests, saying so, and the test run
ends with a line naming every CLI that was not exercised (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from netns import LATEST, installed, preset, run_scenario, skip_reason, unshare_prefix

from rally_gh import process
from rally_gh.agents import CODEX_PRICES_PER_MTOK
from rally_gh.testing import git, init_repo

pytestmark = pytest.mark.slow

# --- scenarios: what the model says, one turn per model call -----------------

Scenario = list[dict[str, Any]]

WRITES_ITS_FILE: Scenario = [{"write": "src/hello.txt", "content": "Hello from the model\n"},
                             {"answer": "Wrote src/hello.txt."}]
WRITES_OUTSIDE_ITS_WORKTREE: Scenario = [{"write": "../outside.txt", "content": "not yours\n"}, {"answer": "Done."}]
REJECTS_THE_KEY: Scenario = [{"fail": 401}]
SERVER_ERRORS: Scenario = [{"fail": 500, "times": 10}]
SERVER_ERRORS_THEN_RECOVERS: Scenario = [{"fail": 500, "times": 3}, *WRITES_ITS_FILE]
HANGS: Scenario = [{"sleep": 60, "answer": "too late"}]

# --- each CLI pointed at the stub, the way a map would do it -----------------

CLAUDE_MODEL = "claude-sonnet-4-5"
CLAUDE_PRICE_PER_TOKEN = (3 / 1e6, 15 / 1e6)  # Claude Code's own price table for Sonnet 4.5
CODEX_MODEL = "gpt-5-mini"
AIDER_MODEL = "openai/stub-model"
AIDER_PRICE_PER_TOKEN = (2 / 1e6, 10 / 1e6)  # given to aider in its metadata file


def claude_setup(tmp_path: Path) -> dict[str, Any]:
    # ANTHROPIC_BASE_URL is one of the preset's passed variables.
    return {"preset": "claude", "model": CLAUDE_MODEL, "args": [],
            "env": {"ANTHROPIC_API_KEY": "sk-ant-stub", "ANTHROPIC_BASE_URL": "{url}"}}


def codex_setup(tmp_path: Path) -> dict[str, Any]:
    # Codex ignores OPENAI_BASE_URL: another endpoint is a provider declared in args (docs/agents.md).
    provider = ('model_providers.stub={name="stub",base_url="{url}/v1",env_key="STUB_API_KEY",'
                'wire_api="responses",request_max_retries=0,stream_max_retries=0}')
    return {"preset": "codex", "model": CODEX_MODEL,
            "args": ["-c", "model_provider=stub", "-c", provider, "--disable", "plugins",
                     # Its sandbox lets commands write anywhere in /tmp, where these tests live;
                     # $TMPDIR, also writable to them, is the preset's, in the teammate's home.
                     "-c", "sandbox_workspace_write.exclude_slash_tmp=true"],
            "env": {"STUB_API_KEY": "sk-stub"}}


def aider_setup(tmp_path: Path) -> dict[str, Any]:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({AIDER_MODEL: {
        "input_cost_per_token": AIDER_PRICE_PER_TOKEN[0], "output_cost_per_token": AIDER_PRICE_PER_TOKEN[1],
        "max_input_tokens": 128000, "max_output_tokens": 8192, "litellm_provider": "openai", "mode": "chat"}}))
    return {"preset": "aider", "model": AIDER_MODEL,
            "args": ["--openai-api-base", "{url}/v1", "--model-metadata-file", str(prices)],
            "env": {"OPENAI_API_KEY": "sk-stub"}}


SETUPS = {"claude": claude_setup, "codex": codex_setup, "aider": aider_setup}


def cli_params(*presets: str) -> list[Any]:
    """Each preset's CLI in its pinned and its latest release: ``claude``, ``claude-latest``."""
    clis = [name + release for name in presets for release in ("", LATEST)]
    return [pytest.param(cli, marks=pytest.mark.skipif(not installed(cli), reason=skip_reason(cli)), id=cli)
            for cli in clis]


# --- running a story ---------------------------------------------------------


class Story:
    """One run of a real CLI: the worktree it worked in and what came back."""

    def __init__(self, tmp_path: Path, cli: str, scenario: Scenario, timeout_s: float = 60, **job_keys: Any) -> None:
        self.area = tmp_path / "area"  # the worktree's parent: where a write outside it lands
        self.worktree = init_repo(self.area / "worktree", {"README.md": "# demo\n", "src/__init__.py": ""})
        job = {**SETUPS[preset(cli)](tmp_path), "scenario": scenario, "workdir": str(self.worktree),
               "home": str(tmp_path / "home"), "run_dir": str(tmp_path / "run"), "timeout_s": timeout_s,
               "prompt": "Create src/hello.txt saying hello.\n", **job_keys}
        self.result = run_scenario(cli, job)
        self.attempt: dict[str, Any] = self.result["attempt"]
        self.run: dict[str, Any] = self.result["run"]
        self.requests: list[dict[str, Any]] = self.result["requests"]

    @property
    def output(self) -> str:
        return str(self.run["stdout"]) + str(self.run["stderr"])

    def model_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["protocol"]]

    def tool_output(self) -> str:
        """What the CLI told the model its (first) tool call gave: Codex's function_call_output."""
        answer = self.model_calls()[1]["body"]["input"][-1]
        assert answer["type"] == "function_call_output", answer
        return str(answer["output"])

    def changes(self) -> str:
        return git(self.worktree, "status", "--porcelain", "--untracked-files=all")


def assert_offline(story: Story) -> None:
    """Every call went to the stub, in a namespace where no other host exists."""
    assert story.result["netns"] or not unshare_prefix(), "the CLI ran outside its network namespace"
    unknown = [f"{r['method']} {r['path']}" for r in story.requests
               if not r["protocol"] and r["path"] != "/"]  # Claude Code probes HEAD / and takes a 404
    assert not unknown, f"the CLI called paths the stub does not serve: {unknown}"


def assert_key_sent(story: Story, cli: str) -> None:
    """The key reached the CLI through the preset's passthrough or the map's env, and it used it."""
    header, value = {"claude": ("x-api-key", "sk-ant-stub")}.get(preset(cli), ("authorization", "Bearer sk-stub"))
    assert {call["headers"].get(header) for call in story.model_calls()} == {value}


# --- the stories -------------------------------------------------------------


@pytest.mark.parametrize("cli", cli_params("claude", "codex", "aider"))
def test_the_cli_writes_its_file_in_the_worktree_and_reports_its_cost(tmp_path: Path, cli: str) -> None:
    story = Story(tmp_path, cli, WRITES_ITS_FILE)
    assert story.attempt["status"] == "ok", story.output
    assert (story.worktree / "src" / "hello.txt").read_text() == "Hello from the model\n"
    assert "src/hello.txt" in story.changes()
    assert_offline(story)
    assert_key_sent(story, cli)
    assert story.attempt["cost_usd"] == pytest.approx(expected_cost(cli, story), abs=1e-4)
    assert story.attempt["tokens"] == expected_tokens(cli, story)


def expected_cost(cli: str, story: Story) -> float:
    sent, received = served_or_printed_tokens(cli, story)
    per_input, per_output = {"claude": CLAUDE_PRICE_PER_TOKEN, "aider": AIDER_PRICE_PER_TOKEN}.get(
        preset(cli), (CODEX_PRICES_PER_MTOK[CODEX_MODEL][0] / 1e6, CODEX_PRICES_PER_MTOK[CODEX_MODEL][2] / 1e6))
    return sent * per_input + received * per_output


def expected_tokens(cli: str, story: Story) -> int:
    return sum(served_or_printed_tokens(cli, story))


def served_or_printed_tokens(cli: str, story: Story) -> tuple[int, int]:
    """What the attempt must add up to: the usage the stub served, or for aider what it printed.

    aider counts tokens with its own tokenizer and ignores the usage the server sends.
    """
    if preset(cli) != "aider":
        return story.result["usage_served"][0], story.result["usage_served"][1]
    calls = re.findall(r"^Tokens: (\d+) sent, (\d+) received\.", story.output, re.M)
    assert calls, story.output
    return sum(int(s) for s, _ in calls), sum(int(r) for _, r in calls)


@pytest.mark.parametrize("cli", cli_params("claude", "codex", "aider"))
def test_a_write_outside_the_worktree_is_visible(tmp_path: Path, cli: str) -> None:
    story = Story(tmp_path, cli, WRITES_OUTSIDE_ITS_WORKTREE)
    outside = story.area / "outside.txt"
    assert story.changes() == "" or story.changes().strip() == "?? .aider.tags.cache.v4/cache.db"
    if preset(cli) == "codex":
        # Its workspace-write sandbox refuses the write; the model is told, the turn goes on.
        # That sandbox is bubblewrap: the machine's bwrap where there is one (rally-gh requires
        # it), else the one Codex bundles. Codex found the helper it runs inside it although its
        # home is under /tmp: the preset gives it a TMPDIR of its own (docs/agents.md), without
        # which an older system bwrap (no --argv0, as here: Debian 12's 0.8.0) failed every
        # command with "bwrap: execvp codex-linux-sandbox" and this write was never tried.
        assert not outside.exists() and story.attempt["status"] == "ok"
        assert "Read-only file system" in story.tool_output(), story.tool_output()
        assert "could not create PATH aliases" not in story.run["stderr"], story.run["stderr"]
    elif preset(cli) == "aider":
        # aider creates the file (empty), git refuses to stage it, the edit stops, aider exits 0:
        # the parser fails the attempt.
        assert outside.read_text() == ""
        assert story.attempt["status"] == "failed"
        assert story.attempt["message"] == f"aider tried to write outside its worktree: {outside}"
    else:
        # A bare Write would take any absolute path, silently (exit 0, no denial); the preset's
        # Edit(./**) turns it into a denial, which fails the attempt with the path.
        assert not outside.exists() and story.run["exit_code"] == 0
        assert story.attempt["status"] == "failed"
        assert story.attempt["message"].startswith(f"Claude Code was denied permission: Write {outside} ")


@pytest.mark.parametrize("cli", cli_params("claude", "codex", "aider"))
def test_a_rejected_key_fails_with_the_cli_own_message(tmp_path: Path, cli: str) -> None:
    story = Story(tmp_path, cli, REJECTS_THE_KEY)
    assert story.attempt["status"] in ("failed", "crashed") and story.attempt["agent_status"] == "failed"
    expected = {"claude": "Claude Code failed (API status 401): Invalid API key",
                "codex": "Codex failed: unexpected status 401 Unauthorized: Incorrect API key provided",
                "aider": "aider failed: litellm.AuthenticationError: AuthenticationError: OpenAIException - "
                         "Incorrect API key provided: stub-key."}[preset(cli)]
    assert story.attempt["message"].startswith(expected), story.attempt["message"]
    assert len(story.model_calls()) == 1  # the preset makes it fail fast: no retry
    assert story.changes() == "" or "hello.txt" not in story.changes()


@pytest.mark.parametrize("cli", cli_params("claude", "codex"))
def test_a_server_error_fails_fast_with_the_cli_own_message(tmp_path: Path, cli: str) -> None:
    story = Story(tmp_path, cli, SERVER_ERRORS)
    assert story.attempt["status"] == "crashed" and story.run["exit_code"] == 1
    expected = {"claude": "Claude Code failed (API status 500): API Error: 500 Internal server error",
                # Codex words every 5xx as demand, whatever the body says.
                "codex": "Codex failed: We\u2019re currently experiencing high demand"}[preset(cli)]
    assert story.attempt["message"].startswith(expected), story.attempt["message"]
    assert len(story.model_calls()) == 1  # CLAUDE_CODE_MAX_RETRIES=0; the provider's *_max_retries=0


@pytest.mark.parametrize("cli", cli_params("aider"))
def test_aider_retries_server_errors_and_the_recovered_run_is_done(tmp_path: Path, cli: str) -> None:
    # aider has no retry setting: the OpenAI client under litellm retries a 5xx twice, quietly,
    # then aider retries the whole for about a minute (0.25 s doubling to 32 s), printing each
    # error. Past the server's recovery, those error lines must not fail the attempt.
    story = Story(tmp_path, cli, SERVER_ERRORS_THEN_RECOVERS)
    assert "litellm.InternalServerError" in story.output and "Retrying in" in story.output, story.output
    assert story.attempt["status"] == "ok", story.attempt["message"]
    assert (story.worktree / "src" / "hello.txt").exists() and len(story.model_calls()) == 4


@pytest.mark.parametrize("cli", cli_params("claude", "codex"))
def test_a_model_that_hangs_is_stopped_at_twice_the_timeout(tmp_path: Path, cli: str) -> None:
    story = Story(tmp_path, cli, HANGS, timeout_s=1.5)
    assert story.attempt["status"] == "timed_out" and story.run["timed_out"]
    assert 3.0 <= story.run["duration_s"] < 10


# --- inside rally-gh's own sandbox ---------------------------------------------


def codex_in_rally_sandbox() -> list[Any]:
    """Codex's releases, where rally-gh's sandbox can be built (bubblewrap is required: issue 16)."""
    here = process.sandbox_probe(os.environ.get("PATH"))
    reason = f"rally-gh's sandbox cannot be built here: {here.problem} ({here.hint})"
    return [pytest.param(*p.values, marks=[*p.marks, pytest.mark.skipif(not here.ok, reason=reason)], id=p.id)
            for p in cli_params("codex")]


@pytest.mark.parametrize("cli", codex_in_rally_sandbox())
def test_inside_rally_gh_sandbox_codex_own_sandbox_cannot_start(tmp_path: Path, cli: str) -> None:
    # Why the preset bypasses Codex's sandbox inside rally-gh's: Codex's is bubblewrap too, and
    # rally-gh's allows no user namespace inside it. Every shell command fails; the model is told.
    story = Story(tmp_path, cli, WRITES_ITS_FILE, bwrap=True)
    assert "bwrap: Creating new namespace failed" in story.tool_output(), story.tool_output()
    assert story.changes() == "" and story.attempt["status"] == "ok"  # a run calls this no_changes


@pytest.mark.parametrize("cli", codex_in_rally_sandbox())
def test_inside_rally_gh_sandbox_codex_runs_unsandboxed_and_writes_its_file(tmp_path: Path, cli: str) -> None:
    story = Story(tmp_path, cli, WRITES_ITS_FILE, bwrap=True, external_sandbox=True)
    assert "--dangerously-bypass-approvals-and-sandbox" in story.result["argv"]
    assert story.attempt["status"] == "ok", story.output
    assert (story.worktree / "src" / "hello.txt").read_text() == "Hello from the model\n"
    assert_offline(story)


@pytest.mark.parametrize("cli", codex_in_rally_sandbox())
def test_inside_rally_gh_sandbox_the_sandbox_refuses_codex_write_outside(tmp_path: Path, cli: str) -> None:
    # Codex sandboxes nothing here: the refusal is rally-gh's sandbox's (read-only but the worktree,
    # the teammate's home and the run folder), and the model is told, as with Codex's own.
    story = Story(tmp_path, cli, WRITES_OUTSIDE_ITS_WORKTREE, bwrap=True, external_sandbox=True)
    assert not (story.area / "outside.txt").exists() and story.changes() == ""
    assert "Read-only file system" in story.tool_output(), story.tool_output()
    assert story.attempt["status"] == "ok"
