"""Pure parts: settings validation, metadata parsing, tensor codecs, v1 decoding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from modeldeploy_operator.api.v1alpha1 import OPERATOR_SET_RUNTIME_ENV
from modeldeploy_operator.manifests.deployment import RUNTIME_ENV_DEFAULTS, TERMINATION_GRACE_PERIOD_SECONDS
from modeldeploy_runtime.__main__ import build_parser, load_settings
from modeldeploy_runtime.errors import InvalidInput, ModelLoadError
from modeldeploy_runtime.model.metadata import Datatype, ModelMetadata, TensorSpec, parse_metadata
from modeldeploy_runtime.protocol.tensors import tensor_from_bytes, tensor_from_json, tensor_to_bytes
from modeldeploy_runtime.protocol.v1 import decode_instances
from modeldeploy_runtime.server import CONNECTION_CLOSE_GRACE_S
from modeldeploy_runtime.settings import ENV_PREFIX, DeviceChoice, ServeSettings


def serve_settings(monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str]) -> ServeSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(build_parser().parse_args(["serve", *argv]))
    assert isinstance(settings, ServeSettings)
    return settings


def test_env_configures_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "MODELDEPLOY_MODEL_NAME": "resnet", "MODELDEPLOY_MODEL_PATH": "/models/resnet.pt",
        "MODELDEPLOY_MAX_BATCH_SIZE": "4", "MODELDEPLOY_DEVICE": "cpu", "MODELDEPLOY_EXIT_ON_LOAD_FAILURE": "true",
    }  # fmt: skip
    settings = serve_settings(monkeypatch, ["--max-batch-size", "12"], env)
    assert settings.model_name == "resnet"
    assert settings.model_path == Path("/models/resnet.pt")
    assert settings.max_batch_size == 12
    assert settings.device is DeviceChoice.CPU
    assert settings.exit_on_load_failure is True
    assert settings.port == 8080


def test_the_variables_users_may_not_set_are_the_runtimes_settings() -> None:
    """The CRD refuses these names in spec.runtime.env; a rename on either side must show here."""
    settings = {ENV_PREFIX + field.upper() for field in ServeSettings.model_fields}
    assert set(OPERATOR_SET_RUNTIME_ENV) <= settings


def test_the_pod_outlives_the_runtimes_shutdown() -> None:
    """SIGKILL must not cut the shutdown delay, the drain or the closing of connections."""
    delay = float(RUNTIME_ENV_DEFAULTS["MODELDEPLOY_SHUTDOWN_DELAY_S"])
    drain = ServeSettings.model_fields["drain_grace_s"].default
    assert delay + drain + CONNECTION_CLOSE_GRACE_S <= TERMINATION_GRACE_PERIOD_SECONDS


def test_missing_required_setting_names_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_settings(monkeypatch, ["--model-path", "m.pt"], {})
    assert exit_info.value.code == 2
    assert "invalid setting --model-name / MODELDEPLOY_MODEL_NAME: Field required" in capsys.readouterr().err


def test_metadata_rejects_bad_declarations() -> None:
    with pytest.raises(ModelLoadError, match="every dimension must be a positive size or -1"):
        parse_metadata(
            '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 0]}], '
            '"outputs": [{"name": "y", "datatype": "FP32"}]}',
            "test",
        )
    with pytest.raises(ModelLoadError, match="input names must be unique"):
        parse_metadata(
            '{"inputs": [{"name": "x", "datatype": "FP32"}, {"name": "x", "datatype": "FP32"}], '
            '"outputs": [{"name": "y", "datatype": "FP32"}]}',
            "test",
        )


def test_batchable_only_with_dynamic_first_dimensions() -> None:
    dynamic = TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 3))
    fixed = TensorSpec(name="y", datatype=Datatype.FP32, shape=(1, 3))
    assert ModelMetadata(inputs=(dynamic,), outputs=(dynamic,)).batchable
    assert not ModelMetadata(inputs=(dynamic,), outputs=(fixed,)).batchable


@pytest.mark.parametrize("datatype", [Datatype.FP16, Datatype.BF16, Datatype.INT8, Datatype.BOOL, Datatype.FP64])
def test_binary_round_trip_per_datatype(datatype: Datatype) -> None:
    tensor = (torch.arange(12) % 3).reshape(3, 4).to(datatype.torch_dtype)
    raw = bytearray(tensor_to_bytes(tensor))
    assert len(raw) == 12 * datatype.itemsize
    assert torch.equal(tensor_from_bytes(raw, 0, len(raw), datatype, (3, 4), "t"), tensor)


def test_json_tensor_element_count_and_overflow() -> None:
    assert tensor_from_json([[1, 2], [3, 4]], Datatype.INT8, (2, 2), "t").dtype is torch.int8
    assert tensor_from_json([1.5, 2.5], Datatype.BF16, (2,), "t").dtype is torch.bfloat16
    with pytest.raises(InvalidInput, match="input x: data is not a"):
        tensor_from_json([1000], Datatype.INT8, (1,), "input x")
    with pytest.raises(InvalidInput, match="data has 3 elements but shape \\[2\\] needs 2"):
        tensor_from_json([1, 2, 3], Datatype.FP32, (2,), "t")


def test_v1_instances_for_several_inputs_need_names() -> None:
    spec = TensorSpec(name="a", datatype=Datatype.FP32, shape=(-1, 2))
    other = TensorSpec(name="b", datatype=Datatype.FP32, shape=(-1, 2))
    metadata = ModelMetadata(inputs=(spec, other), outputs=(spec,))
    with pytest.raises(InvalidInput, match="instances\\[0\\] must be an object with a value for input 'a'"):
        decode_instances({"instances": [[1, 2]]}, metadata, 8)
    a, b = decode_instances({"instances": [{"a": [1, 2], "b": [3, 4]}]}, metadata, 8)
    assert a.tolist() == [[1.0, 2.0]] and b.tolist() == [[3.0, 4.0]]
