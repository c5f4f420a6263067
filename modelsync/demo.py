"""``make demo``: the whole system on one machine, everything on 127.0.0.1.

Today it starts the GCS emulator, creates the bucket, writes and publishes the demo models and
lists them; it then keeps the emulator up until Ctrl-C.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from modelsync.emulator import GCSEmulator
from modelsync.settings import StoreSettings

DEMO_BUCKET = "modelsync-demo"
DEMO_MODELS = (  # (model, version, a, b, shards)
    ("demo", 1, 2.0, 1.0, 1),
    ("demo", 2, 3.0, 1.0, 1),
    ("wide", 1, 0.5, -1.0, 4),
)


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def run_demo(workdir: Path | None = None, exit_after: float | None = None) -> int:
    from modelsync.cli import cmd_list, install_stop_handlers, wait_for_stop
    from modelsync.devmodels import make_linear_model
    from modelsync.publish import publish
    from modelsync.store import GCSStore

    stop = install_stop_handlers()  # before any slow step, so Ctrl-C is always clean

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="modelsync-demo-")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with GCSEmulator(log_path=str(workdir / "fake-gcs.log")) as emu:
            os.environ["STORAGE_EMULATOR_HOST"] = emu.url
            settings = StoreSettings(bucket=DEMO_BUCKET, emulator_host=emu.url)
            store = GCSStore(settings)
            store.ensure_bucket()
            say(f"GCS emulator (fake-gcs-server) on {emu.url}, bucket gs://{DEMO_BUCKET}")
            for model, version, a, b, shards in DEMO_MODELS:
                if stop.requested:
                    break
                src = workdir / "src" / model / str(version)
                if not src.exists():
                    make_linear_model(src, a, b, shards=shards)
                result = publish(store, src, model, prefix=settings.prefix,
                                 marker=settings.marker, version=version, overwrite=True)
                say(f"published {result.uri}: y = {a} * x + {b} ({result.files} files, "
                    f"{result.bytes} bytes)")
            if not stop.requested:
                import argparse
                cmd_list(argparse.Namespace(bucket=DEMO_BUCKET, prefix=None))
                say(f"to use it from another shell: export STORAGE_EMULATOR_HOST={emu.url} "
                    f"MODELSYNC_BUCKET={DEMO_BUCKET}")
                say("ready; press Ctrl-C to stop")
                wait_for_stop(timeout_s=exit_after)
            say("stopping")
    finally:
        if tmp is not None:
            tmp.cleanup()
    say("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_demo())
