"""The network probe that lets bnno.data fail fast without network."""

import socket

import pytest

from bnno.data import network

PROXY_VARIABLES = [
    name
    for variable in ("https_proxy", "http_proxy", "all_proxy", "no_proxy")
    for name in (variable, variable.upper())
]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def test_reachable_local_server():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert network.can_reach(f"http://127.0.0.1:{port}/file.tar.gz", timeout=3.0)


def test_unreachable_port():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert not network.can_reach(f"http://127.0.0.1:{port}/file.tar.gz", timeout=3.0)


def test_unresolvable_host():
    assert not network.can_reach("https://host.invalid/data.tar.gz", timeout=3.0)


def test_target_is_the_host_or_its_proxy(monkeypatch):
    assert network.connection_target("https://www.cs.toronto.edu/~kriz/x.tar.gz") == ("www.cs.toronto.edu", 443)
    assert network.connection_target("http://example.org:8080/x") == ("example.org", 8080)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert network.connection_target("https://www.cs.toronto.edu/x") == ("proxy.example", 3128)
