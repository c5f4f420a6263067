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
    container_versions,
    desired_services,
    diff_services,
    node_routes,
    running_versions,
    service_name,
    to_roll_back,
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
        st_ = ServiceState.from_labels(s.name, s.labels, s.replicas, running=s.replicas)
        assert st_ is not None
        out.append(st_)
    return out


def test_newest_keep_versions_run_on_every_serving_node() -> None:
    cat = catalog(churn=[1, 2, 3])
    plan = desired_services(cat, policy(churn=ModelPolicy(keep_versions=2)), descriptors(cat), 3)
    assert [(s.version, s.replicas) for s in plan.services] == [(2, 3), (3, 3)]
    ports = [s.host_port for s in plan.services]
    assert all(18000 <= p < 19000 for p in ports) and ports[0] != ports[1]
    spec = plan.services[1]
    assert spec.name == "modelsync-churn-v3"
    assert spec.image == f"127.0.0.1:5000/m:3@{DIGEST}"  # pinned to the digest
    assert spec.constraints == (SERVING_CONSTRAINT,)
    assert spec.container_port == 8080 and spec.cpus == 0.5 and dict(spec.env) == {"A": "1"}
    assert spec.healthcheck[0] == "CMD-SHELL" and "127.0.0.1:8080/ping" in spec.healthcheck[1]
    assert spec.labels[ROLE_LABEL] == "container" and spec.labels[PORT_LABEL] == str(ports[1])
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
    # both run everywhere (a name may ask for either); only the latest differs by node
    assert other["versions"] == canary["versions"] == {str(v): p for (_, v), p in running.items()}


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


def test_host_ports_are_stable_and_bounded() -> None:
    settings = ContainerSettings(port_base=20000, port_count=3)
    cat = catalog(a=[1], b=[1])
    first = desired_services(cat, Policy(), descriptors(cat), 1, settings=settings)
    ports = {s.model: s.host_port for s in first.services}
    assert set(ports.values()) <= {20000, 20001, 20002} and len(set(ports.values())) == 2
    # a new version of a: held v1 and b keep their ports, v2 takes the third
    cat2 = catalog(a=[1, 2], b=[1])
    second = desired_services(cat2, Policy(), descriptors(cat2), 1, states(first), settings)
    got = {(s.model, s.version): s.host_port for s in second.services}
    assert got[("a", 1)] == ports["a"] and got[("b", 1)] == ports["b"]
    assert got[("a", 2)] == ({20000, 20001, 20002} - set(ports.values())).pop()
    # v2 ready: v1 goes, nobody's port moves
    third = desired_services(cat2, Policy(), descriptors(cat2), 1, states(second), settings)
    assert {(s.model, s.version): s.host_port for s in third.services} == {
        ("a", 2): got[("a", 2)],
        ("b", 1): ports["b"],
    }
    assert diff_services(third, states(second)) == [Remove("modelsync-a-v1", "a", 1)]
    # no port left: said, not crashed
    cat3 = catalog(a=[1], b=[1], c=[1], d=[1])
    fourth = desired_services(cat3, Policy(), descriptors(cat3), 1, states(first), settings)
    assert len(fourth.services) == 3
    assert fourth.problems == ("d/1: not run: no free host port in 20000-20002",)


def test_new_versions_start_at_different_places_of_the_range() -> None:
    cat = catalog(**{f"m{i}": [1] for i in range(20)})
    plan = desired_services(cat, Policy(), descriptors(cat), 1)
    ports = sorted(s.host_port for s in plan.services)
    assert len(set(ports)) == 20 and ports != list(range(18000, 18020))


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
    """From any Swarm state the plan made, applying the diffs (every task passing /ping at
    once) reaches a plan that runs exactly the wanted versions within two passes (the first may
    hold ready versions until their successors are ready) and then changes nothing; host ports
    never collide, replicas follow the nodes and the stop."""
    pol = Policy(default_keep_versions=keep, models={"b": ModelPolicy(disabled=stop_b)})
    cat1, cat2 = catalog(**before), catalog(**after)
    plan1 = desired_services(cat1, pol, descriptors(cat1), nodes)
    have = {s.name: s for s in states(plan1)}
    plans = []
    for _ in range(3):
        plan = desired_services(cat2, pol, descriptors(cat2), nodes, have.values())
        plans.append(plan)
        ports = [s.host_port for s in plan.services]
        assert len(ports) == len(set(ports))
        for op in diff_services(plan, have.values()):
            if isinstance(op, Remove):
                del have[op.name]
            else:
                s = op.spec
                have[s.name] = ServiceState(
                    s.name, s.model, s.version, s.host_port, s.spec_hash, s.replicas, s.replicas
                )
    assert plans[1] == plans[2]
    assert diff_services(plans[2], have.values()) == []
    wanted = {
        (m, v) for m, vs in container_versions(cat2).items() for v in running_versions(m, vs, pol)
    }
    assert {(s.model, s.version) for s in plans[2].services} == wanted
    for s in plans[2].services:
        assert s.replicas == (0 if (s.model == "b" and stop_b) else nodes)


