"""The rollout controller and API over an in-memory bucket, nodes simulated by heartbeats."""

from __future__ import annotations

import json
import threading
import time

from modelsync.catalog import policy_object
from modelsync.nodeauth import node_token
from modelsync.policy import parse_policy, served_set
from modelsync.telemetry import LATENCY_BOUNDS_US, Histogram, ModelInterval, merge_intervals

ADMIN, READ, NODE = "admin-token-0123456789", "read-token-0123456789", "node-token-0123456789"
NODES = ["n1", "n2", "n3", "n4"]


def figures(ok: int, errors: int = 0, latency_us: float = 2_000, code: str = "INTERNAL") -> dict:
    """A beat's interval of ``ok`` requests at ``latency_us`` and ``errors`` of ``code``; a tiny
    ``seconds``, so that a beat sent right after a stage began lies within its window."""
    bounds = (*LATENCY_BOUNDS_US, float("inf"))
    index = next(i for i, b in enumerate(bounds) if latency_us < b)
    iv = ModelInterval(
        0.001,
        {"OK": ok, code: errors},
        Histogram(
            bounds, tuple(ok if i >= index else 0 for i in range(len(bounds))), ok * latency_us
        ),
    )
    return iv.to_json()


def per_version(load: dict[int, dict]) -> dict:  # type: ignore[type-arg]
    """A server's figures with modelsync's per-version extension: the whole and each version."""
    whole = ModelInterval.from_json(next(iter(load.values())))
    for doc in list(load.values())[1:]:
        whole = merge_intervals([whole, ModelInterval.from_json(doc)])
    return {**whole.to_json(), "by_version": {str(v): doc for v, doc in load.items()}}


def beat(
    api,
    node: str,
    available: list[int],
    load: dict | None = None,  # type: ignore[no-untyped-def]
    failed: dict | None = None,
    role: str = "config_manager",
) -> None:
    doc = {
        "node_id": node,
        "role": role,
        "status": {"available": {"m": available}, "failed": {"m": failed or {}}},
    }
    if load is not None:
        doc["telemetry"] = {"models": {"m": {**load, "versions": available}}}
    code, answer = api.call("POST", "/v1/nodes/heartbeat", node_token(NODE, node), doc)
    assert code == 200, answer


def policy(memstore):  # type: ignore[no-untyped-def]
    return parse_policy(memstore.read(policy_object("models")))


def rollout(api) -> dict:  # type: ignore[no-untyped-def]
    return api.call("GET", "/v1/models/m/rollout", READ)[1]


def setup(api, state, add_version, spec: dict) -> None:  # type: ignore[no-untyped-def]
    add_version("m", 1)
    add_version("m", 2)
    state.refresh_catalog()
    for n in NODES:
        beat(api, n, [1])
    code, doc = api.call("PUT", "/v1/models/m/rollout", ADMIN, spec)
    assert code == 200, doc


def serve_as_told(api, memstore, load=None) -> None:  # type: ignore[no-untyped-def]
    """Every node serves what the policy in the bucket tells it (as its daemons would); with
    ``load`` (ok, errors), each of its versions answered that many requests (per version)."""
    p = policy(memstore)
    for n in NODES:
        versions = sorted(served_set("m", [1, 2], p, n).versions)
        doc = None if load is None else per_version({v: figures(*load) for v in versions})
        beat(api, n, versions, doc)


def baking_canary(api, state, memstore, add_version) -> str:  # type: ignore[no-untyped-def]
    """v2 baking on its canary (a long bake, no warmup); the canary's name."""
    spec = {"canary_nodes": 1, "waves": [1.0], "bake_s": 3600, "warmup_s": 0}
    setup(api, state, add_version, spec)
    state.rollouts.tick(time.time())
    (canary,) = rollout(api)["nodes_on_version"]
    serve_as_told(api, memstore)
    # baking from a second ago: the beats that follow lie in its window even when the wall
    # clock steps back a little in between (a VM's clock does; seen once in a full run)
    state.rollouts.tick(time.time() - 1)
    return str(canary)


