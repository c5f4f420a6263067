"""The node's local layout (one filesystem shared by puller, config manager and TF Serving).

    MODEL_ROOT/<model>/<version>/…                           one version (TF Serving base_path:
                                                             MODEL_ROOT/<model>)
    MODEL_ROOT/.modelsync/incoming/<random>/                 downloads in progress, and versions
                                                             being removed; swept at start
    MODEL_ROOT/.modelsync/installed/<model>/<version>.json   install records
    MODEL_ROOT/.modelsync/validated/<model>/<version>.json   validation records (the config
                                                             manager's verdict per content)
    MODEL_ROOT/.modelsync/policy.json, catalog.json          last good policy and catalog
    MODEL_ROOT/.modelsync/available.json                     since when each version is AVAILABLE
    MODEL_ROOT/.modelsync/models.config                      the TF Serving model config

Every path under ``MODEL_ROOT/.modelsync/`` and every read or write of the files there goes
through :class:`LocalLayout`.
"""

from __future__ import annotations

import base64
import builtins
import ctypes
import errno
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c

from modelsync.layout import is_model_name, parse_version
from modelsync.policy import Policy, PolicyError, dump_policy, parse_policy

STATE_DIR = ".modelsync"


class LocalStateError(Exception):
    """A file under ``MODEL_ROOT/.modelsync/`` is unreadable or malformed."""


@dataclass(frozen=True)
class SavedPolicy:
    """The last good policy a node read from the bucket, with that object's generation."""

    policy: Policy
    generation: int | None


@dataclass(frozen=True)
class InstalledFile:
    path: str
    generation: int
    size: int
    crc32c: str | None


@dataclass(frozen=True)
class InstallRecord:
    model: str
    version: int
    fingerprint: str
    source: str
    bytes: int
    installed_at: float
    seconds: float
    files: tuple[InstalledFile, ...] = field(default_factory=tuple)
    # the listing matched the manifest in the version's marker (records before manifests: False)
    manifest_verified: bool = False

    def to_json(self) -> builtins.bytes:
        doc = asdict(self)
        doc["files"] = [asdict(f) for f in self.files]
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: builtins.bytes) -> InstallRecord:
        doc: dict[str, Any] = json.loads(data)
        files = tuple(InstalledFile(**f) for f in doc.pop("files", []))
        doc["manifest_verified"] = bool(doc.get("manifest_verified", False))
        return cls(files=files, **doc)


