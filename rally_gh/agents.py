"""Agent presets: the command line and the environment of each kind of agent, and reading its outcome.

This module knows agent CLIs, not processes (``process.py`` runs them) and not git. The
facts it relies on (flags, output formats, traps) are the ones recorded in
``AGENT-CLIS.md``; ``docs/agents.md`` explains them to users.

The prompt never passes through a shell: ``command`` agents read it on
standard input, presets get it as one argv element (the form their CLI
expects) with ``/dev/null`` as standard input, because Claude Code waits on an
open pipe and Codex waits forever.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from rally_gh.config import AgentSpec, Teammate
from rally_gh.errors import AgentError

Stdin = Literal["prompt", "devnull"]
AgentStatus = Literal["done", "partial", "blocked", "failed"]

# Linux refuses one argv element over MAX_ARG_STRLEN (128 KiB) with E2BIG, and
# an issue body alone may be 65,536 characters of up to 4 bytes each. Past this
# size a preset is told where the prompt file is instead of given its text.
MAX_PROMPT_ARG_BYTES = 100_000

INSTALL_HINTS: dict[str, str] = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "aider": "pip install aider-chat",
}

# Variables each preset's CLI needs from the runner to reach its model. They are
# credentials, so they pass only because the preset names them; the report
# shows them like any other passed variable.
# What each preset's CLI writes for itself in the worktree root (name prefixes): never the
# teammate's work, so never committed (aider keeps its repository map's cache there, and
# has no option to move it; turning the map off would cost it its view of the code).
PRESET_SCRATCH: dict[str, tuple[str, ...]] = {
    "aider": (".aider.tags.cache.", ".aider.chat.history", ".aider.input.history"),
}

PRESET_PASSTHROUGH: dict[str, tuple[str, ...]] = {
    "claude": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"),
    "codex": ("OPENAI_API_KEY", "CODEX_API_KEY"),
    "aider": ("OPENAI_API_KEY", "OPENAI_API_BASE", "ANTHROPIC_API_KEY"),
    "command": (),
}

# Claude Code denies every tool not listed (exit 0, file not written): this is
# the set a coding teammate needs. ``args`` can add to it. A bare ``Write`` lets
# its file tools write any absolute path, a sibling worktree included, silently;
# ``Edit(./**)`` allows Write, Edit and MultiEdit under the working directory
# only, and a write elsewhere becomes a denial the parser reports.
CLAUDE_ALLOWED_TOOLS = "Read,Edit(./**),Glob,Grep,LS,Bash,TodoWrite"

# Codex prints no cost: its tokens are priced here. USD per million tokens
# (input, cached input, output), OpenAI list prices as of 2025-11. A model not
# listed has an unknown cost (None), never a made-up one.
CODEX_PRICES_PER_MTOK: dict[str, tuple[float, float, float]] = {
    "gpt-5": (1.25, 0.125, 10.00),
    "gpt-5-codex": (1.25, 0.125, 10.00),
    "gpt-5.1": (1.25, 0.125, 10.00),
    "gpt-5.1-codex": (1.25, 0.125, 10.00),
    "gpt-5-mini": (0.25, 0.025, 2.00),
    "gpt-5.1-codex-mini": (0.25, 0.025, 2.00),
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "o3": (2.00, 0.50, 8.00),
    "o4-mini": (1.10, 0.275, 4.40),
    "codex-mini-latest": (1.50, 0.375, 6.00),
}


@dataclass(frozen=True)
class AgentCommand:
    """How to start one agent: what the runner executes, never a shell string."""

    preset: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # set on top of the clean environment
    stdin: Stdin = "devnull"
    shell: bool = False  # argv is ("/bin/sh", "-c", SCRIPT, ...): the map asked for it
    passthrough: tuple[str, ...] = ()  # runner variables the preset needs (API keys)

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


@dataclass(frozen=True)
class AgentOutput:
    """What an agent's output says about its attempt."""

    ok: bool
    status: AgentStatus
    message: str = ""
    cost_usd: float | None = None  # None: unknown, not free
    tokens: int | None = None