def test_a_good_version_goes_canary_wave_complete(api, state, memstore, add_version) -> None:  # type: ignore[no-untyped-def]
    setup(
        api,
        state,
        add_version,
        {"canary_nodes": 1, "waves": [0.5, 1.0], "bake_s": 0, "min_requests": 10},
    )
    tick = state.rollouts.tick
    tick(time.time())
    r = rollout(api)
    assert r["status"] == "validating" and r["version"] == 2 and r["previous"] == 1
    (canary,) = r["nodes_on_version"]
    p = policy(memstore)
    assert served_set("m", [1, 2], p, canary).versions == {2}
    assert all(served_set("m", [1, 2], p, n).versions == {1} for n in NODES if n != canary)
    tick(time.time())  # the canary has not loaded it yet: nothing moves
    assert rollout(api)["status"] == "validating"
    for stage_nodes in (1, 2, 4):
        serve_as_told(api, memstore)
        tick(time.time())
        r = rollout(api)
        if stage_nodes < 4:
            assert r["status"] == "baking" and len(r["nodes_on_version"]) == stage_nodes, r
            serve_as_told(api, memstore, (50, 0))  # traffic within the stage's window
            tick(time.time())  # baked (bake_s 0), judged healthy: the next wave
            r = rollout(api)
            assert len(r["nodes_on_version"]) == {1: 2, 2: 4}[stage_nodes]
            assert "judged on versions: v2 " in r["history"][-1]["reason"], r["history"][-1]
    assert rollout(api)["status"] == "complete"
    assert all(served_set("m", [1, 2], policy(memstore), n).versions == {2} for n in NODES)
    events = api.call("GET", "/v1/events?kind=audit&model=m", READ)[1]["events"]
    audit = {e["event"] for e in events}
    assert {"rollout_started", "rollout_baking", "rollout_advanced", "rollout_complete"} <= audit
    advanced = next(e for e in events if e["event"] == "rollout_advanced")
    judged = advanced["detail"]["judgement"]
    assert judged["verdict"] == "healthy" and judged["source"] == "versions"
    assert judged["requests"]["new"] >= 50 and judged["requests"]["needed"] == 10


def test_the_api_shows_what_a_baking_stage_is_judged_on(api, state, memstore, add_version) -> None:  # type: ignore[no-untyped-def]
    """Labels keep two versions AVAILABLE on the canary; the judgement is per version."""
    canary = baking_canary(api, state, memstore, add_version)
    beat(
        api,
        canary,
        [1, 2],
        per_version(
            {
                2: figures(300, 6, code="INVALID_ARGUMENT"),
                1: figures(100, 2, code="INVALID_ARGUMENT"),
            }
        ),
    )
    for n in NODES:
        if n != canary:
            beat(api, n, [1], per_version({1: figures(900, 18, code="INVALID_ARGUMENT")}))
    state.rollouts.tick(time.time())
    r = rollout(api)
    assert r["status"] == "baking" and r["waiting"] is False
    j = r["judgement"]
    assert j["verdict"] == "healthy" and j["source"] == "versions", j
    assert j["requests"] == {"new": 306, "baseline": 102 + 3 * 918, "needed": 200}
    assert j["nodes"]["new"] == [canary] and len(j["nodes"]["baseline"]) == 4
    assert j["window"]["seconds"] >= 0 and j["basis"].startswith("versions: v2 306 requests")
    assert [c["name"] for c in j["checks"]] == ["server_errors", "client_errors", "latency"]
    assert all(c["verdict"] in ("pass", "unjudged") for c in j["checks"])
    assert r["figures"]["new"]["version"] == 2 and r["figures"]["new"]["client_errors"] == 6
    assert r["spec_effective"]["warmup_s"] == 0 and r["spec_effective"]["max_wait_s"] == 14400


def test_errors_on_the_canary_roll_back_and_reject(api, state, memstore, add_version) -> None:  # type: ignore[no-untyped-def]
    setup(
        api,
        state,
        add_version,
        {
            "canary_nodes": 1,
            "waves": [1.0],
            "bake_s": 300,
            "min_requests": 20,
            "max_error_rate": 0.05,
        },
    )
    state.rollouts.tick(time.time())
    (canary,) = rollout(api)["nodes_on_version"]
    serve_as_told(api, memstore)
    state.rollouts.tick(time.time() - 60)  # baking since a minute ago: past its warmup
    assert rollout(api)["status"] == "baking"
    beat(api, canary, [2], per_version({2: figures(70, 30)}))  # 30 % INTERNAL
    for n in NODES:
        if n != canary:
            beat(api, n, [1], per_version({1: figures(100, 0)}))
    state.rollouts.tick(time.time())
    r = rollout(api)
    assert r["status"] == "rolled_back" and r["rejected"] == [2]
    assert "server errors 30.00% of 100 vs baseline 0.00% of 300" in r["reason"], r["reason"]
    assert all(served_set("m", [1, 2], policy(memstore), n).versions == {1} for n in NODES)
    events = api.call("GET", "/v1/events?kind=audit&model=m", READ)[1]["events"]
    back = next(e for e in events if e["event"] == "rollout_rolled_back")
    assert back["detail"]["rejected"] == 2 and "30.00%" in back["detail"]["reason"]
    assert back["detail"]["judgement"]["verdict"] == "breach"
    # an operator clears the rejection: the version may roll out again
    assert api.call("DELETE", "/v1/models/m/rejected/2", ADMIN)[0] == 200
    state.rollouts.tick(time.time())
    assert rollout(api)["status"] == "validating"


