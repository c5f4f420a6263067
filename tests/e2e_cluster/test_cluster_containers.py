"""Container models on the real multi-node Swarm of `make cluster` (issue #23): the
scikit-learn example (examples/sklearn) built on this machine's engine and pushed into the
cluster's registry (skopeo, `scripts/cluster.sh image-push`: this machine's engine need not
trust the plain-HTTP registry), published with `modelsync publish --image` into the cluster's
bucket. The master on the manager runs it as a Swarm service through the manager's Docker
socket, one task on each serving worker, and every worker's gateway scores it; stopped and
started through the API; a second version rolled out canary first to every worker.

The tests run in file order and build on each other (one model, new on every run). They run
after test_cluster.py under `make e2e-cluster`; the model's services are gone at the end (the
cluster stays up). Each wait is bounded; each figure measured is printed. The helpers (score,
Traffic, publish, services, swarm_services, clean_up) take the model, and
test_cluster_containers_r.py runs the R example with them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from test_cluster import say, wait

from modelsync.dev.cluster import ROOT, Cluster, Host
from modelsync.dev.containers import build_example

pytestmark = pytest.mark.cluster

Rows = list[list[float]]
RUN = uuid.uuid4().hex[:6]
MODEL = f"iris-{RUN}"
# the one-node test's rows and what the example's training (examples/sklearn/train.py: a
# logistic regression on iris) answers for them
ROWS: Rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
CLASSES = ["setosa", "virginica"]
SPEC = {  # v2: one canary, then every worker; judged on the gateways' per-version figures
    "canary_nodes": 1,
    "waves": [1.0],
    "bake_s": 10,
    "warmup_s": 1,
    "min_requests": 20,
    "max_error_rate": 0.05,
    "max_p99_ratio": 50,  # two shared cores: latency is not what this test judges
}


@dataclass(frozen=True)
class Scored:
    t: float  # time.time() of the answer
    worker: str
    status: int  # 0: no HTTP answer
    version: str | None  # X-Model-Version
    body: Any


def score(
    c: Cluster, w: Host, timeout_s: float = 30, model: str = MODEL, rows: Rows = ROWS
) -> Scored:
    """The MLflow JSON form of ``rows`` through ``w``'s gateway, with the gateway token."""
    try:
        r = requests.post(
            f"{w.gateway}/model/{model}/invocations",
            json={"instances": rows},
            headers={"Authorization": f"Bearer {c.gateway_token}"},
            timeout=timeout_s,
        )
    except requests.RequestException as exc:
        return Scored(time.time(), w.name, 0, None, repr(exc))
    try:
        body = r.json()
    except ValueError:
        body = r.text[:300]
    return Scored(time.time(), w.name, r.status_code, r.headers.get("X-Model-Version"), body)


def right(s: Scored) -> bool:
    """A 200 with the example's predictions (and a probability per class that sum to 1)."""
    if s.status != 200 or not isinstance(s.body, dict):
        return False
    assert s.body["predictions"] == CLASSES, s
    for p in s.body["probabilities"]:
        assert len(p) == 3 and abs(sum(p) - 1) < 1e-4 and max(p) > 0.5, s
    return True


class Traffic:
    """Scores ``model`` through every worker's gateway on a thread, noting each answer (the
    rollout judge wants requests; the test wants to know that none failed)."""

    def __init__(self, c: Cluster, rps: float = 8, model: str = MODEL, rows: Rows = ROWS) -> None:
        self.c, self.pause_s, self.model, self.rows = c, 1 / rps, model, rows
        self.answers: list[Scored] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 1800
        for _ in range(20_000):  # bounded in count and time
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            for w in self.c.workers:
                self.answers.append(score(self.c, w, 10, self.model, self.rows))
                self._stop.wait(self.pause_s)

    def close(self) -> list[Scored]:
        self._stop.set()
        self._thread.join(30)
        return list(self.answers)


@dataclass
class State:
    c: Cluster
    model: str = MODEL
    image: str = ""  # REGISTRY/modelsync-example-sklearn:1@sha256:…
    published: dict[int, float] = field(default_factory=dict)  # version -> time.time()