# --- building commands -------------------------------------------------------


def agent_command(spec: AgentSpec, prompt_file: Path, workdir: Path, home: Path, *,
                  search_path: str | None = None, external_sandbox: bool = False,
                  planning: bool = False) -> AgentCommand:
    """The command for ``spec``; ``home`` is the teammate's isolated home.

    ``search_path`` is the PATH the agent will run with (default: ours); an
    executable missing from it is an ``AgentError`` now rather than a crash later.

    ``external_sandbox``: the agent will run inside rally-gh's own bubblewrap sandbox
    (``rally_gh/sandbox.py``: everything read-only but its own paths, and no user
    namespace can be made inside it). Codex's own sandbox cannot start there, so the
    codex preset leaves sandboxing to it (``docs/agents.md``). Without it (``--no-sandbox``)
    Codex keeps its own sandbox.

    ``planning``: the plan step of a teammate in plan mode (``mode: plan``): the CLI's own read-only
    mode where it has one (``PLAN_ARGS``), on a checkout the sandbox holds read-only; a ``command``
    agent learns it from ``RALLY_MODE=plan``.
    """
    path = os.environ.get("PATH", os.defpath) if search_path is None else search_path
    if spec.preset == "command":
        return _command_preset(spec, workdir, path)
    _require_binary(spec.preset, path)
    prompt = _prompt_argument(prompt_file)
    if spec.preset == "codex":
        built = _codex(spec, prompt, home, external_sandbox=external_sandbox, planning=planning)
    else:
        built = {"claude": _claude, "aider": _aider}[spec.preset](spec, prompt, home)
    if planning and spec.preset in PLAN_ARGS:
        built = replace(built, argv=(*built.argv[:PLAN_AT[spec.preset]], *PLAN_ARGS[spec.preset],
                                     *built.argv[PLAN_AT[spec.preset]:]))
    return built


# Each CLI's own read-only mode, for a plan step: Claude Code's plan mode (it reads and answers with a
# plan, its edit tools denied); aider's dry run (it answers without writing any file). Codex's is its
# sandbox mode read-only (``_codex``). Inserted before the prompt's own options (at ``PLAN_AT``), so
# that an option taking several values cannot swallow them.
PLAN_ARGS: dict[str, tuple[str, ...]] = {"claude": ("--permission-mode", "plan"), "aider": ("--dry-run",)}
PLAN_AT: dict[str, int] = {"claude": 5, "aider": 1}


def _command_preset(spec: AgentSpec, workdir: Path, path: str) -> AgentCommand:
    if not spec.command:
        raise AgentError("agent preset 'command' needs a 'command' list",
                         hint="write e.g. agent: {preset: command, command: [./scripts/agent.sh]}")
    if spec.shell:
        if len(spec.command) != 1:
            raise AgentError("agent 'command' with shell: true must be one string, "
                             f"got {len(spec.command)} items",
                             hint="write command: [\"make agent && ./run\"], or drop shell: true")
        # Extra args become $1.. of the script: data for it, never shell words.
        argv = ("/bin/sh", "-c", spec.command[0], "rally-agent", *spec.args)
        return AgentCommand("command", argv, stdin="prompt", shell=True)
    argv = (*spec.command, *spec.args)
    _require_program(argv[0], workdir, path)
    return AgentCommand("command", argv, stdin="prompt")


def _claude(spec: AgentSpec, prompt: str, home: Path) -> AgentCommand:
    # ``-p PROMPT`` must come first: --allowedTools takes several values and
    # would swallow a prompt written after it.
    argv = ["claude", "-p", prompt, "--output-format", "json", "--allowedTools", CLAUDE_ALLOWED_TOOLS]
    if spec.model:
        argv += ["--model", spec.model]
    env = (
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("CLAUDE_CODE_MAX_RETRIES", "0"),  # fail fast instead of retrying for 3 minutes
        ("CLAUDE_CONFIG_DIR", str(home / ".claude")),
    )
    return AgentCommand("claude", (*argv, *spec.args), env=env, passthrough=PRESET_PASSTHROUGH["claude"])


