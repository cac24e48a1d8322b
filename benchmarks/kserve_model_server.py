"""KServe's ModelServer serving the same torch module, for the side-by-side benchmark.

Runs in `.venv-kserve` (kserve's own dependency pins), which sees torch and modeldeploy_runtime from
`.venv` through a .pth line: the model is loaded by the same loader, so both servers run the very same
module. The predict method is the usual KServe custom-model pattern.

    .venv-kserve/bin/python benchmarks/kserve_model_server.py --model_name m --model_path m.pt --http_port 9000
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import kserve
import torch
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse
from modeldeploy_runtime.model.devices import detect_devices
from modeldeploy_runtime.model.loading import load_model
from modeldeploy_runtime.settings import DeviceChoice, DtypeChoice

_uvicorn_config_init = uvicorn.Config.__init__


def _loopback_without_access_log(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
    """KServe binds 0.0.0.0; benchmarks here stay on loopback. No access log: KServe's best case."""
    kwargs["host"] = "127.0.0.1"
    kwargs["access_log"] = False
    _uvicorn_config_init(self, *args, **kwargs)


uvicorn.Config.__init__ = _loopback_without_access_log  # type: ignore[method-assign]


class TorchModel(kserve.Model):
    def __init__(self, name: str, path: Path, device: DeviceChoice) -> None:
        super().__init__(name)
        self.servable = load_model(name, path, None, detect_devices(device)[0], DtypeChoice.FLOAT32)
        self.ready = True

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> InferResponse:
        request_input = payload.inputs[0]
        [output] = self.servable.run([torch.from_numpy(request_input.as_numpy())])
        binary = bool(payload.parameters and payload.parameters.get("binary_data_output"))
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[
                InferOutput(
                    name="logits", shape=list(output.shape), datatype="FP32", data=output.numpy(),
                    parameters={"binary_data": True} if binary else None,
                )
            ],
        )  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", type=Path, required=True)
    parser.add_argument("--torch_threads", type=int, default=None)
    parser.add_argument("--device", type=DeviceChoice, default=DeviceChoice.CPU)
    arguments, _ = parser.parse_known_args()
    if arguments.torch_threads:
        torch.set_num_threads(arguments.torch_threads)
    kserve.ModelServer().start([TorchModel(arguments.model_name, arguments.model_path, arguments.device)])
