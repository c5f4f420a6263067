"""The jobs table (the master's SQLite file): one row per job, its idempotency key unique."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from master.db import Database
from modelsync.jobs.model import ENDED, JobState

COLUMNS = (
    "id, idempotency_key, state, model, version, label, format, source, rows, chunks, bytes, "
    "created_at, queued_at, finished_at, expires_at, progress, webhook_url, webhook"
)


@dataclass(frozen=True)
class JobRow:
    id: str
    state: JobState
    model: str
    format: str
    source: str  # inline | upload
    created_at: float
    expires_at: float
    key: str | None = None
    version: int | None = None
    label: str | None = None
    rows: int = 0
    chunks: int = 0
    bytes: int = 0
    queued_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None
    webhook: dict[str, Any] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def with_(self, **changes: Any) -> JobRow:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """What the API answers (the webhook's URL without its query, which may hold a secret)."""
        hook = None
        if self.webhook_url:
            hook = {"url": self.webhook_url.split("?", 1)[0], **self.webhook}
        return {
            "id": self.id,
            "state": str(self.state),
            "model": self.model,
            "version": self.version,
            "label": self.label,
            "format": self.format,
            "source": self.source,
            "rows": self.rows,
            "chunks": self.chunks,
            "bytes": self.bytes,
            "idempotency_key": self.key,
            "created_at": self.created_at,
            "queued_at": self.queued_at,
            "finished_at": self.finished_at,
            "expires_at": self.expires_at,
            "progress": self.progress,
            "webhook": hook,
            "links": {"self": f"/v1/jobs/{self.id}", "result": f"/v1/jobs/{self.id}/result"},
        }


class KeyTaken(Exception):
    """Another job already holds this idempotency key."""


def _row(r: sqlite3.Row) -> JobRow:
    return JobRow(
        id=r["id"],
        key=r["idempotency_key"],
        state=JobState(r["state"]),
        model=r["model"],
        version=r["version"],
        label=r["label"],
        format=r["format"],
        source=r["source"],
        rows=r["rows"],
        chunks=r["chunks"],
        bytes=r["bytes"],
        created_at=r["created_at"],
        queued_at=r["queued_at"],
        finished_at=r["finished_at"],
        expires_at=r["expires_at"],
        progress=json.loads(r["progress"] or "{}"),
        webhook_url=r["webhook_url"],
        webhook=json.loads(r["webhook"] or "{}"),
    )


def _values(job: JobRow) -> tuple[Any, ...]:
    return (
        job.id,
        job.key,
        str(job.state),
        job.model,
        job.version,
        job.label,
        job.format,
        job.source,
        job.rows,
        job.chunks,
        job.bytes,
        job.created_at,
        job.queued_at,
        job.finished_at,
        job.expires_at,
        json.dumps(job.progress),
        job.webhook_url,
        json.dumps(job.webhook),
    )


class JobTable:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, job: JobRow) -> None:
        """KeyTaken when ``job.key`` is already another job's."""
        marks = ", ".join("?" * len(COLUMNS.split(",")))
        try:
            with self.db.write() as conn:
                conn.execute(f"INSERT INTO jobs ({COLUMNS}) VALUES ({marks})", _values(job))  # noqa: S608
        except sqlite3.IntegrityError:
            raise KeyTaken(job.key) from None

    def save(self, job: JobRow) -> None:
        sets = ", ".join(f"{c.strip()} = ?" for c in COLUMNS.split(",")[1:])
        with self.db.write() as conn:
            conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*_values(job)[1:], job.id))  # noqa: S608

    def update_progress(self, job: JobRow) -> bool:
        """A running job's state, progress and times, unless it ended meanwhile (a cancel)."""
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = ?, progress = ?, finished_at = ?, expires_at = ?, "
                "webhook = ? WHERE id = ? AND state IN ('queued', 'running')",
                (
                    str(job.state),
                    json.dumps(job.progress),
                    job.finished_at,
                    job.expires_at,
                    json.dumps(job.webhook),
                    job.id,
                ),
            )
            return cur.rowcount == 1

    def end(self, job: JobRow, state: JobState) -> bool:
        """A queued or running job ends as ``state`` (False: it had ended already)."""
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, expires_at = ?, webhook = ? "
                "WHERE id = ? AND state IN ('queued', 'running')",
                (str(state), job.finished_at, job.expires_at, json.dumps(job.webhook), job.id),
            )
            return cur.rowcount == 1

    def update_webhook(self, job_id: str, webhook: dict[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE jobs SET webhook = ? WHERE id = ?", (json.dumps(webhook), job_id))

    def webhooks_due(self, now: float, limit: int = 20) -> list[JobRow]:
        """Ended jobs whose webhook is pending and due."""
        sql = (
            f"SELECT {COLUMNS} FROM jobs WHERE webhook_url IS NOT NULL "  # noqa: S608
            "AND state IN ('done', 'cancelled') "
            "AND json_extract(webhook, '$.state') = 'pending' "
            "AND COALESCE(json_extract(webhook, '$.next_at'), 0) <= ? ORDER BY finished_at LIMIT ?"
        )
        return [_row(r) for r in self.db.conn().execute(sql, (now, limit)).fetchall()]

    def get(self, job_id: str) -> JobRow | None:
        r = self.db.conn().execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()  # noqa: S608
        return None if r is None else _row(r)

    def by_key(self, key: str) -> JobRow | None:
        r = (
            self.db.conn()
            .execute(f"SELECT {COLUMNS} FROM jobs WHERE idempotency_key = ?", (key,))  # noqa: S608
            .fetchone()
        )
        return None if r is None else _row(r)

    def recent(self, states: Sequence[str] = (), limit: int = 100) -> list[JobRow]:
        sql = f"SELECT {COLUMNS} FROM jobs"  # noqa: S608
        args: list[Any] = []
        if states:
            sql += f" WHERE state IN ({', '.join('?' * len(states))})"
            args += list(states)
        sql += " ORDER BY created_at DESC, id LIMIT ?"
        return [_row(r) for r in self.db.conn().execute(sql, (*args, limit)).fetchall()]

    def expired(self, now: float, limit: int = 100) -> list[JobRow]:
        sql = f"SELECT {COLUMNS} FROM jobs WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"  # noqa: S608
        return [_row(r) for r in self.db.conn().execute(sql, (now, limit)).fetchall()]

    def delete(self, job_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
