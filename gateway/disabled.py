"""Which models this node's policy disables, so a 404 for one says why.

TF Serving answers "Servable not found" for a model that is not in its config, whether it never
existed or an operator stopped it. The gateway has no say in what is served; when it can read
the node's last good policy (``MODEL_ROOT/.modelsync/policy.json``, written by the puller and
read by the config manager: ``MODELSYNC_MODEL_ROOT``, mounted read-only), a 404 for a model the
policy disables says that it is disabled. The file is read again only when it changed (one stat
per 404: nothing on the path of an answered request).
"""

from __future__ import annotations

import threading
from pathlib import Path

from modelsync.local import LocalLayout, LocalStateError


class DisabledModels:
    def __init__(self, model_root: Path | None) -> None:
        self.layout = LocalLayout(model_root) if model_root is not None else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._disabled: frozenset[str] = frozenset()

    def disabled(self, model: str) -> bool:
        if self.layout is None:
            return False
        try:
            st = self.layout.policy_path.stat()
        except OSError:
            return False
        with self._lock:
            if (st.st_mtime_ns, st.st_size) != self._stamp:
                try:
                    saved = self.layout.read_policy()
                except LocalStateError:
                    saved = None
                policy = saved.policy if saved is not None else None
                self._disabled = frozenset(
                    m for m, mp in (policy.models.items() if policy else ()) if mp.disabled
                )
                self._stamp = (st.st_mtime_ns, st.st_size)
            return model in self._disabled


def disabled_message(model: str) -> str:
    return (
        f"model {model!r} is disabled in the policy (stopped by an operator): no node serves it "
        "until it is enabled again"
    )
