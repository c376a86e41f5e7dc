"""Talking to a remote: pushes under a lease, and what the remote holds now.

The git CLI, not libgit2: libgit2 cannot express a lease and reports a
server-side rejection only through a callback (PERF-NOTES); the CLI also goes
through the user's credential helpers.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rally_gh import process
from rally_gh.errors import GitError
from rally_gh.git.repository import Sha


@dataclass(frozen=True)
class HttpCredentials:
    """A token for an HTTPS remote (GitHub: username ``x-access-token``)."""

    token: str
    username: str = "x-access-token"

    def __repr__(self) -> str:  # never print the token
        return f"HttpCredentials(username={self.username!r}, token=***)"


@dataclass(frozen=True)
class Remote:
    """Where rally-gh pushes and fetches (a remote's name or URL) and the credentials it presents
    there. With none, git asks the user's own credential helpers (a local run). With some, they
    go to that one git command in a header, never through this process's environment: rally-gh
    takes the token out of it at start (``process.forget_environment``), so nothing else it starts
    inherits it."""

    where: str
    credentials: HttpCredentials | None = None

    def __str__(self) -> str:
        return self.where


@dataclass(frozen=True)
class RefPush:
    """Push ``new_sha`` to ``ref``. With ``lease``, only if the remote ref is at
    ``expected_old`` (None: only if it does not exist yet); without, only as a
    fast-forward. Never a blind force."""

    ref: str
    new_sha: Sha
    expected_old: Sha | None = None
    lease: bool = True


@dataclass(frozen=True)
class PushedRef:
    ref: str
    ok: bool
    message: str  # git's summary: "[new branch]", "[rejected] (stale info)", ...


def _credential_env(credentials: HttpCredentials | None, url: str | None = None) -> dict[str, str]:
    """The environment of one git command that talks to a remote: no prompt, and with
    ``credentials``, as actions/checkout does, an extra header passed through the environment (so
    the token never shows in a process list or a URL) for ``url`` alone: not for a host the
    remote redirects to, nor a submodule's."""
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    if credentials is not None:
        pair = base64.b64encode(f"{credentials.username}:{credentials.token}".encode()).decode()
        count = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
        env["GIT_CONFIG_COUNT"] = str(count + 1)
        env[f"GIT_CONFIG_KEY_{count}"] = f"http.{url}.extraHeader" if url else "http.extraHeader"
        env[f"GIT_CONFIG_VALUE_{count}"] = f"Authorization: Basic {pair}"
    return env


def _remote_env(cwd: Path | str, remote: Remote) -> dict[str, str]:
    """``_credential_env`` for ``remote``, its header scoped to the URL git resolves it to."""
    if remote.credentials is None:
        return _credential_env(None)
    proc = process.run(["git", "ls-remote", "--get-url", remote.where], cwd=cwd, env=_credential_env(None))
    url = proc.stdout.decode(errors="replace").strip() if proc.returncode == 0 else ""
    # A token is for an HTTP(S) remote: a path or an ssh remote gets none (it has its own way in).
    return _credential_env(remote.credentials if url.startswith(("https://", "http://")) else None, url)


def push_refs(cwd: Path | str, remote: Remote, pushes: Sequence[RefPush], *, atomic: bool = False) -> list[PushedRef]:
    """One `git push` of ``pushes``; the status of every ref. ``atomic``: all or
    none (a reader never sees one ref of the set without the others).

    The git CLI, not pygit2's Remote.push: libgit2 cannot express a lease (push
    only if the remote ref is still at a given value) and reports a server-side
    rejection only through a callback (PERF-NOTES). `--force-with-lease=REF:OLD`
    with an explicit OLD is a compare-and-swap on the remote, and `--porcelain`
    gives every ref's status."""
    args = ["push", "--porcelain"] + (["--atomic"] if atomic else [])
    specs = []
    for p in pushes:
        if p.lease:
            args.append(f"--force-with-lease={p.ref}:{p.expected_old or ''}")
        specs.append(f"{p.new_sha}:{p.ref}")
    proc = process.run(["git", "-c", "core.hooksPath=/dev/null", *args, remote.where, *specs],
                       cwd=cwd, env=_remote_env(cwd, remote))
    seen: dict[str, PushedRef] = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
        flag, tab, rest = line.partition("\t")
        if not tab or len(flag) != 1:
            continue
        refspec, _, summary = rest.partition("\t")
        ref = refspec.rsplit(":", 1)[-1]
        seen[ref] = PushedRef(ref, flag in " +*=-", summary.strip())
    error = proc.stderr.decode(errors="replace").strip().splitlines()
    return [seen.get(p.ref, PushedRef(p.ref, False, error[-1] if error else f"git push exited {proc.returncode}"))
            for p in pushes]


def remote_ref_shas(cwd: Path | str, remote: Remote, refs: Sequence[str]) -> dict[str, Sha | None]:
    """What ``remote`` has at each of ``refs`` now (None: absent), and their
    commits fetched so that they can be compared with ours."""
    env = _remote_env(cwd, remote)
    proc = process.run(["git", "-c", "core.hooksPath=/dev/null", "ls-remote", remote.where, *refs], cwd=cwd, env=env)
    if proc.returncode != 0:
        raise GitError(f"`git ls-remote {remote}` failed: {proc.stderr.decode(errors='replace').strip()}")
    found: dict[str, Sha | None] = dict.fromkeys(refs)
    for line in proc.stdout.decode().splitlines():
        sha, _, ref = line.partition("\t")
        if ref in found:
            found[ref] = Sha(sha)
    present = [ref for ref, sha in found.items() if sha is not None]
    if present:
        # By name, not by id: a server need not allow fetching a bare commit id.
        # No submodule is fetched: its URL is another host's, and an agent can move a gitlink.
        process.run(["git", "-c", "core.hooksPath=/dev/null", "fetch", "--quiet", "--no-tags",
                     "--no-recurse-submodules", remote.where, *present], cwd=cwd, env=env)
    return found
