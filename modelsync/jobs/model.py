"""A job's rules (pure): ids, states, where it lives in the bucket, the task message of a chunk,
a chunk's summary (the result object's metadata), result lines and progress.

    PREFIX/_modelsync/jobs/<id>/job.json            the spec, written once at submit
    PREFIX/_modelsync/jobs/<id>/in/000000.jsonl     a chunk's rows, one JSON value per line
    PREFIX/_modelsync/jobs/<id>/out/000000.jsonl    its result lines, written once (by chunk id)
    PREFIX/_modelsync/jobs/<id>/cancelled           the cancel marker (workers skip the chunks)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelsync.layout import RESERVED_DIR, is_model_name, is_version, join

JOB_ID_PATTERN = r"[0-9a-f]{24}"
JOB_ID_RE = re.compile(JOB_ID_PATTERN + r"\Z")
# what a client may send as ``Idempotency-Key``: 1 to 200 visible ASCII characters
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN = r"[\x21-\x7e]{1,200}"
IDEMPOTENCY_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN + r"\Z")
SCORE_CHUNK_TASK = "modelsync.jobs.score_chunk"
QUEUE = "modelsync.jobs"
FORMATS = ("jsonl", "csv")
MAX_ERROR_CHARS = 500  # of one error line's message
MAX_FIRST_ERRORS = 10  # error messages a job's status shows


class JobState(StrEnum):
    UPLOADING = "uploading"  # the submit is still streaming its rows to the bucket
    QUEUED = "queued"  # every chunk is on the broker, none scored yet
    RUNNING = "running"  # some chunks are scored
    DONE = "done"  # every chunk is scored: the result can be downloaded
    CANCELLED = "cancelled"  # cancelled: chunks not scored yet never will be


ENDED = (JobState.DONE, JobState.CANCELLED)


class BadMessage(ValueError):
    """A task message or a chunk summary that does not follow these rules."""


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and JOB_ID_RE.match(value) is not None


# --- where a job lives ----------------------------------------------------------------------
def jobs_dir(prefix: str) -> str:
    return join(prefix, RESERVED_DIR, "jobs") + "/"


def job_dir(prefix: str, job_id: str) -> str:
    return f"{jobs_dir(prefix)}{job_id}/"


def spec_object(prefix: str, job_id: str) -> str:
    return job_dir(prefix, job_id) + "job.json"


def cancel_object(prefix: str, job_id: str) -> str:
    return job_dir(prefix, job_id) + "cancelled"


def input_object(prefix: str, job_id: str, chunk: int) -> str:
    return f"{job_dir(prefix, job_id)}in/{chunk:06d}.jsonl"


def outputs_dir(prefix: str, job_id: str) -> str:
    return job_dir(prefix, job_id) + "out/"


def output_object(prefix: str, job_id: str, chunk: int) -> str:
    return f"{outputs_dir(prefix, job_id)}{chunk:06d}.jsonl"


_CHUNK_FILE_RE = re.compile(r"(\d{6,})\.jsonl\Z")


def chunk_of(name: str) -> int | None:
    """The chunk number of an input or output object's name (None: not one)."""
    m = _CHUNK_FILE_RE.search(name.rpartition("/")[2])
    return int(m.group(1)) if m else None


# --- the message of one chunk ---------------------------------------------------------------
@dataclass(frozen=True)
class ChunkTask:
    """What a worker is told to score: everything but the rows (in the bucket)."""

    job: str
    chunk: int
    model: str
    version: int | None
    format: str
    first_row: int
    rows: int

    def to_message(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "chunk": self.chunk,
            "model": self.model,
            "version": self.version,
            "format": self.format,
            "first_row": self.first_row,
            "rows": self.rows,
        }

    @classmethod
    def from_message(cls, doc: Mapping[str, Any]) -> ChunkTask:
        def count(key: str, minimum: int) -> int:
            value = doc.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise BadMessage(f"chunk task: {key!r} must be an integer >= {minimum}")
            return value

        job, model, fmt, version = (doc.get(k) for k in ("job", "model", "format", "version"))
        if not isinstance(job, str) or not is_job_id(job):
            raise BadMessage("chunk task: 'job' is not a job id")
        if not isinstance(model, str) or not is_model_name(model):
            raise BadMessage("chunk task: 'model' is not a model name")
        if version is not None and not is_version(version):
            raise BadMessage("chunk task: 'version' must be a positive integer or null")
        if fmt not in FORMATS:
            raise BadMessage(f"chunk task: 'format' must be one of {FORMATS}")
        return cls(
            job,
            count("chunk", 0),
            model,
            version,
            str(fmt),
            count("first_row", 0),
            count("rows", 1),
        )


