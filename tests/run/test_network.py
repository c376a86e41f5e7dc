"""`network: false`: an agent, and its verify, reach no network but their own loopback (real bwrap)."""

from __future__ import annotations

import json
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rally_gh import sandbox
from rally_gh.config import load_config_text
from rally_gh.run import pipeline
from rally_gh.testing import git, init_repo

pytestmark = pytest.mark.skipif(sandbox.find_bwrap("/usr/bin:/bin") is None, reason="bubblewrap is not installed")

PROBE = textwrap.dedent("""\
    import os, pathlib, socket, sys
    name = os.environ["RALLY_TEAMMATE"]
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
        seen = "reached"
    except OSError as err:
        seen = f"blocked ({type(err).__name__})"
    pathlib.Path(f"src/{name}").mkdir(parents=True, exist_ok=True)
    pathlib.Path(f"src/{name}/net.txt").write_text(seen + "\\n")
""")


@pytest.fixture
def server() -> Iterator[int]:
    """A TCP server on the host's loopback, outside any sandbox."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:
                continue
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def _team(tmp_path: Path, probe: str, server: int, **networks: str) -> str:
    """A map of teammates (their ``network`` as given) whose agent is the script ``probe``, told the server's port."""
    script = tmp_path / "probe.py"
    script.write_text(probe)
    agent = json.dumps([sys.executable, str(script), str(server)])
    lines = ["version: 1", "team: net", "defaults: {timeout: 20s, retries: 0}", "teammates:"]
    for name, network in networks.items():
        lines += [f"  - name: {name}", f"    exclusive_write: [src/{name}/**]", f"    network: {network}",
                  f"    agent: {{preset: command, command: {agent}}}"]
    return "\n".join(lines) + "\n"


def test_a_teammate_without_network_reaches_nothing_outside_its_sandbox(tmp_path: Path, server: int) -> None:
    rally_yml = _team(tmp_path, PROBE, server, online="true", offline="false")
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "rally.yml": rally_yml})
    state = pipeline.run(repo, load_config_text(rally_yml, "rally.yml"), "n1", None, time.time,
                         {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")})
    assert {t.name: t.outcome for t in state.teammates} == {"online": "done", "offline": "done"}
    assert git(repo, "show", "rally/n1/online:src/online/net.txt") == "reached\n"
    assert git(repo, "show", "rally/n1/offline:src/offline/net.txt").startswith("blocked")


def test_merge_verify_without_network_reaches_nothing_outside_its_sandbox(tmp_path: Path, server: int) -> None:
    """`merge.network: false`: the teammates' code that merge.verify runs (a test, a conftest.py) reaches no host."""
    probe = tmp_path / "probe_merge.py"
    probe.write_text(textwrap.dedent(f"""\
        import socket
        try:
            socket.create_connection(("127.0.0.1", {server}), timeout=3).close()
            print("merge.verify reached the server")
        except OSError as err:
            print(f"merge.verify was blocked ({{type(err).__name__}})")
        """))
    rally_yml = _team(tmp_path, PROBE, server, online="true", other="true") + (
        f"merge: {{network: false, verify: [{json.dumps(f'{sys.executable} {probe}')}]}}\n")
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "rally.yml": rally_yml})
    state = pipeline.run(repo, load_config_text(rally_yml, "rally.yml"), "n3", None, time.time,
                         {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")})
    assert git(repo, "show", "rally/n3/online:src/online/net.txt") == "reached\n"  # the agent keeps its network
    (verified,) = state.verification
    assert verified.passed and "merge.verify was blocked" in verified.output_tail, verified


def test_without_a_sandbox_network_false_is_named_as_not_enforced(tmp_path: Path) -> None:
    rally_yml = textwrap.dedent("""\
        version: 1
        team: net
        defaults: {timeout: 20s, retries: 0, network: false}
        teammates:
          - name: a
            exclusive_write: [src/a/**]
            agent: {preset: command, command: ["true"]}
          - name: b
            exclusive_write: [src/b/**]
            agent: {preset: command, command: ["true"]}
        """)
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "rally.yml": rally_yml})
    state = pipeline.run(repo, load_config_text(rally_yml, "rally.yml"), "n2", None, time.time,
                         {"PATH": "/usr/bin:/bin"}, sandbox=False)
    assert any("network: false was not enforced for a, b" in r for r in state.risks)


LISTED = textwrap.dedent("""\
    import os, pathlib, socket, sys, urllib.parse
    name, port = os.environ["RALLY_TEAMMATE"], int(sys.argv[1])
    def direct():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
            return "reached"
        except OSError as err:
            return f"blocked ({type(err).__name__})"
    def through_proxy(target):
        proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
        with socket.create_connection((proxy.hostname, proxy.port), timeout=5) as s:
            s.sendall(f"CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n".encode())
            return s.recv(200).split(b"\\r\\n", 1)[0].decode()
    seen = [f"direct: {direct()}", f"listed: {through_proxy(f'127.0.0.1:{port}')}",
            f"unlisted: {through_proxy(f'127.0.0.1:{port + 1}')}"]
    pathlib.Path(f"src/{name}").mkdir(parents=True, exist_ok=True)
    pathlib.Path(f"src/{name}/net.txt").write_text("\\n".join(seen) + "\\n")
""")


def test_a_teammate_with_a_network_list_reaches_those_hosts_alone_through_the_proxy(tmp_path: Path,
                                                                                    server: int) -> None:
    rally_yml = _team(tmp_path, LISTED, server, api=f'["127.0.0.1:{server}"]', web="false")
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "rally.yml": rally_yml})
    state = pipeline.run(repo, load_config_text(rally_yml, "rally.yml"), "n3", None, time.time,
                         {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")})
    assert state.teammate("api").outcome == "done", state.teammate("api").reason
    assert state.teammate("web").outcome == "failed"  # no network, no proxy: HTTPS_PROXY is not even set
    seen = git(repo, "show", "rally/n3/api:src/api/net.txt").splitlines()
    assert seen[0].startswith("direct: blocked")  # no network of its own: the proxy is the only way out
    assert seen[1:] == ["listed: HTTP/1.1 200 Connection established", "unlisted: HTTP/1.1 403 Forbidden"]
    assert f"api tried to reach `127.0.0.1:{server + 1}`, not on its network list: refused" in state.risks
