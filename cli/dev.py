"""``modelsync dev …``: the development helpers (GCS emulator, demo models, a smoke test)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cli.common import (
    CommandError,
    add_store_args,
    positive_int,
    reachable_store,
    store_settings,
)
from modelsync.lifecycle import install_stop_handlers, wait_for_stop
from modelsync.settings import StoreSettings


def cmd_dev_gcs(args: argparse.Namespace) -> int:
    from modelsync.dev.emulator import GCSEmulator
    from modelsync.store import GCSStore

    stop = install_stop_handlers()
    backend = "filesystem" if args.data_dir else "memory"
    with GCSEmulator(port=args.port, backend=backend, root=args.data_dir) as emu:
        if args.bucket:
            GCSStore(StoreSettings(bucket=args.bucket, emulator_host=emu.url)).ensure_bucket()
        print(f"fake-gcs-server listening on {emu.url}", flush=True)
        print(f"export STORAGE_EMULATOR_HOST={emu.url}", flush=True)
        wait_for_stop(stop)
    return 0


def cmd_dev_make_model(args: argparse.Namespace) -> int:
    """Write a demo SavedModel (TensorFlow runs in a child process: no start-up noise)."""
    from modelsync.dev.models import ModelWriteError, write_linear_models_quietly

    out = Path(args.out).resolve()
    call = {"out": str(out), "a": args.a, "b": args.b, "shards": args.shards}
    try:
        write_linear_models_quietly([{**call, "pad_bytes": int(args.pad_mb * 2**20)}])
    except ModelWriteError as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote SavedModel y = {args.a} * x + {args.b} to {out}")
    return 0


def cmd_dev_smoke(args: argparse.Namespace) -> int:
    """Publish a fresh version of a small model and wait until TF Serving serves it."""
    import tempfile

    from modelsync.client import PredictClient
    from modelsync.dev.models import make_linear_model
    from modelsync.publish import PublishError, PublishOptions, next_version, publish

    settings = store_settings(args)
    store = reachable_store(settings)
    started = time.monotonic()
    try:
        version = next_version(store, settings.prefix, args.model)
    except Exception as exc:
        raise CommandError(f"bucket not reachable: {exc}") from None
    a = version + 0.5
    with tempfile.TemporaryDirectory() as tmp:
        make_linear_model(Path(tmp) / "m", a, 1.0)
        try:
            publish(store, Path(tmp) / "m", args.model, PublishOptions(version=version))
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
                print(
                    f"smoke ok: {args.tfserving} serves {args.model} v{version}, y(1) = "
                    f"{float(out['y'][0])}, {time.monotonic() - started:.1f} s after "
                    "publishing",
                    flush=True,
                )
                if args.gateway:
                    _gateway_check(args.gateway, args.model, version, a + 1.0)
                if args.master:
                    _job_check(args.master, args.model, version, a, args.timeout)
                return 0
            last = f"serving v{served}"
        except Exception as exc:
            last = str(exc)[:200]
        time.sleep(0.5)
    raise CommandError(f"{args.model} v{version} not served within {args.timeout} s ({last})")


def _gateway_check(url: str, model: str, version: int, want: float) -> None:
    """POST /model/<model>/invocations (MLflow's "inputs" form) through the node's gateway."""
    import requests

    try:
        resp = requests.post(
            f"{url.rstrip('/')}/model/{model}/invocations",
            json={"inputs": {"x": [1.0]}},
            timeout=30,
        )
    except requests.RequestException as exc:
        raise CommandError(f"gateway {url}: {exc}") from None
    got = resp.json().get("predictions") if resp.status_code == 200 else None
    if (
        resp.headers.get("X-Model-Version") != str(version)
        or not got
        or abs(float(got[0]) - want) > 1e-5
    ):
        raise CommandError(
            f"gateway {url}: HTTP {resp.status_code} {resp.text[:200]} "
            f"(expected v{version}, y(1) = {want})"
        )
    print(
        f"smoke ok: gateway {url}/model/{model}/invocations answers y(1) = {got[0]} "
        f"from v{version}",
        flush=True,
    )


def _job_check(url: str, model: str, version: int, a: float, timeout_s: float) -> None:
    """A batch job of two rows through the master, the broker and a worker
    (MODELSYNC_ADMIN_TOKEN submits it); its result must be y = a*x + 1, from ``version``."""
    import requests

    from modelsync.settings import Env

    token = Env().secret("MODELSYNC_ADMIN_TOKEN")
    if not token:
        raise CommandError("--master needs MODELSYNC_ADMIN_TOKEN (or _FILE) to submit a job")
    headers = {"Authorization": f"Bearer {token}"}
    base = url.rstrip("/")
    body: dict[str, Any] = {"model": model, "version": version, "rows": [{"x": 1.0}, {"x": 2.0}]}
    try:
        resp = requests.post(f"{base}/v1/jobs", json=body, headers=headers, timeout=30)
        if resp.status_code != 201:
            raise CommandError(f"job submit: HTTP {resp.status_code} {resp.text[:300]}")
        job = resp.json()["id"]
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            state = requests.get(f"{base}/v1/jobs/{job}", headers=headers, timeout=30).json()[
                "state"
            ]
            if state == "done":
                break
            time.sleep(0.5)
        if state != "done":
            raise CommandError(f"job {job} not done within {timeout_s} s (state {state})")
        result = requests.get(f"{base}/v1/jobs/{job}/result", headers=headers, timeout=30)
    except requests.RequestException as exc:
        raise CommandError(f"master {url}: {exc}") from None
    lines = [json.loads(line) for line in result.text.splitlines() if line.strip()]
    want = [
        {"row": i, "version": version, "outputs": {"y": a * x + 1.0}} for i, x in enumerate((1, 2))
    ]
    if lines != want:
        raise CommandError(f"job {job}: result {lines} (expected {want})")
    print(
        f"smoke ok: job {job} through the broker and a worker: 2 rows scored by v{version}",
        flush=True,
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dev = sub.add_parser("dev", help="development helpers")
    dsub = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")
    p = dsub.add_parser("gcs", help="run fake-gcs-server on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--bucket", help="create this bucket")
    p.add_argument("--data-dir", help="keep objects on disk here (default: in memory)")
    p.set_defaults(func=cmd_dev_gcs, json_logs=False)
    p = dsub.add_parser("smoke", help="publish a new version and wait until TF Serving serves it")
    p.add_argument("--tfserving", default="127.0.0.1:8500", help="TF Serving gRPC host:port")
    p.add_argument(
        "--gateway", help="also ask the node's gateway (http://host:port) over REST, MLflow style"
    )
    p.add_argument(
        "--master",
        help="also submit a batch job there (http://host:port; MODELSYNC_ADMIN_TOKEN) and check "
        "its result",
    )
    p.add_argument("--model", default="smoke")
    p.add_argument("--timeout", type=float, default=180.0)
    add_store_args(p)
    p.set_defaults(func=cmd_dev_smoke, json_logs=False)
    p = dsub.add_parser("make-model", help="write a demo SavedModel: y = a*x + b")
    p.add_argument("out")
    p.add_argument("--a", type=float, default=2.0)
    p.add_argument("--b", type=float, default=1.0)
    p.add_argument("--shards", type=positive_int, default=1)
    p.add_argument("--pad-mb", type=float, default=0.0, help="incompressible padding, MiB")
    p.set_defaults(func=cmd_dev_make_model, json_logs=False)
