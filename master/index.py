"""The nodes' reports folded into per-model indexes, kept up to date incrementally.

A heartbeat only writes its report to SQLite (and bumps the row's ``seq`` when the report
changed). A view asks the index for the fleet: the index reads the cheap liveness of every
report, re-reads and re-folds only the reports whose ``seq`` moved, and drops the ones the
registry forgot. So a view costs the changes since the last view plus a pass over the models,
not a parse of every node's report — and every gunicorn worker stays consistent, since each
catches up from the same SQLite file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from master.db import Database, NodeRow
from master.liveness import is_live, node_state
from modelsync.reports import nested_of, versions_of

PULLER, CONFIG_MANAGER, GATEWAY = "puller", "config_manager", "gateway"
VersionNodes = dict[str, dict[int, set[str]]]  # model -> version -> node ids


@dataclass
class RoleState:
    last_seen: float
    heartbeat_s: float

    def live(self, now: float) -> bool:
        return is_live(self.last_seen, self.heartbeat_s, now)


@dataclass
class Fleet:
    """What the views read (under the index's lock; do not keep references)."""

    now: float
    roles: dict[str, dict[str, RoleState]]  # node id -> role -> liveness
    on_disk: VersionNodes  # puller reports
    available: VersionNodes  # config manager reports; gateways' for container models
    available_since: dict[tuple[str, int, str], float]  # (model, version, node) -> when
    failed: dict[str, dict[int, dict[str, str]]]  # model -> version -> node -> why
    models: set[str] = field(default_factory=set)  # every model any report names

    def live(self, role: str) -> set[str]:
        return {n for n, rs in self.roles.items() if role in rs and rs[role].live(self.now)}

    def serving(self, kind: str | None) -> set[str]:
        """The live nodes that serve a model of this kind: a config manager's (TF Serving) or,
        for a container model, a gateway's (it checks the containers' /ping and reports)."""
        return self.live(GATEWAY if kind == "container" else CONFIG_MANAGER)

    def node_state(self, node_id: str) -> str:
        return node_state(rs.live(self.now) for rs in self.roles.get(node_id, {}).values())


class FleetIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], NodeRow] = {}
        self._seq = 0
        self._fleet = Fleet(0.0, {}, {}, {}, {}, {})
        self._counts: dict[str, int] = {}  # model -> how many reports name it

    @contextmanager
    def fleet(self, db: Database, now: float) -> Iterator[Fleet]:
        with self._lock:
            self._catch_up(db)
            self._fleet.now = now
            yield self._fleet

    def _catch_up(self, db: Database) -> None:
        liveness = db.liveness()
        keys = {(n, r) for n, r, _ls, _hb, _seq in liveness}
        for key in set(self._rows) - keys:  # forgotten by the registry
            self._unfold(self._rows.pop(key))
        if any(seq > self._seq for _n, _r, _ls, _hb, seq in liveness):
            # sequence numbers come from one counter (db.heartbeat): every changed report
            # has a number above the last one folded in
            for row in db.nodes_changed_since(self._seq):
                old = self._rows.get((row.node_id, row.role))
                if old is not None:
                    self._unfold(old)
                self._rows[(row.node_id, row.role)] = row
                self._fold(row)
                self._seq = max(self._seq, row.seq)
        roles: dict[str, dict[str, RoleState]] = {}
        for n, r, last_seen, heartbeat_s, _seq in liveness:
            roles.setdefault(n, {})[r] = RoleState(last_seen, heartbeat_s)
        self._fleet.roles = roles

    # --- folding one report in and out ----------------------------------------------------------
    def _fold(self, row: NodeRow) -> None:
        self._apply(row, add=True)

    def _unfold(self, row: NodeRow) -> None:
        self._apply(row, add=False)

    def _apply(self, row: NodeRow, add: bool) -> None:
        f, node = self._fleet, row.node_id
        named: set[str] = set()
        if row.role == PULLER:
            named |= self._index(f.on_disk, versions_of(row.status, "installed"), node, add)
        elif row.role == GATEWAY:  # a container version whose /ping answers there
            named |= self._index(f.available, versions_of(row.status, "containers"), node, add)
        elif row.role == CONFIG_MANAGER:
            named |= self._index(f.available, versions_of(row.status, "available"), node, add)
            for model, versions in nested_of(row.status, "available_since").items():
                for v, when in versions.items():
                    if add and isinstance(when, int | float):
                        f.available_since[(model, v, node)] = float(when)
                    elif not add:
                        f.available_since.pop((model, v, node), None)
            for model, versions in nested_of(row.status, "failed").items():
                named.add(model)
                for v, why in versions.items():
                    per = f.failed.setdefault(model, {}).setdefault(v, {})
                    if add:
                        per[node] = str(why)[:500]
                    else:
                        per.pop(node, None)
                        if not per:
                            del f.failed[model][v]
                if not add and not f.failed.get(model):
                    f.failed.pop(model, None)
        for model in named:
            self._counts[model] = self._counts.get(model, 0) + (1 if add else -1)
            if self._counts[model] <= 0:
                del self._counts[model]
        f.models = set(self._counts)

    @staticmethod
    def _index(target: VersionNodes, report: dict[str, set[int]], node: str, add: bool) -> set[str]:
        for model, versions in report.items():
            per_model = target.setdefault(model, {})
            for v in versions:
                nodes = per_model.setdefault(v, set())
                if add:
                    nodes.add(node)
                else:
                    nodes.discard(node)
                    if not nodes:
                        del per_model[v]
            if not per_model:
                del target[model]
        return set(report)


def role_json(row: NodeRow, now: float) -> dict[str, Any]:
    return {
        "state": row.state(now),
        "last_seen": row.last_seen,
        "first_seen": row.first_seen,
        "heartbeat_s": row.heartbeat_s,
        "beats": row.beats,
        "version": row.version,
        "hostname": row.hostname,
        "status": row.status,
    }


def nodes_json(rows: list[NodeRow], now: float) -> list[dict[str, Any]]:
    """One entry per node id, its daemons as roles under it."""
    by_node: dict[str, list[NodeRow]] = {}
    for row in rows:
        by_node.setdefault(row.node_id, []).append(row)
    out = []
    for node_id, node_rows in sorted(by_node.items()):
        out.append(
            {
                "node_id": node_id,
                "hostname": next((r.hostname for r in node_rows if r.hostname), ""),
                "state": node_state(r.state(now) == "live" for r in node_rows),
                "last_seen": max(r.last_seen for r in node_rows),
                "roles": {r.role: role_json(r, now) for r in node_rows},
            }
        )
    return out
