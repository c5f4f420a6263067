"""Server-side request batching (``--enable_batching``): concurrent Predict requests on one
signature of one version are merged into one call along the first dimension and the outputs
split back, the way TF Serving's batching session does.

``--batching_parameters_file`` takes TF Serving's BatchingParameters text format::

    max_batch_size { value: 128 }
    batch_timeout_micros { value: 2000 }
    max_enqueued_batches { value: 100 }
    num_batch_threads { value: 4 }
    allowed_batch_sizes: 32
    allowed_batch_sizes: 128
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from tfserving.errors import ServingError

_INT_FIELDS = (
    "max_batch_size",
    "batch_timeout_micros",
    "max_enqueued_batches",
    "num_batch_threads",
)


@dataclass(frozen=True)
class BatchingParameters:
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 100
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()


def parse_batching_parameters(text: str) -> BatchingParameters:
    values: dict[str, int] = {}
    for name in _INT_FIELDS:
        m = re.search(rf"\b{name}\s*:?\s*\{{\s*value\s*:\s*(\d+)\s*\}}", text) or re.search(
            rf"\b{name}\s*:\s*(\d+)", text
        )
        if m:
            values[name] = int(m.group(1))
    allowed = tuple(int(v) for v in re.findall(r"\ballowed_batch_sizes\s*:\s*(\d+)", text))
    known = set(_INT_FIELDS) | {
        "allowed_batch_sizes",
        "pad_variable_length_inputs",
        "thread_pool_name",
        "enable_large_batch_splitting",
        "max_execution_batch_size",
    }
    for word in re.findall(r"\b([a-z_]+)\s*[:{]", text):
        if word not in known and word != "value":
            raise ServingError("INVALID_ARGUMENT", f"batching parameters: unknown field {word!r}")
    params = BatchingParameters(**values, allowed_batch_sizes=allowed)
    if params.max_batch_size < 1 or params.num_batch_threads < 1:
        raise ServingError(
            "INVALID_ARGUMENT",
            "batching parameters: max_batch_size and num_batch_threads must be positive",
        )
    if allowed and (sorted(allowed) != list(allowed) or allowed[-1] != params.max_batch_size):
        raise ServingError(
            "INVALID_ARGUMENT",
            "batching parameters: allowed_batch_sizes must increase and end with max_batch_size",
        )
    return params


@dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    rows: int
    future: Future[dict[str, np.ndarray]]
    enqueued: float


class Batcher:
    """One queue and ``num_batch_threads`` workers for one signature of one loaded version."""

    def __init__(
        self,
        run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
        params: BatchingParameters,
    ) -> None:
        self._run = run
        self.params = params
        self._queue: queue.Queue[_Task] = queue.Queue(
            maxsize=max(1, params.max_enqueued_batches * params.max_batch_size)
        )
        self._stop = threading.Event()
        self.batches = 0
        self.rows = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name="batch", daemon=True)
            for _ in range(params.num_batch_threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes = {arr.shape[0] if arr.ndim else -1 for arr in inputs.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise ServingError(
                "INVALID_ARGUMENT",
                "Batching session Run() input tensors must have equal 0th-dimension size",
            )
        (rows,) = sizes
        if rows > self.params.max_batch_size:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Task size {rows} is larger than maximum batch size {self.params.max_batch_size}",
            )
        task = _Task(inputs, rows, Future(), time.monotonic())
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            raise ServingError(
                "UNAVAILABLE", "The batch scheduling queue to which this task was submitted is full"
            ) from None
        return task.future.result()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch, rows = [first], first.rows
            deadline = first.enqueued + self.params.batch_timeout_micros / 1e6
            while rows < self.params.max_batch_size:
                wait = deadline - time.monotonic()
                try:
                    task = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if rows + task.rows > self.params.max_batch_size:
                    self._run_batch([task], task.rows)  # does not fit: run on its own after
                    continue
                batch.append(task)
                rows += task.rows
            self._run_batch(batch, rows)

    def _padded_size(self, rows: int) -> int:
        for size in self.params.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows

    def _run_batch(self, batch: list[_Task], rows: int) -> None:
        try:
            keys = batch[0].inputs.keys()
            merged = {k: np.concatenate([t.inputs[k] for t in batch]) for k in keys}
            padded = self._padded_size(rows)
            if padded > rows:  # pad with the first row, as TF Serving does
                merged = {
                    k: np.concatenate([v, np.repeat(v[:1], padded - rows, axis=0)])
                    for k, v in merged.items()
                }
            outputs = self._run(merged)
            for name, arr in outputs.items():
                if arr.ndim == 0 or arr.shape[0] != padded:
                    raise ServingError(
                        "INTERNAL",
                        f"batched output {name!r} has shape "
                        f"{list(arr.shape)}; expected {padded} rows",
                    )
            start = 0
            for task in batch:
                end = start + task.rows
                task.future.set_result({k: v[start:end] for k, v in outputs.items()})
                start = end
            with self._lock:
                self.batches += 1
                self.rows += rows
        except Exception as exc:  # every task of the batch gets the error
            for task in batch:
                if not task.future.done():
                    task.future.set_exception(exc)

    def close(self) -> None:
        self._stop.set()
