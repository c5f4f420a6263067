"""Who may do what: bearer tokens for programs, a signed session cookie for people.

- API clients send ``Authorization: Bearer <token>``: the node token (heartbeats), the read
  token (reads) or the admin token (reads and writes).
- The console signs a person in once: a form posts a token, and the master answers with a
  session cookie (HttpOnly, SameSite=Strict, signed with a key derived from the admin token,
  expiring after ``MODELSYNC_SESSION_S``) that stands for the token's kind. A session holds a
  hash of its token, so rotating a token ends the sessions made with it. Writes made with a
  session cookie must carry the session's CSRF token in ``X-CSRF-Token`` (the console's pages
  have it); a cross-site request can carry the cookie neither (SameSite) nor the header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from flask import request, session

from master.settings import MasterSettings

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_HEADER = "X-CSRF-Token"


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def session_secret(settings: MasterSettings) -> bytes:
    """The cookie-signing key: derived from the admin token, so every worker and restart of
    the master signs alike, and a new admin token ends every session."""
    return hmac.new(
        settings.admin_token.encode(), b"modelsync console session v1", hashlib.sha256
    ).digest()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _matches(token: str | None, expected: str | None) -> bool:
    return bool(token and expected and hmac.compare_digest(token.encode(), expected.encode()))


def token_kind(settings: MasterSettings, token: str | None) -> str | None:
    """ "admin", "read", "node" or None."""
    for kind, expected in (
        ("admin", settings.admin_token),
        ("read", settings.read_token),
        ("node", settings.node_token),
    ):
        if _matches(token, expected):
            return kind
    return None


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip() or None
    return None


def sign_in(settings: MasterSettings, token: str) -> str | None:
    """Open a session for a read or admin token; returns its kind (None: refused)."""
    kind = token_kind(settings, token.strip())
    if kind not in ("admin", "read"):
        return None
    session.clear()
    session.permanent = True
    session.update({"kind": kind, "tok": _digest(token.strip()), "csrf": secrets.token_urlsafe(24)})
    return kind


def session_kind(settings: MasterSettings) -> str | None:
    """The kind of the signed-in person, if the session's token is still current."""
    kind, tok = session.get("kind"), session.get("tok")
    expected = {"admin": settings.admin_token, "read": settings.read_token}.get(str(kind))
    if not expected or not isinstance(tok, str) or not hmac.compare_digest(tok, _digest(expected)):
        return None
    return str(kind)


def csrf_token() -> str:
    return str(session.get("csrf", ""))


def caller(settings: MasterSettings) -> tuple[str | None, str]:
    """(kind, how): the bearer token's kind, else the session's."""
    token = _bearer()
    if token is not None:
        return token_kind(settings, token), "bearer"
    return session_kind(settings), "session"


def need(settings: MasterSettings, kind: str) -> str:
    """The caller must be of ``kind``: node, admin, or read (read or admin). Returns how it
    authenticated ("bearer" or "session")."""
    have, how = caller(settings)
    if have is None:
        raise AuthError(
            401,
            "invalid token"
            if how == "bearer" and _bearer()
            else "missing bearer token (or sign in at /login)",
        )
    ok = have == kind or (kind == "read" and have == "admin")
    if not ok:
        raise AuthError(403, f"this route needs the {kind} token")
    if how == "session" and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, csrf_token()):
            raise AuthError(403, f"a write from the console needs its CSRF token in {CSRF_HEADER}")
    return how


def who(settings: MasterSettings) -> dict[str, Any]:
    kind, how = caller(settings)
    return {"kind": kind, "via": how}
