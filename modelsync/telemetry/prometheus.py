"""The Prometheus text exposition format: a tolerant parser (pure: no I/O).

:func:`parse` reads any text page (TF Serving's, prometheus_client's) into :class:`Sample` lines
and the ``# TYPE``/``# HELP`` comments; malformed lines are skipped and counted, never fatal.
Values and ``le`` bounds follow Go's ``ParseFloat`` syntax (``+Inf``, ``NaN``, ``1e3``), as
Prometheus reads them. Why not ``prometheus_client.parser``: it raises on the first malformed
line and so loses the whole page (tried: one bad sample line, ``ValueError``), where a node's
telemetry must keep every good line of a page another program wrote.

The text format of the official server (``tensorflow_serving/util/prometheus_exporter.cc``,
read in github.com/tensorflow/serving): metric names are the TensorFlow names with every
``[^a-zA-Z0-9_]`` turned into ``:`` (``/tensorflow/serving/x`` -> ``:tensorflow:serving:x``);
counters keep their name, no ``_total`` suffix; one ``# TYPE`` line per metric and no ``# HELP``;
scalars as ``NAME{labels} <int64>`` — with ``{}`` even when there are no labels; histograms as
``NAME_bucket{labels,le="<bound>"} <cumulative>`` per bucket, the last ``le="+Inf"``, then
``NAME_sum{labels} <double>`` and ``NAME_count{labels} <int64>``. Bounds and sums are written
with ``absl::StrCat(double)``, i.e. ``%.6g`` (``1102``, ``1.27482e+06``), so a large ``_sum``
keeps only 6 significant digits: sum deltas between two scrapes are approximate, counts are
exact. Label values escape only ``\\`` and ``"``. Metrics come sorted by TensorFlow name
(``std::map`` in TensorFlow's ``monitoring/collected_metrics.h``), series by label values
(``std::map`` cells in ``tensorflow/core/lib/monitoring/counter.h``, ``sampler.h``). A metric
with no series yet is a lone ``# TYPE`` line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FLOAT_RE = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)\Z", re.IGNORECASE
)
_TIMESTAMP_RE = re.compile(r"-?[0-9]{1,19}\Z")
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_BLANKS = " \t"


class _BadLine(Exception):
    pass


@dataclass(frozen=True)
class Sample:
    """One sample line: ``name{labels} value [timestamp_ms]``; labels in the order written."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp_ms: int | None = None

    def label(self, name: str) -> str | None:
        for key, value in self.labels:
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class Exposition:
    """A parsed page. ``bad_lines`` counts the lines that were skipped as malformed."""

    samples: tuple[Sample, ...] = ()
    types: Mapping[str, str] = field(default_factory=dict)
    helps: Mapping[str, str] = field(default_factory=dict)
    bad_lines: int = 0
    first_bad_line: int | None = None


def parse_number(text: str) -> float:
    """A sample value or ``le`` bound: Go ``ParseFloat`` syntax (``+Inf``, ``NaN``, ``1e3``)."""
    if not _FLOAT_RE.match(text):
        raise ValueError(f"not a number: {text!r}")
    return float(text)


def _skip_blanks(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in _BLANKS:
        pos += 1
    return pos


def _expect(line: str, pos: int, char: str) -> int:
    if pos >= len(line) or line[pos] != char:
        raise _BadLine(f"expected {char!r} at column {pos + 1}")
    return pos + 1


def _quoted(line: str, pos: int) -> tuple[str, int]:
    """The label value starting after its opening quote; returns it and the position after it."""
    out: list[str] = []
    while pos < len(line):
        char = line[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            escaped = _ESCAPES.get(line[pos + 1 : pos + 2])
            if escaped is None:
                raise _BadLine(f"bad escape at column {pos + 1}")
            out.append(escaped)
            pos += 2
        else:
            out.append(char)
            pos += 1
    raise _BadLine("unterminated label value")


def _labels(line: str, pos: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """The label set starting after ``{``; returns it and the position after ``}``."""
    labels: list[tuple[str, str]] = []
    while True:
        pos = _skip_blanks(line, pos)
        if pos < len(line) and line[pos] == "}":
            return tuple(labels), pos + 1
        match = _LABEL_NAME_RE.match(line, pos)
        if match is None:
            raise _BadLine(f"bad label name at column {pos + 1}")
        name = match.group()
        if any(name == key for key, _ in labels):
            raise _BadLine(f"label {name} repeated")
        pos = _expect(line, _skip_blanks(line, match.end()), "=")
        value, pos = _quoted(line, _expect(line, _skip_blanks(line, pos), '"'))
        labels.append((name, value))
        pos = _skip_blanks(line, pos)
        if pos < len(line) and line[pos] == ",":
            pos += 1
        elif pos >= len(line) or line[pos] != "}":
            raise _BadLine(f"expected ',' or '}}' at column {pos + 1}")


def _sample(line: str) -> Sample:
    match = _METRIC_NAME_RE.match(line)
    if match is None:
        raise _BadLine("bad metric name")
    pos = match.end()
    labels: tuple[tuple[str, str], ...] = ()
    after_blanks = _skip_blanks(line, pos)
    if after_blanks < len(line) and line[after_blanks] == "{":
        labels, pos = _labels(line, after_blanks + 1)
    elif after_blanks == pos:
        raise _BadLine("expected a blank after the metric name")
    tokens = line[pos:].split()
    if not 1 <= len(tokens) <= 2:
        raise _BadLine("expected a value and an optional timestamp")
    try:
        value = parse_number(tokens[0])
    except ValueError as exc:
        raise _BadLine(str(exc)) from None
    timestamp = None
    if len(tokens) == 2:
        if not _TIMESTAMP_RE.match(tokens[1]):
            raise _BadLine(f"bad timestamp {tokens[1]!r}")
        timestamp = int(tokens[1])
    return Sample(match.group(), labels, value, timestamp)


def _unescape_help(text: str) -> str:
    return re.sub(r"\\([\\n])", lambda m: "\n" if m.group(1) == "n" else "\\", text)


def _comment(line: str, types: dict[str, str], helps: dict[str, str]) -> None:
    """``# HELP name text`` and ``# TYPE name type``; any other ``#`` line is a comment."""
    parts = line[1:].strip(_BLANKS).split(None, 2)
    if len(parts) < 2 or parts[0] not in ("HELP", "TYPE"):
        return
    name = parts[1]
    if not _METRIC_NAME_RE.fullmatch(name):
        raise _BadLine(f"bad metric name {name!r} in # {parts[0]}")
    rest = parts[2].strip(_BLANKS) if len(parts) == 3 else ""
    if parts[0] == "HELP":
        helps[name] = _unescape_help(rest)
        return
    if rest not in _TYPES:
        raise _BadLine(f"unknown metric type {rest!r}")
    if name in types:
        raise _BadLine(f"second # TYPE line for {name}")
    types[name] = rest


def parse(text: str | bytes) -> Exposition:
    """Parse a Prometheus text page. Never raises: malformed lines are skipped and counted."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    samples: list[Sample] = []
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    bad = 0
    first_bad: int | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").strip(_BLANKS)
        if not line:
            continue
        try:
            if line.startswith("#"):
                _comment(line, types, helps)
            else:
                samples.append(_sample(line))
        except _BadLine:
            bad += 1
            first_bad = first_bad or number
    return Exposition(tuple(samples), types, helps, bad, first_bad)


__all__ = ["Exposition", "Sample", "parse", "parse_number"]
