"""Batch scoring jobs: submit (rows inline as JSON, or a JSON Lines / CSV upload streamed into
the bucket), status with progress, the result as JSON Lines, cancel. Submitting and cancelling
need the admin token, reading the read token. See ``master/jobs/`` and the README's "Jobs"."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from urllib.parse import urlparse

from flask import Blueprint, Response, jsonify, request, stream_with_context
from werkzeug.exceptions import ClientDisconnected

from master.api import ApiError, audit, body, check_model, need, state
from master.jobs.service import Jobs
from master.jobs.submit import BrokerDown, JobRequest, SubmitError
from master.jobs.table import JobRow
from modelsync.jobs.model import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_KEY_RE,
    JobState,
    is_job_id,
    output_object,
)
from modelsync.jobs.rows import MalformedInput, bounded_lines, csv_rows, jsonl_rows
from modelsync.layout import parse_version
from modelsync.policy import LABEL_RE

bp = Blueprint("jobs", __name__)
JSONL_TYPES = (
    "application/x-ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
    "application/json-lines",
)
CSV_TYPES = ("text/csv", "application/csv")
MAX_LIST = 500
MAX_WEBHOOK_CHARS = 2000


def _jobs() -> Jobs:
    jobs = state().jobs
    if not jobs.enabled:
        raise ApiError(
            503, "jobs are off on this master: set MODELSYNC_BROKER_URL (see the README's Jobs)"
        )
    return jobs


def _job(job_id: str) -> JobRow:
    job = state().jobs.table.get(job_id) if is_job_id(job_id) else None
    if job is None:
        raise ApiError(
            404,
            f"no job {job_id!r} (a job is deleted MODELSYNC_JOB_TTL_S after it ended)",
        )
    return job


def _target(model: str, version: object, label: object) -> tuple[int | None, str | None]:
    """The version to score with: as given, a label's (as the policy has it now), or None
    (TF Serving's latest). The model must be in the catalog; 404 otherwise."""
    check_model(model)
    catalog = state().catalog()
    if catalog is None:
        raise ApiError(503, "the catalog is not written yet: retry in a moment")
    complete = catalog.complete_versions(model)
    if not complete:
        raise ApiError(
            404,
            f"unknown model {model!r}: it has no complete version in the catalog "
            f"(gs://{state().settings.store.bucket}/{state().settings.store.prefix})",
        )
    if version is not None and label is not None:
        raise ApiError(400, "give 'version' or 'label', not both")
    if label is not None:
        if not isinstance(label, str) or not LABEL_RE.match(label):
            raise ApiError(400, "'label' must be a label name")
        target = state().policy().for_model(model).labels.get(label)
        if target is None:
            raise ApiError(404, f"model {model!r} has no label {label!r}")
        return target, label
    if version is None:
        return None, None
    if isinstance(version, str):
        version = parse_version(version)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ApiError(400, "'version' must be a positive integer")
    if version not in complete:
        raise ApiError(404, f"{model} has no complete version {version} (it has {complete})")
    return version, None


def _webhook(url: object) -> str | None:
    if url is None or url == "":
        return None
    if not isinstance(url, str) or len(url) > MAX_WEBHOOK_CHARS:
        raise ApiError(
            400, f"'webhook' must be an http(s) URL of at most {MAX_WEBHOOK_CHARS} chars"
        )
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ApiError(400, "'webhook' must be an http:// or https:// URL")
    if not state().settings.jobs.webhook_secret:
        raise ApiError(
            400, "webhooks are signed: set MODELSYNC_WEBHOOK_SECRET on the master to use them"
        )
    return url


def _key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not IDEMPOTENCY_KEY_RE.match(key):
        raise ApiError(400, f"{IDEMPOTENCY_HEADER}: 1 to 200 visible ASCII characters")
    return key


def _inline_rows(doc: dict[str, object]) -> list[bytes]:
    rows = doc.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ApiError(400, "'rows' must be a non-empty list of rows (objects of named inputs)")
    return [json.dumps(r, separators=(",", ":")).encode() for r in rows]


@bp.post("/v1/jobs")
def submit() -> tuple[Response, int]:
    need("admin")
    jobs = _jobs()
    limits = jobs.settings
    fmt = (
        "jsonl"
        if request.mimetype in JSONL_TYPES
        else "csv"
        if request.mimetype in CSV_TYPES
        else None
    )
    if fmt is None:  # rows inline, in a JSON object
        request.max_content_length = limits.max_inline_bytes
        doc = body()
        model = doc.get("model")
        if not isinstance(model, str):
            raise ApiError(400, "'model' (a model name) is required")
        unknown = sorted(set(doc) - {"model", "version", "label", "rows", "webhook"})
        if unknown:
            raise ApiError(400, f"unknown field {unknown[0]!r}")
        rows_in: object = _inline_rows(doc)
        version, label = _target(model, doc.get("version"), doc.get("label"))
        req = JobRequest(
            model, version, label, "jsonl", "inline", _webhook(doc.get("webhook")), _key()
        )
    else:
        size = request.content_length
        if size is not None and size > limits.max_upload_bytes:
            raise ApiError(413, f"the upload is larger than {limits.max_upload_bytes} bytes")
        request.max_content_length = limits.max_upload_bytes
        model = request.args.get("model", "")
        version, label = _target(model, request.args.get("version"), request.args.get("label"))
        req = JobRequest(
            model, version, label, fmt, "upload", _webhook(request.args.get("webhook")), _key()
        )
        # buffered: the raw stream's readline would read one byte per call
        stream = io.BufferedReader(request.stream, buffer_size=1 << 20)  # type: ignore[type-var]
        lines = bounded_lines(stream.readline, limits.max_row_bytes)
        rows_in = jsonl_rows(lines) if fmt == "jsonl" else csv_rows(lines)
    try:
        job, created = jobs.submitter.begin(req, version, time.time())
        if not created:
            return jsonify(jobs.watcher.refresh(job, time.time()).to_json()), 200
        assert jobs.sender is not None
        job = jobs.submitter.ingest(job, rows_in, jobs.sender)  # type: ignore[arg-type]
    except SubmitError as exc:
        raise ApiError(exc.status, exc.message) from None
    except MalformedInput as exc:
        raise ApiError(400, f"malformed {fmt or 'JSON'} input: {exc}") from None
    except BrokerDown as exc:
        raise ApiError(503, str(exc)) from None
    except ClientDisconnected:
        raise ApiError(400, "the upload ended before its end (the client disconnected)") from None
    audit("job_submitted", job.model, job=job.id, rows=job.rows, source=job.source)
    resp = jsonify(job.to_json())
    resp.headers["Location"] = f"/v1/jobs/{job.id}"
    return resp, 201


@bp.get("/v1/jobs")
def list_jobs() -> Response:
    need("read")
    jobs = state().jobs
    wanted = request.args.get("state")
    states = [s.strip() for s in wanted.split(",")] if wanted else []
    if any(s not in {str(v) for v in JobState} for s in states):
        raise ApiError(400, f"'state': one or more of {', '.join(str(v) for v in JobState)}")
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        raise ApiError(400, "'limit' must be an integer") from None
    if not 1 <= limit <= MAX_LIST:
        raise ApiError(400, f"'limit' must be 1 to {MAX_LIST}")
    s = jobs.settings
    return jsonify(
        {
            "enabled": jobs.enabled,
            "broker": s.broker.safe_url if s.broker else None,
            "workers": jobs.workers() if jobs.enabled else None,
            "limits": {
                "max_upload_bytes": s.max_upload_bytes,
                "max_inline_bytes": s.max_inline_bytes,
                "max_row_bytes": s.max_row_bytes,
                "chunk_rows": s.chunk.max_rows,
                "ttl_s": s.ttl_s,
                "webhooks": bool(s.webhook_secret),
            },
            "jobs": [j.to_json() for j in jobs.table.recent(states, limit)],
        }
    )


@bp.get("/v1/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    need("read")
    job = _job(job_id)
    return jsonify(state().jobs.watcher.refresh(job, time.time()).to_json())


@bp.post("/v1/jobs/<job_id>/cancel")
def cancel(job_id: str) -> Response:
    need("admin")
    jobs = state().jobs
    job = _job(job_id)
    if job.state == JobState.UPLOADING:
        raise ApiError(409, "the job is still uploading its rows: cancel it once it is queued")
    if job.state == JobState.DONE:
        raise ApiError(409, "the job is done: there is nothing left to cancel")
    if job.state == JobState.QUEUED or job.state == JobState.RUNNING:
        job = jobs.cancel(job, time.time())
        audit("job_cancelled", job.model, job=job.id)
    return jsonify(job.to_json())


@bp.get("/v1/jobs/<job_id>/result")
def result(job_id: str) -> Response:
    need("read")
    jobs = state().jobs
    job = jobs.watcher.refresh(_job(job_id), time.time())
    if job.state != JobState.DONE:
        raise ApiError(
            409,
            f"the job is {job.state}: its result is ready once it is done "
            f"({job.progress.get('rows_done', 0)} of {job.rows} rows scored)",
        )
    only_errors = request.args.get("errors") in ("1", "true", "only")
    store, prefix = jobs.submitter.store, jobs.prefix

    def lines() -> Iterator[bytes]:
        for chunk in range(job.chunks):
            data = store.read(output_object(prefix, job.id, chunk))
            if only_errors:
                data = b"".join(
                    line + b"\n"
                    for line in data.splitlines()
                    if line.partition(b",")[2].startswith(b'"error"')
                )
            yield data

    name = f"job-{job.id}{'-errors' if only_errors else ''}.jsonl"
    return Response(
        stream_with_context(lines()),
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
