"""Rows into chunks (pure): a chunk is a run of consecutive rows, at most ``max_rows`` of them
and at most ``max_bytes`` of row text — except a single row bigger than that, which is a chunk
of its own. Greedy: a chunk is closed only when the next row would not fit.

The master cuts an upload as it streams (``ChunkPlanner``, one row at a time, so an upload is
never held whole) and inline rows at once (``plan_chunks``); both follow the one rule."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkLimits:
    max_rows: int = 5000
    max_bytes: int = 4 << 20

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_bytes < 1:
            raise ValueError("chunk limits must be positive")


@dataclass(frozen=True)
class Chunk:
    index: int
    first_row: int
    rows: int
    bytes: int


class ChunkPlanner:
    """Feed row sizes one at a time; ``add`` answers whether that row opens a new chunk."""

    def __init__(self, limits: ChunkLimits) -> None:
        self.limits = limits
        self.rows_seen = 0
        self.chunks = 0
        self._rows = 0
        self._bytes = 0

    def add(self, size: int) -> bool:
        """Take one row of ``size`` bytes; True when it is the first row of a new chunk."""
        fits = (
            self._rows > 0
            and self._rows < self.limits.max_rows
            and self._bytes + size <= self.limits.max_bytes
        )
        self.rows_seen += 1
        if fits:
            self._rows += 1
            self._bytes += size
            return False
        self.chunks += 1
        self._rows, self._bytes = 1, size
        return True


def plan_chunks(sizes: Iterable[int], limits: ChunkLimits) -> list[Chunk]:
    """The chunks of rows of these sizes, in order."""
    planner = ChunkPlanner(limits)
    out: list[Chunk] = []
    for row, size in enumerate(sizes):
        if planner.add(size):
            out.append(Chunk(len(out), row, 1, size))
        else:
            last = out[-1]
            out[-1] = Chunk(last.index, last.first_row, last.rows + 1, last.bytes + size)
    return out
