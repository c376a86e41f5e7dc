"""The egress allow-list: an agent whose map says ``network: [host, ...]`` reaches those hosts alone.

Its sandbox has no network but its own loopback (``--unshare-net``). The only way out is a Unix
socket, bound read-only into the sandbox, on which rally-gh (outside) serves an HTTP ``CONNECT``
proxy that opens a tunnel only to a host on the list, on its port (443 unless the entry names
one): TLS goes through end to end, and nothing else goes anywhere. Inside, ``FORWARDER`` (a
standalone script run by the same Python, isolated: ``-I -S``) listens on the sandbox's
loopback, passes every connection on to that socket, and runs the agent with ``HTTPS_PROXY``
(and its kin) pointing at itself, as agent CLIs expect a proxy to be given. A name is resolved
outside, by the proxy: the sandbox needs no DNS.

What is refused is answered ``403`` with the reason, and listed (``Proxy.refused``) for the
teammate's log. Without a sandbox nothing of this is enforced, and the report says so.

The same design as Anthropic's sandbox-runtime and GitHub Agentic Workflows' firewall: a proxy
outside the namespace as the only route.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import socketserver
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rally_gh.sandbox import PRIVATE_TMP

MAX_HEAD = 8192  # a CONNECT request's line and headers
CONNECT_TIMEOUT_S = 15.0
MAX_TUNNELS = 64  # at once, per teammate: more wait (an agent cannot fill rally-gh with threads)
MAX_REFUSED = 100  # distinct targets kept for the report
SOCKET_NAME = "egress.sock"
# What a target's host may be: a name or an address. Whatever else an agent sends is refused
# without being repeated anywhere (the refusals reach the report).
_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
FORWARDER_NAME = "forward.py"


def allows(entries: Sequence[str], host: str, port: int) -> bool:
    """Whether ``host:port`` is on the list (names compared without case; ``*.domain`` is any name
    below the domain, not the domain itself; a bare name means port 443)."""
    host = host.lower().rstrip(".")
    for entry in entries:
        name, _, wanted = entry.partition(":")
        if port != (int(wanted) if wanted else 443):
            continue
        if name.startswith("*.") and host.endswith(name[1:]) and len(host) > len(name) - 1:
            return True
        if host == name:
            return True
    return False


def _target(request_line: str) -> tuple[str, int] | None:
    """``CONNECT host:port HTTP/1.1`` -> (host, port); None for anything else."""
    parts = request_line.split()
    if len(parts) != 3 or parts[0] != "CONNECT" or not parts[2].startswith("HTTP/"):
        return None
    host, sep, port = parts[1].rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536 or not _HOST.fullmatch(host):
        return None
    return host.strip("[]"), int(port)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for s in (source, sink):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@dataclass
class Proxy:
    """One teammate's proxy: its allow-list, the socket it serves on, and what it refused."""

    allowed: tuple[str, ...]
    path: Path
    refused: set[str] = field(default_factory=set)
    slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(MAX_TUNNELS))

    def handle(self, client: socket.socket) -> None:
        with self.slots:
            self._handle(client)

    def _handle(self, client: socket.socket) -> None:
        client.settimeout(CONNECT_TIMEOUT_S)  # for the head; a tunnel, once open, waits as long as it needs
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(1024)
            if not chunk or len(head) + len(chunk) > MAX_HEAD:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        target = _target(line)
        if target is None:
            self._answer(client, 405, "only CONNECT host:port goes out of this sandbox")
            return
        host, port = target
        if not allows(self.allowed, host, port):
            if len(self.refused) < MAX_REFUSED:
                self.refused.add(f"{host}:{port}")
            self._answer(client, 403, f"{host}:{port} is not on this teammate's network list in rally.yml")
            return
        try:
            upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        except OSError as err:
            self._answer(client, 502, f"{host}:{port} cannot be reached: {err.strerror or err}")
            return
        upstream.settimeout(None)
        with upstream:
            client.settimeout(None)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                upstream.sendall(rest)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()

    @staticmethod
    def _answer(client: socket.socket, status: int, why: str) -> None:
        body = f"rally-gh: {why}\n".encode()
        reason = {403: "Forbidden", 405: "Method Not Allowed", 502: "Bad Gateway"}[status]
        with contextlib.suppress(OSError):
            client.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                           f"Connection: close\r\n\r\n".encode() + body)


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        super().__init__(str(proxy.path), _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        with contextlib.suppress(OSError):
            server.proxy.handle(self.request)


@contextlib.contextmanager
def proxies(allow_lists: Mapping[str, Sequence[str]]) -> Iterator[dict[str, Proxy]]:
    """A proxy per teammate of ``allow_lists``, serving while inside, each in a folder of its own
    (below the system's temporary folder: a Unix socket's path is limited to 107 bytes) that also
    holds the forwarder. The folders go when it ends."""
    if not allow_lists:
        yield {}
        return
    # Below /tmp, whatever TMPDIR says: every sandbox gets a /tmp of its own, so no teammate sees
    # another's socket (elsewhere, `--ro-bind / /` would show them all).
    root = Path(tempfile.mkdtemp(prefix="rally-egress-", dir=PRIVATE_TMP))
    servers: list[_Server] = []
    try:
        made: dict[str, Proxy] = {}
        for name, allowed in allow_lists.items():
            folder = root / name
            folder.mkdir()
            (folder / FORWARDER_NAME).write_text(FORWARDER)
            proxy = Proxy(tuple(allowed), folder / SOCKET_NAME)
            server = _Server(proxy)
            servers.append(server)
            threading.Thread(target=server.serve_forever, name=f"egress-{name}", daemon=True).start()
            made[name] = proxy
        yield made
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        shutil.rmtree(root, ignore_errors=True)


def forwarded(argv: Sequence[str], proxy: Proxy) -> tuple[str, ...]:
    """``argv`` started by the forwarder, inside the sandbox, its proxy variables set (the
    folder of ``proxy`` must be visible there: ``folder_of``)."""
    return (sys.executable, "-I", "-S", str(proxy.path.parent / FORWARDER_NAME), str(proxy.path), "--", *argv)


def folder_of(proxy: Proxy) -> Path:
    return proxy.path.parent


# Runs inside the sandbox (python -I -S: the standard library alone, nothing of the environment).
FORWARDER = '''\
"""rally-gh's egress forwarder: loopback -> the proxy's socket; then the agent, its proxy set."""
import os, socket, subprocess, sys, threading

def pump(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    for s in (source, sink):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def serve(listener, path):
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX)
        try:
            upstream.connect(path)
        except OSError:
            client.close()
            continue
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

def main():
    path, argv = sys.argv[1], sys.argv[3:]
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = "http://127.0.0.1:%d" % listener.getsockname()[1]
    env = dict(os.environ)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        env[name] = proxy
    env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
    threading.Thread(target=serve, args=(listener, path), daemon=True).start()
    try:
        code = subprocess.call(argv, env=env)
    except OSError as err:
        sys.stderr.write("rally-gh egress: cannot start %s: %s\\n" % (argv[0], err))
        return 127
    return 128 - code if code < 0 else code

sys.exit(main())
'''
