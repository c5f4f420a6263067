"""free_port: never the same port twice in a process, never one an outgoing connection could
take (the ephemeral range), always one nothing listens on."""

from __future__ import annotations

import socket

from modelsync.dev import emulator
from modelsync.dev.emulator import free_port


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    floor = emulator._ephemeral_floor()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= p < floor for p in ports)
    for port in ports[:20]:  # still free: a server can bind it
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))


def test_a_port_something_listens_on_is_skipped(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
            other.bind(("127.0.0.1", 0))
            spare = other.getsockname()[1]  # free again once closed
        picks = iter([taken, taken, spare])
        monkeypatch.setattr(emulator.random, "randint", lambda _lo, _hi: next(picks))
        monkeypatch.setattr(emulator, "_ephemeral_floor", lambda: 65535)
        with emulator._GIVEN_LOCK:
            emulator._GIVEN.discard(spare)
        assert free_port() == spare
        assert free_port is emulator.free_port and spare in emulator._GIVEN