# How Codex runs the model's shell commands (measured with 0.169 and 0.171, docs/agents.md):
# in its own sandbox, which is bubblewrap (the system's bwrap on PATH, else the one it
# bundles); its Landlock fallback (``use_legacy_landlock``) panics in these versions.
# Inside rally-gh's bubblewrap sandbox, where no user namespace can be made, Codex's
# cannot start ("bwrap: Creating new namespace failed"): there it runs unsandboxed, as
# Codex documents for externally sandboxed environments, and rally-gh's sandbox holds.
CODEX_OWN_SANDBOX = ("-s", "workspace-write")
CODEX_IN_EXTERNAL_SANDBOX = ("--dangerously-bypass-approvals-and-sandbox",)


CODEX_READ_ONLY = ("-s", "read-only")


def _codex(spec: AgentSpec, prompt: str, home: Path, *, external_sandbox: bool, planning: bool = False) -> AgentCommand:
    # Planning without rally-gh's sandbox: Codex's own, read-only. Inside rally-gh's, whose checkout is
    # read-only for a plan step, Codex's cannot start (above).
    sandbox = CODEX_IN_EXTERNAL_SANDBOX if external_sandbox else CODEX_READ_ONLY if planning else CODEX_OWN_SANDBOX
    argv = ["codex", "exec", "--json", "--skip-git-repo-check", *sandbox, "-c", "analytics.enabled=false"]
    if spec.model:
        argv += ["-m", spec.model]
    # ``--`` so that options in ``args`` stay options and the prompt stays the prompt.
    argv = [*argv, *spec.args, "--", prompt]
    # Codex 0.169 refuses to start ("CODEX_HOME points to ..., but that path does not
    # exist") unless the folder is already there; the teammate's home starts empty.
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    # Inside its bubblewrap Codex runs itself again as ``codex-linux-sandbox``: by its own
    # path where bwrap has --argv0 (0.9.0 and later, and the bwrap Codex bundles), else
    # through a link it makes under CODEX_HOME, which it refuses to make when CODEX_HOME is
    # below the temporary directory ($TMPDIR, else /tmp). With a system bwrap older than
    # 0.9.0 (Debian 12's 0.8.0) and the teammate's home under /tmp (its repository there),
    # every shell command then failed with "bwrap: execvp codex-linux-sandbox: No such file
    # or directory" (openai/codex#17367). A temporary directory of its own, in the
    # teammate's home, is never above CODEX_HOME.
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = (("CODEX_HOME", str(codex_home)), ("TMPDIR", str(tmp)))
    return AgentCommand("codex", tuple(argv), env=env, passthrough=PRESET_PASSTHROUGH["codex"])


def _aider(spec: AgentSpec, prompt: str, home: Path) -> AgentCommand:
    argv = ["aider", "--yes-always", "--no-auto-commits", "--no-check-update", "--no-analytics",
            "--no-show-release-notes", "--no-gitignore", "--no-pretty", "--no-fancy-input",
            # Otherwise aider writes its histories into the teammate's repository root.
            "--chat-history-file", str(home / "aider.chat.history.md"),
            "--input-history-file", str(home / "aider.input.history")]
    if spec.model:
        argv += ["--model", spec.model]
    argv = [*argv, *spec.args, "--message", prompt]
    env = (
        # Without it litellm fetches its price list from the internet at start.
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
        # Off a terminal aider wraps its output at 80 columns, cutting error lines (and
        # long paths) in two; the parser reads one line at a time.
        ("COLUMNS", "4096"),
    )
    return AgentCommand("aider", tuple(argv), env=env, passthrough=PRESET_PASSTHROUGH["aider"])


