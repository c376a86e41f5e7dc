"""The egress allow-list's proxy (rally_gh/egress.py) on real sockets; a whole run with it: tests/run/test_network.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rally_gh import egress
from rally_gh.config import ConfigInvalid, load_config_text


def test_a_host_is_allowed_by_name_port_or_domain() -> None:
    entries = ("api.anthropic.com", "127.0.0.1:8080", "*.openai.com")
    assert egress.allows(entries, "API.Anthropic.com", 443)
    assert egress.allows(entries, "api.anthropic.com.", 443)
    assert not egress.allows(entries, "api.anthropic.com", 80)  # a bare name is its TLS port alone
    assert not egress.allows(entries, "evil-api.anthropic.com", 443)
    assert egress.allows(entries, "127.0.0.1", 8080) and not egress.allows(entries, "127.0.0.1", 8081)
    assert egress.allows(entries, "chat.openai.com", 443) and egress.allows(entries, "a.b.openai.com", 443)
    assert not egress.allows(entries, "openai.com", 443) and not egress.allows(entries, "xopenai.com", 443)
    assert not egress.allows((), "api.anthropic.com", 443)


@pytest.fixture
def echo() -> Iterator[int]:
    """A TCP server on the host's loopback that answers each connection with what it was sent, upper-cased."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(1024).upper())

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def _ask(proxy: egress.Proxy, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(proxy.path))
        client.sendall(request)
        answer = b""
        try:
            while chunk := client.recv(4096):
                answer += chunk
                if answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n"):
                    client.sendall(b"hello through the tunnel")
        except ConnectionResetError:  # closed by the proxy before all we sent was read
            pass
        return answer


def test_the_proxy_tunnels_to_a_listed_host_and_refuses_the_rest(echo: int) -> None:
    with egress.proxies({"web": (f"127.0.0.1:{echo}",)}) as made:
        proxy = made["web"]
        assert len(str(proxy.path)) < 100 and (proxy.path.parent / egress.FORWARDER_NAME).is_file()
        through = _ask(proxy, f"CONNECT 127.0.0.1:{echo} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert through == b"HTTP/1.1 200 Connection established\r\n\r\nHELLO THROUGH THE TUNNEL"
        refused = _ask(proxy, f"CONNECT 127.0.0.1:{echo + 1} HTTP/1.1\r\n\r\n".encode())
        assert refused.startswith(b"HTTP/1.1 403 Forbidden") and b"not on this teammate's network list" in refused
        plain = _ask(proxy, b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 405") and b"only CONNECT" in plain
        assert proxy.refused == {f"127.0.0.1:{echo + 1}"}
        folder = proxy.path.parent
    assert not folder.exists()  # gone with the run's agents


def test_a_network_list_is_checked_in_the_map() -> None:
    base = "version: 1\nteam: t\nteammates:\n  - name: a\n    exclusive_write: [src/**]\n"
    loaded = load_config_text(base + "    network: [api.anthropic.com, '*.openai.com', 'LOCALHOST:8080']\n", "rally.yml")
    assert loaded.config.network_of(loaded.config.teammates[0]) == ("api.anthropic.com", "*.openai.com",
                                                                     "localhost:8080")
    with pytest.raises(ConfigInvalid) as refused:
        load_config_text(base + "    network: [https://api.anthropic.com/v1]\n", "rally.yml")
    assert "rally.yml:6" in str(refused.value) and "is not a host" in str(refused.value)


def test_the_forwarder_is_a_script_of_the_standard_library_alone(tmp_path: Path) -> None:
    compile(egress.FORWARDER, "forward.py", "exec")
    assert "rally_gh" not in egress.FORWARDER


def test_a_target_that_is_no_host_is_refused_and_never_repeated() -> None:
    with egress.proxies({"web": ("api.anthropic.com",)}) as made:
        proxy = made["web"]
        odd = _ask(proxy, b"CONNECT [click](https://evil.example):443 HTTP/1.1\r\n\r\n")
        assert odd.startswith(b"HTTP/1.1 405") and b"evil" not in odd
        huge = _ask(proxy, b"CONNECT " + b"a" * 9000 + b":443 HTTP/1.1\r\n\r\n")
        assert huge == b""  # a head over 8 KiB: the connection is closed
        assert proxy.refused == set()


def test_the_proxies_live_below_tmp_whatever_tmpdir_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sandbox has a /tmp of its own: there, no teammate sees another's socket (found by review)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with egress.proxies({"web": ()}) as made:
        assert made["web"].path.is_relative_to("/tmp") and not made["web"].path.is_relative_to(tmp_path)


def test_a_port_of_other_digits_is_refused_without_a_traceback() -> None:
    with egress.proxies({"web": ("api.anthropic.com",)}) as made:
        odd = _ask(made["web"], "CONNECT api.anthropic.com:4²3 HTTP/1.1\r\n\r\n".encode())
        assert odd.startswith(b"HTTP/1.1 405")
