"""JSON logs on stdout: one event name per fact, snake_case, with fields.

    log = get_logger("puller")
    log.info("version_installed", model="ranker", version=42, bytes=1234, seconds=0.8)

prints ``{"ts": "...", "level": "info", "logger": "puller", "event": "version_installed",
"model": "ranker", ...}``. ``configure_logging(json_output=False)`` gives a terse human format for
interactive commands (publish, demo).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any

_ROOT = "modelsync"
LEVELS = ("debug", "info", "warning", "error", "critical")  # MODELSYNC_LOG_LEVEL's values


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name.removeprefix(_ROOT + "."),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            for key, value in fields.items():
                doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{record.levelname.lower():7} {record.getMessage()}"
        if tail:
            line += " " + tail
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class EventLogger:
    """A thin wrapper over a stdlib logger that takes fields as keyword arguments."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: bool, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(
                level, event, exc_info=exc_info, extra={"fields": fields}, stacklevel=3
            )

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, True, fields)


def get_logger(component: str) -> EventLogger:
    return EventLogger(logging.getLogger(f"{_ROOT}.{component}"))


def configure_logging(level: str = "info", json_output: bool = True) -> None:
    """Route the ``modelsync`` loggers to stdout (JSON) or stderr (text). Idempotent.
    ``level`` is one of ``LEVELS`` (``Env.log_level`` checks it where a person sets it)."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level: expected one of {', '.join(LEVELS)}, got {level!r}")
    root = logging.getLogger(_ROOT)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout if json_output else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_output else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
