"""What TF Serving should serve, and what may leave the disk (pure: no I/O).

- ``desired_models``: per model, the versions to serve — the policy's served set computed over
  the versions installed on this node, leaving out versions that failed to load with their
  current content — and the labels.
- ``stage_labels``: TF Serving accepts a label only onto an AVAILABLE version, so a label whose
  target is still loading is held back for a second reload (two steps: serve both, then move).
- ``render_text``: the ModelServerConfig text proto with ``specific`` version policies.
- ``versions_to_prune``: versions on disk that are no longer served and that TF Serving reports
  END (or whose model left the config), beyond ``keep_on_disk`` rollback copies; never the
  only AVAILABLE version of a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from config_manager.serving import AVAILABLE, END
from modelsync.policy import Policy, fetch_set, served_set


@dataclass(frozen=True)
class DesiredModel:
    name: str
    base_path: str
    versions: tuple[int, ...]
    labels: Mapping[str, int] = field(default_factory=dict)


def desired_models(
    installed: Mapping[str, Set[int]],
    failed: Mapping[str, Set[int]],
    policy: Policy,
    model_root: str,
    node_id: str | None = None,
) -> dict[str, DesiredModel]:
    out: dict[str, DesiredModel] = {}
    for model in sorted(installed):
        usable = set(installed[model]) - set(failed.get(model, ()))
        served = served_set(model, usable, policy, node_id)
        if not served.versions:
            continue
        out[model] = DesiredModel(
            model,
            f"{model_root.rstrip('/')}/{model}",
            tuple(sorted(served.versions)),
            dict(served.labels),
        )
    return out


def stage_labels(
    desired: Mapping[str, DesiredModel], available: Mapping[str, Set[int]]
) -> tuple[dict[str, DesiredModel], bool]:
    """Labels only onto versions TF Serving reports AVAILABLE. Returns (staged, held_back)."""
    staged: dict[str, DesiredModel] = {}
    held = False
    for name, dm in desired.items():
        ok = {k: v for k, v in dm.labels.items() if v in available.get(name, set())}
        held = held or ok != dict(dm.labels)
        staged[name] = DesiredModel(dm.name, dm.base_path, dm.versions, ok)
    return staged, held


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_text(models: Mapping[str, DesiredModel]) -> str:
    lines = ["model_config_list {"]
    for name in sorted(models):
        dm = models[name]
        lines += [
            "  config {",
            f"    name: {_quote(dm.name)}",
            f"    base_path: {_quote(dm.base_path)}",
            '    model_platform: "tensorflow"',
            "    model_version_policy {",
            "      specific {",
        ]
        lines += [f"        versions: {v}" for v in dm.versions]
        lines += ["      }", "    }"]
        for label, v in sorted(dm.labels.items()):
            lines += [
                "    version_labels {",
                f"      key: {_quote(label)}",
                f"      value: {v}",
                "    }",
            ]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def policy_wanted(
    installed: Mapping[str, Set[int]], policy: Policy, node_id: str | None = None
) -> dict[str, set[int]]:
    """The versions the policy has this node keep among those installed, failed ones included:
    what the puller keeps on disk. Pruning one of them would only make the puller fetch it
    again."""
    return {m: set(fetch_set(m, vs, policy, node_id)) for m, vs in installed.items()}


def versions_to_prune(
    on_disk: Mapping[str, Set[int]],
    aspired: Mapping[str, Set[int]],
    states: Mapping[str, Mapping[int, str]],
    failed: Mapping[str, Set[int]],
    keep_on_disk: int,
    protected: Mapping[str, Set[int]] | None = None,
) -> list[tuple[str, int]]:
    """``states``: TF Serving's state name of each version it knows (models it was asked about).

    A version is pruned when it is not aspired nor ``protected`` (wanted by the policy, e.g. a
    newest version that failed to load), TF Serving reports it END (or does not know it, or its
    model left the config), and it is not among the ``keep_on_disk`` newest loadable rollback
    copies. A model keeps at least one version that TF Serving reports AVAILABLE.
    """
    out: list[tuple[str, int]] = []
    for model, versions in sorted(on_disk.items()):
        want = set(aspired.get(model, ())) | set((protected or {}).get(model, ()))
        st = states.get(model, {})
        bad = set(failed.get(model, ()))
        candidates = sorted((v for v in versions if v not in want), reverse=True)
        rollback = [v for v in candidates if v not in bad][: max(0, keep_on_disk)]
        available = {v for v, s in st.items() if s == AVAILABLE}
        for v in candidates:
            if v in rollback:
                continue
            if st.get(v, END) != END:
                continue  # still loaded, loading or unloading: TF Serving may be serving it
            if available and available <= {v}:
                continue  # never the only AVAILABLE version
            out.append((model, v))
    return out
