"""The node's local layout (one filesystem shared by puller, config manager and TF Serving).

    MODEL_ROOT/<model>/<version>/…                           one version (TF Serving base_path:
                                                             MODEL_ROOT/<model>)
    MODEL_ROOT/.modelsync/incoming/<random>/                 downloads in progress; swept at start
    MODEL_ROOT/.modelsync/installed/<model>/<version>.json   install records
    MODEL_ROOT/.modelsync/policy.json, catalog.json          last good policy and catalog
    MODEL_ROOT/.modelsync/models.config                      the TF Serving model config
"""

from __future__ import annotations

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

from modelsync.layout import is_model_name, parse_version

STATE_DIR = ".modelsync"


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

    def to_json(self) -> builtins.bytes:
        doc = asdict(self)
        doc["files"] = [asdict(f) for f in self.files]
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: builtins.bytes) -> InstallRecord:
        doc: dict[str, Any] = json.loads(data)
        files = tuple(InstalledFile(**f) for f in doc.pop("files", []))
        return cls(files=files, **doc)


class LocalLayout:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.state_dir = self.root / STATE_DIR
        self.incoming = self.state_dir / "incoming"
        self.installed = self.state_dir / "installed"
        self.config_path = self.state_dir / "models.config"

    def ensure(self) -> None:
        for d in (self.root, self.state_dir, self.incoming, self.installed):
            d.mkdir(parents=True, exist_ok=True)

    def model_dir(self, model: str) -> Path:
        return self.root / model

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
        return {m: {v: self.read_record(m, v) for v in vs}
                for m, vs in self.versions_on_disk().items()}

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
