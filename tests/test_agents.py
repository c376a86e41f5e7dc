"""agents.py: the command each preset builds, the environment an agent gets, and reading each CLI's outcome.

End-to-end tests put the stand-ins of tests/agents/bin (which print the real
tools' formats, AGENT-CLIS.md) first on PATH so that the presets run them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rally_gh.agents import (
    MAX_PROMPT_ARG_BYTES,
    AgentCommand,
    AgentOutput,
    agent_command,
    agent_environment,
    parse_outcome,
)
from rally_gh.config import AgentSpec, Teammate
from rally_gh.errors import AgentError
from rally_gh.process import run_agent

FAKES = Path(__file__).parent / "agents" / "bin"


@pytest.fixture()
def fakes_on_path(monkeypatch: pytest.MonkeyPatch) -> str:
    path = f"{FAKES}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    monkeypatch.setenv("PATH", path)
    return path


TEAMMATE = Teammate(name="api", role="Backend", task="Build it.", exclusive_write=("src/api/**",))


def environment(tmp_path: Path, base: dict[str, str] | None = None, passthrough: tuple[str, ...] = (),
                name: str = "api") -> dict[str, str]:
    teammate = TEAMMATE.model_copy(update={"name": name})
    return agent_environment(base if base is not None else dict(os.environ), teammate, "run-7", "checkout",
                             "a" * 40, tmp_path / "prompt.md", tmp_path / f"report-{name}.json",
                             ["src/api/**", "tests/api/"], passthrough, tmp_path / f"home-{name}")


def build(spec: AgentSpec, tmp_path: Path, prompt: str = "Do the task.\n") -> AgentCommand:
    (tmp_path / "prompt.md").write_text(prompt)
    return agent_command(spec, tmp_path / "prompt.md", tmp_path, tmp_path / "home")


# --- building commands -------------------------------------------------------


def test_command_preset_is_argv_as_given_with_the_prompt_on_stdin(tmp_path: Path) -> None:
    cmd = build(AgentSpec(preset="command", command=("echo", "hi"), args=("--x",)), tmp_path)
    assert cmd == AgentCommand("command", ("echo", "hi", "--x"), stdin="prompt")


def test_command_with_shell_runs_one_string_and_keeps_args_out_of_the_shell(tmp_path: Path) -> None:
    cmd = build(AgentSpec(preset="command", command=("make agent",), shell=True, args=("$(x)",)), tmp_path)
    assert cmd.argv == ("/bin/sh", "-c", "make agent", "rally-agent", "$(x)") and cmd.shell
    # config.py refuses these maps; the runner still refuses a spec built around it
    with pytest.raises(AgentError, match="must be one string"):
        build(AgentSpec.model_construct(preset="command", command=("make", "agent"), shell=True, args=()), tmp_path)


def test_command_preset_refuses_missing_programs(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="'no-such-agent-xyz' is not on PATH"):
        build(AgentSpec(preset="command", command=("no-such-agent-xyz",)), tmp_path)
    with pytest.raises(AgentError, match="not an executable file"):
        build(AgentSpec(preset="command", command=("./scripts/agent.sh",)), tmp_path)
    with pytest.raises(AgentError, match="needs a 'command' list"):
        build(AgentSpec.model_construct(preset="command", command=None, args=(), shell=False), tmp_path)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "agent.sh").write_text("#!/bin/sh\n")
    (tmp_path / "scripts" / "agent.sh").chmod(0o755)
    assert build(AgentSpec(preset="command", command=("./scripts/agent.sh",)), tmp_path).argv == ("./scripts/agent.sh",)


@pytest.mark.parametrize(("preset", "install"), [
    ("claude", "npm install -g @anthropic-ai/claude-code"),
    ("codex", "npm install -g @openai/codex"),
    ("aider", "pip install aider-chat"),
])
def test_a_missing_preset_binary_names_the_preset_and_the_install(tmp_path: Path, preset: str, install: str) -> None:
    (tmp_path / "prompt.md").write_text("x")
    with pytest.raises(AgentError) as err:
        agent_command(AgentSpec(preset=preset), tmp_path / "prompt.md", tmp_path, tmp_path / "home",  # type: ignore[arg-type]
                      search_path=str(tmp_path))
    assert f"the {preset} preset needs the '{preset}' program" in str(err.value)
    assert install in str(err.value)


def test_claude_command(tmp_path: Path, fakes_on_path: str) -> None:
    cmd = build(AgentSpec(preset="claude", model="claude-sonnet-4-5", args=("--max-turns", "30")), tmp_path)
    assert cmd.argv == ("claude", "-p", "Do the task.\n", "--output-format", "json", "--allowedTools",
                        "Read,Edit(./**),Glob,Grep,LS,Bash,TodoWrite", "--model", "claude-sonnet-4-5",
                        "--max-turns", "30")
    assert cmd.stdin == "devnull" and not cmd.shell
    assert cmd.env_dict() == {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0",
                              "CLAUDE_CONFIG_DIR": str(tmp_path / "home" / ".claude")}
    assert "ANTHROPIC_API_KEY" in cmd.passthrough


def test_codex_command(tmp_path: Path, fakes_on_path: str) -> None:
    cmd = build(AgentSpec(preset="codex", model="gpt-5", args=("-c", "model_provider=local")), tmp_path)
    assert cmd.argv == ("codex", "exec", "--json", "--skip-git-repo-check", "-s", "workspace-write",
                        "-c", "analytics.enabled=false", "-m", "gpt-5", "-c", "model_provider=local",
                        "--", "Do the task.\n")
    # A temporary directory of its own, never above CODEX_HOME: Codex makes the helper its
    # bubblewrap sandbox runs only where CODEX_HOME is not below $TMPDIR (docs/agents.md).
    home = tmp_path / "home"
    assert cmd.stdin == "devnull" and cmd.env_dict() == {"CODEX_HOME": str(home / ".codex"),
                                                         "TMPDIR": str(home / "tmp")}
    assert (home / ".codex").is_dir() and (home / "tmp").is_dir()
    assert "OPENAI_API_KEY" in cmd.passthrough


def test_codex_inside_rally_gh_sandbox_leaves_sandboxing_to_it(tmp_path: Path, fakes_on_path: str) -> None:
    # Codex's own sandbox (bubblewrap) cannot start where no user namespace can be made.
    (tmp_path / "prompt.md").write_text("Do the task.\n")
    spec = AgentSpec(preset="codex", model="gpt-5")
    cmd = agent_command(spec, tmp_path / "prompt.md", tmp_path, tmp_path / "home", external_sandbox=True)
    assert cmd.argv == ("codex", "exec", "--json", "--skip-git-repo-check",
                        "--dangerously-bypass-approvals-and-sandbox", "-c", "analytics.enabled=false",
                        "-m", "gpt-5", "--", "Do the task.\n")
    assert "-s" not in cmd.argv and cmd.env_dict() == build(spec, tmp_path).env_dict()
    for preset in ("claude", "aider"):  # their presets turn on no sandbox of their own
        other = AgentSpec(preset=preset)  # type: ignore[arg-type]
        assert agent_command(other, tmp_path / "prompt.md", tmp_path, tmp_path / "home",
                             external_sandbox=True) == build(other, tmp_path)


def test_aider_command_keeps_its_histories_out_of_the_repository(tmp_path: Path, fakes_on_path: str) -> None:
    cmd = build(AgentSpec(preset="aider", model="openai/local", args=("--openai-api-base", "http://h/v1")), tmp_path)
    argv = list(cmd.argv)
    for flag in ("--yes-always", "--no-auto-commits", "--no-check-update", "--no-analytics",
                 "--no-show-release-notes", "--no-gitignore", "--no-pretty", "--no-fancy-input"):
        assert flag in argv
    assert argv[argv.index("--chat-history-file") + 1].startswith(str(tmp_path / "home"))
    assert argv[argv.index("--input-history-file") + 1].startswith(str(tmp_path / "home"))
    assert argv[argv.index("--model") + 1] == "openai/local"
    assert argv[-4:] == ["--openai-api-base", "http://h/v1", "--message", "Do the task.\n"]
    assert cmd.env_dict() == {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "4096"} and cmd.stdin == "devnull"


def test_preset_prompt_argument_drops_nul_and_guards_a_leading_dash(tmp_path: Path, fakes_on_path: str) -> None:
    cmd = build(AgentSpec(preset="claude"), tmp_path, prompt="--dangerously-skip-permissions\0 and go")
    assert cmd.argv[2] == " --dangerously-skip-permissions and go"


def test_a_prompt_too_long_for_one_argument_points_at_the_prompt_file(tmp_path: Path, fakes_on_path: str) -> None:
    ascii_body = build(AgentSpec(preset="codex"), tmp_path, prompt="x" * 65_536)
    assert ascii_body.argv[-1] == "x" * 65_536
    wide = "é" * 65_536  # 131,072 bytes: over Linux's 128 KiB limit for one argument
    assert len(wide.encode()) > MAX_PROMPT_ARG_BYTES
    pointer = build(AgentSpec(preset="codex"), tmp_path, prompt=wide)
    assert str(tmp_path / "prompt.md") in pointer.argv[-1] and len(pointer.argv[-1]) < 500


# --- the environment ---------------------------------------------------------


def test_environment_is_clean_and_carries_the_contract(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm", "TMPDIR": "/tmp",
        "HOME": "/root", "GITHUB_TOKEN": "ghs_secret", "GH_TOKEN": "gho_secret", "ACTIONS_RUNTIME_TOKEN": "x",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://x", "GITHUB_REPOSITORY": "o/r", "AWS_SECRET_ACCESS_KEY": "k",
        "ANTHROPIC_API_KEY": "sk-ant", "GIT_DIR": "/elsewhere/.git", "GIT_INDEX_FILE": "/x/index",
        "RALLY_TEAMMATE": "intruder", "SSH_AUTH_SOCK": "/tmp/agent.sock", "MY_SETTING": "1",
    }
    env = environment(tmp_path, base)
    assert env["PATH"] == "/usr/bin:/bin" and env["LANG"] == env["LC_ALL"] == "C.UTF-8"
    assert env["TERM"] == "xterm" and env["TMPDIR"] == "/tmp"
    assert env["HOME"] == str(tmp_path / "home-api")
    assert env["RALLY_RUN_ID"] == "run-7" and env["RALLY_TEAM"] == "checkout"
    assert env["RALLY_TEAMMATE"] == "api" and env["RALLY_ROLE"] == "Backend"
    assert env["RALLY_BASE_SHA"] == "a" * 40
    assert env["RALLY_PROMPT_FILE"] == str(tmp_path / "prompt.md")
    assert env["RALLY_REPORT_FILE"] == str(tmp_path / "report-api.json")
    assert env["RALLY_OWNS"] == "src/api/**\ntests/api/"
    for secret in ("GITHUB_TOKEN", "GH_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL",
                   "GITHUB_REPOSITORY", "AWS_SECRET_ACCESS_KEY", "ANTHROPIC_API_KEY", "GIT_DIR",
                   "GIT_INDEX_FILE", "SSH_AUTH_SOCK", "MY_SETTING"):
        assert secret not in env, secret


def test_passthrough_names_variables_and_never_overrides_the_contract(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-ant", "HOME": "/root", "RALLY_TEAMMATE": "intruder"}
    env = environment(tmp_path, base, passthrough=("ANTHROPIC_API_KEY", "HOME", "RALLY_TEAMMATE", "NOT_SET"))
    assert env["ANTHROPIC_API_KEY"] == "sk-ant"
    assert env["HOME"] == str(tmp_path / "home-api") and env["RALLY_TEAMMATE"] == "api"
    assert "NOT_SET" not in env


def test_agents_commit_as_the_user_or_as_rally_gh(tmp_path: Path) -> None:
    env = environment(tmp_path, {"PATH": "/bin"})
    assert (env["GIT_AUTHOR_NAME"], env["GIT_COMMITTER_EMAIL"]) == (
        "rally-gh (api)", "rally-gh+api@users.noreply.github.com")
    teammate = TEAMMATE
    given = agent_environment({"PATH": "/bin"}, teammate, "r", "t", "a" * 40, tmp_path / "p", tmp_path / "r",
                              [], (), tmp_path / "home", ("Grace Hopper", "grace@example.com"))
    assert (given["GIT_AUTHOR_NAME"], given["GIT_AUTHOR_EMAIL"]) == ("Grace Hopper", "grace@example.com")
    assert (given["GIT_COMMITTER_NAME"], given["GIT_COMMITTER_EMAIL"]) == ("Grace Hopper", "grace@example.com")
    # Variables set around rally-gh win, as they do in git.
    around = agent_environment({"GIT_AUTHOR_NAME": "Ada"}, teammate, "r", "t", "a" * 40, tmp_path / "p",
                               tmp_path / "r", [], (), tmp_path / "home", ("Grace Hopper", "grace@example.com"))
    assert around["GIT_AUTHOR_NAME"] == "Ada" and around["GIT_COMMITTER_NAME"] == "Grace Hopper"


# --- reading outcomes --------------------------------------------------------


def claude_result(**changes: object) -> str:
    result = {"type": "result", "subtype": "success", "is_error": False, "result": "Done.", "num_turns": 2,
              "total_cost_usd": 0.05, "usage": {"input_tokens": 10, "output_tokens": 5},
              "permission_denials": []}
    result.update(changes)
    return json.dumps(result)


def test_claude_outcomes() -> None:
    ok = parse_outcome("claude", 0, claude_result(), "")
    assert (ok.ok, ok.status, ok.message, ok.cost_usd, ok.tokens) == (True, "done", "Done.", 0.05, 15)
    denied = parse_outcome("claude", 0, claude_result(permission_denials=[
        {"tool_name": "Bash", "tool_use_id": "t", "tool_input": {"command": "npm test"}}]), "")
    assert not denied.ok and "denied permission: Bash npm test" in denied.message and denied.cost_usd == 0.05
    api = parse_outcome("claude", 1, claude_result(is_error=True, api_error_status=529, result="Overloaded"), "")
    assert not api.ok and api.message == "Claude Code failed (API status 529): Overloaded"
    # is_error decides even with exit 0, and subtype "success" is not believed
    assert not parse_outcome("claude", 0, claude_result(is_error=True), "").ok
    crashed = parse_outcome("claude", 1, "", "Error: Cannot find module 'x'\n")
    assert not crashed.ok and "Cannot find module" in crashed.message and crashed.cost_usd is None
    # stream-json: several lines, the last result line counts
    stream = json.dumps({"type": "system"}) + "\n" + claude_result(total_cost_usd=0.5) + "\n"
    assert parse_outcome("claude", 0, stream, "").cost_usd == 0.5


def codex_lines(*events: dict[str, object]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


METADATA = {"type": "item.completed", "item": {"type": "error", "message": "Model metadata for `m` not found."}}


def test_codex_outcomes() -> None:
    usage = {"input_tokens": 1_000_000, "cached_input_tokens": 200_000, "output_tokens": 100_000}
    ok = parse_outcome("codex", 0, codex_lines(METADATA, {"type": "item.completed", "item": {
        "type": "agent_message", "text": "Wrote it."}}, {"type": "turn.completed", "usage": usage}), "", model="gpt-5")
    assert (ok.ok, ok.message, ok.tokens) == (True, "Wrote it.", 1_100_000)
    assert ok.cost_usd == pytest.approx(0.8 * 1.25 + 0.2 * 0.125 + 0.1 * 10)
    unknown_model = parse_outcome("codex", 0, codex_lines({"type": "turn.completed", "usage": usage}), "",
                                  model="local-model")
    assert unknown_model.ok and unknown_model.cost_usd is None and unknown_model.tokens == 1_100_000
    failed = parse_outcome("codex", 1, codex_lines(METADATA, {"type": "turn.failed", "error": {
        "message": "unexpected status 401 Unauthorized"}}), "")
    assert not failed.ok and failed.message == "Codex failed: unexpected status 401 Unauthorized"
    assert not parse_outcome("codex", 0, codex_lines(METADATA), "").ok  # no completed turn
    reconnected = parse_outcome("codex", 0, codex_lines({"type": "error", "message": "Reconnecting... 1/5"},
                                                        {"type": "turn.completed", "usage": usage}), "")
    assert reconnected.ok


def test_aider_outcomes() -> None:
    text = ("Tokens: 594 sent, 9 received. Cost: $0.0019 message, $0.0019 session.\nApplied edit to a.py\n"
            "Tokens: 2.5k sent, 1.2k cache write, 1k received. Cost: $0.01 message, $0.0119 session.\n")
    ok = parse_outcome("aider", 0, text, "")
    assert (ok.ok, ok.message, ok.cost_usd, ok.tokens) == (True, "Applied edit to a.py", 0.0119, 594 + 9 + 2500 + 1000)
    auth = parse_outcome("aider", 0, "litellm.AuthenticationError: AuthenticationError: OpenAIException - bad key\n", "")
    assert not auth.ok and "AuthenticationError" in auth.message
    recovered = parse_outcome("aider", 0, "litellm.InternalServerError: boom\nRetrying in 0.2 seconds...\n" + text, "")
    assert recovered.ok
    assert not parse_outcome("aider", 2, "", "Error: unknown flag\n").ok


def test_command_outcome_is_its_exit_code() -> None:
    assert parse_outcome("command", 0, "", "").ok
    failed = parse_outcome("command", 3, "working\n", "progress\nError: disk full\nbye\n")
    assert not failed.ok and failed.message == "exited with code 3: Error: disk full"
    assert parse_outcome("command", None, "", "").message == "was killed by a signal"


def test_report_file_completes_and_overrides(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"status": "partial", "summary": "half of it\nmore", "cost_usd": 1.5, "tokens": 7}))
    partial = parse_outcome("command", 0, "", "", report_file=report)
    assert (partial.ok, partial.status, partial.message, partial.cost_usd, partial.tokens) == (
        True, "partial", "half of it", 1.5, 7)
    # a cost the CLI measured is kept: the agent cannot talk it down
    assert parse_outcome("claude", 0, claude_result(), "", report_file=report).cost_usd == 0.05
    report.write_text(json.dumps({"status": "blocked", "summary": "s", "blocker": "the schema is missing"}))
    blocked = parse_outcome("claude", 0, claude_result(), "", report_file=report)
    assert (blocked.ok, blocked.status, blocked.message) == (False, "blocked", "blocked: the schema is missing")
    report.write_text(json.dumps({"status": "done"}))
    assert not parse_outcome("command", 1, "", "", report_file=report).ok  # a report never hides a crash
    report.write_text("{not json")
    broken = parse_outcome("command", 0, "", "", report_file=report)
    assert broken.ok and "report ignored" in broken.message
    report.write_text(json.dumps({"status": "finished"}))
    assert "expected done, partial or blocked" in parse_outcome("command", 0, "", "", report_file=report).message
    assert parse_outcome("command", 0, "", "", report_file=tmp_path / "absent.json").ok


# --- the presets against stand-ins of the real CLIs --------------------------


def run_preset(spec: AgentSpec, tmp_path: Path, mode: str, prompt: str = "Write hello.txt\n") -> tuple[AgentOutput, Path]:
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    (tmp_path / "prompt.md").write_text(prompt)
    cmd = agent_command(spec, tmp_path / "prompt.md", work, home)
    base = {**os.environ, "FAKE_AGENT_MODE": mode, "GITHUB_TOKEN": "ghs_x"}
    teammate = Teammate(name="api", exclusive_write=("src/**",))
    env = agent_environment(base, teammate, "r1", "team", "0" * 40, tmp_path / "prompt.md",
                            tmp_path / "report.json", ["src/**"], (*cmd.passthrough, "FAKE_AGENT_MODE"), home)
    run = run_agent(cmd, work, env, tmp_path / "prompt.md", 5, 0.2, log_path=tmp_path / "agent.log")
    output = parse_outcome(spec.preset, run.exit_code, run.stdout_tail, run.stderr_tail, model=spec.model,
                           report_file=tmp_path / "report.json")
    return output, work


def test_claude_preset_end_to_end(tmp_path: Path, fakes_on_path: str) -> None:
    hostile = "Fix $(touch pwned) `touch pwned2`; rm -rf / \n"
    output, work = run_preset(AgentSpec(preset="claude"), tmp_path, "ok", hostile)
    assert output.ok and output.cost_usd == 0.0123 and output.tokens == 155
    assert (work / "claude-prompt.txt").read_text() == hostile and not list(work.glob("pwned*"))
    assert (tmp_path / "home" / ".claude" / "transcript.jsonl").exists()


def test_claude_preset_permission_denial_with_exit_0(tmp_path: Path, fakes_on_path: str) -> None:
    output, work = run_preset(AgentSpec(preset="claude"), tmp_path, "deny")
    assert not output.ok and "denied permission: Write" in output.message
    assert not (work / "hello.txt").exists()


def test_claude_preset_api_error(tmp_path: Path, fakes_on_path: str) -> None:
    output, _ = run_preset(AgentSpec(preset="claude"), tmp_path, "api_error")
    assert not output.ok and "API status 401" in output.message


def test_codex_preset_end_to_end_with_stdin_closed(tmp_path: Path, fakes_on_path: str) -> None:
    # The stand-in, like Codex, would wait forever on an open pipe: /dev/null is what lets it run.
    output, work = run_preset(AgentSpec(preset="codex", model="gpt-5-mini"), tmp_path, "ok")
    assert output.ok and output.tokens == 13_500
    assert output.cost_usd == pytest.approx((10_000 * 0.25 + 2_000 * 0.025 + 1_500 * 2.0) / 1e6)
    assert (work / "hello.txt").exists() and (tmp_path / "home" / ".codex").is_dir()


def test_codex_preset_turn_failed(tmp_path: Path, fakes_on_path: str) -> None:
    output, _ = run_preset(AgentSpec(preset="codex"), tmp_path, "fail")
    assert not output.ok and output.message.startswith("Codex failed: stream disconnected")


def test_aider_preset_end_to_end(tmp_path: Path, fakes_on_path: str) -> None:
    output, work = run_preset(AgentSpec(preset="aider", model="openai/local"), tmp_path, "ok")
    assert output.ok and output.cost_usd == 0.0061 and output.tokens == 594 + 9 + 1200 + 250
    assert not list(work.glob(".aider*"))  # histories went to the isolated home
    assert (tmp_path / "home" / "aider.chat.history.md").exists()


def test_aider_preset_auth_error_with_exit_0(tmp_path: Path, fakes_on_path: str) -> None:
    output, work = run_preset(AgentSpec(preset="aider"), tmp_path, "auth")
    assert not output.ok and "AuthenticationError" in output.message
