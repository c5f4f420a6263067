"""An image's digest from its registry (Docker Registry HTTP API v2), for ``publish --image``.

``HEAD /v2/<name>/manifests/<tag>`` answers the manifest's digest in ``Docker-Content-Digest``.
A registry on ``localhost`` or 127.0.0.0/8 is reached over plain HTTP (as Docker does by
default), any other over HTTPS. Registries that want a token (Docker Hub, GCR, …) answer 401:
the digest is then unknown and the tag is recorded as it is — the caller says so.
"""

from __future__ import annotations

import ipaddress

import requests

from modelsync.container import DIGEST_RE, split_image

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def _scheme(registry: str) -> str:
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    if host == "localhost":
        return "http"
    try:
        return "http" if ipaddress.ip_address(host).is_loopback else "https"
    except ValueError:
        return "https"


def resolve_digest(image: str, timeout_s: float = 10.0) -> tuple[str | None, str | None]:
    """(digest, None), or (None, why it is unknown). Never raises for a valid reference."""
    registry, path, tag, digest = split_image(image)
    if digest is not None:
        return digest, None
    if registry is None:
        return None, f"{image}: no registry in the name (REGISTRY/NAME:TAG): digest unknown"
    url = f"{_scheme(registry)}://{registry}/v2/{path}/manifests/{tag}"
    try:
        resp = requests.head(url, headers={"Accept": MANIFEST_TYPES}, timeout=timeout_s)
    except requests.RequestException as exc:
        return None, f"{url}: {type(exc).__name__}: digest unknown"
    found = resp.headers.get("Docker-Content-Digest", "")
    if resp.status_code != 200 or not DIGEST_RE.match(found):
        return None, f"{url}: HTTP {resp.status_code}: digest unknown"
    return found, None