# --- what a scored chunk says about itself (its result object's metadata) -------------------
@dataclass(frozen=True)
class ChunkSummary:
    chunk: int
    rows: int
    errors: int
    versions: Mapping[int, int] = field(default_factory=dict)  # version -> rows it scored
    first_error: str | None = None
    seconds: float = 0.0
    worker: str = ""
    finished_at: float | None = None  # the object's time in the listing

    def to_metadata(self) -> dict[str, str]:
        out = {
            "rows": str(self.rows),
            "errors": str(self.errors),
            "versions": json.dumps({str(v): n for v, n in sorted(self.versions.items())}),
            "seconds": f"{self.seconds:.4f}",
            "worker": self.worker[:200],
        }
        if self.first_error:
            out["first_error"] = self.first_error[:MAX_ERROR_CHARS]
        return out

    @classmethod
    def from_metadata(
        cls, chunk: int, metadata: Mapping[str, str] | None, finished_at: float | None = None
    ) -> ChunkSummary:
        md = metadata or {}
        try:
            versions_doc = json.loads(md.get("versions", "{}"))
            versions = {int(v): int(n) for v, n in versions_doc.items()}
            return cls(
                chunk=chunk,
                rows=int(md["rows"]),
                errors=int(md.get("errors", "0")),
                versions=versions,
                first_error=md.get("first_error") or None,
                seconds=float(md.get("seconds", "0")),
                worker=md.get("worker", ""),
                finished_at=finished_at,
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise BadMessage(f"chunk {chunk}: its result's metadata is malformed: {exc}") from None


# --- result lines ---------------------------------------------------------------------------
def ok_line(row: int, version: int, outputs: Mapping[str, Any]) -> bytes:
    """``{"row": 7, "version": 3, "outputs": {"y": 15.0}}`` and a newline."""
    doc = {"row": row, "version": version, "outputs": outputs}
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def error_line(row: int, message: str) -> bytes:
    """``{"row": 7, "error": "input 'x': expected float32 numbers, got a string"}``."""
    doc = {"row": row, "error": message[:MAX_ERROR_CHARS]}
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


# --- progress -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    chunks_total: int
    chunks_done: int
    rows_total: int
    rows_done: int
    errors: int
    versions: Mapping[int, int]
    rows_per_s: float | None
    first_result_at: float | None
    last_result_at: float | None
    first_errors: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.chunks_done >= self.chunks_total

    def to_json(self) -> dict[str, Any]:
        return {
            "chunks_total": self.chunks_total,
            "chunks_done": self.chunks_done,
            "rows_total": self.rows_total,
            "rows_done": self.rows_done,
            "errors": self.errors,
            "fraction": round(self.rows_done / self.rows_total, 4) if self.rows_total else 1.0,
            "rows_per_s": None if self.rows_per_s is None else round(self.rows_per_s, 1),
            "versions": {str(v): n for v, n in sorted(self.versions.items())},
            "first_result_at": self.first_result_at,
            "last_result_at": self.last_result_at,
            "first_errors": list(self.first_errors),
        }


def progress(
    chunks_total: int, rows_total: int, queued_at: float, summaries: Iterable[ChunkSummary]
) -> Progress:
    """A job's progress from the summaries of its scored chunks (each chunk once: a repeated
    chunk number counts once). ``rows_per_s`` runs from ``queued_at`` to the last result."""
    by_chunk = {s.chunk: s for s in summaries if 0 <= s.chunk < chunks_total}
    done = [by_chunk[c] for c in sorted(by_chunk)]
    versions: dict[int, int] = {}
    for s in done:
        for v, n in s.versions.items():
            versions[v] = versions.get(v, 0) + n
    times = [s.finished_at for s in done if s.finished_at is not None]
    rows_done = sum(s.rows for s in done)
    last = max(times) if times else None
    rate = None
    if last is not None and last > queued_at:
        rate = rows_done / (last - queued_at)
    return Progress(
        chunks_total=chunks_total,
        chunks_done=len(done),
        rows_total=rows_total,
        rows_done=rows_done,
        errors=sum(s.errors for s in done),
        versions=versions,
        rows_per_s=rate,
        first_result_at=min(times) if times else None,
        last_result_at=last,
        first_errors=tuple(s.first_error for s in done if s.first_error)[:MAX_FIRST_ERRORS],
    )
