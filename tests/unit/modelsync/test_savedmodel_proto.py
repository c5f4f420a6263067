"""The publisher's SavedModel proto check, through TensorFlow-free message classes."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from google.protobuf import text_format

from modelsync.protos import saved_model_protos
from modelsync.savedmodel import (
    TarballError,
    check_tarball,
    local_files,
    local_saved_model_proto_problem,
    saved_model_proto_problem,
)


def no_signature_model() -> bytes:
    sm = saved_model_protos().get("tensorflow.SavedModel")()
    sm.saved_model_schema_version = 1
    mg = sm.meta_graphs.add()
    mg.meta_info_def.tags.append("serve")
    return bytes(sm.SerializeToString())


def test_a_real_savedmodel_passes_and_parses_like_tensorflow(model_factory) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    data = (model_factory(2.0) / "saved_model.pb").read_bytes()
    assert saved_model_proto_problem("saved_model.pb", data) is None
    light = saved_model_protos().get("tensorflow.SavedModel").FromString(data)
    official = saved_model_pb2.SavedModel.FromString(data)
    assert (
        set(light.meta_graphs[0].signature_def)
        == set(official.meta_graphs[0].signature_def)
        == {"serving_default", "double", "__saved_model_init_op"}
    )
    assert local_saved_model_proto_problem(model_factory(2.0)) is None


def test_the_text_format_parses_too(model_factory, tmp_path: Path) -> None:
    sm = (
        saved_model_protos()
        .get("tensorflow.SavedModel")
        .FromString((model_factory(2.0) / "saved_model.pb").read_bytes())
    )
    text = text_format.MessageToString(sm).encode()
    assert saved_model_proto_problem("saved_model.pbtxt", text) is None
    (tmp_path / "saved_model.pbtxt").write_bytes(text)
    assert local_saved_model_proto_problem(tmp_path) is None
    bad = saved_model_proto_problem("saved_model.pbtxt", b"meta_graphs { nonsense: 1 }")
    assert bad is not None and bad.startswith("saved_model.pbtxt is not a SavedModel protobuf")
    assert "not a SavedModel protobuf" in (
        saved_model_proto_problem("saved_model.pbtxt", b"\xff\xfe junk") or ""
    )


@pytest.mark.parametrize("junk", [b"junk!", b"\xff\xff\xff\xff\xff", b"\x0a\x05ab"])
def test_junk_bytes_are_refused(junk: bytes) -> None:
    problem = saved_model_proto_problem("saved_model.pb", junk)
    assert problem is not None and problem.startswith("saved_model.pb ")
    assert "\n" not in problem


def test_a_proto_without_a_signature_is_refused() -> None:
    problem = saved_model_proto_problem("saved_model.pb", no_signature_model())
    assert problem is not None
    assert problem.startswith("saved_model.pb has no signature (none of its 1 MetaGraphs has")
    assert "none of its 0 MetaGraphs" in (saved_model_proto_problem("saved_model.pb", b"") or "")


def test_a_tensorflow_savedmodel_without_signatures_is_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "nosig"))  # only __saved_model_init_op
    problem = local_saved_model_proto_problem(tmp_path / "nosig")
    assert problem is not None and "has no signature" in problem


def test_directory_prefers_pb_like_the_loader(model_factory, tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(model_factory(2.0), d)
    (d / "saved_model.pbtxt").write_text("garbage {")
    assert local_saved_model_proto_problem(d) is None  # TensorFlow loads the .pb
    (d / "saved_model.pb").write_bytes(b"junk!")
    assert "not a SavedModel protobuf" in (local_saved_model_proto_problem(d) or "")


def tar_of(members: dict[str, bytes], path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_tarball_checks_its_saved_model_member(model_factory, tmp_path: Path) -> None:
    src = model_factory(2.0)
    members = {rel: (src / rel).read_bytes() for rel in local_files(src)}
    good = tar_of(members, tmp_path / "good.tar.gz")
    assert sorted(check_tarball(good, check_proto=True)) == sorted(members)
    junk = tar_of({**members, "saved_model.pb": b"junk!"}, tmp_path / "junk.tar.gz")
    assert sorted(check_tarball(junk)) == sorted(members)  # structure alone is fine
    with pytest.raises(TarballError, match=r"tarball's saved_model\.pb is not a SavedModel"):
        check_tarball(junk, check_proto=True)
    unsigned = tar_of(
        {**members, "saved_model.pb": no_signature_model()}, tmp_path / "unsigned.tar.gz"
    )
    with pytest.raises(TarballError, match="has no signature"):
        check_tarball(unsigned, check_proto=True)


def test_the_check_does_not_import_tensorflow() -> None:
    code = (
        "import sys, modelsync.publish;"
        "from modelsync.savedmodel import saved_model_proto_problem as p;"
        "assert p('saved_model.pb', b'junk!');"
        "sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
