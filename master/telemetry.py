"""Request telemetry of the fleet in SQLite: the nodes' per-model figures, as time series.

Each heartbeat of a config manager carries, per model, what its TF Serving answered since the
last beat (``modelsync.telemetry``: requests and errors by status code, the latency histogram
in microseconds, the versions AVAILABLE then). The master keeps

- ``telemetry_node``: per node and model, one row per heartbeat (``res`` 0); after an hour the rows
  are merged into 1-minute rows (``res`` 60); dropped after the retention;
- ``telemetry_model``: per model and minute, the figures merged over every node, whole and per
  version (exact where the node's server has modelsync's per-version extension; elsewhere a
  node's figures count for a version when it was the only one AVAILABLE there: TF Serving's
  metrics carry no version label), for the graphs and the cluster view: a read over an hour of
  a model is 60 rows, whatever the fleet's size.

Each series has a ``source``: ``server`` (the config manager's reading of its TF Serving: every
request the node served) or ``gateway`` (what the node's gateway answered, per version: a share
of the same requests, so it never goes into the model's totals). The rollout judge reads both,
per node, over its window (:meth:`TelemetryStore.window`).

Each beat's figures are counted once: a sender numbers its batches (``boot``, ``seq``,
:class:`modelsync.telemetry.Outbox`) and sends one again unchanged when its answer was lost;
``telemetry_batch`` keeps the last number taken per node and source, checked in the drain's
transaction, so a repeat that reached this or another gunicorn worker is dropped.

Quantiles over nodes or time come from merged histogram buckets, never from averaging p99s.
A heartbeat only buffers its figures; a background thread puts them in ``telemetry_inbox``
(one short insert every quarter second), and a drain counts them from there: under gunicorn the
master's telemetry process (``master.merger``) every ``flush_s``, so the process answering
heartbeats never merges nor writes the fleet's figures; any read drains first. Idle models
write nothing. Each draining process keeps the minutes it is filling in memory and writes its
own row per model and minute (``writer``): no read-modify-write, and several processes never
overwrite each other; a read merges the rows of a minute. Times are the master's clock at
receipt, so node clocks don't matter.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from master.db import Database
from modelsync.layout import is_model_name
from modelsync.log import get_logger
from modelsync.telemetry import (
    GATEWAY,
    SERVER,
    BeatModel,
    ModelInterval,
    TelemetryError,
    merge_intervals,
)

log = get_logger("master")
MINUTE = 60
MAX_MODELS_PER_BEAT = 500
RAW_KEEP_S = 3600.0  # heartbeat resolution for this long, then 1-minute rows
DRAIN_BEATS = 100  # beats of the inbox counted per transaction
BEATS_FLUSH_S = 0.25  # how late liveness may reach SQLite (master.db.Database.flush_beats)
# the roles whose heartbeats carry telemetry, and the source their series are filed under
TELEMETRY_SOURCES = {"config_manager": SERVER, "gateway": GATEWAY}


@dataclass
class Figures:
    """Figures merged over some nodes and time: the whole, and per version."""

    whole: ModelInterval | None = None
    by_version: dict[str, ModelInterval] = field(default_factory=dict)

    def add(self, iv: ModelInterval, versions: Mapping[str, ModelInterval]) -> None:
        """A node's figures: the whole, and per version (``per_version``)."""
        self.whole = iv if self.whole is None else merge_intervals([self.whole, iv])
        for version, viv in versions.items():
            old = self.by_version.get(version)
            self.by_version[version] = viv if old is None else merge_intervals([old, viv])

    def merge(self, other: Figures) -> None:
        if other.whole is not None:
            self.whole = (
                other.whole if self.whole is None else merge_intervals([self.whole, other.whole])
            )
        for v, iv in other.by_version.items():
            old = self.by_version.get(v)
            self.by_version[v] = iv if old is None else merge_intervals([old, iv])

    def to_text(self) -> str:
        return json.dumps(
            {
                "whole": None if self.whole is None else self.whole.to_json(),
                "by_version": {v: iv.to_json() for v, iv in self.by_version.items()},
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_text(cls, text: str) -> Figures:
        doc = json.loads(text)
        whole = doc.get("whole")
        return cls(
            None if whole is None else ModelInterval.from_json(whole),
            {v: ModelInterval.from_json(iv) for v, iv in doc["by_version"].items()},
        )


@dataclass(frozen=True)
class NodeFigures:
    model: str
    figures: BeatModel
    text: str = ""  # the row as stored

    @property
    def interval(self) -> ModelInterval:
        return self.figures.interval

    def row_text(self) -> str:
        return self.text or json.dumps(self.figures.to_json(), separators=(",", ":"))

    def per_version(self) -> dict[str, ModelInterval]:
        return per_version(self.figures)


def per_version(fig: BeatModel) -> dict[str, ModelInterval]:
    """A server row's figures per version: the server's own (modelsync's extension) when it has
    them; else all of them for the only version AVAILABLE, if there was one; else none."""
    if fig.by_version is not None:
        return {str(v): iv for v, iv in fig.by_version.items()}
    return {str(next(iter(fig.versions))): fig.interval} if len(fig.versions) == 1 else {}


@dataclass(frozen=True)
class Batch:
    """A beat's telemetry batch number: ``boot`` names the sender's process, ``seq`` counts."""

    boot: str
    seq: int


BOOT_RE = re.compile(r"[0-9a-f]{1,64}")
MAX_SEQ = 2**62


def parse_batch(doc: Any) -> Batch | None:
    """The batch number of a heartbeat's ``telemetry`` (None: a sender that numbers nothing,
    counted as sent); TelemetryError if malformed."""
    if not isinstance(doc, dict) or ("boot" not in doc and "seq" not in doc):
        return None
    boot, seq = doc.get("boot"), doc.get("seq")
    if not isinstance(boot, str) or not BOOT_RE.fullmatch(boot):
        raise TelemetryError("'boot' must be 1-64 lowercase hex digits")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq < MAX_SEQ:
        raise TelemetryError("'seq' must be a positive integer")
    return Batch(boot, seq)


@dataclass(frozen=True)
class _Beat:
    """One heartbeat's figures, buffered until the writer's next flush."""

    node_id: str
    source: str
    batch: Batch | None
    t: float
    figures: list[NodeFigures]


def _inbox_beat(row: sqlite3.Row | tuple[Any, ...]) -> _Beat | None:
    """A row of ``telemetry_inbox`` as the beat it was (None, logged, if it no longer parses:
    it was checked on receipt, so only a change of this code could do that)."""
    _id, node_id, source, boot, seq, t, text = tuple(row)
    try:
        figures = [
            NodeFigures(
                model,
                BeatModel.from_json(doc, f"telemetry.models.{model}"),
                json.dumps(doc, separators=(",", ":")),
            )
            for model, doc in json.loads(text).items()
        ]
    except (TelemetryError, ValueError) as exc:
        log.warning("telemetry_inbox_unreadable", node_id=node_id, error=str(exc)[:200])
        return None
    batch = None if boot is None else Batch(str(boot), int(seq))
    return _Beat(str(node_id), str(source), batch, float(t), figures)


def parse_beat(doc: Any) -> list[NodeFigures]:
    """The ``telemetry`` field of a heartbeat (untrusted): TelemetryError if malformed."""
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise TelemetryError("'telemetry' must be an object with 'models'")
    models = doc["models"]
    if len(models) > MAX_MODELS_PER_BEAT:
        raise TelemetryError(f"'telemetry': at most {MAX_MODELS_PER_BEAT} models per beat")
    out = []
    for model, figures in models.items():
        if not is_model_name(model):
            raise TelemetryError(f"telemetry.models: {model[:80]!r} is not a model name")
        fig = BeatModel.from_json(figures, f"telemetry.models.{model}")
        if not fig.empty:  # checked: unknown keys refused, so the row is the sender's own text
            out.append(NodeFigures(str(model), fig, json.dumps(figures, separators=(",", ":"))))
    return out


class TelemetryStore:
    """The fleet's telemetry. A heartbeat's figures are buffered (:meth:`add`), put in
    ``telemetry_inbox`` by the background thread every BEATS_FLUSH_S (:meth:`spool`, one short
    insert), and counted from there by a drain (:meth:`drain`): merged into the series and the
    model's minutes, and taken out of the inbox, in one transaction, so each beat is counted
    once whichever process drains it. With ``spool_only`` another process drains
    (``master.merger``, the master's telemetry process under gunicorn): the process answering
    heartbeats then never merges nor writes a second of the fleet's figures, which held every
    heartbeat behind it for up to a tenth of a second. A read drains first, in any process, so
    it sees every beat taken before it."""

    def __init__(
        self, db: Database, retention_s: float, flush_s: float = 1.0, spool_only: bool = False
    ) -> None:
        self.db = db
        self.retention_s = retention_s
        self.flush_s = flush_s
        self.spool_only = spool_only
        self.writer = secrets.token_hex(6)  # this process's rows of telemetry_model
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._beats: list[_Beat] = []
        self._minutes: dict[tuple[str, int], Figures] = {}  # the minutes this process fills
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TelemetryStore:
        """Spool (and unless ``spool_only``, drain every ``flush_s``) in the background:
        heartbeats only buffer."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        """The master's writer thread: the registry's buffered beats and the telemetry's every
        BEATS_FLUSH_S, a drain every ``flush_s`` (unless another process drains)."""
        last = time.monotonic()
        while not self._stop.wait(min(BEATS_FLUSH_S, self.flush_s)):
            try:
                self.db.flush_beats()
                self.spool()
                if not self.spool_only and time.monotonic() - last >= self.flush_s:
                    last = time.monotonic()
                    self.drain()
            except Exception:  # noqa: S112 - the next round tries again; reads flush too
                continue

    # --- writes --------------------------------------------------------------------------------
    def add(
        self,
        node_id: str,
        figures: Iterable[NodeFigures],
        now: float,
        source: str = SERVER,
        batch: Batch | None = None,
    ) -> None:
        """A heartbeat's figures: one row per model in the node's series of ``source``; a
        server's figures also go into the model's minutes (a gateway's are a share of them).
        Buffered: the drain counts a ``batch`` seen before (a repeat) as nothing."""
        beat = _Beat(node_id, source, batch, now, list(figures))
        with self._lock:
            self._beats.append(beat)

    def flush(self) -> None:
        """Every beat taken so far counted (before a read)."""
        self.spool()
        self.drain()

    def spool(self) -> int:
        """The buffered beats into ``telemetry_inbox``, as the checked text each node sent (one
        short insert). Returns how many."""
        with self._lock:
            beats, self._beats = self._beats, []
        if not beats:
            return 0
        rows = [
            (
                b.node_id,
                b.source,
                None if b.batch is None else b.batch.boot,
                None if b.batch is None else b.batch.seq,
                b.t,
                "{" + ",".join(f"{json.dumps(f.model)}:{f.row_text()}" for f in b.figures) + "}",
            )
            for b in beats
        ]
        try:
            with self.db.write() as conn:
                conn.executemany(
                    "INSERT INTO telemetry_inbox (node_id, source, boot, seq, t, models) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except BaseException:
            with self._lock:  # kept, ahead of what came meanwhile, for the next round
                self._beats[:0] = beats
            raise
        return len(rows)

    def drain(self) -> int:
        """Count what the inbox holds, DRAIN_BEATS beats per transaction. Returns how many
        beats were taken (repeats included)."""
        taken = 0
        with self._flush_lock:
            for _ in range(100_000):  # bounded: one round per DRAIN_BEATS of backlog
                n = self._drain_some()
                taken += n
                if n < DRAIN_BEATS:
                    break
        return taken

    def _drain_some(self) -> int:
        """Up to DRAIN_BEATS of the inbox, parsed outside any transaction; then, in one: taken
        out of the inbox (those another process took meanwhile are left to it), the repeats
        dropped, the rows and this process's minutes written."""
        inbox = (
            self.db.conn()
            .execute(
                "SELECT id, node_id, source, boot, seq, t, models FROM telemetry_inbox "
                "ORDER BY id LIMIT ?",
                (DRAIN_BEATS,),
            )
            .fetchall()
        )
        if not inbox:
            return 0
        parsed = {int(row[0]): _inbox_beat(row) for row in inbox}
        with self.db.write() as conn:
            ids = [i for i in parsed]
            mine: set[int] = set()
            for i in range(0, len(ids), 400):  # SQLite's bound on a statement's variables
                chunk = ids[i : i + 400]
                marks = ",".join("?" * len(chunk))
                mine.update(
                    int(r[0])
                    for r in conn.execute(
                        f"DELETE FROM telemetry_inbox WHERE id IN ({marks}) RETURNING id",  # noqa: S608 - placeholders only
                        chunk,
                    )
                )
            beats = self._first_sight(
                conn, [b for i, b in parsed.items() if i in mine and b is not None]
            )
            minutes = self._merged_minutes(beats)
            self._write(conn, beats, minutes)
        self._minutes.update(minutes)
        if self._minutes:
            newest = max(m for _model, m in self._minutes)
            self._minutes = {k: f for k, f in self._minutes.items() if k[1] >= newest - MINUTE}
        return len(inbox)

    def _merged_minutes(self, beats: list[_Beat]) -> dict[tuple[str, int], Figures]:
        """This process's minutes that the servers' figures in ``beats`` change, as they will
        be (new objects: ``_minutes`` changes only once they are written)."""
        pending: dict[tuple[str, int], list[NodeFigures]] = {}
        for b in beats:
            if b.source == SERVER:
                minute = int(b.t // MINUTE) * MINUTE
                for f in b.figures:
                    pending.setdefault((f.model, minute), []).append(f)
        out = {}
        for key, items in pending.items():
            by_version: dict[str, list[ModelInterval]] = {}
            for f in items:
                for version, iv in f.per_version().items():
                    by_version.setdefault(version, []).append(iv)
            figures = Figures()
            old = self._minutes.get(key)
            if old is not None:
                figures.merge(old)
            figures.merge(
                Figures(
                    merge_intervals(f.interval for f in items),
                    {v: merge_intervals(ivs) for v, ivs in by_version.items()},
                )
            )
            out[key] = figures
        return out

    @staticmethod
    def _first_sight(conn: sqlite3.Connection, beats: list[_Beat]) -> list[_Beat]:
        """The beats whose batch was not counted before (and those without a number), the last
        number per node and source recorded in the caller's transaction."""
        numbered = [b for b in beats if b.batch is not None]
        if not numbered:
            return beats
        keys = sorted({(b.node_id, b.source) for b in numbered})
        taken: dict[tuple[str, str], Batch] = {}
        out = []
        for i in range(0, len(keys), 400):  # SQLite's bound on a statement's variables
            chunk = keys[i : i + 400]
            where = " OR ".join("(node_id=? AND source=?)" for _ in chunk)
            for node_id, source, boot, seq in conn.execute(
                f"SELECT node_id, source, boot, seq FROM telemetry_batch WHERE {where}",  # noqa: S608 - placeholders only
                [v for key in chunk for v in key],
            ):
                taken[(node_id, source)] = Batch(boot, int(seq))
        changed = set()
        for b in beats:
            if b.batch is None:
                out.append(b)
                continue
            key, last = (b.node_id, b.source), taken.get((b.node_id, b.source))
            if last is not None and last.boot == b.batch.boot and b.batch.seq <= last.seq:
                continue  # a repeat: its answer was lost, the figures are counted
            taken[key] = b.batch
            changed.add(key)
            out.append(b)
        conn.executemany(
            "INSERT OR REPLACE INTO telemetry_batch (node_id, source, boot, seq) "
            "VALUES (?, ?, ?, ?)",
            [(n, src, taken[(n, src)].boot, taken[(n, src)].seq) for n, src in changed],
        )
        return out

    def _write(
        self,
        conn: sqlite3.Connection,
        beats: list[_Beat],
        minutes: dict[tuple[str, int], Figures],
    ) -> None:
        rows = [
            (b.node_id, f.model, b.source, b.t, f.interval.seconds, f.row_text())
            for b in beats
            for f in b.figures
        ]
        conn.executemany(
            "INSERT OR IGNORE INTO series (node_id, model, source) VALUES (?, ?, ?)",
            {(n, m, src) for n, m, src, _t, _s, _f in rows},
        )
        conn.executemany(
            "INSERT INTO telemetry_node (series, t, seconds, res, figures) VALUES ("
            "(SELECT id FROM series WHERE node_id=? AND model=? AND source=?), ?, ?, 0, ?)",
            rows,
        )
        conn.executemany(
            "INSERT OR REPLACE INTO telemetry_model (model, minute, writer, figures) "
            "VALUES (?, ?, ?, ?)",
            [(model, minute, self.writer, f.to_text()) for (model, minute), f in minutes.items()],
        )

    def compact(self, now: float) -> tuple[int, int]:
        """Merge heartbeat rows older than an hour into 1-minute rows; drop rows older than the
        retention. Returns (rows merged away, rows dropped).

        One minute at a time: its rows are read and merged outside any write transaction (no
        new row can join a minute an hour old: times are the master's clock at receipt), then
        swapped for the merged rows in one short transaction."""
        self.flush()
        conn = self.db.conn()
        cutoff = int((now - RAW_KEEP_S) // MINUTE) * MINUTE
        merged = 0
        for _ in range(100_000):  # bounded: one round per minute of backlog
            first = conn.execute("SELECT MIN(t) FROM telemetry_node WHERE res=0").fetchone()[0]
            minute = cutoff if first is None else int(first // MINUTE) * MINUTE
            if minute >= cutoff:
                break
            groups: dict[int, list[tuple[float, BeatModel]]] = {}
            for series, t, text in conn.execute(
                "SELECT series, t, figures FROM telemetry_node WHERE res=0 AND t >= ? AND t < ?",
                (minute, minute + MINUTE),
            ):
                groups.setdefault(series, []).append(
                    (float(t), BeatModel.from_json(json.loads(text)))
                )
            out = []
            for series, items in groups.items():
                fig = items[0][1]
                for _t, more in items[1:]:
                    fig = fig.merge(more)
                out.append(
                    (
                        series,
                        max(t for t, _f in items),
                        fig.interval.seconds,
                        json.dumps(fig.to_json(), separators=(",", ":")),
                    )
                )
                merged += len(items) - 1
            with self.db.write() as w:
                w.execute(
                    "DELETE FROM telemetry_node WHERE res=0 AND t >= ? AND t < ?",
                    (minute, minute + MINUTE),
                )
                w.executemany(
                    "INSERT INTO telemetry_node (series, t, seconds, res, figures) "
                    "VALUES (?, ?, ?, 60, ?)",
                    out,
                )  # at its last row's time
        old = now - self.retention_s  # raw rows are younger than an hour: only 1-min ones
        with self.db.write() as w:
            dropped = w.execute(
                "DELETE FROM telemetry_node WHERE res=60 AND t < ?", (old,)
            ).rowcount
            dropped += w.execute("DELETE FROM telemetry_model WHERE minute < ?", (old,)).rowcount
        return merged, dropped

    # --- reads ---------------------------------------------------------------------------------
    def model_minutes(self, model: str, since: float, until: float) -> dict[int, Figures]:
        """Per minute, the rows of every writer merged."""
        self.flush()
        out: dict[int, Figures] = {}
        for minute, text in self.db.conn().execute(
            "SELECT minute, figures FROM telemetry_model WHERE model=? AND minute>=? AND minute<?",
            (model, int(since // MINUTE) * MINUTE, until),
        ):
            out.setdefault(int(minute), Figures()).merge(Figures.from_text(text))
        return out

    def last_minute(self, now: float) -> dict[str, dict[str, Any]]:
        """Per model: requests, rps, error rate and latency of the last minute (the rows of
        the current and the previous minute, over the time they cover)."""
        self.flush()
        start = (now - MINUTE) // MINUTE * MINUTE
        figures: dict[str, Figures] = {}
        for model, text in self.db.conn().execute(
            "SELECT model, figures FROM telemetry_model WHERE minute>=?", (start,)
        ):
            figures.setdefault(model, Figures()).merge(Figures.from_text(text))
        return {m: last_minute(f, now - start) for m, f in figures.items()}

    def sparklines(self, since: float) -> dict[str, dict[int, int]]:
        """Requests per minute of every model since ``since`` (read without the histograms)."""
        self.flush()
        out: dict[str, dict[int, int]] = {}
        for model, minute, text in self.db.conn().execute(
            "SELECT model, minute, figures FROM telemetry_model WHERE minute>=?",
            (int(since // MINUTE) * MINUTE,),
        ):
            whole = json.loads(text).get("whole") or {}
            out.setdefault(model, {})[int(minute)] = int(whole.get("requests") or 0)
        return out

    def node_rows(
        self, model: str, node_id: str, since: float, until: float
    ) -> list[tuple[float, BeatModel]]:
        """The rows of a node's server series (the per-node graphs)."""
        self.flush()
        out = []
        for t, text in self.db.conn().execute(
            "SELECT t, figures FROM telemetry_node JOIN series ON series.id=series "
            "WHERE node_id=? AND model=? AND source=? AND t>=? AND t<? ORDER BY t",
            (node_id, model, SERVER, since, until),
        ):
            out.append((float(t), BeatModel.from_json(json.loads(text))))
        return out

    def window(self, model: str, since: float, until: float) -> dict[tuple[str, str], BeatModel]:
        """Per (node, source), a model's figures merged over the rows that lie wholly within
        ``[since, until)`` (a row covers the ``seconds`` before its time): the rollout judge's
        window, so the minutes before it (a warmup) never leak in."""
        self.flush()
        out: dict[tuple[str, str], BeatModel] = {}
        for node_id, source, text in self.db.conn().execute(
            "SELECT node_id, source, figures FROM telemetry_node JOIN series ON series.id=series "
            "WHERE model=? AND t>=? AND t<? AND t - seconds >= ? - 0.001",
            (model, since, until, since),
        ):
            fig = BeatModel.from_json(json.loads(text))
            key = (str(node_id), str(source))
            old = out.get(key)
            out[key] = fig if old is None else old.merge(fig)
        return out


def figures_json(iv: ModelInterval | None, seconds: float) -> dict[str, Any]:
    """One point of a series: totals, rates and latency quantiles in milliseconds."""
    if iv is None:
        return {
            "requests": 0,
            "errors": 0,
            "error_rate": None,
            "rps": 0.0,
            "p50_ms": None,
            "p90_ms": None,
            "p99_ms": None,
        }
    errors = iv.error_count
    return {
        "requests": iv.requests,
        "errors": errors,
        "error_rate": round(errors / iv.requests, 6) if iv.requests else None,
        "rps": round(iv.requests / seconds, 3) if seconds > 0 else None,
        "p50_ms": _ms(iv.p50_ms),
        "p90_ms": _ms(iv.p90_ms),
        "p99_ms": _ms(iv.p99_ms),
        "errors_by_code": dict(iv.errors),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def merged(figures: Iterable[Figures]) -> Figures:
    out = Figures()
    for f in figures:
        out.merge(f)
    return out


def by_version_json(f: Figures, seconds: float) -> Mapping[str, dict[str, Any]]:
    return {v: figures_json(iv, seconds) for v, iv in sorted(f.by_version.items())}


def last_minute(f: Figures | None, seconds: float) -> dict[str, Any]:
    doc = figures_json(None if f is None else f.whole, seconds)
    return {k: doc[k] for k in ("requests", "rps", "error_rate", "p50_ms", "p99_ms")}
