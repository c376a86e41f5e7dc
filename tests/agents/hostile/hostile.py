"""What the hostile agents of this folder share: git in their checkout, waiting, failing loudly.

Each agent is one attack of docs/security.md. It exits 0 when it believes the
attack worked and 1 with "attack failed: <why>" on standard error when a step
was refused, so that a contained attacker ends ``failed`` with the reason.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RUN_ID = os.environ.get("RALLY_RUN_ID", "")
NAME = os.environ.get("RALLY_TEAMMATE", "")


def fail(why: str) -> None:
    print(f"attack failed: {why}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def try_git(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> tuple[str | None, str]:
    """(its output, or None when git failed; its standard error)."""
    done = subprocess.run(["git", *args], capture_output=True, text=True, input=stdin,
                          env={**os.environ, **(env or {})}, check=False)
    return (done.stdout.strip() if done.returncode == 0 else None), done.stderr.strip()


def git(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    out, err = try_git(*args, env=env, stdin=stdin)
    if out is None:
        fail(f"git {' '.join(args)}: {err}")
    return out or ""


def common_dir() -> Path:
    """The user's git directory, as an attacker finds it: the one whose objects this checkout's
    repository borrows (named in its objects/info/alternates), else the git directory behind the
    checkout (a linked worktree's, shared with the user's)."""
    own = Path(git("rev-parse", "--path-format=absolute", "--git-common-dir"))
    alternates = own / "objects" / "info" / "alternates"
    borrowed = alternates.read_text().strip().splitlines() if alternates.is_file() else []
    return Path(borrowed[0]).parent if borrowed else own


def user_git(*args: str) -> str:
    """git in the user's repository, from this checkout."""
    return git("--git-dir", str(common_dir()), *args)


def wait_for(what: str, ready: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def teammate_outcome(name: str) -> str | None:
    """``name``'s outcome in the run's records, read as rally-gh writes them."""
    state = common_dir() / "rally" / "runs" / RUN_ID / "run.json"
    try:
        teammates = json.loads(state.read_text())["teammates"]
    except (OSError, ValueError, KeyError):
        return None
    return next((t.get("outcome") for t in teammates if t.get("name") == name), None)


def commit_tree(parent: str, files: dict[str, str], message: str) -> str:
    """A commit on ``parent`` with ``files`` written over its tree, made without touching the checkout."""
    index = {"GIT_INDEX_FILE": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"hostile-index-{os.getpid()}")}
    git("read-tree", parent, env=index)
    for path, text in files.items():
        blob = git("hash-object", "-w", "--stdin", stdin=text)
        git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=index)
    tree = git("write-tree", env=index)
    return git("commit-tree", tree, "-p", parent, "-m", message)


# Two teammates meet on an abstract Unix socket: it belongs to the network namespace, which
# the sandbox keeps, while each one's files are out of the other's sight.
def _address(tag: str) -> str:
    return f"\0rally-hostile-{RUN_ID}-{tag}"


def wait_for_peer(tag: str, seconds: float = 20) -> bool:
    """Block until a peer calls ``signal_peer(tag)``; False after ``seconds``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(_address(tag))
        server.listen(1)
        server.settimeout(seconds)
        try:
            server.accept()[0].close()
        except TimeoutError:
            return False
    return True


def signal_peer(tag: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(_address(tag))
                return
        except OSError:
            time.sleep(0.05)


def own_work(text: str = "") -> None:
    """Honest work in the teammate's own folder, so that its outcome can be done."""
    folder = Path("src") / NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "work.txt").write_text(text or f"{NAME}'s own work\n")
