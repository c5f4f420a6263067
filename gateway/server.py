"""``modelsync gateway``: the node's REST front door, beside TF Serving, until SIGTERM/SIGINT.

    MODELSYNC_TFSERVING=127.0.0.1:8500 MODELSYNC_TFSERVING_REST=127.0.0.1:8501 \\
        python -m gateway.server --port 8080
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

from gateway.app import Gateway
from gateway.httpd import GatewayHTTPServer
from gateway.rest_proxy import RestProxy
from gateway.settings import GatewaySettings
from modelsync.events import EventLog
from modelsync.heartbeat import BeatSource, local_address
from modelsync.lifecycle import install_stop_handlers, wait_for_stop
from modelsync.log import configure_logging, get_logger
from modelsync.nodedaemon import start_heartbeats
from modelsync.reports import GatewayStatus
from modelsync.settings import NodeSettings
from modelsync.tfs import TFServingClient

log = get_logger("gateway")


def build(settings: GatewaySettings) -> tuple[Gateway, GatewayHTTPServer]:
    """The gateway and its HTTP server (not started) from settings."""
    tfs = TFServingClient(settings.tfserving, settings.timeout_s, settings.latest_ttl_s)
    proxy = RestProxy(settings.tfserving_rest, settings.timeout_s)
    gateway = Gateway(settings, tfs, proxy)
    node = settings.node
    server = GatewayHTTPServer(gateway, node.http_host, node.http_port, settings.max_body_bytes)
    return gateway, server


def advertised_host(node: NodeSettings) -> str:
    """The host part of the URL the master reaches this gateway at: the listening address, or,
    when it listens everywhere, this machine's address on its route to the master (a node name
    such as a Swarm node ID need not resolve), else its hostname. IPv6 in brackets."""
    host = node.http_host
    if host in ("0.0.0.0", "::", ""):
        host = (node.master_url and local_address(node.master_url)) or socket.gethostname()
    return f"[{host}]" if ":" in host else host


def beat_status(
    settings: GatewaySettings, gateway: Gateway, port: int
) -> Callable[[], GatewayStatus]:
    """What the gateway's heartbeats (role ``gateway``) tell the master: where it listens and
    what it answered lately (the request history's summary), so the console can show it and try
    a model; and which container model versions answer ``/ping`` here (their AVAILABLE)."""
    url = settings.advertise_url or f"http://{advertised_host(settings.node)}:{port}"

    def status() -> GatewayStatus:
        return {
            "url": url,
            "auth": settings.token is not None,
            "containers": gateway.containers.ready_versions(),
            **gateway.summary(),
        }

    return status


def main(port: int | None = None) -> int:
    settings = GatewaySettings.from_env().with_port(port)
    configure_logging(settings.node.log_level)
    stop = install_stop_handlers()
    gateway, server = build(settings)
    server.start()
    log.info(
        "gateway_started",
        host=settings.node.http_host,
        port=server.port,
        tfserving=settings.tfserving,
        tfserving_rest=settings.tfserving_rest,
        auth=settings.token is not None,
        history=settings.history_per_model,
        sample=settings.history_sample,
        capture=settings.capture,
    )
    status = beat_status(settings, gateway, server.port)
    start_heartbeats(
        settings.node,
        BeatSource(
            "gateway",
            status,
            EventLog(log, 100),
            stop,
            outbox=gateway.telemetry,
            on_answer=gateway.containers.update,  # where this node's container models listen
        ),
    )
    wait_for_stop(stop)
    log.info("gateway_stopping")
    server.stop()
    gateway.proxy.close()
    gateway.containers.close()
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
