"""``modelsync publish``, ``list``, ``healthcheck`` and ``node-token``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import TYPE_CHECKING

from cli.common import (
    CommandError,
    add_store_args,
    positive_int,
    reachable_store,
    store_settings,
    tcp_port,
)
from modelsync.settings import SettingsError

if TYPE_CHECKING:
    from modelsync.container import Descriptor


def cmd_publish(args: argparse.Namespace) -> int:
    import sys

    from modelsync.manifest import ManifestError, check_notes, parse_tag
    from modelsync.notify import MasterTarget, NotifyError, tell_master
    from modelsync.publish import (
        ProgressBar,
        PublishError,
        PublishOptions,
        publish,
        publish_image,
    )

    try:
        tags = dict(parse_tag(t) for t in args.tag)
        description, tags = check_notes(args.description, tags, "--description/--tag")
    except ManifestError as exc:
        raise SettingsError(str(exc)) from None
    if (args.path is None) == (args.image is None):
        raise SettingsError("give a SavedModel PATH or --image REGISTRY/NAME:TAG (one of them)")
    descriptor = container_descriptor(args) if args.image is not None else None
    settings = store_settings(args)
    master = MasterTarget.from_env()  # a bad setting stops here, before anything is written
    store = reachable_store(settings)
    options = PublishOptions(
        version=args.version,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=ProgressBar(f"{args.model}"),
        warmup=args.warmup,
        description=description,
        tags=tags,
    )
    try:
        if descriptor is not None:
            result = publish_image(store, descriptor, args.model, options)
        else:
            result = publish(store, args.path, args.model, options)
    except PublishError as exc:
        raise CommandError(str(exc)) from None
    if master is not None:  # the catalog takes it now (idempotent: told again when unchanged)
        try:
            tell_master(master, result.model, result.version)
        except NotifyError as exc:
            print(
                f"warning: the master was not told ({exc}); nodes see the version at its "
                "next catalog listing (MODELSYNC_CATALOG_S)",
                file=sys.stderr,
            )
    if result.unchanged:
        print(f"unchanged {result.uri}: the bucket already holds this content (nothing written)")
        return 0
    print(
        f"published {result.uri} ({result.files} files, {result.bytes} bytes, "
        f"{result.seconds:.2f} s)"
    )
    return 0


def container_descriptor(args: argparse.Namespace) -> Descriptor:
    """``--image`` and its flags as a checked descriptor, its digest asked of the registry
    (unless given as NAME@sha256:… or ``--no-digest``). Every bad flag is one line on stderr."""
    import sys

    from modelsync.container import (
        Descriptor,
        DescriptorError,
        Resources,
        check_descriptor,
        parse_env,
        parse_memory,
    )
    from modelsync.images import resolve_digest

    problems: list[str] = []
    env: dict[str, str] = {}
    memory: int | None = None
    try:
        env = parse_env(args.env)
    except DescriptorError as exc:
        problems += exc.problems
    if args.memory is not None:
        try:
            memory = parse_memory(args.memory)
        except DescriptorError as exc:
            problems += exc.problems
    descriptor = Descriptor(args.image, None, args.port, env, Resources(args.cpus, memory))
    try:
        check_descriptor(descriptor)
    except DescriptorError as exc:
        problems += exc.problems
    if problems:
        for line in problems[:-1]:
            print(f"modelsync publish: error: {line}", file=sys.stderr)
        raise SettingsError(problems[-1])
    if not args.no_digest:
        digest, why = resolve_digest(args.image)
        if digest is None:
            print(f"warning: {why}; the version runs the tag as it is then", file=sys.stderr)
        descriptor = dataclasses.replace(descriptor, digest=digest)
    return descriptor


def cmd_list(args: argparse.Namespace) -> int:
    """Every model and version in the bucket: complete or why not, who published it, its
    description and tags (from the catalog when it knows the marker, else the marker itself;
    the operators' edits from the annotations)."""
    from modelsync.layout import SettleTracker, incomplete_reason
    from modelsync.registry import read_registry
    from modelsync.store import StoreError, list_bucket

    settings = store_settings(args)
    store = reachable_store(settings)
    try:
        listing = list_bucket(store, settings)
        registry = read_registry(store, settings, listing)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    tracker = SettleTracker.markers_only()
    print(f"gs://{settings.bucket}/{settings.prefix}")
    for model, versions in sorted(listing.models.items()):
        print(f"  {model}")
        for v, rv in sorted(versions.items()):
            why_not = incomplete_reason(rv, tracker, time.time())
            state = "complete" if why_not is None else f"incomplete ({why_not})"
            print(
                f"    {v:>6}  {rv.kind:<10} {len(rv.files):3} files {rv.bytes:>12} bytes  {state}"
            )
            entry = registry.get((model, v))
            if entry is not None:
                for line in entry.lines():
                    print(f"            {line}")
    for s in listing.skipped:
        print(f"  skipped {s.path}: {s.reason}")
    return 0


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 when this container's own process answers (used by the image's HEALTHCHECK)."""
    target = (
        args.target
        or os.environ.get("MODELSYNC_HEALTHCHECK")
        or (f"http://127.0.0.1:{os.environ.get('MODELSYNC_HTTP_PORT', '8000')}/healthz")
    )
    if target.startswith("grpc://"):
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            with grpc.insecure_channel(target[len("grpc://") :]) as ch:
                resp = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(), timeout=args.timeout
                )
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


def cmd_node_token(args: argparse.Namespace) -> int:
    """Print each node's own token (MODELSYNC_NODE_TOKEN), made from the master's
    MODELSYNC_NODE_SECRET (or MODELSYNC_NODE_SECRET_FILE)."""
    from modelsync.layout import is_node_id
    from modelsync.nodeauth import node_token
    from modelsync.settings import Env, SettingsError, node_secret

    secret = node_secret(Env())
    for node_id in args.node_id:
        if not is_node_id(node_id):
            raise SettingsError(f"NODE_ID: {node_id!r} is not a node id (1-128 of [A-Za-z0-9_.-])")
    for node_id in args.node_id:
        print(node_token(secret, node_id))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo

    return run_demo(workdir=args.workdir, exit_after=args.exit_after, keep=args.keep)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "publish",
        help="upload a SavedModel (directory or .tar.gz), or a container image's descriptor "
        "(--image), as a version",
    )
    p.add_argument("path", nargs="?", help="a SavedModel directory or .tar.gz (or --image)")
    p.add_argument(
        "--image",
        metavar="REGISTRY/NAME:TAG",
        help="publish a container model: an image serving GET /ping and POST /invocations",
    )
    p.add_argument(
        "--port",
        type=tcp_port,
        default=8080,
        help="with --image: the port the image's server listens on (default 8080)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --image: an environment variable of the container; repeat for more",
    )
    p.add_argument("--cpus", type=float, help="with --image: CPU limit (e.g. 0.5)")
    p.add_argument("--memory", help="with --image: memory limit (e.g. 512M, 2G)")
    p.add_argument(
        "--no-digest",
        action="store_true",
        help="with --image: do not ask the registry for the tag's digest",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--version", type=positive_int, help="default: the next free version")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument("--workers", type=positive_int, default=8)
    p.add_argument("--description", default="", help="what this version is (in its manifest)")
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a tag of this version (in its manifest); repeat for more",
    )
    p.add_argument(
        "--warmup",
        metavar="FILE.jsonl",
        help='JSON requests, one a line ({"instances": [...]} or {"inputs": '
        '...}, optional "signature_name"), written into the version as '
        "assets.extra/tf_serving_warmup_requests (directories only)",
    )
    add_store_args(p)
    p.set_defaults(func=cmd_publish, json_logs=False)

    p = sub.add_parser("list", help="list models and versions in the bucket")
    add_store_args(p)
    p.set_defaults(func=cmd_list, json_logs=False)

    p = sub.add_parser("demo", help="run the whole system on this machine (127.0.0.1)")
    p.add_argument(
        "--workdir",
        help="where models, disks and logs go (kept; default: a "
        "temporary directory, removed at the end)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (logs, models) and say where",
    )
    p.add_argument(
        "--exit-after",
        type=float,
        default=None,
        help="stop by itself after this many seconds (for tests)",
    )
    p.set_defaults(func=cmd_demo, json_logs=False)

    p = sub.add_parser("healthcheck", help="exit 0 when this container's process answers")
    p.add_argument(
        "target",
        nargs="?",
        help="http://…/healthz or grpc://host:port "
        "(default: $MODELSYNC_HEALTHCHECK, else "
        "http://127.0.0.1:$MODELSYNC_HTTP_PORT/healthz)",
    )
    p.add_argument("--timeout", type=float, default=3.0)
    p.set_defaults(func=cmd_healthcheck, json_logs=False)

    p = sub.add_parser(
        "node-token",
        help="print a node's own heartbeat token (MODELSYNC_NODE_TOKEN) from MODELSYNC_NODE_SECRET",
    )
    p.add_argument("node_id", nargs="+", metavar="NODE_ID", help="the node's MODELSYNC_NODE_ID")
    p.set_defaults(func=cmd_node_token, json_logs=False)
