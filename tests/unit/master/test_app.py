"""The master's routes through Flask's test client, on an in-memory bucket."""

from __future__ import annotations

import json

from modelsync.catalog import policy_object
from modelsync.nodeauth import node_token
from modelsync.policy import parse_policy

ADMIN, READ, NODE = "admin-token-0123456789", "read-token-0123456789", "node-token-0123456789"


def beat(api, node_id: str, role: str, status: dict) -> None:  # type: ignore[no-untyped-def]
    code, doc = api.call(
        "POST",
        "/v1/nodes/heartbeat",
        node_token(NODE, node_id),
        {"node_id": node_id, "role": role, "status": status},
    )
    assert code == 200, doc


def test_auth_rules(api) -> None:  # type: ignore[no-untyped-def]
    assert api.call("GET", "/v1/models", None)[0] == 401
    assert api.call("GET", "/v1/models", "not-a-token-at-all-xx")[0] == 401
    assert api.call("GET", "/v1/models", node_token(NODE, "n"))[0] == 403
    assert api.call("GET", "/v1/models", READ)[0] == 200
    assert api.call("POST", "/v1/sync", READ)[0] == 403
    assert (
        api.call("POST", "/v1/nodes/heartbeat", ADMIN, {"node_id": "n", "role": "puller"})[0] == 403
    )
    assert api.call("GET", "/healthz", None)[0] == 200


def test_pin_writes_the_policy_with_a_precondition(api, memstore, state, add_version) -> None:  # type: ignore[no-untyped-def]
    add_version("ranker", 1)
    add_version("ranker", 2)
    state.refresh_catalog()
    code, doc = api.call("POST", "/v1/models/ranker/pin", body={"version": 1})
    assert code == 200 and doc["policy"]["pin"] == 1 and doc["changed"]
    policy = parse_policy(memstore.read(policy_object("models")))
    assert policy.for_model("ranker").pin == 1
    assert api.call("POST", "/v1/models/ranker/pin", body={"version": 9})[0] == 422
    assert api.call("POST", "/v1/models/ranker/pin", body={"version": "1"})[0] == 400
    code, doc = api.call("GET", "/v1/models/ranker", READ)
    assert doc["target_versions"] == [1] and doc["policy"]["pin"] == 1
    audit = api.call("GET", "/v1/events?kind=audit", READ)[1]["events"]
    assert [e["event"] for e in audit] == ["model_pinned"]


def test_rollback_label_and_policy_writes(api, memstore, state, add_version) -> None:  # type: ignore[no-untyped-def]
    for v in (1, 2, 3):
        add_version("m", v)
    state.refresh_catalog()
    code, doc = api.call("POST", "/v1/models/m/rollback")
    assert code == 200 and doc["policy"]["pin"] == 2
    assert api.call("PUT", "/v1/models/m/labels/stable", body={"version": 3})[0] == 200
    assert api.call("PUT", "/v1/models/m/labels/9bad", body={"version": 3})[0] == 400
    assert api.call("DELETE", "/v1/models/m/labels/nope")[0] == 409
    assert api.call("PUT", "/v1/models/m/policy", body={"keep_versions": 0})[0] == 400
    assert (
        api.call("PUT", "/v1/models/m/policy", body={"keep_versions": 2, "disabled": True})[0]
        == 200
    )
    assert api.call("PUT", "/v1/models/m/policy", body={"oops": 1})[0] == 400
    mp = parse_policy(memstore.read(policy_object("models"))).for_model("m")
    assert (mp.pin, dict(mp.labels), mp.keep_versions, mp.disabled) == (2, {"stable": 3}, 2, True)


def test_malformed_policy_reads_go_on_writes_refused(api, memstore, state, add_version) -> None:  # type: ignore[no-untyped-def]
    add_version("m", 1)
    add_version("m", 2)
    state.refresh_catalog()
    assert api.call("POST", "/v1/models/m/pin", body={"version": 1})[0] == 200
    memstore.write(
        policy_object("models"), json.dumps({"models": {"m": {"keep_version": 2}}}).encode()
    )
    state.policy_written()  # no cache between the hand edit and the reads below
    code, doc = api.call("POST", "/v1/models/m/pin", body={"version": 2})
    assert code == 409 and "malformed" in doc["error"]
    assert "gs://b/models/_modelsync/policy.json" in doc["error"]
    for path in ("/v1/cluster", "/v1/models", "/v1/models/m"):
        code, doc = api.call("GET", path, READ)
        assert code == 200, (path, doc)
        assert any("malformed" in p and "keep_version" in p for p in doc["problems"]), path
    # the last good policy stays in force: v1 pinned
    assert api.call("GET", "/v1/models/m", READ)[1]["target_versions"] == [1]
    assert api.call("GET", "/v1/cluster", READ)[1]["models"]["m"]["target_versions"] == [1]
    memstore.write(policy_object("models"), b'{"schema": 1}')  # fixed by hand
    state.policy_written()
    doc = api.call("GET", "/v1/cluster", READ)[1]
    assert doc["problems"] == [] and doc["models"]["m"]["target_versions"] == [2]


