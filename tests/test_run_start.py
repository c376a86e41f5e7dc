"""What a run meets as it starts: agent programs found before anything exists, the user's
git identity and no hooks in agents' commits, signals in every phase."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rally_gh import git
from rally_gh.testing import RALLY_CLI, init_repo
from rally_gh.testing import git as run_git


def _team(agent_lines: dict[str, str], extra: str = "") -> str:
    lines = ["version: 1", "team: t", "defaults: {timeout: 20s, retries: 0}"] + ([extra] if extra else []) + [
        "teammates:"]
    for name, agent in agent_lines.items():
        lines += [f"  - name: {name}", f"    exclusive_write: [{name}/**]", f"    agent: {agent}"]
    return "\n".join(lines) + "\n"


def _cli(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RALLY_CLI, *args], cwd=repo, env=env or dict(os.environ), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)


# --- agent programs, found in assess ------------------------------------------


@pytest.mark.parametrize("case", ["not committed", "not executable", "not on PATH", "preset CLI"])
def test_a_missing_agent_program_is_found_before_anything_starts(tmp_path: Path, case: str) -> None:
    ok = "{preset: command, command: [sh, -c, 'mkdir -p ok && echo 1 > ok/x']}"
    files = {"README.md": "# r\n"}
    if case == "not committed":
        agent, wanted = "{preset: command, command: [./scripts/agent.sh]}", (
            ":10:40: teammates[1].agent.command[0]: web's agent: agent command './scripts/agent.sh' is not "
            "in the commit the teammates start from; commit it (`git add scripts/agent.sh && git commit`)")
    elif case == "not executable":
        files["scripts/agent.sh"] = "#!/bin/sh\n"
        agent, wanted = "{preset: command, command: [./scripts/agent.sh]}", (
            "web's agent: agent command './scripts/agent.sh' is committed without its executable bit; "
            "`git update-index --chmod=+x scripts/agent.sh && git commit`")
    elif case == "not on PATH":
        agent, wanted = "{preset: command, command: [no-such-agent-xyz, --go]}", (
            "teammates[1].agent.command[0]: web's agent: agent command 'no-such-agent-xyz' is not on PATH")
    else:
        agent, wanted = "{preset: claude}", (
            "teammates[1].agent.preset: web's agent: the claude preset needs the 'claude' program, which is not on "
            "PATH; install it with `npm install -g @anthropic-ai/claude-code`")
    repo = init_repo(tmp_path / "repo", {**files, "rally.yml": _team({"ok": ok, "web": agent})})
    if case == "not committed":
        (repo / "scripts").mkdir()
        (repo / "scripts" / "agent.sh").write_text("#!/bin/sh\n")  # in the checkout, not in the commit
        (repo / "scripts" / "agent.sh").chmod(0o755)
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    for command in (["plan"], ["run", "--dry-run"], ["run"]):
        done = _cli(repo, *command, env=env)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert wanted in done.stdout + done.stderr and "rally.yml" in done.stdout + done.stderr, (command, done)
        assert "Traceback" not in done.stderr
    common = git.common_dir(git.open_repo(repo))
    assert not (common / "rally" / "runs").exists() or not any((common / "rally" / "runs").iterdir())
    assert run_git(repo, "for-each-ref", "refs/heads/rally") == ""
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_a_missing_default_agent_is_one_problem_naming_every_teammate_it_stops(tmp_path: Path) -> None:
    rally = "\n".join(["version: 1", "team: t", "defaults: {agent: {preset: claude}}",
                       "teammates:", "  - {name: api, exclusive_write: [api/**]}",
                       "  - {name: docs, exclusive_write: [docs/**]}"]) + "\n"
    repo = init_repo(tmp_path / "repo", {"README.md": "# r\n", "rally.yml": rally})
    done = _cli(repo, "run", "--dry-run", env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert out.count("the claude preset needs the 'claude' program") == 1, out
    assert "defaults.agent.preset: the agent of api and docs: the claude preset needs" in out


def test_programs_that_will_start_pass_assess(tmp_path: Path) -> None:
    files = {"README.md": "# r\n", "scripts/agent.sh": "#!/bin/sh\nmkdir -p web && echo 1 > web/x\n"}
    rally = _team({"ok": f"{{preset: command, command: [{json.dumps(sys.executable)}, -c, 'pass']}}",
                   "web": "{preset: command, command: [./scripts/agent.sh]}",
                   "sh": "{preset: command, shell: true, command: ['no-such-thing || true']}"})
    repo = init_repo(tmp_path / "repo", {**files, "rally.yml": rally})
    run_git(repo, "update-index", "--chmod=+x", "scripts/agent.sh")
    run_git(repo, "commit", "-qm", "executable")
    done = _cli(repo, "plan")
    assert done.returncode == 0, done.stdout + done.stderr


# --- the user's git identity reaches every agent ------------------------------

COMMITTING_AGENT = "{preset: command, command: [sh, -c, 'mkdir -p NAME && echo 1 > NAME/x && git add NAME && " \
                   "git commit -qm \"NAME: work\"']}"


@pytest.mark.parametrize("gitconfig, author", [
    ("[user]\n\tname = Grace Hopper\n\temail = grace@example.com\n", "Grace Hopper <grace@example.com>"),
    ("", "rally-gh (a) <rally-gh+a@users.noreply.github.com>"),
])
def test_agents_commit_with_the_identity_of_the_users_global_config(tmp_path: Path, gitconfig: str,
                                                                    author: str) -> None:
    from rally_gh.run import pipeline
    from rally_gh.config import load_config_text

    rally = _team({n: COMMITTING_AGENT.replace("NAME", n) for n in ("a", "b")})
    repo = init_repo(tmp_path / "repo", {"README.md": "# r\n", "rally.yml": rally})
    run_git(repo, "config", "--unset", "user.name")
    run_git(repo, "config", "--unset", "user.email")
    home = tmp_path / "user-home"
    home.mkdir()
    (home / ".gitconfig").write_text(gitconfig)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "XDG_"))}
    environ.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1")
    state = pipeline.run(repo, load_config_text(rally, "rally.yml"), "id1", None, time.time, environ)
    assert {r.name: (r.outcome, r.reason) for r in state.teammates} == {"a": ("done", ""), "b": ("done", "")}
    log = run_git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s", "rally/id1/a").strip()
    assert log == f"{author}|{author}|a: work"


# --- signals, the same in every phase -----------------------------------------


def _with(marker: str) -> list[str]:
    """The live processes whose command line holds ``marker`` (pid, state, command line): a
    sandboxed verify command, which sees none of the test's folders, is found from outside."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(f"{entry.name} {state} {cmdline.replace(bytes(1), b' ').decode(errors='replace')}")
    return found


