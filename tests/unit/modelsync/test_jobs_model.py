"""modelsync.jobs: the task message, a chunk's summary, result lines, progress, bucket paths, the
chunk planner and the webhook signature — over plain values, with properties."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelsync.jobs import webhook
from modelsync.jobs.model import (
    BadMessage,
    ChunkSummary,
    ChunkTask,
    chunk_of,
    error_line,
    input_object,
    is_job_id,
    job_dir,
    ok_line,
    output_object,
    progress,
)
from modelsync.jobs.planner import ChunkLimits, ChunkPlanner, plan_chunks

JOB = "0123456789abcdef01234567"
tasks = st.builds(
    ChunkTask,
    job=st.just(JOB),
    chunk=st.integers(0, 10**6),
    model=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    version=st.none() | st.integers(1, 2**63 - 1),
    format=st.sampled_from(["jsonl", "csv"]),
    first_row=st.integers(0, 10**9),
    rows=st.integers(1, 10**6),
)


@given(tasks)
def test_a_chunk_task_survives_its_message(task: ChunkTask) -> None:
    message = json.loads(json.dumps(task.to_message()))  # as the broker carries it
    assert ChunkTask.from_message(message) == task


@pytest.mark.parametrize(
    "change",
    [
        {"job": "../x"},
        {"model": "_validate.m"},
        {"version": 0},
        {"version": True},
        {"format": "xml"},
        {"rows": 0},
        {"first_row": -1},
        {"chunk": "1"},
    ],
)
def test_a_malformed_task_message_is_refused(change: dict[str, object]) -> None:
    good = ChunkTask(JOB, 0, "demo", None, "jsonl", 0, 5).to_message()
    with pytest.raises(BadMessage):
        ChunkTask.from_message({**good, **change})


summaries = st.builds(
    ChunkSummary,
    chunk=st.integers(0, 1000),
    rows=st.integers(1, 10**6),
    errors=st.integers(0, 10**6),
    versions=st.dictionaries(st.integers(1, 10**6), st.integers(1, 10**6), max_size=3),
    first_error=st.none() | st.text(min_size=1, max_size=50).filter(str.strip),
    seconds=st.floats(0, 1e4).map(lambda s: round(s, 4)),
    worker=st.text(max_size=20),
)


@given(summaries)
def test_a_chunk_summary_survives_the_object_metadata(s: ChunkSummary) -> None:
    md = s.to_metadata()
    assert all(isinstance(v, str) for v in md.values())
    assert ChunkSummary.from_metadata(s.chunk, md) == s


def test_malformed_metadata_is_a_bad_message() -> None:
    with pytest.raises(BadMessage):
        ChunkSummary.from_metadata(3, {"rows": "many"})
    with pytest.raises(BadMessage):
        ChunkSummary.from_metadata(3, None)


def test_result_lines_are_one_json_object_and_a_newline() -> None:
    assert json.loads(ok_line(7, 3, {"y": 15.0})) == {
        "row": 7,
        "version": 3,
        "outputs": {"y": 15.0},
    }
    assert json.loads(error_line(8, "x" * 2000))["error"] == "x" * 500
    assert ok_line(1, 1, {}).endswith(b"\n") and ok_line(1, 1, {}).count(b"\n") == 1
    with pytest.raises(ValueError):
        ok_line(1, 1, {"y": float("nan")})


def test_paths_live_under_the_reserved_directory_and_name_their_chunk() -> None:
    assert job_dir("models", JOB) == f"models/_modelsync/jobs/{JOB}/"
    assert input_object("models", JOB, 12) == f"models/_modelsync/jobs/{JOB}/in/000012.jsonl"
    assert output_object("", JOB, 3) == f"_modelsync/jobs/{JOB}/out/000003.jsonl"
    assert chunk_of(output_object("models", JOB, 1234567)) == 1234567
    assert chunk_of(job_dir("models", JOB) + "job.json") is None
    assert is_job_id(JOB) and not is_job_id(JOB.upper()) and not is_job_id("x")


@given(st.lists(summaries, max_size=20), st.integers(1, 30))
def test_progress_counts_each_chunk_once(items: list[ChunkSummary], chunks: int) -> None:
    p = progress(chunks, 10**9, 0.0, items + items)  # a chunk reported twice counts once
    distinct = {s.chunk: s for s in items if s.chunk < chunks}
    assert p.chunks_done == len(distinct)
    assert p.rows_done == sum(s.rows for s in distinct.values())
    assert p.errors == sum(s.errors for s in distinct.values())
    assert p.complete == (len(distinct) == chunks)


def test_progress_rate_runs_from_queued_to_the_last_result() -> None:
    done = [
        ChunkSummary(0, 100, 1, {3: 99}, "row 5: bad", finished_at=12.0),
        ChunkSummary(1, 50, 0, {3: 40, 4: 10}, finished_at=14.0),
    ]
    p = progress(3, 200, 10.0, done)
    assert (p.rows_done, p.errors, dict(p.versions)) == (150, 1, {3: 139, 4: 10})
    assert p.rows_per_s == pytest.approx(150 / 4.0)
    assert p.first_errors == ("row 5: bad",) and not p.complete
    assert p.to_json()["fraction"] == 0.75
    assert progress(1, 5, 0.0, ()).rows_per_s is None


# --- the planner ------------------------------------------------------------------------------
@given(
    st.lists(st.integers(1, 5000), max_size=300),
    st.integers(1, 40),
    st.integers(1, 20000),
)
def test_chunks_cover_every_row_once_in_order_within_the_limits(
    sizes: list[int], max_rows: int, max_bytes: int
) -> None:
    limits = ChunkLimits(max_rows, max_bytes)
    chunks = plan_chunks(sizes, limits)
    covered = [r for c in chunks for r in range(c.first_row, c.first_row + c.rows)]
    assert covered == list(range(len(sizes)))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert 1 <= c.rows <= max_rows
        assert c.bytes == sum(sizes[c.first_row : c.first_row + c.rows])
        assert c.bytes <= max_bytes or c.rows == 1  # only a single big row goes over
    for a, b in itertools.pairwise(chunks):  # greedy: the next row did not fit
        assert a.rows == max_rows or a.bytes + sizes[b.first_row] > max_bytes


@given(st.lists(st.integers(1, 100), max_size=100), st.integers(1, 10), st.integers(1, 300))
def test_the_streaming_planner_cuts_where_plan_chunks_does(
    sizes: list[int], max_rows: int, max_bytes: int
) -> None:
    limits = ChunkLimits(max_rows, max_bytes)
    planner = ChunkPlanner(limits)
    starts = [i for i, size in enumerate(sizes) if planner.add(size)]
    assert starts == [c.first_row for c in plan_chunks(sizes, limits)]
    assert planner.chunks == len(starts) and planner.rows_seen == len(sizes)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ChunkLimits(0, 10)


# --- the webhook's signature ------------------------------------------------------------------
@given(st.binary(min_size=16, max_size=64), st.binary(max_size=500), st.integers(0, 2**40))
def test_a_signature_verifies_and_nothing_else_does(secret: bytes, body: bytes, t: int) -> None:
    header = webhook.signature(secret, body, t)
    assert header.startswith(f"t={t},v1=")
    assert webhook.verify(secret, body, header, now=t + 10)
    assert not webhook.verify(secret, body + b"x", header, now=t)
    assert not webhook.verify(secret + b"x", body, header, now=t)
    assert not webhook.verify(secret, body, header, now=t + webhook.TOLERANCE_S + 1)  # replay
    assert not webhook.verify(secret, body, header.replace("v1=", "v1=0"), now=t)


def test_a_known_signature() -> None:
    """What a receiver in any language computes (README): HMAC-SHA256 of "<t>.<body>"."""
    header = webhook.signature(b"webhook-secret-0123456789", b'{"event":"job.done"}', 1767225600)
    assert header == (
        "t=1767225600,v1="
        + __import__("hmac")
        .new(b"webhook-secret-0123456789", b'1767225600.{"event":"job.done"}', "sha256")
        .hexdigest()
    )
    assert not webhook.verify(b"k" * 16, b"", "garbage", now=0)
