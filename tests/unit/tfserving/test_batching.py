from __future__ import annotations

import threading

import numpy as np
import pytest

from tfserving.batching import Batcher, BatchingParameters, parse_batching_parameters
from tfserving.errors import ServingError


def test_parse_parameters() -> None:
    p = parse_batching_parameters("""
        max_batch_size { value: 64 }
        batch_timeout_micros { value: 2000 }
        num_batch_threads { value: 2 }
        allowed_batch_sizes: 16
        allowed_batch_sizes: 64
    """)
    assert (
        p.max_batch_size,
        p.batch_timeout_micros,
        p.num_batch_threads,
        p.allowed_batch_sizes,
    ) == (64, 2000, 2, (16, 64))
    with pytest.raises(ServingError, match="unknown field"):
        parse_batching_parameters("max_batch_size { value: 4 } bogus { value: 1 }")
    with pytest.raises(ServingError, match="allowed_batch_sizes"):
        parse_batching_parameters("max_batch_size { value: 8 } allowed_batch_sizes: 4")


def run_concurrently(batcher: Batcher, tasks: list[np.ndarray]) -> list[object]:
    results: list[object] = [None] * len(tasks)
    barrier = threading.Barrier(len(tasks))

    def go(i: int) -> None:
        barrier.wait()
        try:
            results[i] = batcher.submit({"x": tasks[i]})["y"]
        except ServingError as exc:
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(tasks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_concurrent_requests_are_merged_and_split_back() -> None:
    seen: list[int] = []

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(len(feed["x"]))
        return {"y": feed["x"] * 2 + 1}

    batcher = Batcher(
        run, BatchingParameters(max_batch_size=64, batch_timeout_micros=50_000, num_batch_threads=1)
    )
    tasks = [np.array([float(i)] * (1 + i % 3), dtype=np.float32) for i in range(24)]
    results = run_concurrently(batcher, tasks)
    for task, result in zip(tasks, results, strict=True):
        np.testing.assert_array_equal(result, task * 2 + 1)  # every request gets its own rows
    assert batcher.batches < len(tasks) and sum(seen) == sum(len(t) for t in tasks)
    assert max(seen) <= 64
    batcher.close()


def test_padding_oversize_and_errors() -> None:
    sizes: list[int] = []

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes.append(len(feed["x"]))
        return {"y": feed["x"]}

    batcher = Batcher(
        run, BatchingParameters(max_batch_size=8, num_batch_threads=1, allowed_batch_sizes=(4, 8))
    )
    out = batcher.submit({"x": np.arange(3, dtype=np.float32)})["y"]
    assert out.tolist() == [0, 1, 2] and sizes == [4]  # padded to 4, trimmed back to 3
    with pytest.raises(ServingError, match="larger than maximum batch size"):
        batcher.submit({"x": np.zeros(9, dtype=np.float32)})
    batcher.close()

    def broken(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise ServingError("INVALID_ARGUMENT", "bad batch")

    batcher = Batcher(
        broken,
        BatchingParameters(max_batch_size=8, batch_timeout_micros=20_000, num_batch_threads=1),
    )
    results = run_concurrently(batcher, [np.zeros(1, dtype=np.float32)] * 4)
    assert all(isinstance(r, ServingError) and r.code == "INVALID_ARGUMENT" for r in results)
    batcher.close()
