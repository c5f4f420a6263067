"""A container model version's descriptor (pure: no I/O).

A version of a container model is one object, ``PREFIX/<model>/<version>/container.json``
(``layout.DESCRIPTOR_NAME``), plus the usual ``_READY`` marker and its manifest::

    {"schema": 1,
     "image": "registry.example:5000/churn:7",
     "digest": "sha256:<64 hex>",            # or null: the tag as it was when published
     "port": 8080,                            # where the image's server listens
     "env": {"MODEL_THREADS": "2"},
     "resources": {"cpus": 1.0, "memory_bytes": 536870912}}   # either may be null

The image follows the serving contract SageMaker's bring-your-own-container images and
``mlflow models build-docker`` images follow: HTTP on ``port`` (8080 by default), ``GET /ping``
answers 200 when the model is ready, ``POST /invocations`` takes JSON (and CSV) and answers
predictions. Every rule is checked at once: ``DescriptorError.problems`` holds one line per
bad field, and the same checks run when publishing, when the master reads a descriptor, and in
the CLI's flag parsing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA = 1
DEFAULT_PORT = 8080
MAX_ENV = 64
MAX_ENV_VALUE_CHARS = 4096
MAX_DESCRIPTOR_BYTES = 64 * 1024
MAX_CPUS = 256.0
MIN_MEMORY_BYTES = 6 * 2**20  # Docker's own minimum for a memory limit
MAX_MEMORY_BYTES = 2**40
_KEYS = ("schema", "image", "digest", "port", "env", "resources")
_RESOURCE_KEYS = ("cpus", "memory_bytes")

# Docker's image reference grammar (distribution/reference), without IPv6 registries:
# [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST], a PATH of lower-case components.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]{{1,5}})?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
TAG_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
DIGEST_PATTERN = r"sha256:[a-f0-9]{64}"
IMAGE_RE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH})"
    rf"(?::(?P<tag>{TAG_PATTERN}))?(?:@(?P<digest>{DIGEST_PATTERN}))?\Z"
)
DIGEST_RE = re.compile(DIGEST_PATTERN + r"\Z")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_MEMORY_RE = re.compile(r"(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[kKmMgGtT]?)(?:i?[bB])?\Z")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class DescriptorError(ValueError):
    """A descriptor (or the flags that make one) is bad: ``problems`` has one line per bad
    field; ``str()`` joins them with "; "."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Resources:
    cpus: float | None = None
    memory_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "memory_bytes": self.memory_bytes}


@dataclass(frozen=True)
class Descriptor:
    image: str
    digest: str | None = None
    port: int = DEFAULT_PORT
    env: Mapping[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)

    @property
    def reference(self) -> str:
        """What to run: the image pinned to its digest when it is known (NAME:TAG@DIGEST:
        Docker runs the digest; the tag stays readable)."""
        if self.digest is None:
            return self.image
        name = self.image.split("@", 1)[0]
        return f"{name}@{self.digest}"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "image": self.image,
            "digest": self.digest,
            "port": self.port,
            "env": dict(sorted(self.env.items())),
            "resources": self.resources.to_json(),
        }


def _parts(image: str) -> tuple[str | None, str, str | None, str | None] | None:
    """(registry or None, repository path, tag, digest), or None when it is no reference. A
    first component is a registry when it has a '.' or ':' or is 'localhost' (Docker's rule);
    otherwise it is part of the (lower-case) path."""
    m = IMAGE_RE.match(image)
    if m is None or len(image) > 255:
        return None
    domain, path = m.group("domain"), m.group("path")
    if domain is not None and not ("." in domain or ":" in domain or domain == "localhost"):
        if not re.fullmatch(_COMPONENT, domain):
            return None
        domain, path = None, f"{domain}/{path}"
    return domain, path, m.group("tag"), m.group("digest")


def image_problem(image: object) -> str | None:
    if not isinstance(image, str) or not image:
        return "image: expected a string REGISTRY/NAME:TAG"
    parts = _parts(image)
    if parts is None:
        return (
            f"image: {image!r} is not an image reference: want [REGISTRY[:PORT]/]NAME:TAG "
            "(lower-case name, tag of [A-Za-z0-9_.-]) or NAME@sha256:<64 hex>"
        )
    if parts[2] is None and parts[3] is None:
        return f"image: {image!r} has no tag: give one (an implicit :latest is not a version)"
    return None


def split_image(image: str) -> tuple[str | None, str, str | None, str | None]:
    """(registry or None, repository path, tag, digest) of a valid reference."""
    parts = _parts(image)
    if parts is None:
        raise DescriptorError([image_problem(image) or f"image: bad reference {image!r}"])
    return parts


def _port_problem(port: object) -> str | None:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        return f"port: expected an integer from 1 to 65535, got {port!r}"
    return None