def _prompt_argument(prompt_file: Path) -> str:
    """The prompt as one argv element: no NUL (exec refuses it), bounded in size."""
    try:
        text = prompt_file.read_text(encoding="utf-8", errors="replace").replace("\0", "")
    except OSError as err:
        raise AgentError(f"cannot read the prompt file {prompt_file}: {err.strerror}") from err
    if len(text.encode("utf-8")) > MAX_PROMPT_ARG_BYTES:
        text = (f"Your full task is too long for the command line. Read the file {prompt_file} "
                "(also named by $RALLY_PROMPT_FILE) and do what it says.")
    # A leading '-' would be read as an option by the CLI's argument parser.
    return " " + text if text.startswith("-") else text


def _require_binary(preset: str, path: str) -> None:
    if shutil.which(preset, path=path) is None:
        raise AgentError(f"the {preset} preset needs the '{preset}' program, which is not on PATH",
                         hint=f"install it with `{INSTALL_HINTS[preset]}`, or use preset: command")


def _require_program(program: str, workdir: Path, path: str) -> None:
    if "/" in program:
        # A relative program is resolved from the teammate's worktree, as exec does with cwd.
        candidate = Path(program) if os.path.isabs(program) else workdir / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return
        raise AgentError(f"agent command '{program}' is not an executable file (looked at {candidate})",
                         hint="check the path and its executable bit (chmod +x)")
    if shutil.which(program, path=path) is None:
        raise AgentError(f"agent command '{program}' is not on PATH",
                         hint="install it, or give its full path in 'command'")


# A path in the checkout an agent will get -> True: an executable file (or a symlink),
# False: a file without the executable bit, None: not there.
CheckoutLookup = Callable[[str], "bool | None"]


def checkout_program(spec: AgentSpec) -> str | None:
    """The repository path of ``spec``'s program when the teammate's checkout holds it
    (a relative program such as ``./scripts/agent.sh``), normalized; None for a preset,
    a shell script, a name found on PATH or an absolute path."""
    if spec.preset != "command" or not spec.command or spec.shell:
        return None
    program = spec.command[0]
    if "/" not in program or os.path.isabs(program):
        return None
    return posixpath.normpath(program)


def program_problem(spec: AgentSpec, search_path: str, in_checkout: CheckoutLookup) -> AgentError | None:
    """Why ``spec``'s program could not start, found before any worktree exists (None: it can).

    A relative program (``./scripts/agent.sh``) is what the teammate's checkout will
    hold, so ``in_checkout`` answers for it from the commit the checkout is made of; a
    bare name is looked up on ``search_path``, the PATH the agent runs with. A
    ``shell: true`` script is the shell's to run and is not looked into.
    """
    if spec.preset != "command":
        try:
            _require_binary(spec.preset, search_path)
        except AgentError as err:
            return err
        return None
    if not spec.command or spec.shell:
        return None
    program = spec.command[0]
    relative = checkout_program(spec)
    if relative is None:
        try:
            _require_program(program, Path("/"), search_path)
        except AgentError as err:
            return err
        return None
    if relative == ".." or relative.startswith("../"):
        return AgentError(f"agent command '{program}' points outside the repository, but a relative program "
                          "is found from the teammate's checkout, which lives elsewhere",
                          hint="give its absolute path, or commit the program into the repository")
    found = in_checkout(relative)
    if found is None:
        return AgentError(f"agent command '{program}' is not in the commit the teammates start from",
                          hint=f"commit it (`git add {relative} && git commit`), or fix the path in 'command'")
    if not found:
        return AgentError(f"agent command '{program}' is committed without its executable bit",
                          hint=f"`git update-index --chmod=+x {relative} && git commit`, or run it through its "
                               f"interpreter (command: [sh, {program}])")
    return None


# --- the environment ---------------------------------------------------------


# Runner variables an agent gets: the shell basics, nothing that can hold a
# credential. Anything else passes only when the map names it.
_KEPT_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TERM", "TMPDIR", "TZ", "USER", "LOGNAME")
# Identity (not credentials) so that an agent's own ``git commit`` has an author.
_KEPT_GIT_IDENTITY = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")