def publish(st: State, version: int, *extra: str) -> None:
    """``modelsync publish --image`` into the cluster's bucket, as a publisher does (the
    master finds it at its next catalog listing, MODELSYNC_CATALOG_S=2)."""
    c = st.c
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    env |= {
        "MODELSYNC_BUCKET": c.bucket,
        "MODELSYNC_PREFIX": c.prefix,
        "STORAGE_EMULATOR_HOST": c.gcs_url,
    }
    cmd = [sys.executable, "-m", "cli", "publish", "--image", st.image, "--model", st.model]
    res = subprocess.run(
        [*cmd, "--version", str(version), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    assert f"/{st.model}/{version}/" in res.stdout, res.stdout
    assert "warning" not in res.stderr, res.stderr  # the digest was known
    st.published[version] = time.time()


def services(c: Cluster, model: str = MODEL) -> dict[str, dict[str, Any]]:
    """The master's container services of ``model`` (GET /v1/containers), by name."""
    doc = c.api("/v1/containers")
    return {s["service"]: s for s in doc["services"] if s["model"] == model}


def swarm_services(c: Cluster, model: str = MODEL) -> dict[str, str]:
    """The manager's `docker service ls` for ``model``'s services: name -> replicas (r/d)."""
    out = c.docker(c.manager, "service", "ls", "--format", "{{.Name}} {{.Replicas}}").stdout
    rows = (line.split()[:2] for line in out.splitlines() if line.strip())
    return {name: reps for name, reps in rows if f"-{model}-v" in name}


def serve_v1(
    st: State,
    example: str,
    ask: Callable[[Cluster, Host, float], Scored],
    right: Callable[[Scored], bool],
    *extra: str,
) -> str:
    """``examples/<example>`` built on this machine's engine, pushed into the cluster's
    registry, published as v1 of ``st.model``; then every worker's gateway answers it
    (``right``) and its one Swarm service, pinned to the digest, runs a task on each serving
    worker. The service's name."""
    c = st.c
    assert len(c.workers) == 3, c.workers
    t0 = time.monotonic()
    local = build_example(example, c.registry, "1", push=False)
    built = time.monotonic()
    st.image = c.push_image(local, f"modelsync-example-{example}:1")
    say(
        f"{local}: built in {built - t0:.1f} s, into the cluster's registry in "
        f"{time.monotonic() - built:.1f} s: {st.image}"
    )
    publish(st, 1, *extra)
    first: dict[str, float] = {}

    def every_worker_answers() -> bool:
        for w in c.workers:
            if w.name not in first and right(ask(c, w, 10)):
                first[w.name] = time.time() - st.published[1]
        return len(first) == len(c.workers)

    wait(every_worker_answers, 900, f"every worker's gateway answers {st.model}", interval_s=0.25)
    say(
        f"{example}: publish -> first answer, per worker (pull from the registry, Swarm's "
        "start, /ping): " + ", ".join(f"{n} {s:.1f} s" for n, s in sorted(first.items()))
    )
    name = f"modelsync-{st.model}-v1"
    svc = wait(
        lambda: (s := services(c, st.model)).get(name, {}).get("running") == 3 and s,
        120,
        "3 tasks",
    )
    assert list(svc) == [name], svc
    assert svc[name]["replicas"] == 3 and svc[name]["image"].endswith(st.image.split("@")[1])
    swarm = {n["ID"]: n["Hostname"] for n in c.swarm_nodes()}
    on = sorted(swarm[t["node"]] for t in svc[name]["tasks"] if t["state"] == "running")
    assert on == [w.name for w in c.workers], on
    return name


def roll_out_v2(
    st: State,
    ask: Callable[[Cluster, Host, float], Scored],
    right: Callable[[Scored], bool],
    rows: Rows,
    *extra: str,
) -> tuple[list[tuple[str, int]], list[Scored], float]:
    """Under SPEC (v1 adopted as the stable version first), v2 published while a steady load
    scores ``rows`` through every worker, and waited for until every worker answers with it.
    Checked: it went canary alone first, baked, was judged on the gateways' figures, ended
    complete; no request of the load failed and each was ``right``; v1's service is gone.
    Returns the (status, nodes on v2) seen in order, the load's answers, and the seconds from
    the publish to complete."""
    c, model = st.c, st.model
    assert st.published, "the first test publishes the model"
    c.api(f"/v1/models/{model}/rollout", "PUT", SPEC)
    wait(
        lambda: c.api(f"/v1/models/{model}/rollout")["status"] == "complete",
        120,
        "v1 adopted as the stable version",
    )
    load = Traffic(c, model=model, rows=rows)
    seen: list[tuple[str, int]] = []
    try:
        publish(st, 2, *extra)

        def complete() -> bool:
            r = c.api(f"/v1/models/{model}/rollout")
            on2 = len(r.get("nodes_on_version") or []) if r.get("version") == 2 else 0
            if not seen or seen[-1] != (r.get("status"), on2):
                seen.append((str(r.get("status")), on2))
            return r.get("version") == 2 and r.get("status") in ("complete", "rolled_back")

        wait(complete, 900, "v2 rolled out to every worker", interval_s=0.5)
        assert seen[-1][0] == "complete", seen
        done_s = time.time() - st.published[2]
        wait(lambda: all(ask(c, w, 30).version == "2" for w in c.workers), 120, "all on v2")
    finally:
        answers = load.close()
    assert "baking" in {s for s, _ in seen}, seen
    assert next(n for _s, n in seen if n) == 1, seen  # the canary alone first
    failed = [a for a in answers if a.status != 200]
    assert answers and not failed, failed[:5]
    for a in answers:
        assert right(a), a
    advanced = [
        e
        for e in c.api(f"/v1/events?model={model}&limit=200")["events"]
        if e["event"] == "rollout_advanced"
    ]
    assert advanced and advanced[0]["detail"]["judgement"]["source"] == "gateway", advanced[:1]
    assert advanced[0]["detail"]["version"] == 2, advanced[:1]
    v2 = f"modelsync-{model}-v2"
    wait(lambda: list(swarm_services(c, model)) == [v2], 180, "v1's service gone")
    return seen, answers, done_s


@pytest.fixture(scope="module")
def st(cluster: Cluster) -> Iterator[State]:
    state = State(cluster)
    yield state
    clean_up(state)


def clean_up(st: State) -> None:
    """Stop the model (its services scale to 0), delete its versions from the bucket: the
    master removes the services of versions no longer there. Then nothing of it is left."""
    c, model = st.c, st.model
    if not st.published:
        return
    try:
        c.api(f"/v1/models/{model}/stop", "POST")
    finally:
        store = c.store()
        for obj in store.list_objects(f"{c.prefix}/{model}/"):
            store.delete(obj.name)
    t0 = time.monotonic()
    try:
        wait(lambda: not swarm_services(c, model), 180, "the master removes the model's services")
        say(f"clean-up: {model}'s services removed by the master in {time.monotonic() - t0:.1f} s")
    except AssertionError:
        left = swarm_services(c, model)
        for name in left:
            c.docker(c.manager, "service", "rm", name, check=False)
        raise AssertionError(f"the master left {left} (removed by the test)") from None


@pytest.mark.timeout(1800)
def test_the_example_is_published_run_on_every_worker_and_scored_through_each_gateway(
    st: State,
) -> None:
    c = st.c
    name = serve_v1(st, "sklearn", score, right, "--env", "MODEL_NOTE=first")
    spec = c.docker(
        c.manager,
        "service",
        "inspect",
        "-f",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}} {{.Spec.TaskTemplate.Placement.Constraints}}",
        name,
    ).stdout
    assert st.image.split("@")[1] in spec and "modelsync.serving == true" in spec, spec
    view = c.api(f"/v1/models/{MODEL}")
    assert view["kind"] == "container", view
    # each answer is its own worker's: the gateway token only, the version in the header
    for w in c.workers:
        s = score(c, w)
        assert right(s) and s.version == "1", s
        r = requests.post(f"{w.gateway}/model/{MODEL}/invocations", json={"instances": ROWS})
        assert r.status_code == 401, r.text[:300]


