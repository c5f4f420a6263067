"""Planning container models' Swarm services (pure): which versions run, as what services,
on which host ports; the diff against Swarm; and each node's routes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from master.containers.plan import (
    MAX_SERVICE_NAME,
    OWNER_LABEL,
    PORT_LABEL,
    ROLE_LABEL,
    SERVING_CONSTRAINT,
    ContainerSettings,
    Create,
    Remove,
    ServicePlan,
    ServiceState,
    Update,
    desired_services,
    diff_services,
    node_routes,
    service_name,
)
from modelsync.catalog import Catalog, CatalogVersion
from modelsync.container import Descriptor, Resources
from modelsync.layout import MODEL_NAME_RE
from modelsync.policy import ModelPolicy, Policy
from modelsync.rollout import RolloutSpec, RolloutState

DIGEST = "sha256:" + "ab" * 32


def cv(kind: str = "container", complete: bool = True) -> CatalogVersion:
    return CatalogVersion(complete, 100, 1, "fp", kind=kind)


def catalog(**models: list[int]) -> Catalog:
    return Catalog(models={m: {v: cv() for v in vs} for m, vs in models.items()})


def descriptor(version: int, port: int = 8080) -> Descriptor:
    return Descriptor(f"127.0.0.1:5000/m:{version}", DIGEST, port, {"A": "1"}, Resources(0.5, None))


def descriptors(cat: Catalog) -> dict[tuple[str, int], Descriptor | str]:
    return {(m, v): descriptor(v) for m, vs in cat.models.items() for v in vs}


def policy(**models: ModelPolicy) -> Policy:
    return Policy(models=models)


def states(plan: ServicePlan) -> list[ServiceState]:
    """What Swarm holds once the plan is applied (read back from the labels)."""
    out = []
    for s in plan.services:
        st_ = ServiceState.from_labels(s.name, s.labels, s.replicas)
        assert st_ is not None
        out.append(st_)
    return out


def test_newest_keep_versions_run_on_every_serving_node() -> None:
    cat = catalog(churn=[1, 2, 3])
    plan = desired_services(cat, policy(churn=ModelPolicy(keep_versions=2)), descriptors(cat), 3)
    assert [(s.version, s.replicas, s.host_port) for s in plan.services] == [
        (2, 3, 18000),
        (3, 3, 18001),
    ]
    spec = plan.services[1]
    assert spec.name == "modelsync-churn-v3"
    assert spec.image == f"127.0.0.1:5000/m:3@{DIGEST}"  # pinned to the digest
    assert spec.constraints == (SERVING_CONSTRAINT,)
    assert spec.container_port == 8080 and spec.cpus == 0.5 and dict(spec.env) == {"A": "1"}
    assert spec.healthcheck[0] == "CMD-SHELL" and "127.0.0.1:8080/ping" in spec.healthcheck[1]
    assert spec.labels[ROLE_LABEL] == "container" and spec.labels[PORT_LABEL] == "18001"
    assert spec.labels[OWNER_LABEL] == "modelsync"
    other = desired_services(
        cat, Policy(), descriptors(cat), 1, settings=ContainerSettings(name_prefix="blue")
    )
    assert other.services[0].labels[OWNER_LABEL] == "blue"
    assert other.services[0].name == "blue-churn-v3"


def test_pins_labels_rejected_and_savedmodels() -> None:
    cat = Catalog(
        models={
            "churn": {1: cv(), 2: cv(), 3: cv(), 4: cv(complete=False)},
            "ranker": {1: cv("savedmodel")},  # TF Serving's, never a service
        }
    )
    plans = {
        "pin": ModelPolicy(pin=1),
        "label": ModelPolicy(labels={"stable": 1}),
        "rejected": ModelPolicy(rejected=frozenset({3})),
    }
    got = {
        name: [
            s.version for s in desired_services(cat, policy(churn=mp), descriptors(cat), 1).services
        ]
        for name, mp in plans.items()
    }
    assert got == {"pin": [1], "label": [1, 3], "rejected": [2]}


def test_a_stopped_model_keeps_its_services_at_zero_replicas() -> None:
    cat = catalog(churn=[1, 2])
    running = desired_services(cat, Policy(), descriptors(cat), 2)
    stopped = desired_services(
        cat, policy(churn=ModelPolicy(disabled=True)), descriptors(cat), 2, states(running)
    )
    assert [(s.version, s.replicas) for s in stopped.services] == [(2, 0)]
    ops = diff_services(stopped, states(running))
    assert ops == [Update(stopped.services[0], "scale")]
    assert (
        node_routes({("churn", 2): 18000}, cat, policy(churn=ModelPolicy(disabled=True)), "n1")
        == {}
    )


def test_a_staged_rollout_runs_both_versions_and_routes_by_node() -> None:
    cat = catalog(churn=[1, 2])
    state = RolloutState(version=2, previous=1, status="baking", stage=0, nodes=("n1",))
    pol = policy(churn=ModelPolicy(rollout=RolloutSpec(), rollout_state=state))
    plan = desired_services(cat, pol, descriptors(cat), 2)
    assert [s.version for s in plan.services] == [1, 2]
    running = {(s.model, s.version): s.host_port for s in plan.services}
    canary = node_routes(running, cat, pol, "n1")["churn"]
    other = node_routes(running, cat, pol, "n2")["churn"]
    assert canary["latest"] == 2 and other["latest"] == 1
    assert other["versions"] == {"1": running[("churn", 1)]}


def test_a_version_without_a_descriptor_is_not_run_and_said_so() -> None:
    cat = catalog(churn=[1, 2])
    plan = desired_services(
        cat,
        policy(churn=ModelPolicy(keep_versions=2)),
        {("churn", 1): descriptor(1), ("churn", 2): "bad container.json: image: …"},
        1,
    )
    assert [s.version for s in plan.services] == [1]
    assert plan.problems == ("churn/2: not run: bad container.json: image: …",)


def test_host_ports_are_stable_reused_and_bounded() -> None:
    settings = ContainerSettings(port_base=20000, port_count=2)
    cat = catalog(a=[1], b=[1])
    first = desired_services(cat, Policy(), descriptors(cat), 1, settings=settings)
    assert {(s.model, s.host_port) for s in first.services} == {("a", 20000), ("b", 20001)}
    # a new version of a: its old one's port is freed, b keeps its own
    cat2 = catalog(a=[2], b=[1])
    second = desired_services(cat2, Policy(), descriptors(cat2), 1, states(first), settings)
    assert {(s.model, s.version, s.host_port) for s in second.services} == {
        ("a", 2, 20000),
        ("b", 1, 20001),
    }
    ops = diff_services(second, states(first))
    assert isinstance(ops[0], Remove) and ops[0].name == "modelsync-a-v1"  # removals first
    assert [type(o) for o in ops[1:]] == [Create]
    # no port left: said, not crashed
    cat3 = catalog(a=[2], b=[1], c=[1])
    third = desired_services(cat3, Policy(), descriptors(cat3), 1, states(second), settings)
    assert third.problems == ("c/1: not run: no free host port in 20000-20001",)


def test_a_changed_descriptor_is_an_update_and_a_same_one_nothing() -> None:
    cat = catalog(churn=[1])
    plan = desired_services(cat, Policy(), descriptors(cat), 1)
    assert diff_services(plan, states(plan)) == []
    moved = desired_services(
        cat, Policy(), {("churn", 1): descriptor(1, port=9000)}, 1, states(plan)
    )
    assert diff_services(moved, states(plan)) == [Update(moved.services[0], "spec")]
    assert moved.services[0].host_port == plan.services[0].host_port  # same host port


def test_services_not_in_the_plan_are_removed() -> None:
    stray = ServiceState("modelsync-old-v1", "old", 1, 18005, "x", 1)
    assert diff_services(ServicePlan(()), [stray]) == [Remove("modelsync-old-v1", "old", 1)]


def test_damaged_labels_are_left_alone() -> None:
    assert ServiceState.from_labels("x", {"com.modelsync.model": "m"}, 1) is None
    assert (
        ServiceState.from_labels(
            "x",
            {
                "com.modelsync.model": "m",
                "com.modelsync.version": "z",
                "com.modelsync.port": "1",
                "com.modelsync.spec": "s",
            },
            1,
        )
        is None
    )


@given(st.from_regex(MODEL_NAME_RE, fullmatch=True), st.integers(1, 2**63 - 1))
def test_service_names_are_swarm_names(model: str, version: int) -> None:
    name = service_name(model, version)
    assert len(name) <= MAX_SERVICE_NAME
    assert name[0].isalpha() and all(c.isalnum() or c == "-" for c in name)
    assert name.endswith(f"-v{version}")
    assert service_name(model, version) == name


def test_service_names_of_lookalike_models_differ() -> None:
    assert service_name("a.b", 1) != service_name("a_b", 1)
    long = "m" * 128
    assert service_name(long, 1) != service_name(long[:-1] + "n", 1)


versions = st.lists(st.integers(1, 30), min_size=1, max_size=8, unique=True)


@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), versions, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), versions, max_size=3),
    st.integers(1, 3),
    st.integers(0, 4),
    st.booleans(),
)
def test_applying_a_diff_converges(
    before: dict[str, list[int]],
    after: dict[str, list[int]],
    keep: int,
    nodes: int,
    stop_b: bool,
) -> None:
    """From any Swarm state the plan made, the diff leads to the new plan in one pass, and a
    second plan over the result changes nothing; host ports never collide."""
    pol = Policy(default_keep_versions=keep, models={"b": ModelPolicy(disabled=stop_b)})
    cat1, cat2 = catalog(**before), catalog(**after)
    plan1 = desired_services(cat1, pol, descriptors(cat1), nodes)
    have = {s.name: s for s in states(plan1)}
    plan2 = desired_services(cat2, pol, descriptors(cat2), nodes, have.values())
    for op in diff_services(plan2, have.values()):
        if isinstance(op, Remove):
            del have[op.name]
        else:
            s = op.spec
            have[s.name] = ServiceState(
                s.name, s.model, s.version, s.host_port, s.spec_hash, s.replicas
            )
    again = desired_services(cat2, pol, descriptors(cat2), nodes, have.values())
    assert again == plan2
    assert diff_services(again, have.values()) == []
    ports = [s.host_port for s in plan2.services]
    assert len(ports) == len(set(ports))
    for s in plan2.services:
        assert s.replicas == (0 if (s.model == "b" and stop_b) else nodes)


@pytest.mark.parametrize("nodes", [0, 1, 5])
def test_replicas_follow_the_serving_nodes(nodes: int) -> None:
    cat = catalog(churn=[1])
    plan = desired_services(cat, Policy(), descriptors(cat), nodes)
    assert plan.services[0].replicas == nodes
    assert replace(plan.services[0], replicas=7).spec_hash == plan.services[0].spec_hash
