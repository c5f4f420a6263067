"""``modelsync <command>``: the one console entry point."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from modelsync import __version__
from modelsync.log import configure_logging
from modelsync.settings import Env, SettingsError, StoreSettings, normalize_prefix

EXIT_USAGE = 2


class CommandError(Exception):
    """A command failed with a one-line reason for the user (exit 1)."""


def store_settings(args: argparse.Namespace, env: Env | None = None) -> StoreSettings:
    env = env or Env()
    base = StoreSettings.from_env(env, bucket_required=not getattr(args, "bucket", None))
    prefix = base.prefix
    if getattr(args, "prefix", None) is not None:
        prefix = normalize_prefix(args.prefix, "--prefix")
    return dataclasses.replace(base, bucket=getattr(args, "bucket", None) or base.bucket,
                               prefix=prefix)


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bucket", help="the bucket (default: $MODELSYNC_BUCKET)")
    p.add_argument("--prefix", help="prefix inside the bucket (default: $MODELSYNC_PREFIX or "
                                    "'models')")


# --- publish -----------------------------------------------------------------------------------
def cmd_publish(args: argparse.Namespace) -> int:
    from modelsync.publish import ProgressBar, PublishError, publish
    from modelsync.store import GCSStore

    settings = store_settings(args)
    store = GCSStore(settings)
    try:
        result = publish(store, args.path, args.model, prefix=settings.prefix,
                         marker=settings.marker, version=args.version,
                         overwrite=args.overwrite, workers=args.workers,
                         progress=ProgressBar(f"{args.model}"))
    except PublishError as exc:
        raise CommandError(str(exc)) from None
    print(f"published {result.uri} ({result.files} files, {result.bytes} bytes, "
          f"{result.seconds:.2f} s)")
    return 0


# --- list --------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from modelsync.layout import SettleTracker, parse_listing
    from modelsync.store import GCSStore, StoreError

    settings = store_settings(args)
    store = GCSStore(settings)
    try:
        objects = store.list_objects(settings.prefix + "/" if settings.prefix else "")
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    listing = parse_listing(objects, settings.prefix, settings.marker)
    tracker = SettleTracker(settle_s=float("inf"))
    print(f"gs://{settings.bucket}/{settings.prefix}")
    for model, versions in sorted(listing.models.items()):
        print(f"  {model}")
        for v, rv in sorted(versions.items()):
            problem = rv.problem()
            state = ("complete" if tracker.is_complete(rv, time.time())
                     else f"incomplete ({problem or 'no marker yet'})")
            print(f"    {v:>6}  {len(rv.files):3} files {rv.bytes:>12} bytes  {state}")
    for s in listing.skipped:
        print(f"  skipped {s.path}: {s.reason}")
    return 0


# --- dev ---------------------------------------------------------------------------------------
def cmd_dev_gcs(args: argparse.Namespace) -> int:
    from modelsync.emulator import GCSEmulator
    from modelsync.store import GCSStore

    backend = "filesystem" if args.data_dir else "memory"
    with GCSEmulator(port=args.port, backend=backend, root=args.data_dir) as emu:
        if args.bucket:
            GCSStore(StoreSettings(bucket=args.bucket, emulator_host=emu.url)).ensure_bucket()
        print(f"fake-gcs-server listening on {emu.url}", flush=True)
        print(f"export STORAGE_EMULATOR_HOST={emu.url}", flush=True)
        wait_for_stop()
    return 0


def cmd_dev_make_model(args: argparse.Namespace) -> int:
    from modelsync.devmodels import make_linear_model

    try:
        out = make_linear_model(args.out, args.a, args.b, shards=args.shards,
                                pad_bytes=int(args.pad_mb * 2**20))
    except FileExistsError as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote SavedModel y = {args.a} * x + {args.b} to {out}")
    return 0


def cmd_dev_smoke(args: argparse.Namespace) -> int:
    """Publish a fresh version of a small model and wait until TF Serving serves it."""
    import tempfile

    from modelsync.client import PredictClient
    from modelsync.devmodels import make_linear_model
    from modelsync.publish import PublishError, next_version, publish
    from modelsync.store import GCSStore

    settings = store_settings(args)
    store = GCSStore(settings)
    started = time.monotonic()
    try:
        version = next_version(store, settings.prefix, args.model)
    except Exception as exc:
        raise CommandError(f"bucket not reachable: {exc}") from None
    a = version + 0.5
    with tempfile.TemporaryDirectory() as tmp:
        make_linear_model(Path(tmp) / "m", a, 1.0)
        try:
            publish(store, Path(tmp) / "m", args.model, prefix=settings.prefix,
                    marker=settings.marker, version=version)
        except PublishError as exc:
            raise CommandError(str(exc)) from None
    print(f"smoke: published {args.model} v{version} (y = {a} * x + 1)", flush=True)
    client = PredictClient(args.tfserving)
    deadline = time.monotonic() + args.timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            served, out = client.predict(args.model, {"x": [1.0]}, timeout_s=5)
            if served == version and abs(float(out["y"][0]) - (a + 1.0)) < 1e-5:
                print(f"smoke ok: {args.tfserving} serves {args.model} v{version}, y(1) = "
                      f"{float(out['y'][0])}, {time.monotonic() - started:.1f} s after "
                      "publishing", flush=True)
                return 0
            last = f"serving v{served}"
        except Exception as exc:
            last = str(exc)[:200]
        time.sleep(0.5)
    raise CommandError(f"{args.model} v{version} not served within {args.timeout} s ({last})")


# --- demo --------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from modelsync.demo import run_demo

    return run_demo(workdir=Path(args.workdir) if args.workdir else None,
                    exit_after=args.exit_after)


# --- healthcheck -------------------------------------------------------------------------------
def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 when this container's own process answers (used by the image's HEALTHCHECK)."""
    target = args.target or os.environ.get("MODELSYNC_HEALTHCHECK") or (
        f"http://127.0.0.1:{os.environ.get('MODELSYNC_HTTP_PORT', '8000')}/healthz")
    if target.startswith("grpc://"):
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            with grpc.insecure_channel(target[len("grpc://"):]) as ch:
                resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=args.timeout)
            ok = resp.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError as exc:
            raise CommandError(f"{target}: {exc.code().name}") from None
    else:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(target, timeout=args.timeout) as r:  # noqa: S310
                ok = r.status == 200
        except (urllib.error.URLError, OSError) as exc:
            raise CommandError(f"{target}: {exc}") from None
    if not ok:
        raise CommandError(f"{target}: not healthy")
    return 0


