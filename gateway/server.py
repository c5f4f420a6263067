"""``modelsync gateway``: the node's REST front door, beside TF Serving, until SIGTERM/SIGINT.

    MODELSYNC_TFSERVING=127.0.0.1:8500 MODELSYNC_TFSERVING_REST=127.0.0.1:8501 \\
        python -m gateway.server --port 8080
"""

from __future__ import annotations

import socket
import sys
import threading

from gateway.app import Gateway
from gateway.httpd import GatewayHTTPServer
from gateway.rest_proxy import RestProxy
from gateway.settings import GatewaySettings
from gateway.tfs import TFServingClient
from modelsync.heartbeat import EventBuffer, HeartbeatSender, local_address
from modelsync.lifecycle import install_stop_handlers, wait_for_stop
from modelsync.log import configure_logging, get_logger

log = get_logger("gateway")


def build(settings: GatewaySettings) -> tuple[Gateway, GatewayHTTPServer]:
    """The gateway and its HTTP server (not started) from settings."""
    tfs = TFServingClient(settings.tfserving, settings.timeout_s, settings.latest_ttl_s)
    proxy = RestProxy(settings.tfserving_rest, settings.timeout_s)
    gateway = Gateway(settings, tfs, proxy)
    server = GatewayHTTPServer(
        gateway, settings.http_host, settings.http_port, settings.max_body_bytes
    )
    return gateway, server


def start_heartbeats(
    settings: GatewaySettings, gateway: Gateway, port: int, stop: threading.Event
) -> HeartbeatSender | None:
    """Tell the master (role ``gateway``) where this gateway listens and what it answered
    lately (the request history's summary), so the console can show it and try a model."""
    if not settings.master_url:
        return None
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: the address the master sees
        host = local_address(settings.master_url) or socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    url = settings.advertise_url or f"http://{host}:{port}"

    def status() -> dict[str, object]:
        return {"url": url, "auth": settings.token is not None, **gateway.summary()}

    return HeartbeatSender(
        settings.master_url,
        settings.node_token,
        settings.node_id,
        "gateway",
        settings.heartbeat_s,
        status,
        EventBuffer(100),
        lambda: None,
        stop,
    ).start()


def main(port: int | None = None) -> int:
    settings = GatewaySettings.from_env().with_port(port)
    configure_logging(settings.log_level)
    stop = install_stop_handlers()
    gateway, server = build(settings)
    server.start()
    log.info(
        "gateway_started",
        host=settings.http_host,
        port=server.port,
        tfserving=settings.tfserving,
        tfserving_rest=settings.tfserving_rest,
        auth=settings.token is not None,
        history=settings.history_per_model,
        sample=settings.history_sample,
        capture=settings.capture,
    )
    start_heartbeats(settings, gateway, server.port, stop)
    wait_for_stop(stop)
    log.info("gateway_stopping")
    server.stop()
    gateway.proxy.close()
    gateway.tfs.close()
    log.info("gateway_stopped")
    return 0


if __name__ == "__main__":
    import argparse

    from modelsync.settings import SettingsError

    parser = argparse.ArgumentParser(prog="python -m gateway.server")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    try:
        sys.exit(main(args.port))
    except SettingsError as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        sys.exit(2)