def default_identity(teammate: str) -> tuple[str, str]:
    """Who an agent's commits are by when the user has no git identity: recognisably rally-gh's."""
    return f"rally-gh ({teammate})", f"rally-gh+{teammate}@users.noreply.github.com"


def agent_environment(base_env: Mapping[str, str], teammate: Teammate, run_id: str, team: str, base_sha: str,
                      prompt_file: Path, report_file: Path, owns: Sequence[str], passthrough: Sequence[str],
                      home: Path, identity: tuple[str | None, str | None] = (None, None), *,
                      sparse: bool = False) -> dict[str, str]:
    """The whole environment of a teammate's agent, built from nothing.

    From ``base_env`` only the shell basics and the names in ``passthrough``
    (the map's ``env`` and a preset's API key names) are copied; a GitHub
    token, ``ACTIONS_*``, cloud credentials or a ``GIT_DIR`` set around the
    orchestrator never reach the agent. The ``RALLY_*`` variables and the
    isolated ``HOME`` (created if missing) always win over a passed variable
    of the same name.

    The agent's own ``git commit`` needs an author, and its home is empty: the
    ``GIT_AUTHOR_*``/``GIT_COMMITTER_*`` variables carry ``identity`` (the user's
    ``user.name``/``user.email``, see ``git.user_identity``), else a default
    naming rally-gh and the teammate; variables set around rally-gh win, as in git.
    """
    env = _passed(base_env, passthrough)
    # The agent's own git runs no hook: a pre-commit framework's hook would install its environments
    # again in every empty teammate home (about 30 s a commit, and fails offline), and reconciliation
    # checks every commit of the agent anyway. core.hooksPath=/dev/null holds no hook, ever.
    settings = [("core.hooksPath", os.devnull)]
    if sparse:
        # rally-gh checks a sparse worktree out without touching the repository's config, so the
        # agent's git learns here that it is sparse (`git sparse-checkout list` and `add` work,
        # instead of "this worktree is not sparse").
        settings += [("core.sparseCheckout", "true"), ("core.sparseCheckoutCone", "true")]
    env["GIT_CONFIG_COUNT"] = str(len(settings))
    for i, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    fallback = default_identity(teammate.name)
    name, email = identity[0] or fallback[0], identity[1] or fallback[1]
    for role in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{role}_NAME", name)
        env.setdefault(f"GIT_{role}_EMAIL", email)
    env.update({
        **_home(home),
        "RALLY_RUN_ID": run_id,
        "RALLY_TEAM": team,
        "RALLY_TEAMMATE": teammate.name,
        "RALLY_ROLE": teammate.role,
        "RALLY_BASE_SHA": base_sha,
        "RALLY_PROMPT_FILE": str(prompt_file),
        "RALLY_OWNS": "\n".join(owns),
        "RALLY_REPORT_FILE": str(report_file),
    })
    return env


def verify_environment(base_env: Mapping[str, str], passthrough: Sequence[str], home: Path) -> dict[str, str]:
    """The whole environment of a verify command (a teammate's ``verify``, ``merge.verify``), built
    from nothing as an agent's is: it runs code agents wrote. From ``base_env`` the shell basics,
    the git identity and the names in ``passthrough`` (those the map passes); ``home`` (created if
    missing) as HOME, with the XDG folders below it; git runs no hook. No token, no ``ACTIONS_*``,
    no file through which a workflow step talks to the runner, unless the map names it."""
    env = _passed(base_env, passthrough)
    env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath", "GIT_CONFIG_VALUE_0": os.devnull})
    env.update(_home(home))
    return env


def _passed(base_env: Mapping[str, str], passthrough: Sequence[str]) -> dict[str, str]:
    """What of the runner's variables a child of ours gets: the basics and the names passed."""
    env = {name: value for name, value in base_env.items()
           if name in _KEPT_VARIABLES or name.startswith("LC_") or name in _KEPT_GIT_IDENTITY}
    env.update({name: base_env[name] for name in passthrough if name in base_env})
    env.setdefault("PATH", os.defpath)
    return env


