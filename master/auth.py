"""Who may do what: bearer tokens for programs, a signed session cookie for people.

- API clients send ``Authorization: Bearer <token>``: the read token (reads), an admin token
  (reads and writes), a node's own token (its heartbeats and its watch only;
  ``modelsync.nodeauth``), or the publish token (telling the master a version was published,
  nothing else; an admin token may do it too).
- Every admin token has a name (``MODELSYNC_ADMIN_TOKENS``: one per person; the single
  ``MODELSYNC_ADMIN_TOKEN`` is named "admin"): the caller's name is the ``actor`` of every audit
  entry its request writes (``flask.g.actor``; "read" for the read token, "publish" for the
  publish token, ``node:<id>`` for a node). A token is compared with every admin token, each in
  constant time.
- The console signs a person in once: a form posts a token, and the master answers with a
  session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS, expiring after
  ``MODELSYNC_SESSION_S``) signed with the session key — a random secret of its own
  (``MODELSYNC_SESSION_KEY``, else one made once and kept in the master's SQLite file), never
  derived from a token. The cookie holds the token's kind and a keyed fingerprint of it (an
  HMAC under the session key: rotating a token ends its sessions, and the readable cookie gives
  no offline guess at the token). Writes made with a session cookie must carry the session's
  CSRF token in ``X-CSRF-Token`` (the console's pages have it); a cross-site request can carry
  the cookie neither (SameSite) nor the header.
- Wrong tokens are counted per client address: after ``MODELSYNC_AUTH_FAILURES`` within
  ``MODELSYNC_AUTH_WINDOW_S`` (sign-in attempts and bearer tokens separately), every further
  attempt from that address is answered 429 until the window has passed, right or wrong.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable

from flask import current_app, g, request, session

from master.db import Database
from master.settings import MasterSettings
from modelsync import nodeauth

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_HEADER = "X-CSRF-Token"
GUARD_KEY = "modelsync.guard"
SESSION_KEY_META = "session_key"
MAX_TRACKED_ADDRESSES = 10_000


READ_ACTOR = "read"


class AuthError(Exception):
    def __init__(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


def session_key(settings: MasterSettings, db: Database) -> bytes:
    """The cookie-signing key: the setting, else a random key made once and kept in SQLite (so
    every worker and restart signs alike). ``master.server`` calls this before the workers
    fork, so they never race to make it."""
    if settings.session_key:
        return settings.session_key.encode()
    stored = db.get_meta(SESSION_KEY_META)
    if stored is None:
        db.set_meta(SESSION_KEY_META, secrets.token_hex(32))
        stored = db.get_meta(SESSION_KEY_META)
    assert stored is not None
    return stored.encode()


class FailureLimiter:
    """Failures per client address in a sliding window; an address past ``limit`` is blocked
    until its oldest counted failure leaves the window. Bounded memory."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._fails: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: now)."""
        now = self._clock()
        with self._lock:
            times = self._fails.get(address)
            if times is None:
                return 0.0
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if not times:
                del self._fails[address]
                return 0.0
            return times[0] + self.window_s - now if len(times) >= self.limit else 0.0

    def failed(self, address: str) -> None:
        now = self._clock()
        with self._lock:
            times = self._fails.setdefault(address, collections.deque(maxlen=self.limit))
            times.append(now)
            self._fails.move_to_end(address)
            while len(self._fails) > MAX_TRACKED_ADDRESSES:
                self._fails.popitem(last=False)


