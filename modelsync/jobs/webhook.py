"""The webhook's signature (pure), as Stripe and GitHub sign theirs: an HMAC-SHA256 of the time
and the exact body under the cluster's webhook secret, in one header.

    X-Modelsync-Signature: t=1767225600,v1=5257a869e7ec…(64 hex digits)

``v1`` is ``hex(HMAC_SHA256(secret, f"{t}." + body))``. A receiver recomputes it over the raw
body it got, compares in constant time, and refuses a ``t`` too far from its clock (a replay)."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Modelsync-Signature"
JOB_HEADER = "X-Modelsync-Job"
TOLERANCE_S = 300


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: bytes, body: bytes, header: str, now: float, tolerance_s: float = TOLERANCE_S
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its time is within tolerance."""
    fields: dict[str, str] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, value)
    stamp, sent = fields.get("t", ""), fields.get("v1", "")
    if not stamp.isdigit() or not sent or abs(now - int(stamp)) > tolerance_s:
        return False
    expected = signature(secret, body, int(stamp)).rpartition("v1=")[2]
    return hmac.compare_digest(expected, sent)