@pytest.mark.timeout(900)
def test_stop_and_start_through_the_api_on_every_worker(st: State) -> None:
    c = st.c
    assert st.published, "the first test publishes the model"
    name = f"modelsync-{MODEL}-v1"
    t0 = time.monotonic()
    c.api(f"/v1/models/{MODEL}/stop", "POST")
    wait(lambda: swarm_services(c).get(name) == "0/0", 120, "scaled to 0")
    refused: dict[str, Scored] = {}

    def every_worker_refuses() -> bool:
        for w in c.workers:
            s = score(c, w, timeout_s=10)
            if s.status in (404, 503):
                refused[w.name] = s
            else:
                refused.pop(w.name, None)
        return len(refused) == len(c.workers)

    wait(every_worker_refuses, 120, "every gateway refuses the stopped model", interval_s=0.5)
    stopped_s = time.monotonic() - t0
    for s in refused.values():  # the documented shape: MLflow's error_code and a message
        assert isinstance(s.body, dict) and set(s.body) >= {"error_code", "message"}, s
        assert isinstance(s.body["message"], str) and s.body["message"], s
    t1 = time.monotonic()
    c.api(f"/v1/models/{MODEL}/start", "POST")
    back: dict[str, float] = {}

    def every_worker_answers() -> bool:
        for w in c.workers:
            if w.name not in back and right(score(c, w, timeout_s=10)):
                back[w.name] = time.monotonic() - t1
        return len(back) == len(c.workers)

    wait(every_worker_answers, 600, "every worker answers again", interval_s=0.25)
    wait(lambda: swarm_services(c).get(name) == "3/3", 120, "3 tasks again")
    say(
        f"stop -> every gateway refuses in {stopped_s:.1f} s ("
        + ", ".join(f"{n} {s.status} {s.body['error_code']}" for n, s in sorted(refused.items()))
        + "); start -> answers again: "
        + ", ".join(f"{n} {s:.1f} s" for n, s in sorted(back.items()))
    )


@pytest.mark.timeout(1200)
def test_a_second_version_rolls_out_canary_first_to_every_worker(st: State) -> None:
    seen, answers, done_s = roll_out_v2(st, score, right, ROWS, "--env", "MODEL_NOTE=second")
    by_version = {v: sum(1 for a in answers if a.version == v) for v in ("1", "2")}
    say(
        f"v2 canary first ({' -> '.join(f'{s} on {n}' for s, n in seen)}), complete "
        f"{done_s:.1f} s after publishing; {len(answers)} requests through the gateways "
        f"meanwhile, none failed (v1 {by_version['1']}, v2 {by_version['2']})"
    )
