"""Adding a model (or a version) through the master: ``POST /v1/models/<m>/versions`` with a
SavedModel ``.tar.gz`` as the body (admin token), as ML-Kraken's "add model" form does.

The body is streamed to a temporary file in 1 MiB chunks (never whole in memory), bounded by
``MODELSYNC_UPLOAD_MAX_BYTES`` (a larger ``Content-Length`` is refused before a byte is read),
then published by ``modelsync.publish`` — the same checks as ``modelsync publish``: a safe
tarball whose ``saved_model.pb`` parses with a signature, the manifest, the marker last. The
manifest names the admin who uploaded as its publisher. With ``Accept: application/x-ndjson``
the answer streams the progress, one JSON object a line (``received``, ``uploading`` with
``done``/``total`` bytes, then ``done`` or ``error``), which the console shows; otherwise one
JSON answer at the end (201 published, 200 unchanged, 400 refused, 409 exists, 503 failed).
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, cast

from flask import Blueprint, Response, jsonify, request, stream_with_context

from master.api import ApiError, audit, check_model, need, state
from master.auth import actor
from modelsync import __version__
from modelsync.manifest import ManifestError, Publisher, check_notes, parse_tag
from modelsync.publish import Published, PublishError, PublishOptions, PublishStore, publish
from modelsync.settings import StoreSettings
from modelsync.store import RemoteStore

bp = Blueprint("upload", __name__)
CHUNK_BYTES = 1 << 20
NDJSON = "application/x-ndjson"
STATUS = {"refused": 400, "exists": 409, "failed": 503}


def upload_options(args: Mapping[str, str], tags: list[str]) -> PublishOptions:
    """version, overwrite, description and tag (repeated, ``k=v``) from the query string."""
    version = None
    if args.get("version"):
        if not args["version"].isdigit() or int(args["version"]) < 1:
            raise ApiError(400, f"'version' must be a positive integer, got {args['version']!r}")
        version = int(args["version"])
    overwrite = args.get("overwrite", "false").lower()
    if overwrite not in ("true", "false"):
        raise ApiError(400, "'overwrite' must be true or false")
    try:
        description, checked = check_notes(
            args.get("description", ""), dict(parse_tag(t) for t in tags), "query"
        )
    except ManifestError as exc:
        raise ApiError(400, str(exc)) from None
    who = Publisher(
        user=actor() or "admin",
        host=f"master {socket.gethostname()}",
        tool=f"modelsync {__version__} upload from {request.remote_addr}",
    )
    return PublishOptions(
        version=version,
        overwrite=overwrite == "true",
        description=description,
        tags=checked,
        publisher=who,
    )


def receive(stream: IO[bytes], dest: Path, length: int) -> int:
    """Copy the body to ``dest`` in chunks; 400 when it ends before ``length`` bytes."""
    done = 0
    with open(dest, "wb") as fh:
        while done < length:
            chunk = stream.read(min(CHUNK_BYTES, length - done))
            if not chunk:
                break
            fh.write(chunk)
            done += len(chunk)
    if done != length:
        raise ApiError(400, f"the body ended after {done} of {length} bytes")
    return done


class Target:
    """The master's store with the master's bucket, prefix and marker: what publishing needs."""

    def __init__(self, store: RemoteStore, settings: StoreSettings) -> None:
        self._store, self.settings = store, settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class Publishing:
    """One publication in a thread of its own (it finishes even if the client goes away),
    telling its progress through a queue; it removes its temporary directory when done."""

    def __init__(self, store: PublishStore, tmp: Path, model: str, options: PublishOptions):
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._last = 0.0
        self.options = replace(options, progress=self._progress)
        self.store, self.tmp, self.model = store, tmp, model
        self.result: Published | PublishError | None = None
        self.thread = threading.Thread(target=self._run, name="upload-publish", daemon=True)

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= 0.2:
            self._last = now
            self.events.put({"phase": "uploading", "done": done, "total": total})

    def _run(self) -> None:
        try:
            self.result = publish(self.store, self.tmp / "model.tar.gz", self.model, self.options)
        except PublishError as exc:
            self.result = exc
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.events.put({"phase": "end"})

    def start(self) -> Publishing:
        self.thread.start()
        return self

    def outcome(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, answer) once finished; audited when something was published."""
        result = self.result
        if isinstance(result, PublishError):
            return STATUS.get(result.kind, 400), {"error": str(result), "kind": result.kind}
        assert result is not None
        doc = {"published": vars(result) | {"seconds": round(result.seconds, 3)}}
        audit(
            "model_uploaded",
            self.model,
            version=result.version,
            bytes=result.bytes,
            unchanged=result.unchanged,
            description=self.options.description,
            tags=dict(self.options.tags),
        )
        state().catalog_changed()
        return (200 if result.unchanged else 201), doc

    def lines(self, received: int) -> Iterator[str]:
        yield json.dumps({"phase": "received", "bytes": received}) + "\n"
        while True:
            event = self.events.get()
            if event["phase"] == "end":
                break
            yield json.dumps(event) + "\n"
        status, doc = self.outcome()
        phase = "done" if status < 400 else "error"
        yield json.dumps({"phase": phase, "status": status, **doc}) + "\n"


@bp.post("/v1/models/<model>/versions")
def upload(model: str) -> Response | tuple[Response, int]:
    need("admin")
    check_model(model)
    s = state()
    limit = s.settings.upload_max_bytes
    if limit == 0:
        raise ApiError(
            403,
            "uploads through the master are off (MODELSYNC_UPLOAD_MAX_BYTES=0): "
            "use modelsync publish",
        )
    length = request.content_length
    if length is None:
        raise ApiError(411, "send the .tar.gz with a Content-Length")
    if length > limit:
        raise ApiError(
            413, f"{length} bytes is over MODELSYNC_UPLOAD_MAX_BYTES={limit}: use modelsync publish"
        )
    options = upload_options(request.args, request.args.getlist("tag"))
    request.max_content_length = limit
    tmp = Path(tempfile.mkdtemp(prefix="modelsync-upload-"))
    try:
        received = receive(request.stream, tmp / "model.tar.gz", length)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    target = cast(PublishStore, Target(s.store, s.settings.store))
    job = Publishing(target, tmp, model, options).start()
    if NDJSON in request.headers.get("Accept", ""):
        return Response(stream_with_context(job.lines(received)), mimetype=NDJSON)
    job.thread.join()
    status, doc = job.outcome()
    return jsonify(doc), status