@pytest.mark.parametrize("nodes", [0, 1, 5])
def test_replicas_follow_the_serving_nodes(nodes: int) -> None:
    cat = catalog(churn=[1])
    plan = desired_services(cat, Policy(), descriptors(cat), nodes)
    assert plan.services[0].replicas == nodes
    assert replace(plan.services[0], replicas=7).spec_hash == plan.services[0].spec_hash


def test_a_ready_version_is_held_until_its_successor_is_ready() -> None:
    cat1, cat2 = catalog(churn=[1]), catalog(churn=[1, 2])
    first = desired_services(cat1, Policy(), descriptors(cat1), 2)
    have = states(first)
    second = desired_services(cat2, Policy(), descriptors(cat2), 2, have)
    assert [s.version for s in second.services] == [1, 2]  # v2 is not ready: v1 stays
    assert [type(o) for o in diff_services(second, have)] == [Create]
    v2 = second.services[1]
    starting = [*have, ServiceState(v2.name, "churn", 2, v2.host_port, v2.spec_hash, 2, 1)]
    assert [
        s.version for s in desired_services(cat2, Policy(), descriptors(cat2), 2, starting).services
    ] == [1, 2]
    ready = [*have, ServiceState(v2.name, "churn", 2, v2.host_port, v2.spec_hash, 2, 2)]
    third = desired_services(cat2, Policy(), descriptors(cat2), 2, ready)
    assert [s.version for s in third.services] == [2]
    assert diff_services(third, ready) == [Remove(have[0].name, "churn", 1)]
    # the gateway: v2 is the latest served, v1 routable meanwhile
    routes = node_routes({("churn", 1): 18000, ("churn", 2): 18001}, cat2, Policy(), "n1")
    assert routes["churn"]["latest"] == 2 and set(routes["churn"]["versions"]) == {"1", "2"}
    # a served version that does not run (not created yet): the newest that runs is latest
    assert node_routes({("churn", 1): 18000}, cat2, Policy(), "n1")["churn"]["latest"] == 1


def test_roll_back_only_what_stayed_unready_with_a_fallback() -> None:
    ok = ServiceState("s1", "m", 1, 1, "h", 2, 2)
    stuck = ServiceState("s2", "m", 2, 2, "h", 2, 1)
    alone = ServiceState("s3", "solo", 1, 3, "h", 1, 0)
    stopped = ServiceState("s4", "m", 3, 4, "h", 0, 0)
    since = {("m", 2): 0.0, ("solo", 1): 0.0, ("m", 3): 0.0}
    everything = [ok, stuck, alone, stopped]
    assert to_roll_back(everything, since, now=299.0, ready_s=300) == []
    assert to_roll_back(everything, since, now=300.0, ready_s=300) == [("m", 2)]


def test_a_version_replaced_while_starting_is_kept_until_something_is_ready() -> None:
    cat = catalog(churn=[1, 2, 3])
    v2_starting = ServiceState("modelsync-churn-v2", "churn", 2, 18001, "h", 1, 0)
    plan = desired_services(cat, Policy(), descriptors(cat), 1, [v2_starting])
    assert [s.version for s in plan.services] == [2, 3]  # v2 kept: nothing else could answer
    both_starting = [v2_starting, ServiceState("modelsync-churn-v1", "churn", 1, 18000, "h", 1, 0)]
    plan = desired_services(cat, Policy(), descriptors(cat), 1, both_starting)
    assert [s.version for s in plan.services] == [2, 3]  # the newest of them only
