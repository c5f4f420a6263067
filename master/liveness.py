"""When a node counts as alive (pure): the one home of the rule every view applies."""

from __future__ import annotations

from collections.abc import Iterable

MISSED_BEATS = 3  # a daemon is stale after this many heartbeats it did not send


def is_live(last_seen: float, heartbeat_s: float, now: float) -> bool:
    """A daemon that reports every ``heartbeat_s`` and was last heard at ``last_seen``."""
    return now - last_seen <= MISSED_BEATS * heartbeat_s


def node_state(roles_live: Iterable[bool]) -> str:
    """A node from its daemons: live when all are, degraded when some are, else stale."""
    states = list(roles_live)
    if states and all(states):
        return "live"
    return "degraded" if any(states) else "stale"
