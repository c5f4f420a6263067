"""The operator console: sign in once, then the pages (models, a model, nodes, events).

Pages are rendered by the master (Jinja templates in ``master/templates``); their data comes
from the JSON API through a small script (``master/static/console.js``), with the session
cookie. A read token gets a read-only console: no write buttons, and the API refuses writes.
"""

from __future__ import annotations

from urllib.parse import urlparse

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from master import auth
from master.api import state
from modelsync import __version__
from modelsync.layout import is_model_name

bp = Blueprint("console", __name__)
PAGES = {"models": "/", "nodes": "/nodes", "events": "/events", "jobs": "/jobs"}


def _safe_next(target: str | None) -> str:
    """Only a path of this master (no open redirect)."""
    if not target:
        return "/"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _page(template: str, **context: object) -> Response | str:
    who = auth.guard().session_identity()
    if who is None:
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    kind, actor = who
    return render_template(
        template,
        kind=kind,
        actor=actor,
        csrf=auth.csrf_token(),
        version=__version__,
        pages=PAGES,
        **context,
    )


@bp.get("/login")
def login() -> str:
    return render_template(
        "login.html", next=_safe_next(request.args.get("next")), error=None, version=__version__
    )


def _error_page(status: int, message: str) -> tuple[str, int]:
    """An HTML error (the message autoescaped, as every template value)."""
    return render_template(
        "error.html", status=status, message=message, version=__version__
    ), status


@bp.post("/login")
def login_post() -> Response | tuple[str, int] | tuple[str, int, dict[str, str]]:
    target = _safe_next(request.form.get("next"))
    try:
        kind = auth.guard().sign_in(request.form.get("token", ""))
    except auth.AuthError as exc:
        page = render_template("login.html", next=target, version=__version__, error=exc.message)
        return page, exc.status, {"Retry-After": str(exc.retry_after_s or 1)}
    if kind is None:
        return render_template(
            "login.html",
            next=target,
            version=__version__,
            error="That is not a read or admin token.",
        ), 401
    state().db.add_event(
        "audit",
        "console_signed_in",
        detail={"kind": kind, "actor": auth.actor(), "remote": request.remote_addr},
    )
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> Response | tuple[str, int]:
    """Sign out (the form carries the session's CSRF token, so no other site can do it)."""
    if auth.csrf_token() and request.form.get("csrf") != auth.csrf_token():
        return _error_page(
            403,
            "This sign-out form is out of date (the session changed): reload the page "
            "and sign out again.",
        )
    session.clear()
    return redirect(url_for("console.login"), code=303)


@bp.get("/")
def models_page() -> Response | str:
    settings = state().settings
    limit = settings.upload_max_bytes
    return _page(
        "models.html",
        page="models",
        bucket=settings.store.bucket,
        prefix=settings.store.prefix,
        upload_max=f"{limit / 2**30:g} GiB" if limit >= 2**30 else f"{limit / 2**20:g} MiB",
    )


@bp.get("/models/<model>")
def model_page(model: str) -> Response | str | tuple[str, int]:
    if not is_model_name(model):
        return _error_page(404, f"No model can be named {model!r}.")
    return _page("model.html", page="model", model=model)


@bp.get("/nodes")
def nodes_page() -> Response | str:
    return _page("nodes.html", page="nodes")


@bp.get("/events")
def events_page() -> Response | str:
    return _page("events.html", page="events")


@bp.get("/jobs")
def jobs_page() -> Response | str:
    return _page("jobs.html", page="jobs")