def _running(marker: str) -> bool:
    """Whether the command marked is up: its own program runs, past bwrap's setup (a sandbox
    stopped while bwrap still sets it up can outlive it: docs/security.md)."""
    return any(p.split(" ", 2)[2].startswith(sys.executable + " ") for p in _with(marker))


def _gone(marker: str) -> None:
    """The sandbox of a stopped command is SIGKILLed when its bwrap goes, as the kernel gets to it."""
    deadline = time.monotonic() + 3
    while _with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _with(marker) == []


def _stuck_until_fixed(marker: str) -> str:
    """A verify command that hangs until the run's environment says the code is fixed (a
    variable the map passes it by name), its command line marked to be found from outside."""
    return f"test -n \"$RALLY_TEST_FIXED\" || exec {sys.executable} -c 'import time; time.sleep(60)' {marker}"


def test_sigint_during_merge_verify_interrupts_even_when_rally_gh_inherited_it_ignored(tmp_path: Path) -> None:
    """What `rally-gh run &` gets in a shell without job control: SIGINT ignored from the start."""
    marker = f"merge-verify-{os.getpid()}-{time.monotonic_ns()}"
    rally = _team({n: f"{{preset: command, command: [sh, -c, 'mkdir -p {n} && echo 1 > {n}/x']}}" for n in "ab"},
                  extra=f"merge: {{verify: [{json.dumps(_stuck_until_fixed(marker))}], env: [RALLY_TEST_FIXED]}}")
    repo = init_repo(tmp_path / "repo", {"README.md": "# r\n", "rally.yml": rally})
    proc = subprocess.Popen([*RALLY_CLI, "run", "--run-id", "v1"], cwd=repo, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 60
    while not _running(marker) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert _running(marker), proc.communicate()
    # The command is up, maybe before rally-gh's Popen has returned: a signal then is handled once it has.
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 130, err
    assert "## rally-gh run `v1`" in out and "Traceback" not in err
    _gone(marker)
    common = git.common_dir(git.open_repo(repo))
    assert (common / "rally" / "runs" / "v1" / "report.md").read_text() == out
    from rally_gh.state import load_state

    state = load_state(common, "v1")
    assert state.status == "interrupted" and [r.outcome for r in state.teammates] == ["done", "done"]
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    resumed = _cli(repo, "run", "--resume", "v1", env={**os.environ, "RALLY_TEST_FIXED": "1"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert load_state(common, "v1").integrated == ("a", "b")


def test_sigint_during_a_teammates_verify_stops_it_at_once_and_leaves_the_teammate_to_resume(tmp_path: Path) -> None:
    """The teammate's verify runs in its job's thread, where only the cancel token reaches it."""
    from rally_gh.run import pipeline
    from rally_gh.config import load_config_text
    from rally_gh.errors import RallyError
    from rally_gh.state import load_state

    marker = f"teammate-verify-{os.getpid()}-{time.monotonic_ns()}"
    rally = _team({n: f"{{preset: command, command: [sh, -c, 'mkdir -p {n} && echo 1 > {n}/x'], "
                      "env: [RALLY_TEST_FIXED]}" for n in "ab"})
    rally += f"    verify: [{json.dumps(_stuck_until_fixed(marker))}]\n"  # b's
    repo = init_repo(tmp_path / "repo", {"README.md": "# r\n", "rally.yml": rally})

    def a_done() -> bool:
        try:
            return load_state(git.common_dir(git.open_repo(repo)), "v2").teammate("a").outcome == "done"
        except (RallyError, KeyError):
            return False

    def interrupt() -> None:
        deadline = time.monotonic() + 60
        # b's verify is up, and a is done (on a loaded machine its agent may still be running then)
        while not (_running(marker) and a_done()) and time.monotonic() < deadline:
            time.sleep(0.05)
        waited.append(time.monotonic() < deadline)
        os.kill(os.getpid(), signal.SIGINT)

    waited: list[bool] = []

    threading.Thread(target=interrupt).start()
    started = time.monotonic()
    state = pipeline.run(repo, load_config_text(rally, "rally.yml"), "v2", None, time.time, dict(os.environ))
    assert waited == [True], "b's verify never came up beside a done a"
    assert time.monotonic() - started < 15  # not the verify's 40 s
    assert state.status == "interrupted"
    assert {r.name: r.outcome for r in state.teammates} == {"a": "done", "b": "pending"}
    log = (git.common_dir(git.open_repo(repo)) / "rally" / "runs" / "v2").rglob("*.log")
    assert any("[rally-gh] stopped: the run was interrupted" in p.read_text() for p in log)
    _gone(marker)
    resumed = _cli(repo, "run", "--resume", "v2", env={**os.environ, "RALLY_TEST_FIXED": "1"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert load_state(git.common_dir(git.open_repo(repo)), "v2").integrated == ("a", "b")


# --- hooks: agents' commits run none; the plain hook and the framework check once ------------

PRE_COMMIT = Path(sys.executable).parent / "pre-commit"
FRAMEWORK_CONFIG = f"""\
repos:
  - repo: local
    hooks:
      - id: rally-ownership
        name: rally-gh ownership
        entry: {sys.executable} -m rally_gh hook pre-commit
        language: system
        pass_filenames: false
        always_run: true
        require_serial: true
      - id: an-environment-to-install
        name: a hook whose environment the framework installs first
        entry: python -c 'print("framework hook ran"); raise SystemExit(1)'
        language: python
        files: "^(a|b)/"
"""


def test_agents_commit_without_running_the_repositorys_hooks(tmp_path: Path) -> None:
    from rally_gh.run import pipeline
    from rally_gh.config import load_config_text

    rally = _team({n: COMMITTING_AGENT.replace("NAME", n) for n in ("a", "b")})
    repo = init_repo(tmp_path / "repo", {"README.md": "# r\n", "rally.yml": rally,
                                         ".pre-commit-config.yaml": FRAMEWORK_CONFIG})
    done = subprocess.run([str(PRE_COMMIT), "install"], cwd=repo, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    plain = repo / ".git" / "hooks" / "pre-commit"
    assert "File generated by pre-commit" in plain.read_text()
    state = pipeline.run(repo, load_config_text(rally, "rally.yml"), "h1", None, time.time, dict(os.environ))
    assert {r.name: (r.outcome, r.reason) for r in state.teammates} == {"a": ("done", ""), "b": ("done", "")}
    assert run_git(repo, "log", "-1", "--format=%s", "rally/h1/a").strip() == "a: work"  # the agent's own commit
    homes = git.common_dir(git.open_repo(repo)) / "rally" / "runs" / "h1" / "teammates"
    assert not list(homes.glob("*/home/.cache/pre-commit")), "the framework set itself up in a teammate's home"


def _refusal_count(repo: Path) -> tuple[int, str]:
    from rally_gh.testing import git_env

    run_git(repo, "checkout", "-q", "-b", "rally/r1/api")
    (repo / "src" / "web").mkdir(parents=True, exist_ok=True)
    (repo / "src" / "web" / "app.js").write_text("hacked\n")
    run_git(repo, "add", "src/web/app.js")
    env = git_env({"PRE_COMMIT_HOME": str(repo.parent / "pc-home")})
    done = subprocess.run(["git", "commit", "-q", "-m", "x"], cwd=repo, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert done.returncode != 0, done.stdout
    return done.stdout.count("The commit was refused"), done.stdout


@pytest.mark.parametrize("order", ["plain hook first", "framework first"])
def test_with_the_plain_hook_and_the_framework_a_refusal_prints_once(tmp_path: Path, order: str) -> None:
    from rally_gh.testing import SHOP_FILES, SHOP_MAP

    config = FRAMEWORK_CONFIG.split("      - id: an-environment-to-install")[0]
    repo = init_repo(tmp_path / "repo", {**SHOP_FILES, "rally.yml": SHOP_MAP, ".pre-commit-config.yaml": config})
    install_plain = [*RALLY_CLI, "hook", "install"]
    steps = [install_plain, [str(PRE_COMMIT), "install"]]
    if order == "framework first":
        steps.reverse()
    outputs = []
    for step in steps:
        done = subprocess.run(step, cwd=repo, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
    if order == "framework first":
        assert "not installed: the pre-commit framework's hook is there" in outputs[1]
    else:
        assert (repo / ".git" / "hooks" / "pre-commit.legacy").is_file()  # the framework kept the plain hook
    count, text = _refusal_count(repo)
    assert count == 1, text
    assert "src/web/app.js: api modified it, but it is owned by web" in text


def test_the_plain_hook_still_checks_as_legacy_when_the_framework_does_not(tmp_path: Path) -> None:
    from rally_gh.testing import SHOP_FILES, SHOP_MAP

    other = "repos:\n  - repo: local\n    hooks:\n      - id: noop\n        name: noop\n        entry: 'true'\n" \
            "        language: system\n"
    repo = init_repo(tmp_path / "repo", {**SHOP_FILES, "rally.yml": SHOP_MAP, ".pre-commit-config.yaml": other})
    for step in ([*RALLY_CLI, "hook", "install"], [str(PRE_COMMIT), "install"]):
        assert subprocess.run(step, cwd=repo, capture_output=True, check=False).returncode == 0
    count, text = _refusal_count(repo)
    assert count == 1, text


def test_a_sparse_teammate_gets_its_agent_program_in_its_checkout(tmp_path: Path) -> None:
    from rally_gh.run import pipeline
    from rally_gh.config import load_config_text

    agent = "{preset: command, command: [./tools/agent.sh]}"
    rally = _team({"a": agent, "b": agent}).replace("retries: 0}", "retries: 0, checkout: sparse}")
    files = {"README.md": "# r\n", "rally.yml": rally, "other/big.txt": "not for them\n",
             "tools/agent.sh": '#!/bin/sh\nmkdir -p "$RALLY_TEAMMATE" && echo 1 > "$RALLY_TEAMMATE/x"\n'}
    repo = init_repo(tmp_path / "repo", files)
    run_git(repo, "update-index", "--chmod=+x", "tools/agent.sh")
    run_git(repo, "commit", "-qm", "executable")
    state = pipeline.run(repo, load_config_text(rally, "rally.yml"), "sp1", None, time.time, dict(os.environ))
    assert {r.name: (r.outcome, r.reason) for r in state.teammates} == {"a": ("done", ""), "b": ("done", "")}
