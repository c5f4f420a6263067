"""The R example (examples/r: lm on mtcars, served by plumber) as a container model on the
multi-node Swarm of `make cluster` (issue #23): built on this machine's engine, pushed into the
cluster's registry, published into the cluster's bucket, run by the master as a Swarm service
with one task on each serving worker and scored through every worker's gateway; a second version
rolled out under a rollout spec, canary alone first, baked and judged on the gateways' figures,
then on every worker; a broken version (its server is not on the port its descriptor names, so
its ``/ping`` never answers) never routed to and rolled back by the master.

The tests run in file order and build on each other (one model, new on every run), after
test_cluster_containers.py (whose helpers they use). The model's services are gone at the end.
Each wait is bounded; each figure measured is printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_cluster import say, wait
from test_cluster_containers import (
    RUN,
    Rows,
    Scored,
    State,
    Traffic,
    clean_up,
    publish,
    roll_out_v2,
    score,
    serve_v1,
    swarm_services,
)

from modelsync.dev.cluster import Cluster, Host

pytestmark = pytest.mark.cluster

MODEL = f"mpg-{RUN}"
# the one-node test's rows (wt, hp) and R's lm on mtcars: mpg = 37.227 - 3.878 wt - 0.0318 hp
ROWS: Rows = [[2.62, 110], [3.215, 110]]
EXPECTED = [23.572329, 21.265028]


def ask(c: Cluster, w: Host, timeout_s: float = 30) -> Scored:
    return score(c, w, timeout_s, MODEL, ROWS)


def right(s: Scored) -> bool:
    """A 200 with R's predictions for ROWS."""
    if s.status != 200 or not isinstance(s.body, dict):
        return False
    assert s.body["predictions"] == pytest.approx(EXPECTED, abs=1e-4), s
    return True


def rollout(c: Cluster) -> dict[str, Any]:
    return dict(c.api(f"/v1/models/{MODEL}/rollout"))


def events(c: Cluster, name: str) -> list[dict[str, Any]]:
    doc = c.api(f"/v1/events?model={MODEL}&limit=200")
    return [e for e in doc["events"] if e["event"] == name]


def per_worker(answers: list[Scored]) -> str:
    counts: dict[str, int] = {}
    for a in answers:
        counts[a.worker] = counts.get(a.worker, 0) + 1
    return ", ".join(f"{w} {n}" for w, n in sorted(counts.items()))


@pytest.fixture(scope="module")
def st(cluster: Cluster) -> Iterator[State]:
    state = State(cluster, MODEL)
    yield state
    clean_up(state)


@pytest.mark.timeout(1800)
def test_the_r_model_is_published_run_on_every_worker_and_scored_through_each_gateway(
    st: State,
) -> None:
    c = st.c
    serve_v1(st, "r", ask, right, "--memory", "512M")
    assert c.api(f"/v1/models/{MODEL}")["kind"] == "container"
    for w in c.workers:
        s = ask(c, w)
        assert right(s) and s.version == "1", s


@pytest.mark.timeout(1200)
def test_a_second_r_version_rolls_out_canary_first_judged_on_the_gateways_figures(
    st: State,
) -> None:
    seen, answers, done_s = roll_out_v2(
        st, ask, right, ROWS, "--memory", "512M", "--env", "NOTE=second"
    )
    by_version = {v: sum(1 for a in answers if a.version == v) for v in ("1", "2")}
    say(
        f"R v2 canary first ({' -> '.join(f'{s} on {n}' for s, n in seen)}), complete "
        f"{done_s:.1f} s after publishing; {len(answers)} requests through the gateways "
        f"meanwhile ({per_worker(answers)}), none failed (v1 {by_version['1']}, "
        f"v2 {by_version['2']})"
    )


@pytest.mark.timeout(900)
def test_a_broken_r_version_is_never_routed_to_and_rolled_back_on_every_worker(
    st: State,
) -> None:
    c = st.c
    assert 2 in st.published, "the second test rolls out v2"
    assert rollout(c)["status"] == "complete", "the rollout spec is still set, v2 stable"
    v2, v3 = f"modelsync-{MODEL}-v2", f"modelsync-{MODEL}-v3"
    load = Traffic(c, model=MODEL, rows=ROWS)
    seen: list[str] = []
    created: list[float] = []
    try:
        # the image listens on 8080; the descriptor says 9999: its /ping never answers
        publish(st, 3, "--memory", "512M", "--port", "9999")

        def rolled_back() -> bool:
            if not created and v3 in swarm_services(c, MODEL):
                created.append(time.time())
            r = rollout(c)
            state = f"{r.get('status')} v{r.get('version')}"
            if not seen or seen[-1] != state:
                seen.append(state)
            return any(
                e["detail"].get("version") == 3 for e in events(c, "container_version_rolled_back")
            )

        wait(rolled_back, 600, "v3 rolled back by the master", interval_s=0.5)
        back_s = time.time() - st.published[3]
        r = wait(
            lambda: (r := rollout(c))["status"] == "rolled_back" and r["version"] == 3 and r,
            120,
            "the rollout of v3 rolled back",
        )
        wait(lambda: list(swarm_services(c, MODEL)) == [v2], 180, "v3's service removed")
        gone_s = time.time() - st.published[3]
    finally:
        answers = load.close()
    assert r["previous"] == 2 and 3 in r["rejected"], r
    assert "validating v3" in seen, seen  # the rollout did start on the canary
    assert created, "the master ran v3 as a service"
    view = c.api(f"/v1/models/{MODEL}")
    assert view["target_versions"] == [2], view
    # never routed to: every answer meanwhile is v2's, on every worker
    assert {a.worker for a in answers} == {w.name for w in c.workers}, per_worker(answers)
    failed = [a for a in answers if a.status != 200 or a.version != "2"]
    assert len(answers) > 30 and not failed, failed[:5]
    for a in answers:
        assert right(a), a
    for w in c.workers:
        s = ask(c, w)
        assert right(s) and s.version == "2", s
    say(
        f"R v3 (broken): {' -> '.join(seen)} ({r['reason']}); rolled back {back_s:.1f} s "
        f"after publishing (its service created {created[0] - st.published[3]:.1f} s after), "
        f"its service removed "
        f"{gone_s:.1f} s after; {len(answers)} requests meanwhile ({per_worker(answers)}), "
        "every one answered by v2"
    )