def test_no_traffic_of_its_own_holds_then_pauses_and_a_promote_still_works(  # type: ignore[no-untyped-def]
    api, state, memstore, add_version
) -> None:
    spec = {"canary_nodes": 1, "waves": [0.5, 1.0], "bake_s": 0, "max_wait_s": 2, "warmup_s": 0}
    setup(api, state, add_version, spec)
    state.rollouts.tick(time.time())
    (canary,) = rollout(api)["nodes_on_version"]
    serve_as_told(api, memstore)
    state.rollouts.tick(time.time())
    # every request names the old version (a label): the canary is busy, v2 idle
    beat(api, canary, [1, 2], per_version({1: figures(500, 0)}))
    state.rollouts.tick(time.time())
    r = rollout(api)
    assert r["status"] == "baking" and r["waiting"] is True
    assert r["reason"].startswith("waiting for traffic: 0 of 200 requests"), r["reason"]
    assert r["judgement"]["reason"] == "waiting for traffic: 0 of 200 requests"
    assert r["history"][-1]["reason"] == r["reason"]
    state.rollouts.tick(time.time() + 2.5)  # max_wait_s later: paused, never passed
    r = rollout(api)
    assert r["status"] == "paused" and "not judged after" in r["reason"], r["reason"]
    assert api.call("POST", "/v1/models/m/rollout/promote", ADMIN)[0] == 200
    r = rollout(api)
    assert r["status"] == "validating" and r["stage"] == 1


def test_the_gateway_and_node_groups_when_servers_cannot_tell_versions(  # type: ignore[no-untyped-def]
    api, state, memstore, add_version
) -> None:
    canary = baking_canary(api, state, memstore, add_version)
    for n in NODES:  # the official binary: model-level figures only
        beat(api, n, [1, 2] if n == canary else [1], figures(400, 0))
    state.rollouts.tick(time.time())
    j = rollout(api)["judgement"]
    assert j["source"] == "node groups" and j["other_share"] is None, j
    assert j["requests"] == {"new": 400, "baseline": 1200, "needed": 200}
    assert "unknown" in j["basis"]
    # the canary's gateway saw 300 answers of v2 and 100 of v1
    gw = {**figures(400, 0), "by_version": {"2": figures(300, 0), "1": figures(100, 0)}}
    beat(api, canary, [], gw, role="gateway")
    state.rollouts.tick(time.time())
    j = rollout(api)["judgement"]
    assert j["source"] == "gateway" and j["requests"]["new"] == 300, j
    assert j["other_share"] == 0.25
    # a puller carries no telemetry
    doc = {"node_id": canary, "role": "puller", "telemetry": {"models": {}}}
    assert api.call("POST", "/v1/nodes/heartbeat", node_token(NODE, canary), doc)[0] == 400


def test_a_failure_on_a_stage_node_rolls_back(api, state, memstore, add_version) -> None:  # type: ignore[no-untyped-def]
    setup(api, state, add_version, {"canary_nodes": 2, "waves": [1.0], "bake_s": 300})
    state.rollouts.tick(time.time())
    canary = rollout(api)["nodes_on_version"][0]
    beat(api, canary, [1], failed={"2": "validation: output y is NaN"})
    state.rollouts.tick(time.time())
    r = rollout(api)
    assert r["status"] == "rolled_back" and "NaN" in r["reason"] and r["rejected"] == [2]


