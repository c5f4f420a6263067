"""TF Serving's ModelService and config messages without importing TensorFlow.

``tensorflow-serving-api``'s generated ``*_pb2`` modules import TensorFlow (about 550 MB and
several seconds) because ``status.proto`` depends on TensorFlow's ``error_codes.proto``. Each
generated module carries its ``FileDescriptorProto`` as one serialized literal; reading those
literals (and their dependencies') from the installed files, without executing them, into a
private ``DescriptorPool`` yields the same wire-compatible message classes in a few MB.

    from modelsync.protos import serving_protos
    p = serving_protos()
    cfg = p.ModelServerConfig(); req = p.ReloadConfigRequest(config=cfg)

``saved_model_protos()`` does the same for TensorFlow's ``saved_model.proto`` (the publisher's
check of ``saved_model.pb``), in a pool of its own: the node daemons never load it.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_SERIALIZED_RE = re.compile(rb"AddSerializedFile\((b'(?:[^'\\]|\\.)*')\)", re.S)
_WELL_KNOWN = ("google/protobuf/",)
_ROOTS = (
    "tensorflow_serving/config/model_server_config.proto",
    "tensorflow_serving/apis/model_management.proto",
    "tensorflow_serving/apis/get_model_status.proto",
    "tensorflow_serving/config/monitoring_config.proto",
    "tensorflow_serving/apis/predict.proto",
    "tensorflow_serving/apis/get_model_metadata.proto",
    "tensorflow_serving/apis/prediction_log.proto",
)  # warmup records (validation)
_SAVED_MODEL_ROOTS = ("tensorflow/core/protobuf/saved_model.proto",)
_OPTIONAL = ("tensorflow_serving/config/monitoring_config.proto",)  # not in every release


class ProtoLoadError(RuntimeError):
    pass


def _site_dirs() -> list[Path]:
    dirs = []
    for name in ("tensorflow_serving",):
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            dirs.append(Path(next(iter(spec.submodule_search_locations))).parent)
    dirs += [Path(p) for p in sys.path if p and Path(p).is_dir()]
    return list(dict.fromkeys(dirs))


def _pb2_path(proto: str, roots: list[Path]) -> Path | None:
    rel = proto[: -len(".proto")] + "_pb2.py"
    for root in roots:
        for prefix in ("", "tensorflow/", "tensorflow/compiler/", "tensorflow/tsl/"):
            candidate = root / prefix / rel
            if candidate.exists():
                return candidate
    return None


def _serialized(path: Path) -> bytes:
    m = _SERIALIZED_RE.search(path.read_bytes())
    if m is None:
        raise ProtoLoadError(f"{path}: no serialized descriptor found")
    value = ast.literal_eval(m.group(1).decode("latin-1"))
    if not isinstance(value, bytes):
        raise ProtoLoadError(f"{path}: descriptor literal is not bytes")
    return value


def _well_known(proto: str) -> descriptor_pb2.FileDescriptorProto:
    module = importlib.import_module(
        "google.protobuf." + Path(proto).name[: -len(".proto")] + "_pb2"
    )
    fdp = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fdp)
    return fdp


@dataclass(frozen=True)
class ServingProtos:
    pool: descriptor_pool.DescriptorPool
    classes: dict[str, Any]

    def __getattr__(self, short: str) -> Any:
        for full, cls in self.classes.items():
            if full.rsplit(".", 1)[-1] == short:
                return cls
        raise AttributeError(short)

    def get(self, full_name: str) -> Any:
        return self.classes[full_name]


@functools.lru_cache(maxsize=1)
def serving_protos() -> ServingProtos:
    """TF Serving's config, ModelService and PredictionService messages."""
    return _load(_ROOTS)


@functools.lru_cache(maxsize=1)
def saved_model_protos() -> ServingProtos:
    """``tensorflow.SavedModel`` and what it depends on (MetaGraphDef, SignatureDef, ...)."""
    return _load(_SAVED_MODEL_ROOTS)


def _load(protos: tuple[str, ...]) -> ServingProtos:
    roots = _site_dirs()
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(proto: str) -> None:
        if proto in added:
            return
        if proto.startswith(_WELL_KNOWN):
            fdp = _well_known(proto)
        else:
            path = _pb2_path(proto, roots)
            if path is None:
                raise ProtoLoadError(f"cannot find the generated module of {proto}")
            fdp = descriptor_pb2.FileDescriptorProto.FromString(_serialized(path))
        for dep in fdp.dependency:
            add(dep)
        pool.Add(fdp)
        added.add(proto)

    for root in protos:
        if root in _OPTIONAL and _pb2_path(root, roots) is None:
            continue
        add(root)
    classes: dict[str, Any] = {}
    for name in sorted(added):
        fd = pool.FindFileByName(name)
        for msg in fd.message_types_by_name.values():
            _collect(msg, classes)
    return ServingProtos(pool, classes)


def _collect(desc: Any, out: dict[str, Any]) -> None:
    out[desc.full_name] = message_factory.GetMessageClass(desc)
    for nested in desc.nested_types:
        _collect(nested, out)
