"""The master's settings, from ``MODELSYNC_*`` environment variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from master.containers.plan import ContainerSettings
from modelsync.jobs.planner import ChunkLimits
from modelsync.jobs.queue import BrokerSettings
from modelsync.jobs.rows import MAX_ROW_BYTES
from modelsync.settings import Env, SettingsError, StoreSettings, node_secret

SESSION_SECURE = ("auto", "true", "false")
ADMIN_NAME = "admin"  # the name of MODELSYNC_ADMIN_TOKEN in the audit log
ACTOR_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
KB, MB, GB = 1 << 10, 1 << 20, 1 << 30
MIN_SESSION_KEY_CHARS = 32

# client_python's multiprocess directory (``master.server`` sets it, ``master.metrics`` reads it)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class JobsSettings:
    """Batch scoring jobs (``/v1/jobs``): off (503) without a broker."""

    broker: BrokerSettings | None = None
    ttl_s: float = 7 * 86400.0  # results (and everything of a job) kept this long after it ends
    max_upload_bytes: int = 1 << 30
    max_inline_bytes: int = 8 << 20
    max_row_bytes: int = MAX_ROW_BYTES
    chunk: ChunkLimits = field(default_factory=ChunkLimits)
    webhook_secret: str | None = None
    poll_s: float = 2.0  # the master's look at running jobs (progress, completion, webhooks)

    @classmethod
    def from_env(cls, env: Env) -> JobsSettings:
        secret = env.secret("MODELSYNC_WEBHOOK_SECRET")
        if secret is not None and len(secret) < 16:
            raise SettingsError("MODELSYNC_WEBHOOK_SECRET: must be at least 16 characters long")
        return cls(
            broker=BrokerSettings.from_env(env),
            ttl_s=env.number("MODELSYNC_JOB_TTL_S", 7 * 86400.0, minimum=60),
            max_upload_bytes=env.integer(
                "MODELSYNC_JOB_MAX_UPLOAD_BYTES", 1 << 30, minimum=1024, maximum=1 << 40
            ),
            max_inline_bytes=env.integer(
                "MODELSYNC_JOB_MAX_INLINE_BYTES", 8 << 20, minimum=1024, maximum=256 << 20
            ),
            max_row_bytes=env.integer(
                "MODELSYNC_JOB_MAX_ROW_BYTES", MAX_ROW_BYTES, minimum=64, maximum=64 << 20
            ),
            chunk=ChunkLimits(
                max_rows=env.integer("MODELSYNC_JOB_CHUNK_ROWS", 5000, minimum=1, maximum=10**6),
                max_bytes=env.integer(
                    "MODELSYNC_JOB_CHUNK_BYTES", 4 << 20, minimum=1024, maximum=256 << 20
                ),
            ),
            webhook_secret=secret,
            poll_s=env.number("MODELSYNC_JOB_POLL_S", 2.0, minimum=0.1, maximum=600),
        )


@dataclass(frozen=True)
class MasterSettings:
    store: StoreSettings
    db_path: Path
    admin_token: str  # "" when only named tokens are given
    node_secret: str  # per-node tokens derive from it (modelsync.nodeauth)
    admin_tokens: Mapping[str, str] = field(default_factory=dict)  # person -> token
    read_token: str | None = None
    publish_token: str | None = None  # publishers tell the master of a new version (only that)
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    catalog_s: float = 10.0
    settle_s: float = 30.0
    node_forget_s: float = 86400.0
    events_max_rows: int = 200_000
    events_max_age_s: float = 30 * 86400.0
    workers: int = 1
    threads: int = 16
    telemetry_retention_s: float = 7 * 86400.0
    rollout_s: float = 2.0
    gateway_token: str | None = None  # the nodes' MODELSYNC_GATEWAY_TOKEN (try-it)
    gateway_port: int = 8080  # try-it reaches a node's gateway only there, at the node's address
    tryit_timeout_s: float = 10.0
    tryit_max_bytes: int = 1 << 20
    session_s: float = 8 * 3600.0
    session_secure: str = "auto"  # auto: Secure when the request came over HTTPS
    session_key: str | None = None  # None: a random key kept in the master's SQLite file
    auth_failures: int = 10  # wrong tokens per client address and window, then 429
    auth_window_s: float = 60.0
    docker: str = "auto"  # auto | on | off
    docker_socket: str = "/var/run/docker.sock"  # the Swarm view reads it
    containers: ContainerSettings = field(default_factory=ContainerSettings)
    container_s: float = 5.0  # the container reconciler's pass (with the Docker socket)
    upload_max_bytes: int = 4 * GB  # a model uploaded through the master (0: no uploads)
    log_level: str = "info"
    run_background: bool = True
    # the telemetry's merge, writes and compaction in a process of their own (master.merger)
    telemetry_process: bool = False
    jobs: JobsSettings = field(default_factory=JobsSettings)
    watch_max: int = 1000  # watches held at once (each a thread; 0: no watch, nodes poll)
    watch_keepalive_s: float = 15.0  # a held watch gets a line at least this often

    @property
    def gunicorn_threads(self) -> int:
        """The API's threads plus one per watch slot: held watches never take the API's."""
        return self.threads + self.watch_max

    def admins(self) -> dict[str, str]:
        """Every admin token by the name the audit log gives its holder."""
        named = {ADMIN_NAME: self.admin_token} if self.admin_token else {}
        return {**named, **self.admin_tokens}

    @classmethod
    def from_env(cls, env: Env | None = None) -> MasterSettings:
        env = env or Env()
        admin = env.secret("MODELSYNC_ADMIN_TOKEN")
        read = env.secret("MODELSYNC_READ_TOKEN")
        named = admin_tokens(env.secret("MODELSYNC_ADMIN_TOKENS"))
        publish = env.secret("MODELSYNC_PUBLISH_TOKEN")
        if not admin and not named:
            raise SettingsError(
                "MODELSYNC_ADMIN_TOKEN or MODELSYNC_ADMIN_TOKENS (or their _FILE) is required"
            )
        if admin and ADMIN_NAME in named:
            raise SettingsError(
                f"MODELSYNC_ADMIN_TOKENS: the name {ADMIN_NAME!r} is MODELSYNC_ADMIN_TOKEN's"
            )
        if env.secret("MODELSYNC_NODE_TOKEN"):
            raise SettingsError(
                "MODELSYNC_NODE_TOKEN: the master takes no shared node token; set "
                "MODELSYNC_NODE_SECRET and give each node its own token "
                "(modelsync node-token NODE_ID)"
            )
        secret = node_secret(env)
        tokens = [t for t in (admin, secret, read, publish, *named.values()) if t]
        if len(set(tokens)) != len(tokens):
            raise SettingsError(
                "the admin tokens, the read and publish tokens and the node secret must all differ"
            )
        if any(len(t) < 16 for t in tokens):
            raise SettingsError("tokens must be at least 16 characters long")
        session_key = env.secret("MODELSYNC_SESSION_KEY")
        if session_key is not None and len(session_key) < MIN_SESSION_KEY_CHARS:
            raise SettingsError(
                f"MODELSYNC_SESSION_KEY: at least {MIN_SESSION_KEY_CHARS} characters "
                "(e.g. openssl rand -hex 32)"
            )
        if session_key is not None and session_key in tokens:
            raise SettingsError("MODELSYNC_SESSION_KEY must differ from every token")
        secure = env.text("MODELSYNC_SESSION_SECURE", "auto").lower()
        secure = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false"}.get(
            secure, secure
        )
        if secure not in SESSION_SECURE:
            raise SettingsError(
                f"MODELSYNC_SESSION_SECURE: expected auto, true or false, got {secure!r}"
            )
        docker = env.text("MODELSYNC_DOCKER", "auto")
        if docker not in ("auto", "on", "off"):
            raise SettingsError(f"MODELSYNC_DOCKER: expected auto, on or off, got {docker!r}")
        catalog_s = env.number(
            "MODELSYNC_CATALOG_S", env.number("MODELSYNC_POLL_S", 10.0, minimum=0.1), minimum=0.1
        )
        return cls(
            store=StoreSettings.from_env(env),
            db_path=Path(env.text("MODELSYNC_DB", "/var/lib/modelsync/master.sqlite3")),
            admin_token=admin or "",
            admin_tokens=named,
            node_secret=secret,
            read_token=read,
            publish_token=publish,
            http_host=env.text("MODELSYNC_HTTP_HOST", "0.0.0.0"),
            http_port=env.integer("MODELSYNC_HTTP_PORT", 8000, minimum=0, maximum=65535),
            catalog_s=catalog_s,
            settle_s=env.number("MODELSYNC_SETTLE_S", 30.0, minimum=0),
            node_forget_s=env.number("MODELSYNC_NODE_FORGET_S", 86400.0, minimum=1),
            events_max_rows=env.integer("MODELSYNC_EVENTS_MAX_ROWS", 200_000, minimum=100),
            events_max_age_s=env.number("MODELSYNC_EVENTS_MAX_AGE_S", 30 * 86400.0, minimum=60),
            workers=env.integer("MODELSYNC_MASTER_WORKERS", 1, minimum=1, maximum=64),
            threads=env.integer("MODELSYNC_MASTER_THREADS", 16, minimum=1, maximum=256),
            telemetry_retention_s=env.number(
                "MODELSYNC_TELEMETRY_RETENTION_S", 7 * 86400.0, minimum=3600
            ),
            telemetry_process=env.flag("MODELSYNC_TELEMETRY_PROCESS", True),
            gateway_token=env.secret("MODELSYNC_GATEWAY_TOKEN"),
            gateway_port=env.integer("MODELSYNC_GATEWAY_PORT", 8080, minimum=1, maximum=65535),
            tryit_timeout_s=env.number("MODELSYNC_TRYIT_TIMEOUT_S", 10.0, minimum=0.5, maximum=120),
            tryit_max_bytes=env.integer(
                "MODELSYNC_TRYIT_MAX_BYTES", 1 << 20, minimum=1024, maximum=64 << 20
            ),
            rollout_s=env.number("MODELSYNC_ROLLOUT_S", 2.0, minimum=0.1, maximum=600),
            session_s=env.number("MODELSYNC_SESSION_S", 8 * 3600.0, minimum=60),
            session_secure=secure,
            session_key=session_key,
            auth_failures=env.integer("MODELSYNC_AUTH_FAILURES", 10, minimum=1, maximum=100_000),
            auth_window_s=env.number("MODELSYNC_AUTH_WINDOW_S", 60.0, minimum=1, maximum=86400),
            docker=docker,
            docker_socket=env.text("MODELSYNC_DOCKER_SOCKET", "/var/run/docker.sock"),
            containers=container_settings(env),
            container_s=env.number("MODELSYNC_CONTAINER_S", 5.0, minimum=0.1, maximum=600),
            upload_max_bytes=env.integer("MODELSYNC_UPLOAD_MAX_BYTES", 4 * GB, minimum=0),
            log_level=env.log_level(),
            jobs=JobsSettings.from_env(env),
            watch_max=env.integer("MODELSYNC_WATCH_MAX", 1000, minimum=0, maximum=10_000),
            watch_keepalive_s=env.number(
                "MODELSYNC_WATCH_KEEPALIVE_S", 15.0, minimum=1, maximum=120
            ),
        )


def container_settings(env: Env) -> ContainerSettings:
    """How container models run as Swarm services (``master.containers``)."""
    base = env.integer("MODELSYNC_CONTAINER_PORT_BASE", 18000, minimum=1024, maximum=65535)
    count = env.integer("MODELSYNC_CONTAINER_PORT_COUNT", 1000, minimum=1, maximum=60000)
    if base + count - 1 > 65535:
        raise SettingsError(
            f"MODELSYNC_CONTAINER_PORT_BASE + MODELSYNC_CONTAINER_PORT_COUNT: {base}+{count} "
            "goes past port 65535"
        )
    prefix = env.text("MODELSYNC_CONTAINER_PREFIX", "modelsync")
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", prefix):
        raise SettingsError(
            "MODELSYNC_CONTAINER_PREFIX: expected 1-20 of [a-z0-9-], a letter first, "
            f"got {prefix!r}"
        )
    return ContainerSettings(
        port_base=base,
        port_count=count,
        name_prefix=prefix,
        health_start_s=env.number(
            "MODELSYNC_CONTAINER_HEALTH_START_S", 60.0, minimum=0, maximum=3600
        ),
        ready_s=env.number("MODELSYNC_CONTAINER_READY_S", 300.0, minimum=1, maximum=86400),
        cooling_s=env.number("MODELSYNC_CONTAINER_COOLING_S", 120.0, minimum=0, maximum=86400),
    )


def admin_tokens(text: str | None) -> dict[str, str]:
    """``MODELSYNC_ADMIN_TOKENS``: ``name:token`` pairs, separated by commas or newlines (a file
    with one person a line, ``MODELSYNC_ADMIN_TOKENS_FILE``; ``#`` starts a comment line)."""
    out: dict[str, str] = {}
    for i, raw in enumerate(re.split(r"[,\n]", text or "")):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        name, sep, token = item.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not ACTOR_RE.match(name) or not token:
            raise SettingsError(  # never echo the entry: it may be a token
                f"MODELSYNC_ADMIN_TOKENS: entry {i + 1} is not name:token (a name is 1-64 of "
                "[A-Za-z0-9_.@-])"
            )
        if name in out:
            raise SettingsError(f"MODELSYNC_ADMIN_TOKENS: {name!r} is named twice")
        out[name] = token
    return out