class LocalLayout:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.state_dir = self.root / STATE_DIR
        self.incoming = self.state_dir / "incoming"
        self.installed = self.state_dir / "installed"
        self.config_path = self.state_dir / "models.config"
        self.policy_path = self.state_dir / "policy.json"
        self.catalog_path = self.state_dir / "catalog.json"
        self.available_path = self.state_dir / "available.json"
        self.validated = self.state_dir / "validated"

    def ensure(self) -> None:
        for d in (self.root, self.state_dir, self.incoming, self.installed):
            d.mkdir(parents=True, exist_ok=True)

    # --- the last good policy and catalog (written by the puller, read by both daemons) ---------
    def read_policy(self) -> SavedPolicy | None:
        """None when no policy was saved yet; LocalStateError when the file is bad."""
        try:
            doc = json.loads(self.policy_path.read_bytes())
            return SavedPolicy(parse_policy(doc["policy"]), doc.get("generation"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, PolicyError) as exc:
            raise LocalStateError(f"{self.policy_path}: {exc}") from None

    def write_policy(self, policy: Policy, generation: int | None) -> None:
        doc = {"generation": generation, "policy": json.loads(dump_policy(policy))}
        atomic_write(self.policy_path, json.dumps(doc, indent=1).encode())

    def write_catalog(self, body: builtins.bytes) -> None:
        atomic_write(self.catalog_path, body)

    def watch_signature(self) -> tuple[int, ...]:
        """Changes when an install record or the saved policy changes (a cheap stat walk)."""
        sig = []
        for path in (self.installed, self.policy_path, self.root):
            try:
                sig.append(path.stat().st_mtime_ns)
            except OSError:
                sig.append(0)
        try:
            for entry in os.scandir(self.installed):
                sig.append(entry.stat().st_mtime_ns)
        except OSError:
            pass
        return tuple(sig)

    # --- validation records (the config manager's verdict on each version's content) ----------
    def validation_path(self, model: str, version: int) -> Path:
        return self.validated / model / f"{version}.json"

    def write_validation(self, model: str, version: int, record: dict[str, Any]) -> None:
        atomic_write(self.validation_path(model, version), json.dumps(record, indent=1).encode())

    def read_validations(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Every validation record: (model, version) -> its record (fingerprint, ok, reason)."""
        out: dict[tuple[str, int], dict[str, Any]] = {}
        try:
            models = [e for e in os.scandir(self.validated) if e.is_dir()]
        except FileNotFoundError:
            return out
        for m in models:
            for e in os.scandir(m.path):
                v = parse_version(e.name[: -len(".json")]) if e.name.endswith(".json") else None
                if v is None:
                    continue
                try:
                    doc = json.loads(Path(e.path).read_bytes())
                except (OSError, ValueError):
                    continue
                if isinstance(doc, dict) and isinstance(doc.get("fingerprint"), str):
                    out[(m.name, v)] = doc
        return out

    def remove_validation(self, model: str, version: int) -> None:
        self.validation_path(model, version).unlink(missing_ok=True)

    def read_available_since(self) -> dict[tuple[str, int], float]:
        """Since when TF Serving has reported each version AVAILABLE (the config manager's
        record, kept across its restarts); empty when missing or unreadable."""
        try:
            doc = json.loads(self.available_path.read_bytes())
            return {(str(m), int(v)): float(t) for m, vs in doc.items() for v, t in vs.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def write_available_since(self, since: dict[tuple[str, int], float]) -> None:
        doc: dict[str, dict[str, float]] = {}
        for (m, v), t in sorted(since.items()):
            doc.setdefault(m, {})[str(v)] = t
        atomic_write(self.available_path, json.dumps(doc, indent=1).encode())

    def write_config(self, text: str) -> bool:
        """Write the TF Serving model config atomically unless it already says ``text``.
        Returns whether the file changed."""
        try:
            if self.config_path.read_text() == text:
                return False
        except OSError:
            pass
        atomic_write(self.config_path, text.encode())
        return True

    def version_dir(self, model: str, version: int) -> Path:
        return self.root / model / str(version)

    def record_path(self, model: str, version: int) -> Path:
        return self.installed / model / f"{version}.json"

    def read_record(self, model: str, version: int) -> InstallRecord | None:
        try:
            return InstallRecord.from_json(self.record_path(model, version).read_bytes())
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def remove_record(self, model: str, version: int) -> None:
        self.record_path(model, version).unlink(missing_ok=True)

    def remove_version(self, model: str, version: int) -> None:
        """Take a version off the disk atomically: one rename moves its directory out of
        ``MODEL_ROOT/<model>/`` into ``incoming/`` (TF Serving never sees a half-deleted
        version), then its install record and its files go."""
        trash = self.new_incoming()
        try:
            os.rename(self.version_dir(model, version), trash / "removed")
            self.remove_record(model, version)
        finally:
            shutil.rmtree(trash, ignore_errors=True)

    def versions_on_disk(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        try:
            models = [e for e in os.scandir(self.root) if e.is_dir() and is_model_name(e.name)]
        except FileNotFoundError:
            return out
        for m in models:
            versions = []
            for e in os.scandir(m.path):
                v = parse_version(e.name)
                if v is not None and e.is_dir():
                    versions.append(v)
            if versions:
                out[m.name] = sorted(versions)
        return out

    def inventory(self) -> dict[str, dict[int, InstallRecord | None]]:
        """Every version directory on disk with its install record (None: no record)."""
        return {
            m: {v: self.read_record(m, v) for v in vs} for m, vs in self.versions_on_disk().items()
        }

    def sweep_incoming(self) -> int:
        """Remove leftovers of interrupted downloads. Returns how many were removed."""
        if not self.incoming.exists():
            return 0
        n = 0
        for entry in os.scandir(self.incoming):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            n += 1
        return n

    def new_incoming(self) -> Path:
        self.incoming.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.incoming))


def atomic_write(path: Path, data: builtins.bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new bytes, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def file_crc32c_b64(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """The base64 CRC32C of a local file, as GCS reports an object's ``crc32c``."""
    crc = google_crc32c.Checksum()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            crc.update(chunk)
    return base64.b64encode(crc.digest()).decode()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE). False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))
