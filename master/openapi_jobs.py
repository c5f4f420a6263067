"""The OpenAPI part of the jobs' routes (``master/routes/jobs.py``): its patterns and bounds come
from ``modelsync.jobs`` and ``modelsync.layout``, never retyped."""

from __future__ import annotations

from typing import Any

from master.routes.jobs import CSV_TYPES, JSONL_TYPES, MAX_LIST, MAX_WEBHOOK_CHARS
from modelsync.jobs.model import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_KEY_PATTERN,
    JOB_ID_PATTERN,
    JobState,
)
from modelsync.jobs.webhook import JOB_HEADER, SIGNATURE_HEADER
from modelsync.layout import MAX_VERSION, NAME_PATTERN, VERSION_PATTERN, json_pattern
from modelsync.openapi import Paths, operation, param
from modelsync.policy import LABEL_PATTERN

READ, ADMIN = "readToken", "adminToken"
JOB = param("job_id", {"type": "string", "pattern": json_pattern(JOB_ID_PATTERN)})
JOB_DOC = {"$ref": "#/components/schemas/Job"}


def job_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "state", "model", "rows", "chunks", "progress", "links"],
        "properties": {
            "id": {"type": "string", "pattern": json_pattern(JOB_ID_PATTERN)},
            "state": {"type": "string", "enum": [str(s) for s in JobState]},
            "model": {"type": "string"},
            "version": {"type": "integer", "nullable": True},
            "label": {"type": "string", "nullable": True},
            "format": {"type": "string", "enum": ["jsonl", "csv"]},
            "source": {"type": "string", "enum": ["inline", "upload"]},
            "rows": {"type": "integer"},
            "chunks": {"type": "integer"},
            "bytes": {"type": "integer"},
            "idempotency_key": {"type": "string", "nullable": True},
            "created_at": {"type": "number"},
            "queued_at": {"type": "number", "nullable": True},
            "finished_at": {"type": "number", "nullable": True},
            "expires_at": {"type": "number", "description": "when the job and its result go"},
            "progress": {
                "type": "object",
                "description": "rows_done / rows_total, fraction, rows_per_s, errors, "
                "chunks_done / chunks_total, versions (rows per version), first_errors",
            },
            "webhook": {"type": "object", "nullable": True},
            "links": {"type": "object"},
        },
    }


def _job_ok(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": JOB_DOC}}}


def _submit() -> dict[str, Any]:
    inline = {
        "type": "object",
        "required": ["model", "rows"],
        "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "pattern": json_pattern(NAME_PATTERN)},
            "version": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
            "label": {"type": "string", "pattern": json_pattern(LABEL_PATTERN)},
            "rows": {
                "type": "array",
                "minItems": 1,
                "description": "one object of named inputs per row (or a bare value for a "
                "single-input model), as MLflow's dataframe_records",
                "items": {},
            },
            "webhook": {"type": "string", "maxLength": MAX_WEBHOOK_CHARS, "format": "uri"},
        },
    }
    upload = {"type": "string", "format": "binary"}
    op = operation(
        "Submit a job: rows inline (JSON, up to MODELSYNC_JOB_MAX_INLINE_BYTES) or a JSON Lines "
        "/ CSV upload (up to MODELSYNC_JOB_MAX_UPLOAD_BYTES, 1 GiB by default) streamed into "
        "the bucket; the same Idempotency-Key returns the same job",
        ADMIN,
        {
            "401": "no token",
            "403": "not the admin token",
            "400": "bad input, or a malformed file (the message names the line)",
            "404": "unknown model (not in the catalog), version or label",
            "409": "a submit with this Idempotency-Key is still uploading",
            "413": "the upload or the inline body is too large (nothing is stored)",
            "422": "this Idempotency-Key was used for another job",
            "503": "jobs are off (no broker), or the broker or the bucket cannot be reached",
        },
        ok=_job_ok("the job this Idempotency-Key already names"),
        params=[
            param(
                "model",
                {"type": "string", "pattern": json_pattern(NAME_PATTERN)},
                "query",
                required=False,
            ),
            param(
                "version",
                {"type": "string", "pattern": json_pattern(VERSION_PATTERN)},
                "query",
                required=False,
            ),
            param(
                "label",
                {"type": "string", "pattern": json_pattern(LABEL_PATTERN)},
                "query",
                required=False,
            ),
            param(
                "webhook",
                {"type": "string", "maxLength": MAX_WEBHOOK_CHARS},
                "query",
                required=False,
            ),
            param(
                IDEMPOTENCY_HEADER,
                {"type": "string", "pattern": json_pattern(IDEMPOTENCY_KEY_PATTERN)},
                "header",
                required=False,
            ),
        ],
    )
    op["responses"]["201"] = _job_ok("the job, queued")
    op["requestBody"] = {
        "required": True,
        "description": "rows inline (application/json; model, version or label in the body) "
        "or a file (JSON Lines or CSV with a header of input names; model, version or label "
        f"in the query). The webhook is POSTed when the job ends, signed in {SIGNATURE_HEADER} "
        f"(t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>' under MODELSYNC_WEBHOOK_SECRET>) "
        f"with the job's id in {JOB_HEADER}",
        "content": {
            "application/json": {"schema": inline},
            **{t: {"schema": upload} for t in JSONL_TYPES[:1]},
            **{t: {"schema": upload} for t in CSV_TYPES[:1]},
        },
    }
    return op


def jobs_paths() -> Paths:
    list_params = [
        param("state", {"type": "string"}, "query", required=False),
        param(
            "limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIST}, "query", required=False
        ),
    ]
    result = operation(
        "The result: JSON Lines, one line per input row in input order, each with the version "
        "that scored it and its outputs, or its error (?errors=1: only the error lines)",
        READ,
        {"401": "no token", "403": "forbidden", "404": "no such job", "409": "not done"},
        ok={
            "description": "JSON Lines",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        },
        params=[
            JOB,
            param(
                "errors", {"type": "string", "enum": ["1", "true", "only"]}, "query", required=False
            ),
        ],
    )
    return {
        "/v1/jobs": {
            "post": _submit(),
            "get": operation(
                "Jobs, newest first (state: a comma-separated list), with the workers that "
                "answer and the limits",
                READ,
                {"401": "no token", "403": "forbidden", "400": "bad input"},
                params=list_params,
            ),
        },
        "/v1/jobs/{job_id}": {
            "get": operation(
                "A job: state and progress (rows done / total, rows/s, errors)",
                READ,
                {"401": "no token", "403": "forbidden", "404": "no such job"},
                ok=_job_ok("the job"),
                params=[JOB],
            )
        },
        "/v1/jobs/{job_id}/result": {"get": result},
        "/v1/jobs/{job_id}/cancel": {
            "post": operation(
                "Cancel a queued or running job (its chunks not scored yet never will be)",
                ADMIN,
                {
                    "401": "no token",
                    "403": "forbidden",
                    "404": "no such job",
                    "409": "done, or still uploading",
                },
                ok=_job_ok("the job, cancelled"),
                params=[JOB],
            )
        },
    }