def _home(home: Path) -> dict[str, str]:
    # Agents write transcripts and histories under HOME and expect it to exist.
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        # Tools that follow XDG would otherwise write next to the runner's files.
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }


# --- reading outcomes --------------------------------------------------------


def parse_outcome(preset: str, exit_code: int | None, stdout_text: str, stderr_text: str, *,
                  model: str | None = None, report_file: Path | None = None) -> AgentOutput:
    """What one attempt achieved, from its exit code, output and report file.

    ``exit_code`` is None when the process was killed by a signal. The report
    file completes what the CLI did not say (a summary, a cost for agents that
    print none) and can turn a success into ``blocked``; it never turns a CLI
    failure into a success, and never replaces a cost the CLI measured.
    """
    parsers = {"claude": _parse_claude, "codex": _parse_codex, "aider": _parse_aider}
    parser = parsers.get(preset, _parse_command)
    cli = parser(exit_code, stdout_text, stderr_text, model)
    return _apply_report(cli, report_file)


def _parse_command(exit_code: int | None, stdout: str, stderr: str, model: str | None) -> AgentOutput:
    if exit_code == 0:
        return AgentOutput(True, "done")
    return AgentOutput(False, "failed", _exit_message(exit_code, stderr, stdout))


def _parse_claude(exit_code: int | None, stdout: str, stderr: str, model: str | None) -> AgentOutput:
    result = _last_json_object(stdout, lambda o: o.get("type") == "result")
    if result is None:
        return AgentOutput(False, "failed", "Claude Code printed no result: " + _exit_message(exit_code, stderr, stdout))
    cost = _number(result.get("total_cost_usd"))
    tokens = _claude_tokens(result)
    denials = result.get("permission_denials") or []
    if result.get("is_error") or exit_code != 0:
        # On API errors ``subtype`` still says success: is_error and the exit code decide.
        detail = str(result.get("result") or result.get("subtype") or "error")
        status = result.get("api_error_status")
        prefix = f"Claude Code failed (API status {status})" if status else "Claude Code failed"
        return AgentOutput(False, "failed", f"{prefix}: {_first_line(detail)}", cost, tokens)
    if denials:
        # Exit 0 and is_error false, yet the tool did not run: the file is not written.
        named = "; ".join(_describe_denial(d) for d in denials[:5])
        return AgentOutput(False, "failed", f"Claude Code was denied permission: {named} "
                           "(allow the tool with --allowedTools in the agent's args)", cost, tokens)
    return AgentOutput(True, "done", _first_line(str(result.get("result") or "")), cost, tokens)


def _claude_tokens(result: Mapping[str, Any]) -> int | None:
    # modelUsage includes side calls; usage counts only the main loop.
    model_usage = result.get("modelUsage")
    if isinstance(model_usage, dict) and model_usage:
        keys = ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheCreationInputTokens")
        return sum(int(_number(u.get(k)) or 0) for u in model_usage.values() if isinstance(u, dict) for k in keys)
    usage = result.get("usage")
    if isinstance(usage, dict):
        keys = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        return sum(int(_number(usage.get(k)) or 0) for k in keys)
    return None


def _describe_denial(denial: Any) -> str:
    if not isinstance(denial, dict):
        return str(denial)
    tool = str(denial.get("tool_name") or "a tool")
    tool_input = _mapping(denial.get("tool_input"))
    target = tool_input.get("file_path") or tool_input.get("command") or tool_input.get("path")
    return f"{tool} {target}" if target else tool


