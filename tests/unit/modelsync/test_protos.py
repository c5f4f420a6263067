"""The TensorFlow-free protos are wire-compatible with tensorflow-serving-api's own."""

from __future__ import annotations

import subprocess
import sys

from google.protobuf import text_format

from modelsync.protos import serving_protos


def test_light_messages_round_trip_with_the_official_ones() -> None:
    from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, predict_pb2

    p = serving_protos()
    text = (
        'model_config_list { config { name: "m" base_path: "/r/m" model_platform: '
        '"tensorflow" model_version_policy { specific { versions: 3 versions: 4 } } '
        'version_labels { key: "stable" value: 3 } } }'
    )
    light = p.ReloadConfigRequest()
    text_format.Parse(text, light.config)
    official = model_management_pb2.ReloadConfigRequest.FromString(light.SerializeToString())
    assert official.config.model_config_list.config[0].version_labels["stable"] == 3
    assert list(
        official.config.model_config_list.config[0].model_version_policy.specific.versions
    ) == [3, 4]

    status = get_model_status_pb2.GetModelStatusResponse()
    v = status.model_version_status.add()
    v.version, v.state = 4, get_model_status_pb2.ModelVersionStatus.AVAILABLE
    v.status.error_code, v.status.error_message = 5, "x"
    back = p.GetModelStatusResponse.FromString(status.SerializeToString())
    assert (
        back.model_version_status[0].version,
        back.model_version_status[0].state,
        back.model_version_status[0].status.error_code,
    ) == (4, 30, 5)

    req = p.PredictRequest()
    req.model_spec.name = "m"
    req.inputs["x"].float_val.append(1.5)
    assert (
        predict_pb2.PredictRequest.FromString(req.SerializeToString()).inputs["x"].float_val[0]
        == 1.5
    )


def test_node_daemons_do_not_import_tensorflow() -> None:
    code = (
        "import sys, config_manager.daemon, remote_model_puller.daemon, modelsync.client;"
        "from modelsync.protos import serving_protos; serving_protos();"
        "sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
