"""stack.yml on a real multi-node Swarm (`make cluster`: a manager and three workers, each a
network namespace with its own Docker Engine; a registry; a GCS emulator host), tested as a
cluster while a search-like client sends name-only Predicts to every worker throughout.

The tests run in file order and build on each other (one model, its versions one after the
other): publish -> every worker serves, each node speaking with its own token and each gateway
scoring with the gateway token; a batch job scored by the workers through the broker on the
manager; a bad version stays on the canary; a worker's engine killed mid-rollout; a new host
joins; the master cut off from a worker; a rolling `docker service update --image`. Each step
is bounded; each figure measured is printed.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from search import Answer, SearchLoad, outages

from modelsync.client import PredictClient
from modelsync.dev.cluster import Cluster, Host
from modelsync.nodeauth import node_token
from modelsync.publish import PublishOptions, publish

pytestmark = pytest.mark.cluster

RUN = uuid.uuid4().hex[:6]
MODEL = f"demo-{RUN}"  # the model the search-like client asks for (new on every run)
OTHER = f"ranker-{RUN}"  # a second model: a joining node must serve both
SPEC = {  # a staged rollout: one canary, then every node; judged on errors
    "canary_nodes": 1,
    "waves": [1.0],
    "bake_s": 20,  # telemetry every 5 s: several intervals with the new version alone
    "min_requests": 20,
    "max_error_rate": 0.05,
    "max_p99_ratio": 50,  # two shared cores: latency is not what these tests judge
}
HEARTBEAT_S = 3.0  # scripts/cluster.sh deploys with MODELSYNC_HEARTBEAT_S=3


def wait(fn: Any, timeout_s: float, what: str, interval_s: float = 0.5) -> Any:
    """Poll ``fn`` until it returns something truthy (errors count as "not yet")."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
            last = value
        except Exception as exc:
            last = exc
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s; last: {last!r}"[:2000])


def say(text: str) -> None:
    print(f"\n[cluster] {text}", flush=True)


