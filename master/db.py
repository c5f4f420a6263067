"""The master's state in one SQLite file (WAL): node registry, events and audit, convergence.

The schema is created and migrated at start (``PRAGMA user_version``). Every connection is
per thread; writes are short transactions, so heartbeats from hundreds of nodes fit easily.

The writers of one process queue on a lock before they open a transaction: SQLite's own busy
handler polls a locked database with growing sleeps (1, 2, 5 ... up to 100 ms between tries,
``sqliteDefaultBusyCallback``), so writers that met each other inside SQLite waited several times
longer than the lock was held and lost the race to newcomers: that was the heartbeat's p99. Other
processes (more gunicorn workers) still meet the busy timeout.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from master.liveness import is_live

MIGRATIONS: Sequence[str] = (
    # 1: registry and events
    """
    CREATE TABLE nodes (
        node_id TEXT NOT NULL, role TEXT NOT NULL, hostname TEXT NOT NULL DEFAULT '',
        version TEXT NOT NULL DEFAULT '', heartbeat_s REAL NOT NULL DEFAULT 10,
        status TEXT NOT NULL DEFAULT '{}', first_seen REAL NOT NULL, last_seen REAL NOT NULL,
        beats INTEGER NOT NULL DEFAULT 0, sync_seen REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (node_id, role));
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL,
        node_id TEXT, model TEXT, event TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');
    CREATE INDEX events_at ON events(at);
    CREATE INDEX events_model ON events(model, id);
    CREATE INDEX events_node ON events(node_id, id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: convergence history of each model
    """
    CREATE TABLE convergence (
        model TEXT PRIMARY KEY, converged INTEGER NOT NULL, since REAL NOT NULL,
        target TEXT NOT NULL DEFAULT '[]');
    """,
    # 3: a sequence number per report change, so views re-read only the reports that changed
    """
    ALTER TABLE nodes ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX nodes_seq ON nodes(seq);
    """,
    # 4: request telemetry (master/telemetry.py)
    """
    CREATE TABLE series (id INTEGER PRIMARY KEY, node_id TEXT NOT NULL, model TEXT NOT NULL,
                         UNIQUE (node_id, model));
    CREATE TABLE telemetry_node (series INTEGER NOT NULL, t REAL NOT NULL,
                                 seconds REAL NOT NULL, res INTEGER NOT NULL,
                                 figures TEXT NOT NULL);
    CREATE INDEX telemetry_node_series ON telemetry_node(series, t);
    CREATE INDEX telemetry_node_res ON telemetry_node(res, t);
    CREATE TABLE telemetry_model (model TEXT NOT NULL, minute INTEGER NOT NULL,
                                  writer TEXT NOT NULL, figures TEXT NOT NULL,
                                  PRIMARY KEY (model, minute, writer)) WITHOUT ROWID;
    CREATE INDEX telemetry_model_minute ON telemetry_model(minute);
    """,
    # 5: batch scoring jobs (master/jobs/table.py)
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE, state TEXT NOT NULL,
        model TEXT NOT NULL, version INTEGER, label TEXT, format TEXT NOT NULL,
        source TEXT NOT NULL, rows INTEGER NOT NULL DEFAULT 0, chunks INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, queued_at REAL,
        finished_at REAL, expires_at REAL NOT NULL, progress TEXT NOT NULL DEFAULT '{}',
        webhook_url TEXT, webhook TEXT NOT NULL DEFAULT '{}');
    CREATE INDEX jobs_created ON jobs(created_at);
    CREATE INDEX jobs_state ON jobs(state);
    """,
    # 6: a series per source: a node's server, or its gateway (master/telemetry.py)
    """
    CREATE TABLE series_by_source (id INTEGER PRIMARY KEY, node_id TEXT NOT NULL,
                                   model TEXT NOT NULL, source TEXT NOT NULL DEFAULT 'server',
                                   UNIQUE (node_id, model, source));
    INSERT INTO series_by_source (id, node_id, model) SELECT id, node_id, model FROM series;
    DROP TABLE series;
    ALTER TABLE series_by_source RENAME TO series;
    CREATE INDEX series_model ON series(model);
    """,
    # 7: the last telemetry batch counted per node and source (master/telemetry.py)
    """
    CREATE TABLE telemetry_batch (node_id TEXT NOT NULL, source TEXT NOT NULL,
                                  boot TEXT NOT NULL, seq INTEGER NOT NULL,
                                  PRIMARY KEY (node_id, source));
    """,
    # 8: the heartbeats' telemetry as received, until a drain counts it (master/telemetry.py)
    """
    CREATE TABLE telemetry_inbox (id INTEGER PRIMARY KEY, node_id TEXT NOT NULL,
                                  source TEXT NOT NULL, boot TEXT, seq INTEGER, t REAL NOT NULL,
                                  models TEXT NOT NULL);
    """,
)


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    role: str
    hostname: str
    version: str
    heartbeat_s: float
    status: dict[str, Any]
    first_seen: float
    last_seen: float
    beats: int
    seq: int = 0

    def state(self, now: float) -> str:
        return "live" if is_live(self.last_seen, self.heartbeat_s, now) else "stale"


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._beats_lock = threading.Lock()
        # (node_id, role) -> [hostname, version, heartbeat_s, last beat, beats]: the beats that
        # only repeated the stored report, written together by flush_beats()
        self._beats: dict[tuple[str, str], list[Any]] = {}
        self.migrate()

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error)."""
        conn = self.conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One statement in its own transaction, queued like every write of this process."""
        with self._write_lock:
            return self.conn().execute(sql, args)

    def migrate(self) -> int:
        with self.write() as conn:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for i, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={i}")
        return len(MIGRATIONS)

    # --- nodes ---------------------------------------------------------------------------------
    def heartbeat(
        self,
        node_id: str,
        role: str,
        hostname: str,
        version: str,
        heartbeat_s: float,
        status: dict[str, Any],
        events: Iterable[dict[str, Any]],
        now: float,
    ) -> tuple[bool, float]:
        """Record one beat and its events. Returns (new node?, sync_seen before this beat).

        A beat that repeats the stored report and carries no event (nearly every beat) moves
        only liveness: it is buffered and written with the others by ``flush_beats`` (every
        read of the registry in this process flushes first), so heartbeats do not queue on the
        write lock. A new or changed report is written at once, with the next sequence number.
        """
        status_text = json.dumps(status, separators=(",", ":"), sort_keys=True, default=str)
        if not events:
            row = (
                self.conn()
                .execute(
                    "SELECT sync_seen, status FROM nodes WHERE node_id=? AND role=?",
                    (node_id, role),
                )
                .fetchone()
            )
            if row is not None and row[1] == status_text:
                with self._beats_lock:
                    beat = self._beats.get((node_id, role))
                    self._beats[(node_id, role)] = [
                        hostname,
                        version,
                        heartbeat_s,
                        max(now, beat[3]) if beat else now,
                        beat[4] + 1 if beat else 1,
                    ]
                return False, float(row[0])
        rows = [
            (
                float(e.get("at") or now),
                "node",
                node_id,
                str(e["model"]) if e.get("model") is not None else None,
                str(e.get("event") or "event"),
                json.dumps(
                    {k: v for k, v in e.items() if k not in ("at", "event", "model", "node")},
                    default=str,
                ),
            )
            for e in events
        ]
        with self._beats_lock:
            buffered = self._beats.pop((node_id, role), None)
        earlier = buffered[4] if buffered else 0
        with self.write() as conn:
            row = conn.execute(
                "SELECT sync_seen, status FROM nodes WHERE node_id=? AND role=?", (node_id, role)
            ).fetchone()
            if row is None or row[1] != status_text:  # a new report: the next sequence number
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('report_seq', '1') "
                    "ON CONFLICT(key) DO UPDATE SET value=CAST(value AS INTEGER) + 1"
                )
            if row is None:
                conn.execute(
                    "INSERT INTO nodes (node_id, role, hostname, version, heartbeat_s, status,"
                    " first_seen, last_seen, beats, sync_seen, seq) VALUES (?,?,?,?,?,?,?,?,1,"
                    "?,(SELECT CAST(value AS INTEGER) FROM meta WHERE key='report_seq'))",
                    (node_id, role, hostname, version, heartbeat_s, status_text, now, now, now),
                )
                sync_seen = 0.0
            elif row[1] != status_text:
                sync_seen = float(row[0])
                conn.execute(
                    "UPDATE nodes SET hostname=?, version=?, heartbeat_s=?, status=?, "
                    "last_seen=?, beats=beats+1+?, seq=(SELECT CAST(value AS INTEGER) FROM "
                    "meta WHERE key='report_seq') WHERE node_id=? AND role=?",
                    (hostname, version, heartbeat_s, status_text, now, earlier, node_id, role),
                )
            else:  # the same report again: only liveness moves
                sync_seen = float(row[0])
                conn.execute(
                    "UPDATE nodes SET hostname=?, version=?, heartbeat_s=?, last_seen=?, "
                    "beats=beats+1+? WHERE node_id=? AND role=?",
                    (hostname, version, heartbeat_s, now, earlier, node_id, role),
                )
            if rows:
                conn.executemany(
                    "INSERT INTO events (at, kind, node_id, model, event, detail) "
                    "VALUES (?,?,?,?,?,?)",
                    rows,
                )
        return row is None, sync_seen

    def flush_beats(self) -> int:
        """Write the buffered beats (liveness only) in one transaction; returns how many."""
        with self._beats_lock:
            beats, self._beats = self._beats, {}
        if beats:
            with self.write() as conn:
                conn.executemany(
                    "UPDATE nodes SET hostname=?, version=?, heartbeat_s=?, "
                    "last_seen=MAX(last_seen, ?), beats=beats+? WHERE node_id=? AND role=?",
                    [(*b, n, r) for (n, r), b in beats.items()],
                )
        return len(beats)

    def ack_sync(self, node_id: str, role: str, now: float) -> None:
        self._execute(
            "UPDATE nodes SET sync_seen=? WHERE node_id=? AND role=?", (now, node_id, role)
        )

    _ROW = (
        "SELECT node_id, role, hostname, version, heartbeat_s, status, first_seen, "
        "last_seen, beats, seq FROM nodes"
    )

    def nodes(self, node_id: str | None = None) -> list[NodeRow]:
        sql = self._ROW
        args: tuple[Any, ...] = ()
        if node_id is not None:
            sql, args = sql + " WHERE node_id=?", (node_id,)
        return self._rows(sql + " ORDER BY node_id, role", args)

    def nodes_by_role(self, role: str) -> list[NodeRow]:
        return self._rows(self._ROW + " WHERE role=? ORDER BY node_id", (role,))

    def nodes_changed_since(self, seq: int) -> list[NodeRow]:
        """The reports written after sequence number ``seq``."""
        return self._rows(self._ROW + " WHERE seq > ? ORDER BY seq", (seq,))

    def liveness(self) -> list[tuple[str, str, float, float, int]]:
        """(node_id, role, last_seen, heartbeat_s, seq) of every report: cheap, no status."""
        self.flush_beats()
        return [
            (r[0], r[1], r[2], r[3], r[4])
            for r in self.conn().execute(
                "SELECT node_id, role, last_seen, heartbeat_s, seq FROM nodes"
            )
        ]

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[NodeRow]:
        self.flush_beats()
        return [
            NodeRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], r[9])
            for r in self.conn().execute(sql, args)
        ]

    def forget_nodes(self, older_than: float) -> int:
        self.flush_beats()
        return self._execute("DELETE FROM nodes WHERE last_seen < ?", (older_than,)).rowcount

    # --- events --------------------------------------------------------------------------------
    def add_event(
        self,
        kind: str,
        event: str,
        *,
        node_id: str | None = None,
        model: str | None = None,
        detail: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> int:
        cur = self._execute(
            "INSERT INTO events (at, kind, node_id, model, event, detail) VALUES (?,?,?,?,?,?)",
            (
                now or time.time(),
                kind,
                node_id,
                model,
                event,
                json.dumps(detail or {}, default=str),
            ),
        )
        return int(cur.lastrowid or 0)

    def events(
        self,
        *,
        model: str | None = None,
        node: str | None = None,
        since: float | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("model", model), ("node_id", node), ("kind", kind)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if since is not None:
            where.append("at>=?")
            args.append(since)
        sql = "SELECT id, at, kind, node_id, model, event, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        out = []
        for r in self.conn().execute(sql, args):
            detail = json.loads(r[6])
            actor = detail.get("actor") if isinstance(detail, dict) else None
            out.append(
                {
                    "id": r[0],
                    "at": r[1],
                    "kind": r[2],
                    "node_id": r[3],
                    "model": r[4],
                    "event": r[5],
                    # who: an audit entry's actor, a node event's node, the master itself
                    "actor": actor or (f"node:{r[3]}" if r[3] else "master"),
                    "detail": detail,
                }
            )
        return out

    def trim_events(self, max_rows: int, older_than: float) -> int:
        with self.write() as conn:
            n = conn.execute("DELETE FROM events WHERE at < ?", (older_than,)).rowcount
            row = conn.execute("SELECT MAX(id) FROM events").fetchone()
            if row and row[0] is not None:
                n += conn.execute(
                    "DELETE FROM events WHERE id <= ?", (int(row[0]) - max_rows,)
                ).rowcount
        return int(n)

    # --- meta and convergence -------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
            "DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def convergence(self, model: str, converged: bool, target: list[int], now: float) -> float:
        """Record the model's convergence; returns since when it has been in this state."""
        conn = self.conn()
        target_text = json.dumps(target)
        row = conn.execute(
            "SELECT converged, since, target FROM convergence WHERE model=?", (model,)
        ).fetchone()
        if row is not None and bool(row[0]) == converged and row[2] == target_text:
            return float(row[1])
        self._execute(
            "INSERT INTO convergence (model, converged, since, target) VALUES "
            "(?,?,?,?) ON CONFLICT(model) DO UPDATE SET converged=excluded.converged,"
            " since=excluded.since, target=excluded.target",
            (model, int(converged), now, target_text),
        )
        return now