class Guard:
    """The master's checks of who calls, for one app (``current_app.extensions``)."""

    def __init__(self, settings: MasterSettings, key: bytes) -> None:
        self.settings = settings
        self.key = key
        self.logins = FailureLimiter(settings.auth_failures, settings.auth_window_s)
        self.bearers = FailureLimiter(settings.auth_failures, settings.auth_window_s)

    # --- tokens ---------------------------------------------------------------------------------
    def identify(self, token: str | None) -> tuple[str, str] | None:
        """(kind, actor) of a token: ("admin", its holder's name), ("read", "read"),
        ("publish", "publish"), ("node", "node:<id>"), or None. Compared with every admin token
        (each in constant time, none skipped), so the time taken does not tell which one
        matched."""
        if not token:
            return None
        found: tuple[str, str] | None = None
        given = token.encode()
        for name, expected in self.settings.admins().items():
            if hmac.compare_digest(given, expected.encode()) and found is None:
                found = ("admin", name)
        for kind, actor, other in (
            ("read", READ_ACTOR, self.settings.read_token),
            ("publish", "publish", self.settings.publish_token),
        ):
            if other and hmac.compare_digest(given, other.encode()) and found is None:
                found = (kind, actor)
        if found is not None:
            return found
        node = nodeauth.verified_node(self.settings.node_secret, token)
        return None if node is None else ("node", f"node:{node}")

    def token_kind(self, token: str | None) -> str | None:
        """ "admin", "read", "publish", "node" (a valid node token) or None."""
        who = self.identify(token)
        return None if who is None else who[0]

    def _token_of(self, kind: str, actor: str) -> str | None:
        if kind == "admin":
            return self.settings.admins().get(actor)
        return self.settings.read_token if kind == "read" else None

    def node_id(self) -> str | None:
        """The node the request's bearer token belongs to (None: no valid node token)."""
        token = _bearer()
        return None if token is None else nodeauth.verified_node(self.settings.node_secret, token)

    def _fingerprint(self, kind: str, actor: str, token: str) -> str:
        mac = hmac.new(self.key, f"session {kind}\n{actor}\n{token}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    # --- people ---------------------------------------------------------------------------------
    def sign_in(self, token: str) -> str | None:
        """Open a session for a read or admin token; returns its kind (None: refused).
        AuthError 429 while this address has failed too often."""
        address = _address()
        _check_limit(self.logins, address, "sign-in")
        token = token.strip()
        who = self.identify(token)
        if who is None or who[0] not in ("admin", "read"):
            self.logins.failed(address)
            return None
        kind, actor = who
        session.clear()
        session.permanent = True
        session.update(
            {
                "kind": kind,
                "who": actor,
                "tok": self._fingerprint(kind, actor, token),
                "csrf": secrets.token_urlsafe(24),
            }
        )
        g.actor = actor
        return kind

    def session_identity(self) -> tuple[str, str] | None:
        """(kind, actor) of the signed-in person, if the session's token is still current."""
        kind, actor, tok = session.get("kind"), session.get("who"), session.get("tok")
        if not isinstance(kind, str) or not isinstance(actor, str) or not isinstance(tok, str):
            return None
        expected = self._token_of(kind, actor)
        if not expected or not hmac.compare_digest(tok, self._fingerprint(kind, actor, expected)):
            return None
        return kind, actor

    def session_kind(self) -> str | None:
        who = self.session_identity()
        return None if who is None else who[0]

    # --- every route ----------------------------------------------------------------------------
    def caller(self) -> tuple[tuple[str, str] | None, str]:
        """((kind, actor), how): the bearer token's, else the session's."""
        token = _bearer()
        if token is not None:
            address = _address()
            _check_limit(self.bearers, address, "bearer token")
            who = self.identify(token)
            if who is None:
                self.bearers.failed(address)
            return who, "bearer"
        return self.session_identity(), "session"

    def need(self, kind: str) -> str:
        """The caller must be of ``kind``: node, admin, read (read or admin) or publish
        (publish or admin). Returns how it authenticated ("bearer" or "session"); ``g.actor``
        is who."""
        who, how = self.caller()
        have = None if who is None else who[0]
        if have is None:
            raise AuthError(
                401,
                "invalid token"
                if how == "bearer"
                else "missing bearer token (or sign in at /login)",
            )
        ok = have == kind or (kind in ("read", "publish") and have == "admin")
        if not ok:
            raise AuthError(403, f"this route needs the {kind} token")
        if how == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent, csrf_token()):
                raise AuthError(
                    403, f"a write from the console needs its CSRF token in {CSRF_HEADER}"
                )
        assert who is not None
        g.actor = who[1]
        return how


def _check_limit(limiter: FailureLimiter, address: str, what: str) -> None:
    wait = limiter.retry_after(address)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise AuthError(
            429, f"too many wrong tokens ({what}) from this address: retry in {seconds} s", seconds
        )


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip() or None
    return None


def _address() -> str:
    return request.remote_addr or "unknown"


def guard() -> Guard:
    g: Guard = current_app.extensions[GUARD_KEY]
    return g


def csrf_token() -> str:
    return str(session.get("csrf", ""))


def actor() -> str | None:
    """Who made the current request (set by ``Guard.need`` or a sign-in)."""
    who = g.get("actor")
    return str(who) if who else None
