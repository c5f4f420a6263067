"""What every answer of the master carries against a hostile page or input: a strict
Content-Security-Policy (scripts and styles only from the master's own files, no inline script,
no framing), ``nosniff``, JSON whose ``<``, ``>`` and ``&`` are escaped (a JSON answer read as
HTML shows no markup), and the session cookie's flags (Secure over HTTPS)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface

from master import auth
from master.db import Database
from master.settings import MasterSettings
from modelsync.safejson import NOSNIFF, html_safe

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    NOSNIFF[0]: NOSNIFF[1],
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class EscapingJSONProvider(DefaultJSONProvider):
    """Flask's JSON with ``<``, ``>`` and ``&`` as ``\\u`` escapes: the same document to a JSON
    parser (they can only occur inside strings), no markup to anything that sniffs HTML."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return html_safe(super().dumps(obj, **kwargs))


class SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure as ``MODELSYNC_SESSION_SECURE`` says; ``auto``: when the
    request reached the master over HTTPS, or through a proxy that says it did
    (``X-Forwarded-Proto: https``; a client forging it only withholds its own cookie)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def get_cookie_secure(self, app: Flask) -> bool:
        if self.mode != "auto":
            return self.mode == "true"
        return request.is_secure or request.headers.get("X-Forwarded-Proto", "") == "https"


def secured(resp: Response) -> Response:
    for name, value in HEADERS.items():
        resp.headers.setdefault(name, value)
    if resp.mimetype == "text/html":
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def install(app: Flask, settings: MasterSettings, db: Database) -> None:
    """The headers on every answer, the escaping JSON, the session cookie and the guard."""
    key = auth.session_key(settings, db)
    app.json = EscapingJSONProvider(app)
    app.secret_key = key
    app.session_interface = SessionInterface(settings.session_secure)
    app.config.update(
        SESSION_COOKIE_NAME="modelsync_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_s),
    )
    app.extensions[auth.GUARD_KEY] = auth.Guard(settings, key)
    app.after_request(secured)
