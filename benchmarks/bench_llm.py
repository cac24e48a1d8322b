"""Side-by-side benchmark of text generation: this runtime, `transformers serve`, a one-at-a-time baseline.

    make bench-llm
    .venv/bin/python benchmarks/bench_llm.py [--model-dir DIR] [--concurrency 1 8 32] [--json out.json]

Same model directory, same machine, same run; one server at a time. Load comes from the official `openai`
client in a separate process: streamed chat completions at a fixed concurrency (closed loop), with mixed
prompt and output lengths drawn from a seeded generator, greedy decoding (so every server generates the same
tokens). Per server and concurrency: output tokens/s, time to first token and inter-token latency (p50, p99),
errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
from fastapi import FastAPI, Request
from starlette.responses import StreamingResponse

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "tiny-llama"
# (prompt words, max_tokens) drawn per request: short chats and longer documents, short and long answers.
PROMPT_WORDS = (8, 32, 96)
OUTPUT_TOKENS = (16, 64, 128)
REQUESTS_PER_CLIENT = 2
MIN_REQUESTS = 16
STARTUP_TIMEOUT_S = 180.0
_WORDS = ("model", "service", "batch", "token", "stream", "runtime", "probe", "metric", "cache", "prompt", "answer")


@dataclass
class LoadResult:
    server: str
    concurrency: int
    requests: int
    errors: int
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    seconds: float
    # The server process's CPU time (all its threads) per output token: on a shared machine, steadier than tokens/s.
    server_cpu_ms_per_token: float = float("nan")


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    health_path: str
    # The `model` requests name: `transformers serve` knows the model by the path it was started with.
    model_id: str = MODEL_NAME


def servers(model_dir: Path, port: int) -> list[Server]:
    python = sys.executable
    transformers_cli = str(Path(python).with_name("transformers"))
    common_serve = [transformers_cli, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                    "--device", "cpu", "--dtype", "float32"]  # fmt: skip
    runtime_flags = ["--model-path", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                     "--max-num-seqs", "32", "--log-level", "warning"]  # fmt: skip
    return [
        Server(
            "modeldeploy runtime",
            [python, "-m", "modeldeploy_runtime", "serve", "--model-name", MODEL_NAME, *runtime_flags],
            "/v2/health/ready",
        ),
        Server(
            "transformers serve --continuous-batching",
            [*common_serve, "--continuous-batching", "--cb-num-blocks", "512", "--cb-max-batch-tokens", "2048"],
            "/health",
            str(model_dir),
        ),
        Server("transformers serve", common_serve, "/health", str(model_dir)),
        Server(
            "one at a time (model.generate)", [python, __file__, "naive-server", str(model_dir), str(port)], "/health"
        ),
    ]


def _requests(count: int, seed: int) -> list[tuple[str, int]]:
    generator = random.Random(seed)
    lengths = [(generator.choice(PROMPT_WORDS), generator.choice(OUTPUT_TOKENS)) for _ in range(count)]
    return [(" ".join(generator.choice(_WORDS) for _ in range(words)), tokens) for words, tokens in lengths]


async def _one_request(client: object, model: str, prompt: str, max_tokens: int) -> tuple[float, list[float], int]:
    """Time to first token, the inter-token latency (none for a one-token answer), and the output tokens.

    The `openai` client sends the request and reads the stream; its events are parsed here with orjson rather than
    into the client's pydantic chunk objects, which cost as much CPU as a server's whole work per token and, on a
    machine whose cores the load generator shares with the server, would compress every server to the same speed.
    """
    started = time.perf_counter()
    arrivals: list[float] = []
    tokens = 0
    async with client.chat.completions.with_streaming_response.create(  # type: ignore[attr-defined]
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0,
        stream=True, stream_options={"include_usage": True},
    ) as response:  # fmt: skip
        async for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"error event: {chunk['error']}")
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            choices = chunk.get("choices")
            if choices and (choices[0].get("delta") or {}).get("content"):
                arrivals.append(time.perf_counter())
    if not arrivals:  # the model's first token was its end of sequence: the answer is complete, and empty
        arrivals.append(time.perf_counter())
    tokens = tokens or len(arrivals)
    # Time per output token after the first (vLLM's TPOT): independent of how many tokens a server puts in a chunk.
    per_token = [(arrivals[-1] - arrivals[0]) / (tokens - 1)] if tokens > 1 else []
    return arrivals[0] - started, per_token, tokens


async def _load(url: str, model: str, concurrency: int, seed: int) -> dict[str, object]:
    from openai import AsyncOpenAI

    work = _requests(max(MIN_REQUESTS, REQUESTS_PER_CLIENT * concurrency), seed)
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    first_tokens: list[float] = []
    inter_token: list[float] = []
    counts = {"tokens": 0, "errors": 0}

    async def client_loop(client: AsyncOpenAI) -> None:
        while not queue.empty():
            prompt, max_tokens = queue.get_nowait()
            try:
                ttft, request_inter_token, tokens = await _one_request(client, model, prompt, max_tokens)
            except Exception as error:
                counts["errors"] += 1
                print(f"  error: {error.__class__.__name__}: {str(error)[:200]}", file=sys.stderr)
                continue
            first_tokens.append(ttft)
            inter_token.extend(request_inter_token)
            counts["tokens"] += tokens

    async with AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "requests": len(work),
        "errors": counts["errors"],
        "output_tokens_per_s": counts["tokens"] / seconds,
        "ttft_p50_ms": _percentile(first_tokens, 50),
        "ttft_p99_ms": _percentile(first_tokens, 99),
        "itl_p50_ms": _percentile(inter_token, 50),
        "itl_p99_ms": _percentile(inter_token, 99),
        "seconds": seconds,
    }


def _percentile(values: list[float], percent: int) -> float:
    return float(np.percentile(values, percent) * 1000) if values else float("nan")


def run_load(url: str, model: str, concurrency: int, seed: int) -> dict[str, object]:
    """The load generator runs in its own process, so its CPU use never shares the server's interpreter."""
    output = subprocess.run(
        [sys.executable, __file__, "load", url, model, str(concurrency), str(seed)],
        check=True, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    sys.stderr.write(output.stderr)
    return json.loads(output.stdout)


@dataclass
class _Started:
    process: subprocess.Popen[bytes]
    url: str


def _start(server: Server, port: int, log: Path) -> _Started:
    # One intra-op thread for every server alike: on a small shared machine more threads only spin.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    process = subprocess.Popen(server.command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + server.health_path, timeout=2).status_code == 200:
                return _Started(process, url)
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{server.name} did not become healthy within {STARTUP_TIMEOUT_S}s")


def _stop(started: _Started) -> None:
    started.process.send_signal(signal.SIGTERM)
    try:
        started.process.wait(30)
    except subprocess.TimeoutExpired:
        started.process.kill()
        started.process.wait()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc (Linux); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def benchmark(model_dir: Path, concurrencies: list[int], log_dir: Path) -> list[LoadResult]:
    """Each concurrency level runs every server in turn (a fresh start each), so a change in what else the
    machine runs meanwhile touches all servers of a level alike rather than one server's whole row."""
    results = []
    port = _free_port()
    for concurrency in concurrencies:
        for server in servers(model_dir, port):
            log = log_dir / f"{server.name.split()[0]}-{len(results)}.log"
            try:
                started = _start(server, port, log)
            except RuntimeError as error:
                print(f"   {server.name} skipped: {error}", file=sys.stderr)
                continue
            try:
                run_load(started.url, server.model_id, 1, seed=99)  # warm-up: lazy initialisation, first batches
                cpu_before = _cpu_seconds(started.process.pid)
                figures = run_load(started.url, server.model_id, concurrency, seed=concurrency)
                cpu_seconds = _cpu_seconds(started.process.pid) - cpu_before
            finally:
                _stop(started)
            tokens = float(figures["output_tokens_per_s"]) * float(figures["seconds"])  # type: ignore[arg-type]
            result = LoadResult(
                server=server.name,
                concurrency=concurrency,
                server_cpu_ms_per_token=cpu_seconds * 1000 / tokens if tokens else float("nan"),
                **figures,  # type: ignore[arg-type]
            )
            print(f"   c={concurrency} {server.name}: {result.output_tokens_per_s:.0f} tok/s", file=sys.stderr)
            results.append(result)
    return results


def render(results: list[LoadResult]) -> str:
    lines = [
        "| server | concurrency | requests | errors | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms "
        "| ITL p99 ms | server CPU ms/token |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for item in sorted(results, key=lambda result: (result.concurrency, result.server)):
        lines.append(
            f"| {item.server} | {item.concurrency} | {item.requests} | {item.errors} | {item.output_tokens_per_s:.0f} "
            f"| {item.ttft_p50_ms:.0f} | {item.ttft_p99_ms:.0f} | {item.itl_p50_ms:.1f} | {item.itl_p99_ms:.1f} "
            f"| {item.server_cpu_ms_per_token:.2f} |"
        )
    for concurrency in sorted({item.concurrency for item in results}):
        ours = next((r for r in results if r.concurrency == concurrency and r.server.startswith("modeldeploy")), None)
        others = [r for r in results if r.concurrency == concurrency and r.server.startswith("transformers")]
        if ours and others:
            best = max(others, key=lambda result: result.output_tokens_per_s)
            lines.append(
                f"\nconcurrency {concurrency}: {ours.output_tokens_per_s / best.output_tokens_per_s:.2f}x the output "
                f"tokens/s of `{best.server}` (its best); TTFT p99 {ours.ttft_p99_ms:.0f} ms vs "
                f"{best.ttft_p99_ms:.0f} ms; server CPU per output token {ours.server_cpu_ms_per_token:.2f} ms vs "
                f"{best.server_cpu_ms_per_token:.2f} ms"
            )
    return "\n".join(lines)


# The one-at-a-time baseline: what serving looks like without a batching engine (model.generate per request).
def naive_server(model_dir: Path, port: int) -> None:
    import torch
    import uvicorn
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True).eval()
    one_at_a_time = threading.Lock()
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        ids = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]  # fmt: skip
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        counted: list[int] = []

        def generate() -> None:
            with one_at_a_time, torch.inference_mode():
                output = model.generate(ids, max_new_tokens=body["max_tokens"], do_sample=False, streamer=streamer)
            counted.append(output.shape[1] - ids.shape[1])

        threading.Thread(target=generate, daemon=True).start()

        async def events() -> AsyncIterator[bytes]:
            pieces = iter(streamer)
            while (text := await asyncio.to_thread(next, pieces, None)) is not None:
                chunk = {"choices": [{"index": 0, "delta": {"content": text}}], "usage": None}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            usage = {"prompt_tokens": ids.shape[1], "completion_tokens": counted[0] if counted else 0}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        print(json.dumps(asyncio.run(_load(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "naive-server":
        naive_server(Path(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="a Hugging Face model directory (default: the tiny test model)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as scratch:
        model_dir = arguments.model_dir
        if model_dir is None:
            from modeldeploy_runtime.model.tiny_text_model import build_tiny_text_model

            model_dir = Path(scratch) / "tiny-llama"
            build_tiny_text_model(model_dir)
        results = benchmark(model_dir, arguments.concurrency, Path(scratch))
    print(render(results))
    if arguments.json:
        arguments.json.write_text(json.dumps([asdict(result) for result in results], indent=2))


if __name__ == "__main__":
    main()