def test_cluster_converges_on_heartbeats(api, memstore, state, add_version) -> None:  # type: ignore[no-untyped-def]
    add_version("m", 1)
    state.refresh_catalog()
    doc = api.call("GET", "/v1/cluster", READ)[1]
    assert doc["models"]["m"]["converged"] is False
    beat(api, "n1", "puller", {"installed": {"m": [1]}})
    beat(
        api,
        "n1",
        "config_manager",
        {"available": {"m": [1]}, "available_since": {"m": {"1": 1234.5}}},
    )
    beat(api, "n2", "puller", {"installed": {"m": [1]}})
    doc = api.call("GET", "/v1/cluster", READ)[1]
    assert doc["models"]["m"]["converged"] is True
    assert doc["models"]["m"]["since"] == 1234.5  # when the node says it got there
    assert doc["models"]["m"]["versions"] == {"1": {"on_disk": 2, "available": 1}}
    # one node is its node id, its daemons are roles under it
    assert doc["nodes"] == {"total": 2, "live": 2, "degraded": 0, "stale": 0}
    nodes = api.call("GET", "/v1/nodes", READ)[1]["nodes"]
    assert [(n["node_id"], sorted(n["roles"])) for n in nodes] == [
        ("n1", ["config_manager", "puller"]),
        ("n2", ["puller"]),
    ]
    assert nodes[0]["roles"]["puller"]["state"] == "live"
    # a second node serving: converged once both have it, since the later one got it
    beat(api, "n2", "config_manager", {"available": {"m": []}})
    assert api.call("GET", "/v1/cluster", READ)[1]["models"]["m"]["converged"] is False
    beat(
        api,
        "n2",
        "config_manager",
        {"available": {"m": [1]}, "available_since": {"m": {"1": 2000.0}}},
    )
    m = api.call("GET", "/v1/cluster", READ)[1]["models"]["m"]
    assert m["converged"] and m["since"] == 2000.0
    view = api.call("GET", "/v1/models/m", READ)[1]
    assert view["versions"]["1"]["available"] == ["n1", "n2"]
    assert view["converged_since"] == 2000.0


def test_sync_request_reaches_each_daemon_once(api) -> None:  # type: ignore[no-untyped-def]
    beat(api, "n1", "puller", {})
    assert api.call("POST", "/v1/sync")[0] == 200
    n1 = node_token(NODE, "n1")
    first = api.call("POST", "/v1/nodes/heartbeat", n1, {"node_id": "n1", "role": "puller"})
    again = api.call("POST", "/v1/nodes/heartbeat", n1, {"node_id": "n1", "role": "puller"})
    assert first[1]["sync"] is True and again[1]["sync"] is False


def test_bad_input_is_a_clear_4xx(api) -> None:  # type: ignore[no-untyped-def]
    code, doc = api.call("POST", "/v1/models/m/pin", data="{nope", content_type="application/json")
    assert code == 400 and "JSON" in doc["error"]
    assert api.call("GET", "/v1/models/bad name!", READ)[0] in (400, 404)
    assert api.call("GET", "/v1/events?limit=0", READ)[0] == 400
    code, doc = api.call(
        "POST", "/v1/nodes/heartbeat", node_token(NODE, "n"), {"node_id": "-x", "role": "p"}
    )
    assert code == 400


def test_a_versions_signature_and_an_example_body(api, memstore, model_factory) -> None:  # type: ignore[no-untyped-def]
    """Read from the version's saved_model.pb in the bucket; a tarball version has none to read
    (200, signatures null, the reason); a version not in the bucket is a 404."""
    pb = (model_factory(2.0) / "saved_model.pb").read_bytes()
    memstore.write("models/m/1/saved_model.pb", pb)
    memstore.write("models/m/2/model.tar.gz", b"not read")
    code, doc = api.call("GET", "/v1/models/m/versions/1/signature", READ)
    assert code == 200, doc
    sig = doc["signatures"]["serving_default"]
    assert sig["inputs"]["x"]["dtype"] == "float32"
    assert sig["example"] == {"inputs": {"x": [0.0]}}
    code, doc = api.call("GET", "/v1/models/m/versions/2/signature", READ)
    assert code == 200 and doc["signatures"] is None and "model.tar.gz" in doc["reason"]
    assert api.call("GET", "/v1/models/m/versions/3/signature", READ)[0] == 404