def _parse_codex(exit_code: int | None, stdout: str, stderr: str, model: str | None) -> AgentOutput:
    events = [e for e in _json_lines(stdout) if isinstance(e.get("type"), str)]
    input_tokens = cached = output = 0
    failure = None
    last_message = ""
    for event in events:
        kind = event["type"]
        if kind == "turn.completed":
            usage = _mapping(event.get("usage"))
            input_tokens += int(_number(usage.get("input_tokens")) or 0)
            cached += int(_number(usage.get("cached_input_tokens")) or 0)
            output += int(_number(usage.get("output_tokens")) or 0)
            failure = None  # a stream error before it ("Reconnecting... 1/5") was recovered from
        elif kind == "turn.failed":
            failure = str(_mapping(event.get("error")).get("message") or "turn failed")
        elif kind == "error" and event.get("message"):
            failure = str(event["message"])
        elif kind == "item.completed" and isinstance(event.get("item"), dict):
            item = event["item"]
            # The "missing model metadata" error item comes with every unknown model: not a failure.
            if item.get("type") in ("agent_message", "assistant_message") and item.get("text"):
                last_message = _first_line(str(item["text"]))
    tokens = input_tokens + output if events else None
    cost = _codex_cost(model, input_tokens, cached, output) if events else None
    if failure is not None:
        return AgentOutput(False, "failed", f"Codex failed: {_first_line(failure)}", cost, tokens)
    if exit_code != 0:
        return AgentOutput(False, "failed", "Codex " + _exit_message(exit_code, stderr, ""), cost, tokens)
    if not any(e["type"] == "turn.completed" for e in events):
        return AgentOutput(False, "failed", "Codex ended without completing its turn", cost, tokens)
    return AgentOutput(True, "done", last_message, cost, tokens)


def _codex_cost(model: str | None, input_tokens: int, cached: int, output: int) -> float | None:
    prices = CODEX_PRICES_PER_MTOK.get(model or "")
    if prices is None:
        return None
    per_input, per_cached, per_output = prices
    # input_tokens includes the cached ones; output_tokens includes reasoning.
    uncached = max(input_tokens - cached, 0)
    return round((uncached * per_input + cached * per_cached + output * per_output) / 1e6, 6)


_AIDER_TOKENS = re.compile(r"^Tokens: (?P<sent>[\d.]+)(?P<sk>[kKmM]?) sent,.*?(?P<recv>[\d.]+)(?P<rk>[kKmM]?) received\.")
_AIDER_SESSION = re.compile(r"\$(?P<cost>[\d.]+) session\.")
# aider exits 0 on these: only the text tells.
_AIDER_ERRORS = re.compile(
    r"litellm\.\w+Error|AuthenticationError|not able to authenticate|APIConnectionError|InternalServerError"
    r"|ServiceUnavailableError|RateLimitError|BadRequestError|NotFoundError|APIError|Unable to connect")

_AIDER_OUTSIDE = re.compile(r"'(?P<path>[^']+)' is outside repository")


def _parse_aider(exit_code: int | None, stdout: str, stderr: str, model: str | None) -> AgentOutput:
    lines = (stdout + "\n" + stderr).splitlines()
    tokens = cost = None
    last_call = -1
    for index, line in enumerate(lines):
        if (match := _AIDER_TOKENS.search(line)) is not None:
            tokens = (tokens or 0) + _count(match["sent"], match["sk"]) + _count(match["recv"], match["rk"])
            last_call = index
        if (match := _AIDER_SESSION.search(line)) is not None:
            cost = float(match["cost"])  # the session total: the last one is the whole run
    # An error after the last model call is final; one before it was retried away.
    errors = [line for line in lines[last_call + 1:] if _AIDER_ERRORS.search(line)]
    if errors:
        return AgentOutput(False, "failed", f"aider failed: {errors[0].strip()}", cost, tokens)
    # Asked to write outside the repository, aider creates the file (empty), then git
    # refuses to stage it and the edit stops, with exit 0: nothing in the worktree shows it.
    outside = [match["path"] for line in lines if (match := _AIDER_OUTSIDE.search(line)) is not None]
    if outside:
        return AgentOutput(False, "failed", f"aider tried to write outside its worktree: {outside[0]}",
                           cost, tokens)
    if exit_code != 0:
        return AgentOutput(False, "failed", "aider " + _exit_message(exit_code, stderr, stdout), cost, tokens)
    edits = [line for line in lines if line.startswith("Applied edit to ")]
    return AgentOutput(True, "done", edits[-1] if edits else "", cost, tokens)


