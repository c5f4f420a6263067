"""A publisher tells the master that a version is in the bucket (after its marker, written
last): ``POST /v1/catalog/versions`` with the publish token, and the master puts the version
into the catalog at once instead of at its next ``catalog_s`` — which wakes every node's watch.

Optional and harmless to miss: with no master set, or the master down, the catalog takes the
version at its next listing. The request carries only the name: the master reads the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from modelsync.settings import Env, SettingsError

NOTIFY_PATH = "/v1/catalog/versions"
TIMEOUT_S = 10.0


class NotifyError(Exception):
    """The master was not told (the message is one line)."""


@dataclass(frozen=True)
class MasterTarget:
    """Where a publisher tells the master: ``MODELSYNC_MASTER_URL`` and
    ``MODELSYNC_PUBLISH_TOKEN`` (or ``…_FILE``); None when the URL is not set."""

    url: str
    token: str

    @classmethod
    def from_env(cls, env: Env | None = None) -> MasterTarget | None:
        env = env or Env()
        url = env.opt_text("MODELSYNC_MASTER_URL")
        token = env.secret("MODELSYNC_PUBLISH_TOKEN")
        if not url:
            return None
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"MODELSYNC_MASTER_URL: expected http(s)://HOST:PORT, got {url!r}")
        if not token:
            raise SettingsError(
                "MODELSYNC_MASTER_URL is set but MODELSYNC_PUBLISH_TOKEN (or "
                "MODELSYNC_PUBLISH_TOKEN_FILE) is not: the master takes a publisher's word "
                "only with the publish token"
            )
        return cls(url.rstrip("/"), token)


def tell_master(
    target: MasterTarget, model: str, version: int, timeout_s: float = TIMEOUT_S
) -> dict[str, Any]:
    """The master's answer (``complete``, ``catalog_written``, ``catalog_generation``)."""
    try:
        resp = requests.post(
            target.url + NOTIFY_PATH,
            json={"model": model, "version": version},
            headers={"Authorization": f"Bearer {target.token}"},
            timeout=timeout_s,
        )
    except requests.RequestException as exc:
        raise NotifyError(f"{target.url}: {exc}") from None
    if resp.status_code != 200:
        raise NotifyError(f"{target.url}: HTTP {resp.status_code}: {resp.text[:200].strip()}")
    try:
        doc: dict[str, Any] = resp.json()
    except ValueError:
        raise NotifyError(f"{target.url}: the answer is not JSON") from None
    return doc
