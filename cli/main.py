"""modelsync: keep a fleet of TensorFlow Serving nodes serving the right model versions.

Run "modelsync COMMAND --help" for a command's options. The daemons (master, puller,
config-manager, gateway, worker, model-server) take their settings from MODELSYNC_* environment
variables (see the README); --port overrides the HTTP port.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cli import commands, dev
from cli.common import EXIT_USAGE, CommandError, Parser, tcp_port
from modelsync import __version__
from modelsync.log import LEVELS, configure_logging
from modelsync.settings import Env, SettingsError

# name -> (help, "module:function"); each takes its own flags and settings
DAEMONS: dict[str, tuple[str, str]] = {
    "master": (
        "the master: admin API and registry under gunicorn (MODELSYNC_*)",
        "master.server:main",
    ),
    "puller": (
        "the remote model puller daemon (settings from MODELSYNC_*)",
        "remote_model_puller.daemon:main",
    ),
    "config-manager": (
        "the config manager daemon (settings from MODELSYNC_*)",
        "config_manager.daemon:main",
    ),
    "gateway": (
        "the node's REST front door: MLflow, ML-Kraken and TF Serving REST (MODELSYNC_*)",
        "gateway.server:main",
    ),
    "worker": (
        "the jobs worker: scores batch jobs' chunks through the node's TF Serving (MODELSYNC_*)",
        "jobs.worker:main",
    ),
}
PASSTHROUGH: dict[str, tuple[str, str]] = {
    "model-server": (
        "the TF-Serving-compatible model server (flags as tensorflow_model_server)",
        "tfserving.server:main",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="modelsync", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"modelsync {__version__}")
    parser.add_argument(
        "--log-level", choices=LEVELS, default=None, help="default: MODELSYNC_LOG_LEVEL or info"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.register(sub)
    dev.register(sub)
    for name, (text, _target) in {**DAEMONS, **PASSTHROUGH}.items():
        sub.add_parser(name, add_help=False, help=text)
    return parser


def _load(target: str) -> Callable[..., int]:
    import importlib

    module, _, func = target.partition(":")
    fn: Callable[..., int] = getattr(importlib.import_module(module), func)
    return fn


def run_daemon(name: str, argv: Sequence[str]) -> int:
    """Daemons take their settings from the environment; --port overrides the HTTP port."""
    parser = Parser(
        prog=f"modelsync {name}",
        description="settings come from MODELSYNC_* variables (see the README)",
    )
    parser.add_argument("--port", type=tcp_port, help="HTTP port (overrides MODELSYNC_HTTP_PORT)")
    args = parser.parse_args(list(argv))
    try:
        return _load(DAEMONS[name][1])(port=args.port)
    except SettingsError as exc:
        print(f"modelsync {name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DAEMONS:
        return run_daemon(argv[0], argv[1:])
    if argv and argv[0] in PASSTHROUGH:
        return _load(PASSTHROUGH[argv[0]][1])(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"modelsync {args.command}"
    try:
        level = args.log_level or Env().log_level()
        configure_logging(level, json_output=getattr(args, "json_logs", True))
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
