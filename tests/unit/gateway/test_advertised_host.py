"""The host the gateway's heartbeats advertise: where the master can reach it on any Swarm."""

from __future__ import annotations

import socket

from gateway.server import advertised_host
from modelsync.settings import NodeSettings


def node(http_host: str, master_url: str | None = None) -> NodeSettings:
    return NodeSettings(node_id="n1", http_port=8080, http_host=http_host, master_url=master_url)


def test_a_listening_address_is_advertised_as_it_is() -> None:
    assert advertised_host(node("198.18.0.2", "http://198.18.0.1:8000")) == "198.18.0.2"
    assert advertised_host(node("::1")) == "[::1]"


def test_listening_everywhere_advertises_the_address_on_the_route_to_the_master() -> None:
    assert advertised_host(node("0.0.0.0", "http://127.0.0.1:8000")) == "127.0.0.1"
    # no master, or one whose name does not resolve: the hostname, never the node's id
    assert advertised_host(node("0.0.0.0")) == socket.gethostname()
    assert advertised_host(node("", "http://no-such-name.invalid:8000")) == socket.gethostname()