def _env_problems(env: object) -> list[str]:
    if not isinstance(env, dict):
        return ["env: expected an object of NAME: value strings"]
    problems = []
    if len(env) > MAX_ENV:
        problems.append(f"env: at most {MAX_ENV} variables, got {len(env)}")
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY_RE.match(key):
            problems.append(f"env: bad name {key!r}: want [A-Za-z_][A-Za-z0-9_]*")
        elif not isinstance(value, str) or len(value) > MAX_ENV_VALUE_CHARS:
            problems.append(
                f"env.{key}: expected a string of at most {MAX_ENV_VALUE_CHARS} characters"
            )
        elif "\0" in value:
            problems.append(f"env.{key}: a value cannot hold a NUL character")
    return problems


def cpus_problem(cpus: object) -> str | None:
    if cpus is None:
        return None
    if (
        not isinstance(cpus, int | float)
        or isinstance(cpus, bool)
        or not math.isfinite(cpus)
        or not 0.01 <= cpus <= MAX_CPUS
    ):
        return f"resources.cpus: expected a number from 0.01 to {MAX_CPUS:g}, got {cpus!r}"
    return None


def memory_problem(memory: object) -> str | None:
    if memory is None:
        return None
    if (
        not isinstance(memory, int)
        or isinstance(memory, bool)
        or not MIN_MEMORY_BYTES <= memory <= MAX_MEMORY_BYTES
    ):
        return (
            f"resources.memory_bytes: expected an integer from {MIN_MEMORY_BYTES} (6 MiB) "
            f"to {MAX_MEMORY_BYTES} (1 TiB), got {memory!r}"
        )
    return None


def check_descriptor(descriptor: Descriptor) -> Descriptor:
    """Every rule on a built descriptor; DescriptorError lists every bad field."""
    problems = [
        p
        for p in (
            image_problem(descriptor.image),
            None
            if descriptor.digest is None or DIGEST_RE.match(descriptor.digest)
            else f"digest: expected sha256:<64 hex> or null, got {descriptor.digest!r}",
            _port_problem(descriptor.port),
            cpus_problem(descriptor.resources.cpus),
            memory_problem(descriptor.resources.memory_bytes),
        )
        if p is not None
    ]
    problems[3:3] = _env_problems(dict(descriptor.env))
    if not problems and descriptor.digest is not None:
        _, _, _, pinned = split_image(descriptor.image)
        if pinned is not None and pinned != descriptor.digest:
            problems.append(f"digest: {descriptor.digest} differs from the image's @{pinned}")
    if problems:
        raise DescriptorError(problems)
    return descriptor


def dump_descriptor(descriptor: Descriptor) -> bytes:
    return (json.dumps(check_descriptor(descriptor).to_json(), indent=1) + "\n").encode()


def parse_descriptor(data: bytes) -> Descriptor:
    """A descriptor from its JSON; DescriptorError names every bad field."""
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError([f"descriptor: larger than {MAX_DESCRIPTOR_BYTES} bytes"])
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DescriptorError([f"descriptor: not valid JSON: {exc}"]) from None
    if not isinstance(doc, dict):
        raise DescriptorError(["descriptor: expected a JSON object"])
    known = ", ".join(_KEYS)
    problems = [f"{key}: unknown field (known: {known})" for key in doc if key not in _KEYS]
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema: expected {SCHEMA}, got {doc.get('schema')!r}")
    resources = doc.get("resources", {})
    if resources is None:
        resources = {}
    if not isinstance(resources, dict):
        problems.append("resources: expected an object with cpus and/or memory_bytes")
        resources = {}
    problems += [
        f"resources.{key}: unknown field (known: cpus, memory_bytes)"
        for key in resources
        if key not in _RESOURCE_KEYS
    ]
    env = doc.get("env", {})
    descriptor = Descriptor(
        image=doc.get("image"),  # type: ignore[arg-type]  # checked below
        digest=doc.get("digest"),
        port=doc.get("port", DEFAULT_PORT),
        env=env if isinstance(env, dict) else {},
        resources=Resources(resources.get("cpus"), resources.get("memory_bytes")),
    )
    try:
        check_descriptor(descriptor)
    except DescriptorError as exc:
        problems += exc.problems
    if not isinstance(env, dict):
        problems += _env_problems(env)
    if problems:
        raise DescriptorError(problems)
    return descriptor


def parse_env(items: list[str]) -> dict[str, str]:
    """``--env K=V`` flags as a mapping (one problem line per bad flag)."""
    env: dict[str, str] = {}
    problems = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            problems.append(f"--env {item!r}: expected NAME=VALUE")
        elif not ENV_KEY_RE.match(key):
            problems.append(f"--env {item!r}: bad name {key!r}: want [A-Za-z_][A-Za-z0-9_]*")
        elif key in env:
            problems.append(f"--env {key}: given twice")
        else:
            env[key] = value
    if problems:
        raise DescriptorError(problems)
    return env


def parse_memory(text: str) -> int:
    """``512M``, ``1.5g``, ``2GiB``, ``1048576`` (bytes) -> bytes (``--memory``)."""
    m = _MEMORY_RE.match(text.strip())
    if m is None:
        raise DescriptorError([f"--memory {text!r}: expected a size such as 512M, 2G or bytes"])
    return int(float(m.group("n")) * _UNITS[m.group("unit").lower()])
