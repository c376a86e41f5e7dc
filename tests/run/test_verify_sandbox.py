"""``verify`` and ``merge.verify`` run code agents wrote (docs/security.md): each in a sandbox.

Whole runs of ``rally-gh run``, real bubblewrap, real repositories: alpha's agent writes
``tools/attack.py``, which its own ``verify`` and ``merge.verify`` then run. The attack looks
for the orchestrator's token in every ``/proc/*/environ``, its own environment and the user's
git config (where ``actions/checkout`` leaves one), writes to the user's git directory (its
config, hooks, ``info/`` and refs, by hand and through ``git config``), into the user's
checkout and a folder outside, and leaves a ``setsid`` process behind. (A teammate's own
repository is its to write, verify included: rally-gh recorded the commit it verifies before.)
It prints each attempt that worked and passes whatever it managed (a failing verify draws
attention), so the output the run records is the truth of what it could do. ``tools/serve.py`` starts a
server that a later command of the same ``verify`` must not find.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from rally_gh import git as rgit
from rally_gh.run import assess
from rally_gh.state import load_state
from rally_gh.testing import RALLY_CLI, git, init_repo

TOKEN = f"rally-verify-secret-{uuid.uuid4().hex}"

ATTACK = r'''
import os, pathlib, subprocess, sys
label, token, outside, user_checkout, marker = sys.argv[1:]
user_git = pathlib.Path(user_checkout) / ".git"
did = []
for environ in pathlib.Path("/proc").glob("[0-9]*/environ"):
    try:
        if token.encode() in environ.read_bytes():
            did.append(f"read the token in {environ}")
    except OSError:
        pass
if any(token in value for value in os.environ.values()):
    did.append("got the token in its environment")
try:
    if token in (user_git / "config").read_text():
        did.append("read the token in the user's git config")
except OSError:
    pass
# The user's git directory: through the checkout's own (merge.verify's is a worktree of it), and by name.
common = pathlib.Path(subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                     capture_output=True, text=True).stdout.strip())
targets = [user_git / "config", user_git / "hooks" / "pre-push", user_git / "info" / "attributes",
           user_git / "refs" / "heads" / "planted", pathlib.Path(user_checkout) / "README.md",
           pathlib.Path(outside) / f"{label}.txt"]
if common.resolve() == user_git.resolve():
    targets += [common / "config", common / "hooks" / "pre-push"]
for target in targets:
    try:
        with open(target, "a") as f:
            f.write("planted\n")
        did.append(f"wrote {target}")
    except OSError:
        pass
if subprocess.run(["git", "--git-dir", str(user_git), "config", "--local", "credential.helper", "!cat >/dev/null"],
                  capture_output=True).returncode == 0:
    did.append("set credential.helper in the user's git config")
subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(60)", marker],
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"{label}: " + ("; ".join(did) if did else "contained"))
'''

# A server in a session of its own, its parent gone at once: what a test suite's fixture leaves behind.
SERVE = r'''
import os, pathlib, socket, sys, time
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
pathlib.Path(sys.argv[1]).write_text(str(server.getsockname()[1]))
if os.fork() == 0:
    os.setsid()
    time.sleep(60)
'''

PROBE = r'''
import pathlib, socket, sys
port = int(pathlib.Path(sys.argv[1]).read_text())
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
except OSError:
    print("the server of an earlier command is gone")
else:
    sys.exit(f"the server of an earlier command still listens on {port}")
'''

# alpha's agent: writes the scripts its verify and merge.verify run.
AGENT = f'''
import pathlib
pathlib.Path("tools").mkdir(exist_ok=True)
pathlib.Path("tools/attack.py").write_text({ATTACK!r})
pathlib.Path("tools/serve.py").write_text({SERVE!r})
pathlib.Path("tools/probe.py").write_text({PROBE!r})
'''

HONEST = '''
import pathlib
pathlib.Path("src/beta").mkdir(parents=True, exist_ok=True)
pathlib.Path("src/beta/work.txt").write_text("beta's own work\\n")
'''


def _verify(label: str, outside: Path, checkout: Path, marker: str) -> list[str]:
    python = sys.executable
    return [f"{python} tools/attack.py {label} {TOKEN} {outside} {checkout} {marker}",
            f"{python} tools/serve.py {label}.port {marker}", f"{python} tools/probe.py {label}.port"]


def _setup(tmp_path: Path, marker: str) -> tuple[Path, Path, dict[str, str]]:
    agents, outside, home = tmp_path / "agents", tmp_path / "outside", tmp_path / "ada"
    for folder in (agents, outside, home):
        folder.mkdir()
    (agents / "alpha.py").write_text(AGENT)
    (agents / "beta.py").write_text(HONEST)
    repo = tmp_path / "repo"

    def agent(name: str) -> str:
        return json.dumps({"preset": "command", "command": [sys.executable, str(agents / f"{name}.py")]})

    rally_yml = "\n".join([
        "version: 1", "team: verify", "defaults: {timeout: 30s, retries: 0}",
        f"merge: {{verify: {json.dumps(_verify('merge', outside, repo, marker))}}}",
        "teammates:",
        "  - name: alpha", "    exclusive_write: [tools/**]", f"    agent: {agent('alpha')}",
        f"    verify: {json.dumps(_verify('teammate', outside, repo, marker))}",
        "  - name: beta", "    exclusive_write: [src/beta/**]", f"    agent: {agent('beta')}",
    ]) + "\n"
    init_repo(repo, {"README.md": "# project\n", "rally.yml": rally_yml})
    # What actions/checkout leaves in the repository's config.
    git(repo, "config", "http.https://github.com/.extraheader", f"AUTHORIZATION: basic {TOKEN}")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "GIT_CONFIG_NOSYSTEM": "1", "LANG": "C.UTF-8", "GITHUB_TOKEN": TOKEN,
           "GIT_AUTHOR_NAME": "Ada Tester", "GIT_AUTHOR_EMAIL": "ada@example.com",
           "GIT_COMMITTER_NAME": "Ada Tester", "GIT_COMMITTER_EMAIL": "ada@example.com"}
    return repo, outside, env


def _controls(repo: Path) -> dict[str, bytes]:
    common = repo / ".git"
    return {str(p.relative_to(common)): p.read_bytes() for name in ("config", "hooks", "info")
            for p in ([common / name] if (common / name).is_file() else sorted((common / name).rglob("*")))
            if p.is_file()}


def _running(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _run(repo: Path, run_id: str, env: dict[str, str], *options: str) -> dict[str, Any]:
    ran = subprocess.run([*RALLY_CLI, "run", "--run-id", run_id, *options], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=180, stdin=subprocess.DEVNULL)
    done = subprocess.run([*RALLY_CLI, "report", "--run", run_id, "--format", "json"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, ran.stdout + ran.stderr + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_verify_and_merge_verify_cannot_reach_the_token_the_git_directory_the_user_nor_outlive_their_command(
        tmp_path: Path) -> None:
    marker = f"rally-verify-stray-{uuid.uuid4().hex}"
    repo, outside, env = _setup(tmp_path, marker)
    before = _controls(repo)
    try:
        report = _run(repo, "v1", env)
        deadline = time.monotonic() + 3
        while _running(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _running(marker) == []
    finally:
        for pid in _running(marker):
            os.kill(pid, 9)
    assert _controls(repo) == before
    assert git(repo, "config", "--get-all", "credential.helper", check=False) == ""
    assert list(outside.iterdir()) == [] and (repo / "README.md").read_text() == "# project\n"

    # The report tells the truth: each verify passed, having managed nothing; no sandbox risk.
    assert {t["name"]: (t["outcome"], t["integrated"]) for t in report["teammates"]} == {
        "alpha": ("done", True), "beta": ("done", True)}, report
    assert not any("sandbox" in r for r in report["risks"]), report["risks"]
    state = load_state(rgit.common_dir(rgit.open_repo(repo)), "v1")
    teammate = [v.output_tail for v in state.teammate("alpha").verify]
    merge = [v.output_tail for v in state.verification]
    assert teammate == ["teammate: contained\n", "", "the server of an earlier command is gone\n"]
    assert merge == ["merge: contained\n", "", "the server of an earlier command is gone\n"]


def test_without_a_sandbox_verify_runs_as_it_is_and_the_report_says_so_first(tmp_path: Path) -> None:
    marker = f"rally-verify-stray-{uuid.uuid4().hex}"
    repo, outside, env = _setup(tmp_path, marker)
    try:
        report = _run(repo, "n1", env, "--no-sandbox")
    finally:
        for pid in _running(marker):  # what it left behind, as the risk says it may
            os.kill(pid, 9)
    assert report["risks"][0] == assess.NO_SANDBOX_RISK
    state = load_state(rgit.common_dir(rgit.open_repo(repo)), "n1")
    attack, _, probe = state.teammate("alpha").verify
    assert attack.output_tail.startswith("teammate: ") and "wrote" in attack.output_tail  # it says what it did
    assert not probe.passed and "still listens" in probe.output_tail
    assert state.teammate("alpha").outcome == "unverified"
