"""Bad input to the text generation endpoints: a 400 in OpenAI's shape naming the field, and nothing breaks.

Every refusal leaves the engine serving: a good request right after still gets its answer, and no answer
carries a traceback or a path of the server. Also: the overload bound (429 with Retry-After), a model without
a chat template, and model directories the loader refuses.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from modeldeploy_runtime.errors import ModelLoadError
from modeldeploy_runtime.model.huggingface import load_text_generation_model
from modeldeploy_runtime.model.tiny_text_model import build_tiny_text_model
from runtime_server import RuntimeServer
from transformers import PreTrainedModel

pytestmark = pytest.mark.timeout(120)

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER = [{"role": "user", "content": "hi"}]
MODEL = {"model": "tiny-llama"}


@pytest.mark.parametrize(
    ("path", "body", "param", "words"),
    [
        (CHAT, {**MODEL, "messages": []}, "messages", "at least 1 item"),
        (CHAT, {**MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", "'user'"),
        (CHAT, {**MODEL, "messages": [{"role": "user"}]}, "messages[0].content", "required"),
        (COMPLETIONS, {**MODEL, "prompt": "runtime " * 600}, "prompt", "context of 512 tokens"),
        (COMPLETIONS, {**MODEL, "prompt": "hi", "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        (COMPLETIONS, {**MODEL, "prompt": "hi", "max_tokens": 10**9}, "max_tokens", "maximum context length is 512"),
        (CHAT, {**MODEL, "messages": USER, "max_completion_tokens": 100_000}, "max_completion_tokens", "lower"),
        (COMPLETIONS, {**MODEL, "prompt": "hi", "temperature": 3}, "temperature", "less than or equal to 2"),
        (COMPLETIONS, {**MODEL, "prompt": "hi", "n": 0}, "n", "greater than or equal to 1"),
        (COMPLETIONS, {**MODEL, "prompt": "hi", "best_of": 3}, "best_of", "Unrecognized request argument"),
        (COMPLETIONS, {**MODEL, "prompt": []}, "prompt", "at least 1 item"),
        (COMPLETIONS, {**MODEL, "prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        (CHAT, {**MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
         "messages[0].content[0].type", "'text'"),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_naming_the_field(
    text_server: RuntimeServer, path: str, body: dict[str, Any], param: str, words: str
) -> None:
    response = httpx.post(text_server.url + path, json=body, timeout=30)
    _assert_openai_error(response, 400, param, words)
    _assert_still_serving(text_server)


def test_text_that_is_not_utf8_is_refused_naming_its_field(text_server: RuntimeServer) -> None:
    body = b'{"model": "tiny-llama", "messages": [{"role": "user", "content": "caf\xe9 \xff"}]}'
    response = httpx.post(text_server.url + CHAT, content=body, headers={"content-type": "application/json"})
    _assert_openai_error(response, 400, "messages[0].content", "not valid UTF-8")
    escaped = b'{"model": "tiny-llama", "prompt": "lone \\ud800 surrogate"}'
    response = httpx.post(text_server.url + COMPLETIONS, content=escaped, headers={"content-type": "application/json"})
    _assert_openai_error(response, 400, "prompt", "not valid UTF-8")
    response = httpx.post(
        text_server.url + COMPLETIONS, content=b"{not json", headers={"content-type": "application/json"}
    )
    _assert_openai_error(response, 400, None, "not valid JSON")
    _assert_still_serving(text_server)


def test_an_unknown_model_is_a_404(text_server: RuntimeServer) -> None:
    response = httpx.post(text_server.url + COMPLETIONS, json={"model": "gpt-9", "prompt": "hi"}, timeout=30)
    _assert_openai_error(response, 404, None, "gpt-9")
    assert response.json()["error"]["code"] == "model_not_found"


def test_tensor_endpoints_point_a_text_model_to_its_own(text_server: RuntimeServer) -> None:
    response = httpx.post(f"{text_server.url}/v2/models/tiny-llama/infer", json={"inputs": []}, timeout=30)
    assert response.status_code == 400
    assert "/v1/chat/completions" in response.json()["error"]


@pytest.fixture(scope="module")
def tight_server(model_dir: Path) -> Iterator[RuntimeServer]:
    """A model without a chat template, two sequences at once and one waiting."""
    path = model_dir / "tiny-llama-plain"
    build_tiny_text_model(path, seed=1, chat_template=False)
    server = RuntimeServer(
        path, model_dir / "tight-text-server.log", "--max-num-seqs", "2", "--max-queue-size", "1",
        "--torch-threads", "1", model_name="plain",
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.terminate()


def test_a_model_without_chat_template_refuses_chat_but_completes(tight_server: RuntimeServer) -> None:
    response = httpx.post(tight_server.url + CHAT, json={"model": "plain", "messages": USER}, timeout=30)
    _assert_openai_error(response, 400, "messages", "no chat template")
    _assert_still_serving(tight_server)


def test_beyond_the_sequence_bound_requests_get_429_with_retry_after(tight_server: RuntimeServer) -> None:
    body = {"model": "plain", "prompt": "long", "max_tokens": 200, "ignore_eos": True}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=tight_server.url, timeout=60) as client:
            return await asyncio.gather(*(client.post(COMPLETIONS, json=body) for _ in range(6)))

    responses = asyncio.run(burst())
    codes = sorted(response.status_code for response in responses)
    assert codes.count(200) >= 3 and 429 in codes, codes
    refused = next(response for response in responses if response.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    _assert_still_serving(tight_server)


def test_the_loader_refuses_pickled_weights_naming_the_file(
    tmp_path: Path, text_model: tuple[Path, PreTrainedModel]
) -> None:
    shutil.copytree(text_model[0], tmp_path / "model")
    (tmp_path / "model" / "model.safetensors").unlink()
    torch.save({}, tmp_path / "model" / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pytorch_model\.bin would need the unpickler"):
        load_text_generation_model("m", tmp_path / "model", torch.device("cpu"), torch.float32, None)


def test_the_loader_refuses_remote_code_and_a_context_beyond_the_model(
    tmp_path: Path, text_model: tuple[Path, PreTrainedModel]
) -> None:
    with pytest.raises(ModelLoadError, match="exceeds the model's context length 512"):
        load_text_generation_model("m", text_model[0], torch.device("cpu"), torch.float32, 4096)
    shutil.copytree(text_model[0], tmp_path / "model")
    config_path = tmp_path / "model" / "config.json"
    config = config_path.read_text().replace(
        '"model_type": "llama"', '"model_type": "custom-thing", "auto_map": {"AutoModelForCausalLM": "modeling.Custom"}'
    )
    config_path.write_text(config)
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_text_generation_model("m", tmp_path / "model", torch.device("cpu"), torch.float32, None)


def _assert_openai_error(response: httpx.Response, status: int, param: str | None, words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert words in error["message"]
    assert "Traceback" not in response.text and "/tmp" not in response.text and "site-packages" not in response.text


def _assert_still_serving(server: RuntimeServer) -> None:
    body = {"model": server.model_name, "prompt": "still there?", "max_tokens": 3, "temperature": 0}
    response = httpx.post(server.url + COMPLETIONS, json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] >= 1