def _count(number: str, suffix: str) -> int:
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[suffix.lower()]
    return int(float(number) * scale)


# --- the report file ---------------------------------------------------------


def read_report(report_file: Path) -> dict[str, Any] | None:
    """The agent's ``RALLY_REPORT_FILE``, or None when absent; ``AgentError`` when malformed."""
    try:
        raw = report_file.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise AgentError(f"cannot read the report file {report_file}: {err.strerror}") from err
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise AgentError(f"the report file {report_file} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise AgentError(f"the report file {report_file} holds a {type(data).__name__}, not an object")
    report: dict[str, Any] = data
    status = report.get("status")
    if status is not None and status not in ("done", "partial", "blocked"):
        raise AgentError(f"the report file {report_file} has status {status!r}; "
                         "expected done, partial or blocked")
    return report


def _apply_report(cli: AgentOutput, report_file: Path | None) -> AgentOutput:
    if report_file is None:
        return cli
    try:
        report = read_report(report_file)
    except AgentError as err:
        return replace(cli, message=_join(cli.message, f"(report ignored: {err.message})"))
    if report is None:
        return cli
    cost = cli.cost_usd if cli.cost_usd is not None else _number(report.get("cost_usd"))
    reported_tokens = _number(report.get("tokens"))
    tokens = cli.tokens if cli.tokens is not None else (int(reported_tokens) if reported_tokens is not None else None)
    summary = str(report.get("summary") or "")
    if not cli.ok:
        return replace(cli, cost_usd=cost, tokens=tokens)
    status = report.get("status") or cli.status
    if status == "blocked":
        blocker = str(report.get("blocker") or summary or "no reason given")
        return AgentOutput(False, "blocked", f"blocked: {_first_line(blocker)}", cost, tokens)
    return AgentOutput(True, status, _first_line(summary) or cli.message, cost, tokens)


# --- small text helpers ------------------------------------------------------


def _exit_message(exit_code: int | None, stderr: str, stdout: str) -> str:
    what = "was killed by a signal" if exit_code is None else f"exited with code {exit_code}"
    line = last_error_line(stderr) or last_error_line(stdout)
    return f"{what}: {line}" if line else what


_ERROR_WORDS = re.compile(r"error|fail|fatal|denied|refused|exception|cannot|can't|unable|not found|panic", re.I)
_NOISE = re.compile(r"^\s*(File \"|at |\^+$|~+$|Traceback|[-=*#]+$)")


def last_error_line(text: str) -> str:
    """The last line that says what went wrong: an error-looking line, else the last non-empty one."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not _NOISE.match(line)]
    for line in reversed(lines[-50:]):
        if _ERROR_WORDS.search(line):
            return line[:500]
    return lines[-1][:500] if lines else ""


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:500]
    return ""


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def _last_json_object(text: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The last JSON object in ``text`` accepted by ``wanted``.

    ``--output-format json`` prints one object (with ``--verbose``, an array of
    them); ``stream-json`` prints one a line.
    """
    candidates: list[dict[str, Any]]
    try:
        whole = json.loads(text)
    except ValueError:
        candidates = _json_lines(text)
    else:
        items = whole if isinstance(whole, list) else [whole]
        candidates = [item for item in items if isinstance(item, dict)]
    accepted = [candidate for candidate in candidates if wanted(candidate)]
    return accepted[-1] if accepted else None


def plan_text(preset: str, stdout: str) -> str:
    """The plan an agent's output gives, when it wrote no plan file: Claude Code's final ``result``,
    Codex's last message, the text of anything else."""
    if preset == "claude":
        found = _last_json_object(stdout, lambda o: o.get("type") == "result")
        return str(found.get("result") or "") if found else ""
    if preset == "codex":
        messages = [e.get("item", {}).get("text") for e in _json_lines(stdout)
                    if e.get("type") == "item.completed" and isinstance(e.get("item"), dict)
                    and e["item"].get("type") == "agent_message"]
        return str(messages[-1] or "") if messages else ""
    return stdout
