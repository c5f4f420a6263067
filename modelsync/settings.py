"""Settings: frozen dataclasses built once from ``MODELSYNC_*`` environment variables.

Every daemon builds its settings in ``main()`` and passes them down; nothing deep inside reads
``os.environ``. A missing or bad value raises :class:`SettingsError`, which the CLI turns into one
line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from modelsync.log import LEVELS
from modelsync.nodeauth import MIN_SECRET_CHARS, SECRET_SETTING, token_problem

DEFAULT_PREFIX = "models"
DEFAULT_MARKER = "_READY"


class SettingsError(ValueError):
    """A setting is missing or malformed. The message names the variable."""


class Env:
    """Typed reads over one environment mapping (``os.environ`` by default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str | None = None, *, required: bool = False) -> str:
        value = self.raw(name)
        if value is None:
            if required or default is None:
                raise SettingsError(f"{name} is required but not set")
            return default
        return value

    def opt_text(self, name: str) -> str | None:
        return self.raw(name)

    def log_level(self) -> str:
        """``MODELSYNC_LOG_LEVEL``, the one setting every command shares."""
        level = self.text("MODELSYNC_LOG_LEVEL", "info").lower()
        if level not in LEVELS:
            raise SettingsError(
                f"MODELSYNC_LOG_LEVEL: expected one of {', '.join(LEVELS)}, got {level!r}"
            )
        return level

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            parsed = int(value, 10)
        except ValueError:
            raise SettingsError(f"{name}: expected an integer, got {value!r}") from None
        _check_range(name, parsed, minimum, maximum)
        return parsed

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            parsed = float(value)
        except ValueError:
            raise SettingsError(f"{name}: expected a number, got {value!r}") from None
        if parsed != parsed or parsed in (float("inf"), float("-inf")):
            raise SettingsError(f"{name}: expected a finite number, got {value!r}")
        _check_range(name, parsed, minimum, maximum)
        return parsed

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}: expected true or false, got {value!r}")

    def secret(self, name: str) -> str | None:
        """``NAME`` itself, or the contents of the file named by ``NAME_FILE`` (not both)."""
        direct = self.raw(name)
        path = self.raw(name + "_FILE")
        if direct is not None and path is not None:
            raise SettingsError(f"{name} and {name}_FILE are both set; set only one")
        if path is None:
            return direct
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
        if not value:
            raise SettingsError(f"{name}_FILE: {path} is empty")
        return value


def _check_range(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}: must be <= {maximum}, got {value}")


@dataclass(frozen=True)
class StoreSettings:
    """Where the models live: shared by every daemon and the publisher."""

    bucket: str
    prefix: str = DEFAULT_PREFIX
    emulator_host: str | None = None
    marker: str = DEFAULT_MARKER
    timeout_s: float = 30.0
    retry_deadline_s: float = 60.0

    @classmethod
    def from_env(cls, env: Env | None = None, *, bucket_required: bool = True) -> StoreSettings:
        env = env or Env()
        bucket = env.opt_text("MODELSYNC_BUCKET")
        if bucket is None and bucket_required:
            raise SettingsError("MODELSYNC_BUCKET is required but not set")
        prefix = normalize_prefix(env.text("MODELSYNC_PREFIX", DEFAULT_PREFIX), "MODELSYNC_PREFIX")
        marker = env.text("MODELSYNC_MARKER", DEFAULT_MARKER)
        if "/" in marker:
            raise SettingsError(f"MODELSYNC_MARKER: must be a plain object name, got {marker!r}")
        return cls(
            bucket=bucket or "",
            prefix=prefix,
            emulator_host=env.opt_text("STORAGE_EMULATOR_HOST"),
            marker=marker,
            timeout_s=env.number("MODELSYNC_GCS_TIMEOUT_S", 30.0, minimum=0.1),
            retry_deadline_s=env.number("MODELSYNC_GCS_RETRY_DEADLINE_S", 60.0, minimum=0.0),
        )


def normalize_prefix(prefix: str, what: str = "prefix") -> str:
    """``/models/`` -> ``models``; the empty prefix means the bucket root."""
    cleaned = prefix.strip().strip("/")
    if any(part in ("", ".", "..") for part in cleaned.split("/")) and cleaned != "":
        raise SettingsError(f"{what}: malformed prefix {prefix!r}")
    return cleaned


def host_port(env: Env, name: str, default: str) -> str:
    """``host:port`` (an ``http://`` prefix and a trailing ``/`` are dropped): where TF Serving
    answers, for the daemons that call it."""
    value = env.text(name, default).removeprefix("http://").rstrip("/")
    host, sep, port = value.rpartition(":")
    if not sep or not host or "/" in value or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{name}: expected host:port, got {value!r}")
    return value


def http_port(env: Env, default: int) -> int:
    return env.integer("MODELSYNC_HTTP_PORT", default, minimum=0, maximum=65535)


def model_root(env: Env) -> Path:
    """``MODELSYNC_MODEL_ROOT``: the node's model root, shared by the puller, the config manager
    and TF Serving (the gateway has none: it only talks to TF Serving)."""
    return Path(env.text("MODELSYNC_MODEL_ROOT", required=True))


def node_secret(env: Env) -> str:
    """The cluster's node secret (``MODELSYNC_NODE_SECRET`` or ``…_FILE``; the master's, and
    ``modelsync node-token``'s): every node's own token derives from it."""
    secret = env.secret(SECRET_SETTING)
    if not secret:
        raise SettingsError(f"{SECRET_SETTING} (or {SECRET_SETTING}_FILE) is required")
    if len(secret) < MIN_SECRET_CHARS:
        raise SettingsError(f"{SECRET_SETTING}: at least {MIN_SECRET_CHARS} characters")
    return secret


@dataclass(frozen=True)
class NodeSettings:
    """What every node daemon (puller, config manager, gateway) is: which node, where it listens
    and whom it tells (heartbeats). Nested in each daemon's own settings; the two with a disk
    add their ``model_root`` (:func:`model_root`)."""

    node_id: str
    http_port: int
    http_host: str = "127.0.0.1"
    master_url: str | None = None  # None: no heartbeats
    node_token: str | None = None
    heartbeat_s: float = 10.0
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: Env, *, default_port: int) -> NodeSettings:
        node_id = env.text("MODELSYNC_NODE_ID", socket.gethostname())
        node_token = env.secret("MODELSYNC_NODE_TOKEN")
        if problem := token_problem(node_token, node_id):
            raise SettingsError(problem)
        return cls(
            node_id=node_id,
            http_port=http_port(env, default_port),
            http_host=env.text("MODELSYNC_HTTP_HOST", "127.0.0.1"),
            master_url=env.opt_text("MODELSYNC_MASTER_URL"),
            node_token=node_token,
            heartbeat_s=env.number("MODELSYNC_HEARTBEAT_S", 10.0, minimum=0.5),
            log_level=env.log_level(),
        )

    def with_port(self, port: int | None) -> NodeSettings:
        """``--port`` over ``MODELSYNC_HTTP_PORT`` (None: as it is)."""
        return self if port is None else replace(self, http_port=port)
