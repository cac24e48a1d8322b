"""Text generation through the OpenAI-compatible endpoints and v2 generate, with the official `openai` client.

The server is the real runtime on a free port with a tiny Llama the tests build. The correctness test: greedy
decoding through the server gives what `model.generate` gives for the same prompt, whether a request runs alone
or among 63 others of different lengths that join and leave the running batch.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson
import pytest
import torch
from openai import AsyncOpenAI, OpenAI
from runtime_metrics import scrape, value
from runtime_server import RuntimeServer
from transformers import AutoTokenizer, PreTrainedModel

pytestmark = pytest.mark.timeout(180)

PROMPTS = [
    "The runtime batches",
    "Tokens stream back as server-sent events",
    "A ModelDeployment turns a model directory into a service with probes, metrics and autoscaling. " * 3,
    "quick brown fox",
]


def _reference(model: PreTrainedModel, tokenizer: AutoTokenizer, prompt: str, max_tokens: int) -> tuple[str, int]:
    """What `model.generate` decodes greedily: the text and the number of generated tokens."""
    prompt_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        output = model.generate(prompt_ids, max_new_tokens=max_tokens, do_sample=False)
    generated = output[0, prompt_ids.shape[1] :].tolist()
    return tokenizer.decode(generated, skip_special_tokens=True), len(generated)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> None:
    # The reference generations share two cores with the server: more threads only spin against each other.
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer(text_model: tuple[Path, PreTrainedModel]) -> AutoTokenizer:
    return AutoTokenizer.from_pretrained(text_model[0])


@pytest.fixture(scope="module")
def client(text_server: RuntimeServer) -> OpenAI:
    return OpenAI(base_url=f"{text_server.url}/v1", api_key="unused", max_retries=0)


def test_the_model_is_listed_as_openai_lists_models(client: OpenAI) -> None:
    models = client.models.list()
    assert [model.id for model in models.data] == ["tiny-llama"]
    assert models.data[0].object == "model"


def test_v2_describes_a_ready_text_model(text_server: RuntimeServer) -> None:
    metadata = httpx.get(f"{text_server.url}/v2/models/tiny-llama", timeout=10).json()
    assert metadata["platform"] == "huggingface_transformers"
    assert httpx.get(f"{text_server.url}/v2/models/tiny-llama/ready", timeout=10).json()["ready"] is True


def test_greedy_decoding_matches_model_generate_alone_and_among_63_others(
    text_server: RuntimeServer, text_model: tuple[Path, PreTrainedModel], tokenizer: AutoTokenizer
) -> None:
    model = text_model[1]
    cases = [
        (f"{PROMPTS[index % len(PROMPTS)]} {index}" * (1 + index % 5), 4 + (index * 7) % 45) for index in range(64)
    ]
    expected = [_reference(model, tokenizer, prompt, max_tokens) for prompt, max_tokens in cases]

    async def complete(client: AsyncOpenAI, prompt: str, max_tokens: int, stream: bool) -> tuple[str, int, str]:
        if not stream:
            answer = await client.completions.create(
                model="tiny-llama", prompt=prompt, max_tokens=max_tokens, temperature=0
            )
            assert answer.usage is not None
            return answer.choices[0].text, answer.usage.completion_tokens, answer.choices[0].finish_reason
        chunks = await client.completions.create(
            model="tiny-llama", prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        text, usage, finish_reason = "", 0, ""
        async for chunk in chunks:
            if chunk.usage is not None:
                usage = chunk.usage.completion_tokens
            for choice in chunk.choices:
                text += choice.text
                finish_reason = choice.finish_reason or finish_reason
        return text, usage, finish_reason

    async def run() -> tuple[tuple[str, int, str], list[tuple[str, int, str]]]:
        async with AsyncOpenAI(base_url=f"{text_server.url}/v1", api_key="unused", max_retries=0) as client:
            alone = await complete(client, *cases[2], stream=False)
            together = await asyncio.gather(
                *(
                    complete(client, prompt, max_tokens, index % 2 == 1)
                    for index, (prompt, max_tokens) in enumerate(cases)
                )
            )
            return alone, list(together)

    alone, together = asyncio.run(run())
    assert alone[:2] == expected[2]
    for index, ((text, tokens, finish_reason), (expected_text, expected_tokens)) in enumerate(
        zip(together, expected, strict=True)
    ):
        assert (text, tokens) == (expected_text, expected_tokens), f"request {index} ({cases[index]!r})"
        assert finish_reason == ("length" if tokens == cases[index][1] else "stop")


def test_chat_streams_the_same_text_as_the_whole_answer_with_usage_last(client: OpenAI) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a runtime?"}]
    whole = client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=24, temperature=0)
    stream = client.chat.completions.create(
        model="tiny-llama", messages=messages, max_completion_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == whole.choices[0].message.content
    assert (
        whole.usage is not None
        and whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    )


def test_a_stop_string_ends_the_text_before_it(client: OpenAI) -> None:
    free = client.completions.create(model="tiny-llama", prompt=PROMPTS[0], max_tokens=40, temperature=0)
    text = free.choices[0].text
    stop = text[10:13]
    cut = client.completions.create(model="tiny-llama", prompt=PROMPTS[0], max_tokens=40, temperature=0, stop=[stop])
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="tiny-llama", prompt=PROMPTS[0], max_tokens=40, temperature=0, stop=stop, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in streamed) == cut.choices[0].text


def test_n_samples_several_choices_with_temperature_and_top_p(client: OpenAI) -> None:
    answer = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "Say something."}], n=3, max_tokens=16,
        temperature=1.5, top_p=0.9, seed=7,
    )  # fmt: skip
    assert sorted(choice.index for choice in answer.choices) == [0, 1, 2]
    assert answer.usage is not None and answer.usage.completion_tokens <= 3 * 16
    streamed = client.completions.create(
        model="tiny-llama", prompt=["one", "two"], n=2, max_tokens=8, temperature=0.8, stream=True
    )
    finished = {chunk.choices[0].index for chunk in streamed if chunk.choices[0].finish_reason}
    assert finished == {0, 1, 2, 3}


def test_v2_generate_and_generate_stream(text_server: RuntimeServer, client: OpenAI) -> None:
    expected = client.completions.create(model="tiny-llama", prompt=PROMPTS[1], max_tokens=12, temperature=0)
    body = {"text_input": PROMPTS[1], "parameters": {"max_tokens": 12, "temperature": 0}}
    whole = httpx.post(f"{text_server.url}/v2/models/tiny-llama/generate", json=body, timeout=30)
    assert whole.status_code == 200, whole.text
    assert whole.json()["text_output"] == expected.choices[0].text
    with httpx.stream(
        "POST", f"{text_server.url}/v2/models/tiny-llama/generate_stream", json=body, timeout=30
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [orjson.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: ")]
    assert "".join(event["text_output"] for event in events) == expected.choices[0].text
    assert events[-1]["finish_reason"] == "length"


def test_a_client_that_disconnects_frees_its_slot_at_once(text_server: RuntimeServer) -> None:
    body = {"model": "tiny-llama", "prompt": "long", "max_tokens": 400, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{text_server.url}/v1/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        assert _gauge(text_server, "modeldeploy_num_requests_running") == 1
    deadline = time.monotonic() + 5
    while _gauge(text_server, "modeldeploy_num_requests_running") != 0:
        assert time.monotonic() < deadline, "the disconnected stream still holds its slot"
        time.sleep(0.05)


def test_metrics_have_vllm_semantics(text_server: RuntimeServer, client: OpenAI) -> None:
    client.completions.create(
        model="tiny-llama", prompt=PROMPTS[0], max_tokens=5, temperature=0, extra_body={"ignore_eos": True}
    )
    samples = scrape(text_server.url)
    assert value(samples, "modeldeploy_time_to_first_token_seconds_count", model="tiny-llama") >= 1
    assert value(samples, "modeldeploy_inter_token_latency_seconds_count", model="tiny-llama") >= 4
    assert value(samples, "modeldeploy_generation_tokens_total", model="tiny-llama") >= 5
    assert value(samples, "modeldeploy_prompt_tokens_total", model="tiny-llama") >= 1
    assert 0.0 <= value(samples, "modeldeploy_kv_cache_usage_perc", model="tiny-llama") <= 1.0
    assert value(samples, "modeldeploy_num_requests_waiting", model="tiny-llama") == 0
    assert value(samples, "modeldeploy_requests_total", model="tiny-llama", protocol="openai", code="200") >= 1


def _gauge(server: RuntimeServer, name: str) -> float:
    return value(scrape(server.url), name, model=server.model_name)