def test_operator_actions(api, state, memstore, add_version) -> None:  # type: ignore[no-untyped-def]
    setup(api, state, add_version, {"canary_nodes": 1, "waves": [0.5, 1.0], "bake_s": 3600})
    state.rollouts.tick(time.time())
    serve_as_told(api, memstore)
    state.rollouts.tick(time.time())
    assert rollout(api)["status"] == "baking" and rollout(api)["bake_remaining_s"] > 3500
    assert api.call("POST", "/v1/models/m/rollout/pause", ADMIN)[0] == 200
    state.rollouts.tick(time.time())
    assert rollout(api)["status"] == "paused"
    assert api.call("POST", "/v1/models/m/rollout/pause", ADMIN)[0] == 409
    assert api.call("POST", "/v1/models/m/rollout/resume", ADMIN)[0] == 200
    assert rollout(api)["status"] == "baking"
    assert api.call("POST", "/v1/models/m/rollout/promote", ADMIN)[0] == 200
    r = rollout(api)
    assert r["status"] == "validating" and len(r["nodes_on_version"]) == 2
    assert api.call("POST", "/v1/models/m/rollout/abort", ADMIN)[0] == 200
    assert rollout(api)["status"] == "rolled_back" and rollout(api)["rejected"] == [2]
    assert api.call("POST", "/v1/models/m/rollout/explode", ADMIN)[0] == 404
    assert api.call("POST", "/v1/models/m/rollout/pause", READ)[0] == 403
    assert api.call("PUT", "/v1/models/m/rollout", ADMIN, {"waves": [0.5]})[0] == 400


def test_a_pin_is_immediate_and_freezes_the_rollout(api, state, memstore, add_version) -> None:  # type: ignore[no-untyped-def]
    setup(api, state, add_version, {"canary_nodes": 1, "waves": [1.0], "bake_s": 0})
    state.rollouts.tick(time.time())
    assert api.call("POST", "/v1/models/m/pin", ADMIN, {"version": 1})[0] == 200
    assert all(served_set("m", [1, 2], policy(memstore), n).versions == {1} for n in NODES)
    before = rollout(api)
    serve_as_told(api, memstore)
    assert state.rollouts.tick(time.time()) == {}
    assert rollout(api)["history"] == before["history"]