class Fleet:
    """The cluster, the model's versions and the search-like load, shared by the tests."""

    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.cluster, self.tmp = cluster, tmp
        self.store = cluster.store()
        self.load: SearchLoad | None = None
        self.versions: dict[int, float] = {}  # version -> its slope a (y = a*x + 1)

    def publish(
        self, version: int, a: float, *, erroring: bool = False, model: str = MODEL
    ) -> None:
        from modelsync.dev.models import make_erroring_model, make_linear_model

        src = self.tmp / f"{model}-{version}"
        if erroring:  # every request with x >= 0.1 fails: about 90 % of the client's
            make_erroring_model(src, a, 1.0, threshold=0.1)
        else:
            make_linear_model(src, a, 1.0)
        if model == MODEL:
            self.versions[version] = a
        publish(self.store, src, model, PublishOptions(version=version))

    def swarm_ids(self) -> dict[str, str]:
        """Hostname -> Swarm node id (what the daemons heartbeat as: {{.Node.ID}})."""
        return {n["Hostname"]: n["ID"] for n in self.cluster.swarm_nodes()}

    def host_of(self, node_id: str) -> str:
        return {v: k for k, v in self.swarm_ids().items()}[node_id]

    def serves(self, host: Host, model: str = MODEL) -> int | None:
        client = PredictClient(host.grpc)
        try:
            version, out = client.predict(model, {"x": [1.0]}, timeout_s=5)
        finally:
            client.close()
        if model == MODEL:  # and with the right weights: y(1) = a + 1
            assert math.isclose(float(out["y"][0]), self.versions[version] + 1, rel_tol=1e-5)
        return version

    @property
    def traffic(self) -> SearchLoad:
        """The search-like client (started by the first test)."""
        assert self.load is not None, "the first test starts the search-like client"
        return self.load

    def rollout(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.cluster.api(f"/v1/models/{MODEL}/rollout")
        return doc


@pytest.fixture(scope="module")
def fleet(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    f = Fleet(cluster, tmp_path_factory.mktemp("cluster"))
    yield f
    if f.load is not None:
        f.load.close()


def failed(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if not a.ok]


@pytest.mark.timeout(600)
def test_publish_every_worker_serves_and_the_views_agree(fleet: Fleet) -> None:
    c = fleet.cluster
    assert len(c.workers) == 3, c.workers
    t0 = time.monotonic()
    fleet.publish(1, 2.0)
    fleet.publish(1, 7.0, model=OTHER)
    for w in c.workers:
        wait(lambda w=w: fleet.serves(w) == 1, 300, f"{w.name} serves v1")
        wait(lambda w=w: fleet.serves(w, OTHER) == 1, 120, f"{w.name} serves {OTHER} v1")
    say(f"publish -> v1 served by every worker in {time.monotonic() - t0:.1f} s")
    # the search-like client from now on, on every worker
    fleet.load = SearchLoad(MODEL, list(c.workers), rps=10, limit_s=3000)

    # the master's registry: each worker once, under its Swarm node id, with its hostname
    swarm = fleet.swarm_ids()
    workers = {swarm[w.name]: w.name for w in c.workers}
    nodes = wait(
        lambda: (n := c.nodes()) and set(workers) <= set(n) and n, 60, "every worker registered"
    )
    assert len(nodes) == len(set(nodes))
    for node_id, name in workers.items():
        assert nodes[node_id]["hostname"] == name
        assert nodes[node_id]["state"] == "live"
        assert set(nodes[node_id]["roles"]) == {"puller", "config_manager", "gateway"}
        # the gateway advertises the address the master reaches it at, not a name
        url = nodes[node_id]["roles"]["gateway"]["status"]["url"]
        assert url == c.host(int(name.removeprefix("ms-h"))).gateway, url
    view = wait(
        lambda: c.api("/v1/cluster")["models"][MODEL]["converged"] and c.api("/v1/cluster"),
        60,
        "converged",
    )
    assert view["nodes"]["total"] == len(nodes) and view["nodes"]["live"] == 3, view["nodes"]
    assert view["models"][MODEL]["serving_nodes"] == 3

    # the master's Swarm view (through the manager's Docker socket) agrees with docker node ls
    listed = {
        n["ID"]: (n["Hostname"], n["Status"].lower(), n["Availability"].lower())
        for n in c.swarm_nodes()
    }
    seen = c.api("/v1/nodes")["swarm"]
    assert seen and seen.get("swarm") is True, seen
    assert {
        n["id"]: (n["hostname"], n["state"], n["availability"]) for n in seen["nodes"]
    } == listed
    by_id = {n["id"]: n for n in seen["nodes"]}
    for node_id in workers:
        assert by_id[node_id]["labels"].get("modelsync.serving") == "true"
        assert {"tfserving", "puller", "config_manager", "gateway"} <= set(by_id[node_id]["tasks"])
    assert by_id[swarm[c.manager.name]]["tasks"].get("master") == ["running"]
    assert by_id[swarm[c.manager.name]]["tasks"].get("broker") == ["running"]
    assert seen["problems"] == [], seen["problems"]


@pytest.mark.timeout(300)
def test_each_node_speaks_with_its_own_token_and_each_gateway_wants_the_gateway_token(
    fleet: Fleet,
) -> None:
    c = fleet.cluster
    swarm = fleet.swarm_ids()
    ids = [swarm[w.name] for w in c.workers]
    # each serving host's token is a file of its own, made for its Swarm node id, readable by
    # the image's group only (the stack mounts it into the host's three node services)
    for node_id in ids:
        f = c.node_token_file(node_id)
        assert f.read_text().strip() == node_token(c.node_secret, node_id)
        st = f.stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o440, 0, 10001), f
    # one host's token speaks for that host only: a report for another node is refused
    stolen = c.node_token_file(ids[0]).read_text().strip()
    r = requests.post(
        c.master_url + "/v1/nodes/heartbeat",
        json={"node_id": ids[1], "role": "puller"},
        headers={"Authorization": f"Bearer {stolen}"},
        timeout=10,
    )
    assert r.status_code == 403, r.text
    # scoring through every worker's gateway needs the gateway token; each answers with v1
    for w in c.workers:
        url = f"{w.gateway}/model/{MODEL}/invocations"
        body = {"inputs": {"x": [1.0, 2.0]}}
        for token in (None, c.admin_token):  # the master's tokens are not the gateway's
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            assert requests.post(url, json=body, headers=headers, timeout=10).status_code == 401
        r = requests.post(
            url, json=body, headers={"Authorization": f"Bearer {c.gateway_token}"}, timeout=30
        )
        assert r.status_code == 200, (w.name, r.text[:300])
        assert r.headers.get("X-Model-Version") == "1"
        a = fleet.versions[1]
        assert r.json()["predictions"] == pytest.approx([a * 1.0 + 1, a * 2.0 + 1])
    say("node tokens: one file per host, each refused for another node; gateways: token only")


@pytest.mark.timeout(600)
def test_a_batch_job_is_scored_by_the_workers_through_the_broker_on_the_manager(
    fleet: Fleet,
) -> None:
    """Every worker host's jobs worker reaches the broker on the manager (MODELSYNC_BROKER_URL:
    no 127.0.0.1 there), and a job submitted to the master is done, every row scored."""
    c = fleet.cluster
    swarm = fleet.swarm_ids()
    want = {swarm[w.name] for w in c.workers}

    def workers() -> set[str]:
        names = c.api("/v1/jobs")["workers"]["names"] or []
        return {n.rpartition("@")[2] for n in names}

    wait(lambda: want <= workers(), 180, "a jobs worker on every worker host, at the broker")
    t0 = time.monotonic()
    rows = [{"x": float(i)} for i in range(500)] + [{"x": "bad"}]
    job = c.api("/v1/jobs", "POST", {"model": MODEL, "version": 1, "rows": rows})["id"]
    done = wait(
        lambda: (d := c.api(f"/v1/jobs/{job}"))["state"] == "done" and d, 300, "the job done"
    )
    assert done["progress"]["rows_done"] == 501 and done["progress"]["errors"] == 1, done
    r = requests.get(
        f"{c.master_url}/v1/jobs/{job}/result",
        headers={"Authorization": f"Bearer {c.admin_token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text[:300]
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [d["row"] for d in lines] == list(range(501))
    y3 = fleet.versions[1] * 3.0 + 1
    assert lines[3] == {"row": 3, "version": 1, "outputs": {"y": pytest.approx(y3)}}
    assert "error" in lines[500]
    took = time.monotonic() - t0
    say(f"a 501-row job through the broker on {c.manager.name}: done in {took:.1f} s")


@pytest.mark.timeout(600)
def test_a_bad_version_reaches_at_most_the_canary_and_is_rolled_back(fleet: Fleet) -> None:
    c, load = fleet.cluster, fleet.traffic
    c.api(f"/v1/models/{MODEL}/rollout", "PUT", SPEC)
    wait(lambda: fleet.rollout()["status"] == "complete", 60, "v1 adopted as the stable version")
    t0 = time.time()
    fleet.publish(2, 3.0, erroring=True)
    most = 0

    def rolled_back() -> bool:
        nonlocal most
        on_v2 = [n for n, vs in c.available(MODEL).items() if 2 in vs]
        most = max(most, len(on_v2))
        r = fleet.rollout()
        return r["version"] == 2 and r["status"] == "rolled_back"

    wait(rolled_back, 300, "v2 rolled back")
    r = fleet.rollout()
    assert 2 in r["rejected"], r
    canary = {fleet.host_of(n) for n in r["nodes_on_version"]}
    assert len(canary) <= 1, r
    wait(lambda: all(fleet.serves(w) == 1 for w in c.workers), 120, "every worker back on v1")
    time.sleep(2 * HEARTBEAT_S)  # the last answers of the window are in
    window = load.since(t0)
    served_v2 = {a.worker for a in window if a.version == 2}
    assert served_v2 <= canary, (served_v2, canary)
    assert most <= 1
    others = [a for a in window if a.worker not in canary]
    assert others and failed(others) == [], failed(others)[:5]
    say(
        f"bad v2: reached {most} node(s) ({', '.join(sorted(canary)) or 'none'}), rolled back "
        f"after {r['history'][-1]['at'] - t0:.1f} s: {r['reason']}; "
        f"{len(failed(window))} failed Predicts, all on the canary"
    )


@pytest.mark.timeout(900)
def test_a_worker_engine_killed_mid_rollout_goes_stale_and_converges_when_back(
    fleet: Fleet,
) -> None:
    c, load = fleet.cluster, fleet.traffic
    t0 = time.time()
    fleet.publish(3, 4.0)
    r = wait(
        lambda: (
            (r := fleet.rollout())["version"] == 3 and r["status"] in ("validating", "baking") and r
        ),
        120,
        "the v3 rollout under way",
    )
    canary = {fleet.host_of(n) for n in r["nodes_on_version"]}
    victim = next(w for w in c.workers if w.name not in canary)
    victim_id = fleet.swarm_ids()[victim.name]
    killed = time.monotonic()
    c.script("engine-kill", str(victim.number))
    say(f"killed every process of {victim.name} (engine, containers) during '{r['status']}'")
    wait(lambda: c.nodes()[victim_id]["state"] == "stale", 4 * HEARTBEAT_S + 10, "stale")
    stale_s = time.monotonic() - killed
    assert stale_s <= 3 * HEARTBEAT_S + 4, stale_s  # 3 missed beats, and our polling
    # the rollout goes on with the live nodes
    done = wait(
        lambda: (r := fleet.rollout())["version"] == 3 and r["status"] == "complete" and r,
        240,
        "the v3 rollout completes without the dead worker",
    )
    assert victim_id not in done["nodes_on_version"], done
    for w in c.workers:
        if w != victim:
            assert fleet.serves(w) == 3
    assert c.nodes()[victim_id]["state"] == "stale"
    # the engine comes back: Swarm restarts the node's tasks, the node converges by itself
    back = time.monotonic()
    c.script("engine-start", str(victim.number), timeout_s=180)
    wait(lambda: fleet.serves(victim) == 3, 300, f"{victim.name} serves v3 again")
    wait(lambda: 3 in c.available(MODEL)[victim_id], 60, "the master sees it on v3")
    converged_s = time.monotonic() - back
    assert c.nodes()[victim_id]["state"] == "live"
    window = load.failover_since(t0)
    assert window and failed(window) == [], failed(window)[:5]
    others = [a for a in load.since(t0) if a.worker != victim.name]
    assert failed(others) == [], failed(others)[:5]
    say(
        f"{victim.name} killed: stale in {stale_s:.1f} s (heartbeat {HEARTBEAT_S:g} s), the "
        f"rollout completed on the live nodes; engine restarted -> serving v3 in "
        f"{converged_s:.1f} s; the failover client saw no failure"
    )


@pytest.mark.timeout(900)
def test_a_new_host_joins_and_serves_every_model(fleet: Fleet) -> None:
    c = fleet.cluster
    targets = {MODEL: 3, OTHER: 1}
    t0 = time.monotonic()
    c = fleet.cluster = c.script("host-add", "5", timeout_s=300)
    joined_s = time.monotonic() - t0
    new = c.host(5)
    try:
        for model, version in targets.items():
            wait(lambda m=model, v=version: fleet.serves(new, m) == v, 600, f"ms-h5 serves {model}")
        serving_s = time.monotonic() - t0
        node_id = fleet.swarm_ids()[new.name]
        wait(
            lambda: all(v in c.available(m).get(node_id, set()) for m, v in targets.items()),
            60,
            "the master sees ms-h5 serve every model",
        )
        say(
            f"join: ms-h5 in the Swarm {joined_s:.1f} s after `cluster.sh host-add 5` (namespace, "
            f"engine, join, label); serving every model's current version, validated, "
            f"{serving_s:.1f} s after (image pull, tasks, downloads, validation)"
        )
        assert serving_s <= 600
    finally:
        c = fleet.cluster = c.script("host-remove", "5", timeout_s=300)
    assert [h.name for h in c.workers] == ["ms-h2", "ms-h3", "ms-h4"]


@pytest.mark.timeout(900)
def test_a_worker_cut_off_from_the_master_keeps_serving_and_reports_after_heal(
    fleet: Fleet,
) -> None:
    c, load = fleet.cluster, fleet.traffic
    victim = c.workers[0]
    victim_id = fleet.swarm_ids()[victim.name]
    t0 = time.time()
    c.script("link-cut", str(victim.number))
    try:
        wait(lambda: c.nodes()[victim_id]["state"] == "stale", 4 * HEARTBEAT_S + 10, "stale")
        # it still follows the bucket: the next version reaches it without the master
        fleet.publish(4, 5.0)
        wait(
            lambda: fleet.rollout()["version"] == 4 and fleet.rollout()["status"] == "complete",
            300,
            "the v4 rollout completes on the nodes the master hears",
        )
        wait(lambda: fleet.serves(victim) == 4, 180, f"{victim.name} serves v4, cut off")
        assert c.nodes()[victim_id]["state"] == "stale"
        cut_answers = load.since(t0, victim.name)
        assert cut_answers and failed(cut_answers) == [], failed(cut_answers)[:5]
    finally:
        healed, healed_at = time.monotonic(), time.time()
        c.script("link-heal", str(victim.number))
    wait(lambda: c.nodes()[victim_id]["state"] == "live", 120, "it reports again")
    reported_s = time.monotonic() - healed
    wait(lambda: 4 in c.available(MODEL)[victim_id], 60, "the master sees it on v4")
    # Swarm's global orchestrator shut the node's tasks down when the manager marked it Down;
    # when it is back they are replaced, so its TF Serving restarts once (search fails over)
    wait(lambda: task_states(c, victim) == {"running"}, 180, "its tasks running again")
    wait(lambda: fleet.serves(victim) == 4, 120, f"{victim.name} serves v4 after the restart")
    time.sleep(1)
    restart = sum(b - a for a, b in outages(load.since(healed_at, victim.name)))
    others = [a for a in load.since(t0) if a.worker != victim.name]
    assert failed(others) == [], failed(others)[:5]
    window = load.failover_since(t0)
    assert window and failed(window) == [], failed(window)[:5]
    say(
        f"{victim.name} cut off from the master: kept serving with no failed Predict, took v4 "
        f"from the bucket; reporting again {reported_s:.1f} s after the link healed; then "
        f"Swarm replaced its tasks (TF Serving down {restart:.1f} s there; the failover "
        f"client saw no failure)"
    )


def task_states(c: Cluster, host: Host) -> set[str]:
    """The current states of the stack's tasks on ``host`` that should be running."""
    out = c.docker(
        c.manager,
        "node",
        "ps",
        host.name,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.CurrentState}}",
    ).stdout
    return {line.split()[0].lower() for line in out.splitlines() if line.strip()}


@pytest.mark.timeout(1500)
def test_service_update_image_rolls_one_worker_at_a_time_with_no_failed_request(
    fleet: Fleet,
) -> None:
    c, load = fleet.cluster, fleet.traffic
    # a new image in the registry: the same layers and a new label, as a modelsync release
    # whose dependencies did not change (pulled in a second: only the small layers differ)
    new = f"{c.registry}/modelsync:update-{RUN}"
    subprocess.run(
        ["docker", "-H", c.manager.socket, "build", "-q", "-t", new, "-"],
        input=f"FROM {c.image}\nLABEL org.modelsync.test-release={RUN}\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=120,
    )
    c.docker(c.manager, "push", "-q", new, timeout_s=300)
    t0 = time.time()
    services = ["tfserving", "puller", "config_manager", "gateway"]
    procs = {
        s: subprocess.Popen(
            [
                "docker",
                "-H",
                c.manager.socket,
                "service",
                "update",
                "--detach=false",
                "--quiet",
                "--image",
                new,
                f"{c.stack}_{s}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for s in services
    }
    try:
        for s, p in procs.items():
            out, _ = p.communicate(timeout=1200)
            assert p.returncode == 0, (s, out[-2000:])
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    updated = time.time()
    for s in services:
        image = c.docker(
            c.manager,
            "service",
            "inspect",
            "-f",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            f"{c.stack}_{s}",
        ).stdout
        assert image.startswith(new), (s, image)
    for w in c.workers:
        wait(lambda w=w: fleet.serves(w) == 4, 120, f"{w.name} serves v4")
    time.sleep(1)
    window = [a for a in load.failover_since(t0) if a.t <= updated]
    assert window and failed(window) == [], failed(window)[:5]
    downs = {
        w.name: [(a, b) for a, b in outages(load.since(t0, w.name)) if a <= updated]
        for w in c.workers
    }
    spans = sorted((a, b, name) for name, ws in downs.items() for a, b in ws)
    for (_a1, b1, n1), (a2, _b2, n2) in itertools.pairwise(spans):
        assert b1 <= a2, f"{n1} and {n2} were down at the same time: {spans}"
    assert all(ws for ws in downs.values()), downs  # each TF Serving was replaced
    each = {n: sum(b - a for a, b in ws) for n, ws in downs.items()}
    say(
        f"service update --image: {updated - t0:.0f} s for 4 services on 3 workers; TF Serving "
        f"down per worker: {', '.join(f'{n} {s:.1f} s' for n, s in sorted(each.items()))} "
        f"(stop-first: the new task binds the host ports the old one held, then loads the "
        f"models from the node's volume); {len(window)} failover requests, none failed"
    )
