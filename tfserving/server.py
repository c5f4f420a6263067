"""A TF-Serving-compatible model server: ``tensorflow_model_server`` / ``modelsync model-server``.

Takes the official flags that matter with the same meaning and defaults, serves the official
``PredictionService`` and ``ModelService`` over gRPC (plus gRPC health checking) and TF Serving's
REST API, and loads real SavedModels with TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

from modelsync.lifecycle import install_stop_handlers, wait_for_stop
from modelsync.log import configure_logging, get_logger
from modelsync.settings import Env, SettingsError

log = get_logger("model_server")

IGNORED_FLAGS = {  # accepted for compatibility; they tune TensorFlow internals
    "tensorflow_session_parallelism",
    "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism",
    "per_process_gpu_memory_fraction",
    "flush_filesystem_caches",
    "rest_api_num_threads",
    "rest_api_timeout_in_ms",
    "grpc_channel_arguments",
    "num_unload_threads",
    "xla_cpu_compilation_enabled",
    "enable_signature_method_name_check",
}


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tensorflow_model_server",
        allow_abbrev=False,
        description="TF-Serving-compatible model server (modelsync). Flags as the official "
        "tensorflow_model_server: --flag=value or --flag value.",
    )

    def flag(name: str, typ: Any, default: Any, help_text: str = "") -> None:
        if typ is bool:
            p.add_argument(
                f"--{name}", type=_bool, nargs="?", const=True, default=default, help=help_text
            )
        else:
            p.add_argument(f"--{name}", type=typ, default=default, help=help_text)

    flag("port", int, 8500, "gRPC port")
    flag("grpc_socket_path", str, "", "(not supported: must be empty)")
    flag("rest_api_port", int, 0, "REST port; 0 = off")
    flag("model_config_file", str, "", "ModelServerConfig text proto")
    flag("model_config_file_poll_wait_seconds", int, 0, "re-read the config file; 0 = never")
    flag("model_name", str, "default", "single-model mode: the model's name")
    flag("model_base_path", str, "", "single-model mode: the model's base path")
    flag(
        "file_system_poll_wait_seconds",
        int,
        1,
        "scan base paths for versions; 0 = once, < 0 = never",
    )
    flag(
        "num_load_threads",
        int,
        0,
        "threads that load versions; 0 = 2 (loads always run off the request path here)",
    )
    flag("max_num_load_retries", int, 5, "retries of a failed load")
    flag("load_retry_interval_micros", int, 60_000_000, "wait between load retries")
    flag("monitoring_config_file", str, "", "MonitoringConfig text proto (Prometheus)")
    # as main.cc / server.h: warmup on by default; the iterations flag counts only when > 0
    # (then each warmup record runs that many times; else once, ModelWarmupOptions' default)
    flag(
        "enable_model_warmup",
        bool,
        True,
        "replay assets.extra/tf_serving_warmup_requests "
        "during each load, before the version is AVAILABLE",
    )
    flag("num_request_iterations_for_warmup", int, 0, "times each warmup record runs; 0 = once")
    flag("enable_batching", bool, False, "merge concurrent requests into batches")
    flag("batching_parameters_file", str, "", "BatchingParameters text proto")
    flag(
        "allow_version_labels_for_unavailable_models",
        bool,
        False,
        "allow labels onto versions that are not AVAILABLE",
    )
    # as main.cc / server.cc: Predict answers each value in its typed field (kAsProtoField)
    # unless this packs them into tensor_content (kAsProtoContent)
    flag(
        "enable_serialization_as_tensor_content",
        bool,
        False,
        "answer Predict with outputs in tensor_content instead of typed fields",
    )
    flag("grpc_max_threads", int, 0, "gRPC worker threads; 0 = 4 x cores")
    flag("saved_model_tags", str, "serve", "comma-separated MetaGraph tags")
    flag("ssl_config_file", str, "", "(not supported: must be empty)")
    flag("platform_config_file", str, "", "(not supported: must be empty)")
    flag("version", bool, False, "print the version and exit")
    for name in sorted(IGNORED_FLAGS):
        p.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)
    return p


class ModelServer:
    """The running server; ``start()`` then ``wait()``/``stop()``. Used by main() and tests."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.grpc_server: Any = None
        self.http_server: Any = None
        self.manager: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._config_text: str | None = None

    def _initial_configs(self) -> list[Any]:
        from tfserving.config import (
            model_configs,
            parse_model_server_config_text,
            single_model_config,
        )

        a = self.args
        if a.model_config_file:
            self._config_text = Path(a.model_config_file).read_text()
            return model_configs(parse_model_server_config_text(self._config_text))
        return single_model_config(a.model_name, a.model_base_path)

    def start(self) -> ModelServer:
        import grpc
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        from tfserving.config import MonitoringConfig, parse_monitoring_config
        from tfserving.grpc_api import ModelService, PredictionService
        from tfserving.manager import ModelManager
        from tfserving.metrics import ServerMetrics
        from tfserving.servable import Servable

        a = self.args
        tags = tuple(t.strip() for t in a.saved_model_tags.split(",") if t.strip())
        configs = self._initial_configs()
        monitoring = MonitoringConfig()
        if a.monitoring_config_file:
            monitoring = parse_monitoring_config(Path(a.monitoring_config_file).read_text())
        batching = None
        if a.enable_batching:
            from tfserving.batching import BatchingParameters, parse_batching_parameters

            batching = (
                parse_batching_parameters(Path(a.batching_parameters_file).read_text())
                if a.batching_parameters_file
                else BatchingParameters()
            )
            log.info("batching_enabled", **batching.__dict__)
        self.manager = ModelManager(
            lambda path: Servable(path, tags, batching),
            num_load_threads=a.num_load_threads or 2,
            max_num_load_retries=a.max_num_load_retries,
            load_retry_interval_s=a.load_retry_interval_micros / 1e6,
            allow_labels_for_unavailable=a.allow_version_labels_for_unavailable_models,
            warmup_iterations=(
                max(1, a.num_request_iterations_for_warmup) if a.enable_model_warmup else 0
            ),
        )
        metrics = ServerMetrics([self.manager])
        started = time.monotonic()
        try:
            self.manager.reload(configs)
        except Exception as exc:
            log.error("initial_load_incomplete", error=str(exc))
        workers = a.grpc_max_threads or 4 * (os.cpu_count() or 1)
        self.grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", 2**31 - 1),
                ("grpc.max_send_message_length", 2**31 - 1),
                ("grpc.so_reuseport", 0),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(
                self.manager, metrics, tensor_content=a.enable_serialization_as_tensor_content
            ),
            self.grpc_server,
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelService(self.manager), self.grpc_server
        )
        self.health = health.HealthServicer()
        self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # until all is up
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        bound = self.grpc_server.add_insecure_port(f"0.0.0.0:{a.port}")
        if bound == 0:
            raise OSError(f"cannot bind gRPC port {a.port}")
        self.grpc_server.start()
        if a.rest_api_port:
            import logging

            from werkzeug.serving import make_server

            from tfserving.rest import create_app

            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            app = create_app(self.manager, metrics, monitoring)
            self.http_server = make_server("0.0.0.0", a.rest_api_port, app, threaded=True)
            self._spawn("rest", self.http_server.serve_forever)
        for service in (
            "",
            "tensorflow.serving.PredictionService",
            "tensorflow.serving.ModelService",
        ):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        if a.file_system_poll_wait_seconds > 0:
            self._spawn("fs-poll", self._fs_poll_loop)
        if a.model_config_file and a.model_config_file_poll_wait_seconds > 0:
            self._spawn("config-poll", self._config_poll_loop)
        log.info(
            "server_ready",
            grpc_port=a.port,
            rest_api_port=a.rest_api_port,
            models=len(configs),
            seconds=round(time.monotonic() - started, 3),
        )
        return self

    def _spawn(self, name: str, target: Any) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _fs_poll_loop(self) -> None:
        while not self._stop.wait(self.args.file_system_poll_wait_seconds):
            try:
                self.manager.poll_filesystem()
            except Exception:
                log.exception("fs_poll_failed")

    def _config_poll_loop(self) -> None:
        from tfserving.config import model_configs, parse_model_server_config_text
        from tfserving.errors import ServingError

        while not self._stop.wait(self.args.model_config_file_poll_wait_seconds):
            try:
                text = Path(self.args.model_config_file).read_text()
                if text == self._config_text:
                    continue
                self._config_text = text
                self.manager.reload(model_configs(parse_model_server_config_text(text)))
                log.info("config_file_reloaded", path=self.args.model_config_file)
            except (OSError, ServingError) as exc:
                log.warning("config_file_reload_failed", error=str(exc))

    def stop(self, grace_s: float = 5.0) -> None:
        self._stop.set()
        if self.grpc_server is not None:
            self.grpc_server.stop(grace_s).wait(grace_s + 1)
        if self.http_server is not None:
            self.http_server.shutdown()
        if self.manager is not None:
            self.manager.stop()
        log.info("server_stopped")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("grpc_socket_path", "ssl_config_file", "platform_config_file"):
        if getattr(args, name):
            parser.error(f"--{name} is not supported by the modelsync compatible server")
    if not args.version and not args.model_config_file and not args.model_base_path:
        parser.error("either --model_config_file or --model_base_path must be set")
    if args.model_config_file and args.model_base_path:
        parser.error("--model_config_file and --model_base_path are mutually exclusive")
    for name in ("port",):
        if not 0 < getattr(args, name) < 65536:
            parser.error(f"--{name} must be a TCP port, got {getattr(args, name)}")
    if not 0 <= args.rest_api_port < 65536:
        parser.error(f"--rest_api_port must be a TCP port or 0, got {args.rest_api_port}")
    if args.port == args.rest_api_port:
        parser.error("--port and --rest_api_port must differ")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parse_args(argv)
    if args.version:
        from modelsync import __version__

        print(f"TensorFlow ModelServer: modelsync-compatible {__version__}")
        return 0
    try:
        level = Env().log_level()
    except SettingsError as exc:
        print(f"tensorflow_model_server: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(level, json_output=True)
    stop = install_stop_handlers()
    from tfserving.errors import ServingError

    try:
        server = ModelServer(args).start()
    except (OSError, ValueError, RuntimeError, ServingError) as exc:
        print(f"tensorflow_model_server: error: {exc}", file=sys.stderr)
        return 1
    wait_for_stop(stop)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
