"""The text generation benchmark: its pure parts, and one small load run against the real runtime.

The figures themselves are the benchmark's to print (docs/benchmarks.md), never asserted here.
"""

from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark
from modeldeploy_runtime.model.tiny_text_model import build_tiny_text_model

bench = load_benchmark("bench_llm.py")


def test_the_workload_is_mixed_and_the_same_for_every_server() -> None:
    work = bench._requests(40, seed=8)
    assert work == bench._requests(40, seed=8)
    assert {max_tokens for _, max_tokens in work} == set(bench.OUTPUT_TOKENS)
    assert len({len(prompt.split()) for prompt, _ in work}) == len(bench.PROMPT_WORDS)


def test_the_table_compares_the_runtime_with_the_best_transformers_serve() -> None:
    def result(server: str, tokens_per_s: float, ttft_p99_ms: float) -> object:
        return bench.LoadResult(server, 32, 64, 0, tokens_per_s, 10.0, ttft_p99_ms, 5.0, 9.0, 30.0)

    table = bench.render(
        [
            result("modeldeploy runtime", 900.0, 80.0),
            result("transformers serve --continuous-batching", 400.0, 120.0),
            result("transformers serve", 300.0, 900.0),
        ]
    )
    assert "| modeldeploy runtime | 32 | 64 | 0 | 900 |" in table
    assert "2.25x the output tokens/s of `transformers serve --continuous-batching`" in table


@pytest.mark.timeout(180)
def test_a_small_load_run_against_the_runtime(tmp_path: Path) -> None:
    model_dir = tmp_path / "tiny-llama"
    build_tiny_text_model(model_dir)
    port = bench._free_port()
    runtime = bench.servers(model_dir, port)[0]
    started = bench._start(runtime, port, tmp_path / "runtime.log")
    try:
        figures = bench.run_load(started.url, runtime.model_id, 4, seed=1)
    finally:
        bench._stop(started)
    assert figures["errors"] == 0
    assert figures["requests"] == bench.MIN_REQUESTS
    assert figures["output_tokens_per_s"] > 0