def test_two_controllers_racing_lose_no_write(api, state, memstore, add_version, app) -> None:  # type: ignore[no-untyped-def]
    """A second master on the same bucket: both plan, one write wins per round, the other
    re-plans from it; an operator's write in between is kept."""
    from master.api import STATE_KEY
    from master.app import create_app

    other = create_app(state.settings, store=memstore, background=False)
    rival = other.extensions[STATE_KEY]
    setup(api, state, add_version, {"canary_nodes": 1, "waves": [0.5, 1.0], "bake_s": 0})
    threads = [
        threading.Thread(target=s.rollouts.tick, args=(time.time(),)) for s in (state, rival)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    r = rollout(api)
    assert r["status"] == "validating" and len(r["history"]) == 1  # started exactly once
    assert api.call("PUT", "/v1/models/m/labels/stable", ADMIN, {"version": 1})[0] == 200
    rival.rollouts.tick(time.time())
    assert dict(policy(memstore).for_model("m").labels) == {"stable": 1}
    rival.stop()
    assert json.loads(memstore.read(policy_object("models")))["models"]["m"]["rollout"]


def test_removing_the_spec_mid_rollout_sends_every_node_to_the_target(  # type: ignore[no-untyped-def]
    api, state, memstore, add_version
) -> None:
    setup(
        api, state, add_version, {"canary_nodes": 1, "waves": [1.0], "bake_s": 3600, "warmup_s": 0}
    )
    state.rollouts.tick(time.time())
    assert rollout(api)["status"] == "validating"
    assert api.call("DELETE", "/v1/models/m/rollout", ADMIN)[0] == 200
    p = policy(memstore)
    assert p.for_model("m").rollout_state is None
    assert all(served_set("m", [1, 2], p, n).versions == {2} for n in NODES)
    assert state.rollouts.tick(time.time()) == {}  # nothing left to drive
    assert api.call("POST", "/v1/models/m/rollout/pause", ADMIN)[0] == 409


def test_the_answer_carries_the_specs_defaults(api) -> None:  # type: ignore[no-untyped-def]
    """The console fills what a spec leaves out from here (one home: RolloutSpec)."""
    from modelsync.rollout import RolloutSpec

    doc = api.call("GET", "/v1/models/m/rollout", READ)[1]
    assert doc["spec"] is None and doc["spec_defaults"] == RolloutSpec().full_json()
    assert doc["spec_defaults"]["warmup_s"] is None  # derived from bake_s
    assert doc["spec_defaults"]["on_insufficient"] == "pause"


def test_a_spec_holds_back_a_version_published_before_the_controller_looks(  # type: ignore[no-untyped-def]
    api, state, memstore, add_version
) -> None:
    """Push brings a publish to every node within a second; the controller looks every
    rollout_s. The spec adopts what the fleet serves when it is set, so a version published
    right after it stays off every node until the controller stages it (found by the demo)."""
    add_version("m", 1)
    state.refresh_catalog()
    for n in NODES:
        beat(api, n, [1])
    code, doc = api.call("PUT", "/v1/models/m/rollout", ADMIN, {"canary_nodes": 1, "bake_s": 60})
    assert code == 200, doc
    held = policy(memstore).for_model("m").rollout_state
    assert (held.version, held.status) == (1, "complete")
    assert "when the spec was set" in held.history[-1]["reason"]
    add_version("m", 2)
    state.refresh_catalog()  # published; no controller pass yet
    assert all(served_set("m", [1, 2], policy(memstore), n).versions == {1} for n in NODES)
    state.rollouts.tick(time.time())
    r = rollout(api)
    assert (r["status"], r["version"], r["previous"]) == ("validating", 2, 1)
    assert len(r["nodes_on_version"]) == 1


def test_a_spec_set_before_anything_is_served_adopts_nothing(  # type: ignore[no-untyped-def]
    api, state, memstore, add_version
) -> None:
    add_version("m", 1)
    state.refresh_catalog()  # in the bucket, on no node yet: nothing to protect
    code, doc = api.call("PUT", "/v1/models/m/rollout", ADMIN, {"canary_nodes": 1})
    assert code == 200, doc
    assert policy(memstore).for_model("m").rollout_state is None


def test_a_container_models_canary_is_judged_on_its_gateways_and_rolled_back(  # type: ignore[no-untyped-def]
    api, state, memstore
) -> None:
    """A container model: AVAILABLE is what each node's gateway reports answering /ping, and
    the gateway's per-version figures (it sees every answer's version) are the judge's; a
    second version whose container fails 30 % of its requests is rolled back from its canary."""
    from modelsync.container import Descriptor, dump_descriptor
    from modelsync.layout import DESCRIPTOR_NAME

    for v in (1, 2):
        memstore.write(
            f"models/m/{v}/{DESCRIPTOR_NAME}", dump_descriptor(Descriptor(f"r.io/m:{v}"))
        )
        memstore.write(f"models/m/{v}/_READY", b"")
    state.refresh_catalog()

    def gateway(node: str, ready: list[int], load: dict | None = None) -> None:  # type: ignore[type-arg]
        doc = {
            "node_id": node,
            "role": "gateway",
            "status": {"url": "http://127.0.0.1:8080", "containers": {"m": ready}},
        }
        if load is not None:
            doc["telemetry"] = {"models": {"m": {**load, "versions": ready}}}
        code, answer = api.call("POST", "/v1/nodes/heartbeat", node_token(NODE, node), doc)
        assert code == 200, answer

    for n in NODES:
        gateway(n, [1])
    spec = {"canary_nodes": 1, "waves": [1.0], "bake_s": 300, "min_requests": 20}
    assert (
        api.call("PUT", "/v1/models/m/rollout", ADMIN, {**spec, "max_error_rate": 0.05})[0] == 200
    )
    state.rollouts.tick(time.time())
    r = rollout(api)
    (canary,) = r["nodes_on_version"]
    assert r["status"] in ("validating", "baking"), r
    p = policy(memstore)
    for n in NODES:  # each node's gateway: the versions its node runs now answer /ping
        gateway(n, sorted(served_set("m", [1, 2], p, n).versions))
    state.rollouts.tick(time.time() - 60)  # baking since a minute ago: past its warmup
    assert rollout(api)["status"] == "baking"
    gw = {**figures(70, 30), "by_version": {"2": figures(70, 30)}}  # 30 % INTERNAL, all v2
    gateway(canary, [2], gw)
    for n in NODES:
        if n != canary:
            gateway(n, [1], {**figures(100, 0), "by_version": {"1": figures(100, 0)}})
    state.rollouts.tick(time.time())
    r = rollout(api)
    assert r["status"] == "rolled_back" and r["rejected"] == [2], r
    assert "server errors 30.00% of 100 vs baseline 0.00% of 300" in r["reason"], r["reason"]
    assert all(served_set("m", [1, 2], policy(memstore), n).versions == {1} for n in NODES)
    events = api.call("GET", "/v1/events?kind=audit&model=m", READ)[1]["events"]
    back = next(e for e in events if e["event"] == "rollout_rolled_back")
    assert back["detail"]["judgement"]["source"] == "gateway", back["detail"]["judgement"]
