"""A small client for the binary tensor data extension (what a Triton/KServe client library does)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import torch

_DATATYPES = {torch.float32: "FP32", torch.float16: "FP16", torch.int32: "INT32", torch.int64: "INT64"}
_DTYPES = {name: dtype for dtype, name in _DATATYPES.items()}


def binary_request(inputs: dict[str, torch.Tensor], binary_outputs: bool) -> tuple[bytes, dict[str, str]]:
    tensors = []
    blobs = []
    for name, tensor in inputs.items():
        blob = tensor.contiguous().numpy().tobytes()
        blobs.append(blob)
        tensors.append(
            {"name": name, "datatype": _DATATYPES[tensor.dtype], "shape": list(tensor.shape),
             "parameters": {"binary_data_size": len(blob)}}
        )  # fmt: skip
    header = orjson.dumps({"inputs": tensors, "parameters": {"binary_data_output": binary_outputs}})
    headers = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
    return header + b"".join(blobs), headers


def decode_response(response: httpx.Response) -> dict[str, torch.Tensor]:
    """Outputs by name, whether they came back as JSON or as raw bytes."""
    header_length = response.headers.get("inference-header-content-length")
    content = response.content
    document: dict[str, Any] = orjson.loads(content[: int(header_length)] if header_length else content)
    offset = int(header_length or 0)
    outputs = {}
    for output in document["outputs"]:
        dtype = _DTYPES[output["datatype"]]
        if "data" in output:
            outputs[output["name"]] = torch.tensor(output["data"], dtype=dtype).reshape(output["shape"])
            continue
        size = output["parameters"]["binary_data_size"]
        raw = bytearray(content[offset : offset + size])
        offset += size
        outputs[output["name"]] = torch.frombuffer(raw, dtype=dtype).reshape(output["shape"])
    assert offset == (len(content) if header_length else 0), "unread bytes after the last binary output"
    return outputs
