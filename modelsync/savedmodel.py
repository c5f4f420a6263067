"""Local SavedModel checks and safe tarball handling (no TensorFlow needed).

A tarball is read in one streaming pass (``tarfile``'s stream mode over
``modelsync.decompress``: no seeking back, nothing decompressed twice, a truncated or corrupt
compressed stream refused, memory bounded whatever the compression ratio). Every member is
checked before anything of it is written, and only into the target directory; on a failure
what the extraction wrote there is removed again. The publisher's proto check
(``saved_model_proto_problem``) parses ``saved_model.pb(txt)`` through ``modelsync.protos``
(TensorFlow is never imported).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from modelsync.decompress import Decompressed, DecompressError, Readable
from modelsync.layout import SAVED_MODEL_FILES, structure_problem
from modelsync.tensors import Signature, signatures

DEFAULT_MAX_TAR_BYTES = 20 * 2**30
DEFAULT_MAX_TAR_MEMBERS = 100_000  # files and directories: an inode bomb stops here
_CHUNK = 1 << 20
_INTERNAL_SIGNATURE = "__saved_model_"  # __saved_model_init_op: every TF2 SavedModel has one
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, DecompressError)


class TarballError(ValueError):
    """A tarball is unsafe or malformed (whatever was extracted must be discarded)."""


def local_files(root: str | os.PathLike[str]) -> list[str]:
    """Regular files under ``root`` as sorted '/'-separated relative paths (links refused)."""
    base = Path(root)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        for name in list(dirnames) + filenames:
            full = Path(dirpath) / name
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ValueError(f"{full}: symbolic links are not published")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise ValueError(f"{full}: not a regular file")
            if stat.S_ISREG(mode):
                out.append(full.relative_to(base).as_posix())
    return sorted(out)


def local_savedmodel_problem(root: str | os.PathLike[str]) -> str | None:
    if not Path(root).is_dir():
        return f"{root}: not a directory"
    try:
        files = local_files(root)
    except ValueError as exc:
        return str(exc)
    problem = structure_problem(files)
    if problem is None and "model.tar.gz" in files:
        return "a SavedModel directory cannot hold a root model.tar.gz"
    return problem


def _member_problem(m: tarfile.TarInfo) -> str | None:
    name = m.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        return f"path with '..' {name!r}"
    if m.issym() or m.islnk():
        return f"link {name!r} -> {m.linkname!r}"
    if not (m.isfile() or m.isdir()):
        return f"special file {name!r} (device, fifo or other)"
    return None


def _normalized(name: str) -> str:
    return "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def _parse_saved_model(name: str, data: bytes) -> Any:
    """The ``tensorflow.SavedModel`` message of ``saved_model.pb(txt)`` bytes (TF-free)."""
    from google.protobuf import text_format

    from modelsync.protos import saved_model_protos

    protos = saved_model_protos()
    msg = protos.get("tensorflow.SavedModel")()
    if name.endswith(".pbtxt"):
        text_format.Parse(
            data.decode("utf-8"), msg, allow_unknown_extension=True, descriptor_pool=protos.pool
        )
    else:
        msg.ParseFromString(data)
    return msg


def saved_model_signatures(name: str, data: bytes) -> dict[str, Signature]:
    """The serving signatures of a SavedModel's first MetaGraph (TensorFlow's internal ones
    left out). ValueError if the bytes are not a SavedModel."""
    from google.protobuf import message, text_format

    try:
        msg = _parse_saved_model(name, data)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name} is not a SavedModel protobuf") from exc
    if not msg.meta_graphs:
        return {}
    return {
        k: v
        for k, v in signatures(msg.meta_graphs[0]).items()
        if not k.startswith(_INTERNAL_SIGNATURE)
    }


def saved_model_proto_problem(name: str, data: bytes) -> str | None:
    """Why ``data``, the bytes of ``saved_model.pb`` (or ``.pbtxt``), is not a SavedModel
    that can serve: it does not parse as the ``tensorflow.SavedModel`` message, or no MetaGraph
    has a signature (TensorFlow's internal ``__saved_model_init_op`` does not count). None when
    it is fine."""
    from google.protobuf import message, text_format

    try:
        msg = _parse_saved_model(name, data)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"{name} is not a SavedModel protobuf: {reason[:200]}"
    if not any(
        not key.startswith(_INTERNAL_SIGNATURE)
        for mg in msg.meta_graphs
        for key in mg.signature_def
    ):
        return (
            f"{name} has no signature (none of its {len(msg.meta_graphs)} MetaGraphs "
            "has a signature_def other than TensorFlow's own __saved_model_* ones)"
        )
    return None


def _saved_model_file(names: set[str] | list[str]) -> str | None:
    """The file TensorFlow's loader reads: saved_model.pb, else saved_model.pbtxt."""
    return next((n for n in SAVED_MODEL_FILES if n in names), None)


def local_saved_model_proto_problem(root: str | os.PathLike[str]) -> str | None:
    name = _saved_model_file([n for n in SAVED_MODEL_FILES if (Path(root) / n).is_file()])
    if name is None:
        return "no saved_model.pb or saved_model.pbtxt"
    return saved_model_proto_problem(name, (Path(root) / name).read_bytes())


def _read(src: IO[bytes], n: int) -> bytes:
    try:
        return src.read(n)
    except _READ_ERRORS as exc:
        raise TarballError(f"unreadable tarball: {exc}") from None


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        try:
            m = tar.next()
        except _READ_ERRORS as exc:
            raise TarballError(f"unreadable tarball: {exc}") from None
        if m is None:
            return
        yield m


Source = str | os.PathLike[str] | Readable


def _scan(
    source: Source,
    max_bytes: int,
    dest: Path | None,
    capture: tuple[str, ...] = (),
    max_members: int = DEFAULT_MAX_TAR_MEMBERS,
) -> tuple[list[str], dict[str, bytes]]:
    """One streaming pass over a tarball (a path, or a stream to read to its end): check every
    member, and extract it into ``dest`` (each file fsync'd) when given; keep the bytes of the
    members named in ``capture``. Read errors and unsafe members are TarballError; write
    errors (a full disk) are the OSError they are; the stream's own errors pass through. More
    than ``max_members`` members (of any kind, empty ones too) is a TarballError before the
    one too many is written."""
    total = 0
    members = 0
    files: list[str] = []
    seen: set[str] = set()
    dirs: set[str] = set()
    captured: dict[str, bytes] = {}
    with contextlib.ExitStack() as opened:
        try:
            raw = (
                opened.enter_context(open(source, "rb"))
                if isinstance(source, str | os.PathLike)
                else source
            )
            data = Decompressed(raw, _CHUNK)  # strict about truncation, bounded steps
            tar = opened.enter_context(
                tarfile.open(
                    fileobj=data,
                    mode="r|",  # type: ignore[call-overload]
                    bufsize=_CHUNK,
                )
            )
        except _READ_ERRORS as exc:
            raise TarballError(f"unreadable tarball: {exc}") from None
        for m in _members(tar):
            members += 1
            if members > max_members:
                raise TarballError(f"tarball has more than {max_members} members")
            problem = _member_problem(m)
            if problem:
                raise TarballError(f"unsafe tarball member: {problem}")
            rel = _normalized(m.name)
            if not rel:
                continue
            parents = ["/".join(rel.split("/")[:i]) for i in range(1, rel.count("/") + 1)]
            if rel in seen or any(p in seen for p in parents) or (m.isfile() and rel in dirs):
                raise TarballError(f"tarball has duplicate member names ({rel!r})")
            dirs.update(parents)
            if m.isdir():
                dirs.add(rel)
                if dest is not None:
                    (dest / rel).mkdir(parents=True, exist_ok=True)
                continue
            total += m.size
            if total > max_bytes:
                raise TarballError(f"tarball content exceeds {max_bytes} bytes")
            seen.add(rel)
            files.append(rel)
            if dest is None and rel not in capture:
                continue  # the stream skips its data
            src = tar.extractfile(m)
            if src is None:
                raise TarballError(f"cannot read member {m.name!r}")
            keep: list[bytes] | None = [] if rel in capture else None
            with contextlib.ExitStack() as stack:
                out = None
                if dest is not None:
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    out = stack.enter_context(open(dest / rel, "xb"))
                while chunk := _read(src, _CHUNK):  # at most m.size bytes: the header's
                    if out is not None:
                        out.write(chunk)
                    if keep is not None:
                        keep.append(chunk)
                if out is not None:
                    out.flush()
                    os.fsync(out.fileno())
            if keep is not None:
                captured[rel] = b"".join(keep)
        try:  # past the end of the archive: to the end of the compressed data, which must
            trailing = data.drain()  # be whole; more than a little padding counts as content
        except _READ_ERRORS as exc:
            raise TarballError(f"unreadable tarball: {exc}") from None
        if total + max(0, trailing - _CHUNK) > max_bytes:
            raise TarballError(f"tarball content exceeds {max_bytes} bytes")
    problem = structure_problem(files)
    if problem or "model.tar.gz" in files:
        raise TarballError(
            f"tarball is not a SavedModel at its root: {problem or 'nested model.tar.gz'}"
        )
    return files, captured


def check_tarball(
    path: Source,
    max_bytes: int = DEFAULT_MAX_TAR_BYTES,
    *,
    check_proto: bool = False,
    max_members: int = DEFAULT_MAX_TAR_MEMBERS,
) -> list[str]:
    """Validate every member in one streaming pass; return the regular files' normalized names.

    Rejects absolute paths, '..', symlinks, hardlinks, devices and fifos, more than
    ``max_bytes`` of content or ``max_members`` members, duplicate names, and content that is
    not a whole SavedModel at the root. With ``check_proto``, its ``saved_model.pb(txt)`` must
    also parse and have a signature (``saved_model_proto_problem``).
    """
    files, captured = _scan(
        path, max_bytes, None, SAVED_MODEL_FILES if check_proto else (), max_members
    )
    if check_proto:
        name = _saved_model_file(set(captured))
        problem = (
            saved_model_proto_problem(name, captured[name])
            if name
            else "no saved_model.pb or saved_model.pbtxt"
        )
        if problem:
            raise TarballError(f"tarball's {problem}")
    return files


def extract_tarball(
    path: Source,
    dest: str | os.PathLike[str],
    max_bytes: int = DEFAULT_MAX_TAR_BYTES,
    *,
    max_members: int = DEFAULT_MAX_TAR_MEMBERS,
) -> list[str]:
    """Check and extract in one streaming pass (``path`` may be a stream, e.g. a download):
    regular files and directories only, into ``dest`` (must exist). Only members already
    checked are ever written, all inside ``dest``; on any failure what this call created there
    is removed again."""
    out = Path(dest)
    before = set(os.listdir(out))
    try:
        files, _ = _scan(path, max_bytes, out, max_members=max_members)
    except BaseException:
        for name in set(os.listdir(out)) - before:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        raise
    return files
