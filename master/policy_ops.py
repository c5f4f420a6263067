"""Policy writes: read-modify-write of ``_modelsync/policy.json`` with ``if_generation_match``.

A concurrent change is detected by the generation precondition and the change is applied again
on the new document; a change that cannot apply is a ``Conflict`` (409) with its reason, and a
target version that is not complete in the bucket is ``Unprocessable`` (422).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from master.docstore import Conflict as Conflict
from master.docstore import DocStore
from master.rollout_plan import ModelFleet, apply, operator_step
from modelsync.catalog import policy_object
from modelsync.policy import ModelPolicy, Policy, PolicyError, dump_policy, parse_policy, served_set
from modelsync.rollout import RolloutSpec, RolloutState
from modelsync.store import RemoteStore


class MalformedPolicy(Conflict):
    """The policy in the bucket does not parse: reads go on from the last good one, writes are
    refused until someone fixes it."""


class Unprocessable(Exception):
    pass


class PolicyStore(DocStore[Policy]):
    def __init__(
        self,
        store: RemoteStore,
        prefix: str,
        attempts: int = 8,
        bucket: str = "",
        on_generation: Callable[[int], None] | None = None,
    ) -> None:
        """``on_generation`` hears every generation of the policy read or written (0: none)."""
        super().__init__(
            store,
            policy_object(prefix),
            parse_policy,
            dump_policy,
            Policy,
            attempts,
            bucket,
            on_generation=on_generation,
        )

    def parse(self, body: bytes, generation: int) -> Policy:
        try:
            return parse_policy(body)
        except PolicyError as exc:
            raise MalformedPolicy(
                f"the policy {self.uri} (generation {generation}) is "
                f"malformed: {exc}; fix or replace it before changing it "
                "through the API"
            ) from None


def _model(policy: Policy, model: str) -> ModelPolicy:
    return policy.for_model(model)


def pin(model: str, version: int, complete: list[int]) -> Callable[[Policy], Policy]:
    if version not in complete:
        raise Unprocessable(
            f"{model} has no complete version {version} in the bucket (complete: {complete[-10:]})"
        )
    return lambda p: p.with_model(model, replace(_model(p, model), pin=version))


def unpin(model: str) -> Callable[[Policy], Policy]:
    return lambda p: p.with_model(model, replace(_model(p, model), pin=None))


def rollback(model: str, complete: list[int]) -> Callable[[Policy], Policy]:
    """Pin the newest complete version older than the one served now."""

    def change(p: Policy) -> Policy:
        served = served_set(model, complete, p)
        mp = _model(p, model)
        current = mp.pin if mp.pin in complete else max(served.versions, default=None)
        if current is None:
            raise Conflict(f"{model} serves nothing; there is nothing to roll back from")
        older = [v for v in complete if v < current]
        if not older:
            raise Conflict(f"{model} has no complete version older than {current} to roll back to")
        return p.with_model(model, replace(mp, pin=max(older)))

    return change


def set_label(
    model: str, label: str, version: int, complete: list[int]
) -> Callable[[Policy], Policy]:
    if version not in complete:
        raise Unprocessable(f"{model} has no complete version {version} in the bucket")

    def change(p: Policy) -> Policy:
        mp = _model(p, model)
        return p.with_model(model, replace(mp, labels={**mp.labels, label: version}))

    return change


def delete_label(model: str, label: str) -> Callable[[Policy], Policy]:
    def change(p: Policy) -> Policy:
        mp = _model(p, model)
        if label not in mp.labels:
            raise Conflict(f"{model} has no label {label!r}")
        return p.with_model(
            model, replace(mp, labels={k: v for k, v in mp.labels.items() if k != label})
        )

    return change


UNSET = object()  # "leave keep_versions as it is" (None means: back to the default)


def set_model_policy(
    model: str, keep_versions: int | object | None, disabled: bool | None
) -> Callable[[Policy], Policy]:
    def change(p: Policy) -> Policy:
        mp = _model(p, model)
        if keep_versions is not UNSET:
            mp = replace(mp, keep_versions=keep_versions)  # type: ignore[arg-type]
        if disabled is not None:
            mp = replace(mp, disabled=disabled)
        return p.with_model(model, mp)

    return change


def set_rollout(
    model: str, spec: RolloutSpec | None, stable: int | None = None, now: float = 0.0
) -> Callable[[Policy], Policy]:
    """The model's own rollout spec (None: back to the defaults' or all nodes at once; with no
    spec left, the state of a rollout under way goes too, so every node moves to the target).

    A spec set on a model with no rollout state adopts ``stable`` (the version every live node
    serves, ``RolloutController.served_stable``) in the same write, unless pinned: a version
    published right after the spec is then held back until the controller stages it. Left to the
    controller's next pass, a pushed publish could reach every node first and be adopted
    unjudged."""

    def change(p: Policy) -> Policy:
        mp = replace(_model(p, model), rollout=spec)
        if spec is None and p.default_rollout is None:
            mp = replace(mp, rollout_state=None)
        adopt = stable is not None and stable not in mp.rejected and mp.pin is None
        if spec is not None and mp.rollout_state is None and adopt and stable is not None:
            held = RolloutState(stable, None, "complete", 0, (), now, now)
            reason = "adopted as the stable version when the spec was set"
            mp = replace(mp, rollout_state=held.moved(now, "complete", reason))
        return p.with_model(model, mp)

    return change


def unreject(model: str, version: int) -> Callable[[Policy], Policy]:
    def change(p: Policy) -> Policy:
        mp = _model(p, model)
        if version not in mp.rejected:
            raise Conflict(f"{model} v{version} is not rejected (rejected: {sorted(mp.rejected)})")
        return p.with_model(model, replace(mp, rejected=mp.rejected - {version}))

    return change


def rollout_action(
    model: str, action: str, live: list[str], now: float
) -> Callable[[Policy], Policy]:
    """pause | resume | promote | abort the model's rollout under way."""

    def change(p: Policy) -> Policy:
        mp = _model(p, model)
        spec = p.rollout_spec(model)
        if mp.rollout_state is None or spec is None:
            raise Conflict(f"{model} has no staged rollout")
        try:
            view = ModelFleet(model, spec, mp, live=live)
            st = operator_step(action, mp.rollout_state, view, now)
        except ValueError as exc:
            raise Conflict(str(exc)) from None
        return p.with_model(model, apply(mp, st))

    return change
