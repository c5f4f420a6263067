"""What the commands share: the one-line error, the bucket arguments, argument types."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, NoReturn

from modelsync.settings import Env, SettingsError, StoreSettings, normalize_prefix

if TYPE_CHECKING:
    from modelsync.store import GCSStore

EXIT_USAGE = 2


class CommandError(Exception):
    """A command failed with a one-line reason for the user (exit 1)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (exit 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


REACH_TIMEOUT_S = 5.0


def reachable_store(settings: StoreSettings) -> GCSStore:
    """The bucket's store, checked with one quick request: a command a person waits on gives
    up on an unreachable endpoint within seconds, naming it (exit 2: it is a setting)."""
    from modelsync.store import GCSStore, StoreError

    store = GCSStore(settings)
    try:
        store.check_reachable(min(REACH_TIMEOUT_S, settings.timeout_s))
    except StoreError as exc:
        raise SettingsError(str(exc)) from None
    return store


def store_settings(args: argparse.Namespace, env: Env | None = None) -> StoreSettings:
    env = env or Env()
    base = StoreSettings.from_env(env, bucket_required=not getattr(args, "bucket", None))
    prefix = base.prefix
    if getattr(args, "prefix", None) is not None:
        prefix = normalize_prefix(args.prefix, "--prefix")
    return dataclasses.replace(
        base, bucket=getattr(args, "bucket", None) or base.bucket, prefix=prefix
    )


def add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bucket", help="the bucket (default: $MODELSYNC_BUCKET)")
    p.add_argument(
        "--prefix", help="prefix inside the bucket (default: $MODELSYNC_PREFIX or 'models')"
    )


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
