"""What the commands share: the one-line error, the bucket arguments, argument types."""

from __future__ import annotations

import argparse
import dataclasses

from modelsync.settings import Env, StoreSettings, normalize_prefix

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


def add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bucket", help="the bucket (default: $MODELSYNC_BUCKET)")
    p.add_argument("--prefix", help="prefix inside the bucket (default: $MODELSYNC_PREFIX or "
                                    "'models')")


def positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def tcp_port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0-65535, got {text!r}")
    return value