# --- helpers -----------------------------------------------------------------------------------
class _Stop:
    requested = False


def install_stop_handlers() -> type[_Stop]:
    """SIGINT/SIGTERM only set a flag; loops check it."""
    def handler(signum: int, _frame: object) -> None:
        _Stop.requested = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return _Stop


def wait_for_stop(poll_s: float = 0.2, timeout_s: float | None = None) -> None:
    stop = install_stop_handlers()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not stop.requested and (deadline is None or time.monotonic() < deadline):
        time.sleep(poll_s)


def _positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelsync", description=__doc__)
    parser.add_argument("--version", action="version", version=f"modelsync {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("MODELSYNC_LOG_LEVEL", "info"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("publish", help="upload a SavedModel (directory or .tar.gz) as a version")
    p.add_argument("path")
    p.add_argument("--model", required=True)
    p.add_argument("--version", type=_positive_int, help="default: the next free version")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument("--workers", type=_positive_int, default=8)
    _add_store_args(p)
    p.set_defaults(func=cmd_publish, json_logs=False)

    p = sub.add_parser("list", help="list models and versions in the bucket")
    _add_store_args(p)
    p.set_defaults(func=cmd_list, json_logs=False)

    p = sub.add_parser("demo", help="run the whole system on this machine (127.0.0.1)")
    p.add_argument("--workdir", help="where models and disks go (default: a temp dir)")
    p.add_argument("--exit-after", type=float, default=None,
                   help="stop by itself after this many seconds (for tests)")
    p.set_defaults(func=cmd_demo, json_logs=False)

    p = sub.add_parser("healthcheck", help="exit 0 when this container's process answers")
    p.add_argument("target", nargs="?", help="http://…/healthz or grpc://host:port "
                                             "(default: $MODELSYNC_HEALTHCHECK, else "
                                             "http://127.0.0.1:$MODELSYNC_HTTP_PORT/healthz)")
    p.add_argument("--timeout", type=float, default=3.0)
    p.set_defaults(func=cmd_healthcheck, json_logs=False)

    dev = sub.add_parser("dev", help="development helpers")
    dsub = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")
    p = dsub.add_parser("gcs", help="run fake-gcs-server on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--bucket", help="create this bucket")
    p.add_argument("--data-dir", help="keep objects on disk here (default: in memory)")
    p.set_defaults(func=cmd_dev_gcs, json_logs=False)
    p = dsub.add_parser("smoke", help="publish a new version and wait until TF Serving serves it")
    p.add_argument("--tfserving", default="127.0.0.1:8500", help="TF Serving gRPC host:port")
    p.add_argument("--master", help="(informational) the master's URL")
    p.add_argument("--model", default="smoke")
    p.add_argument("--timeout", type=float, default=180.0)
    _add_store_args(p)
    p.set_defaults(func=cmd_dev_smoke, json_logs=False)
    p = dsub.add_parser("make-model", help="write a demo SavedModel: y = a*x + b")
    p.add_argument("out")
    p.add_argument("--a", type=float, default=2.0)
    p.add_argument("--b", type=float, default=1.0)
    p.add_argument("--shards", type=_positive_int, default=1)
    p.add_argument("--pad-mb", type=float, default=0.0, help="incompressible padding, MiB")
    p.set_defaults(func=cmd_dev_make_model, json_logs=False)

    sub.add_parser("puller", add_help=False,
                   help="the remote model puller daemon (settings from MODELSYNC_*)")
    sub.add_parser("master", add_help=False,
                   help="the master: admin API and registry under gunicorn (MODELSYNC_*)")
    sub.add_parser("config-manager", add_help=False,
                   help="the config manager daemon (settings from MODELSYNC_*)")
    sub.add_parser("model-server", add_help=False,
                   help="the TF-Serving-compatible model server (flags as tensorflow_model_server)")
    return parser


def _daemon(fn: Callable[..., int], argv: Sequence[str], name: str) -> int:
    """Daemons take their settings from the environment; --port overrides the HTTP port."""
    parser = argparse.ArgumentParser(prog=f"modelsync {name}",
                                     description="settings come from MODELSYNC_* variables "
                                                 "(see the README)")
    parser.add_argument("--port", type=int, help="HTTP port (overrides MODELSYNC_HTTP_PORT)")
    args = parser.parse_args(list(argv))
    try:
        return fn(port=args.port)
    except SettingsError as exc:
        print(f"modelsync {name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _passthrough(name: str) -> Callable[[Sequence[str]], int] | None:
    """Commands whose flags are their own (they parse the rest of the command line)."""
    if name == "puller":
        from remote_model_puller.daemon import main as puller_main
        return lambda argv: _daemon(puller_main, argv, "puller")
    if name == "master":
        from master.server import main as master_main
        return lambda argv: _daemon(master_main, argv, "master")
    if name == "config-manager":
        from config_manager.daemon import main as config_manager_main
        return lambda argv: _daemon(config_manager_main, argv, "config-manager")
    if name == "model-server":
        from tfserving.server import main as model_server_main
        return model_server_main
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (command := _passthrough(argv[0])) is not None:
        return command(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, json_output=getattr(args, "json_logs", True))
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"modelsync: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"modelsync: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
