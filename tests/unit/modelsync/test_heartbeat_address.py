"""local_address: the address on this machine's route to the master (where a gateway is
reachable from the master on a multi-node Swarm)."""

from __future__ import annotations

from modelsync.heartbeat import local_address


def test_the_route_to_the_master_gives_the_address_it_sees() -> None:
    assert local_address("http://127.0.0.1:8000") == "127.0.0.1"
    assert local_address("http://[::1]:8000") in ("::1", None)  # None: no IPv6 here


def test_no_host_or_no_name_gives_none() -> None:
    assert local_address("") is None
    assert local_address("http://name-that-does-not-resolve.invalid:8000") is None
