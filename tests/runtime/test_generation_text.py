"""Generated tokens to text: streamed pieces add up to the whole, and a stop string never leaks into a stream."""

from __future__ import annotations

import pytest
from modeldeploy_runtime.generation.text import IncrementalText
from modeldeploy_runtime.model.tiny_text_model import train_tokenizer

TEXT = "The runtime batches requests between decode steps, so a short request never waits."


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return train_tokenizer()


def _stream(tokenizer, stop: tuple[str, ...]) -> tuple[list[str], IncrementalText]:  # type: ignore[no-untyped-def]
    prompt = tokenizer("Tokens stream back:")["input_ids"]
    text = IncrementalText(tokenizer.backend_tokenizer, prompt, stop)
    pieces = []
    for token in tokenizer(" " + TEXT, add_special_tokens=False)["input_ids"]:
        text.add(token)
        pieces.append(text.take(final=False))
        if text.stopped:
            break
    pieces.append(text.take(final=True))
    return pieces, text


def test_the_pieces_add_up_to_the_decoded_text(tokenizer) -> None:  # type: ignore[no-untyped-def]
    pieces, text = _stream(tokenizer, ())
    assert "".join(pieces) == " " + TEXT
    assert not text.stopped


@pytest.mark.parametrize("stop", [("decode",), ("never", "between"), ("s, so",)])
def test_a_stop_string_ends_the_text_before_it_and_never_streams(tokenizer, stop: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    pieces, text = _stream(tokenizer, stop)
    first = min(TEXT.index(item) for item in stop)
    assert text.stopped
    assert "".join(pieces) == " " + TEXT[:first]
    for end in range(1, len(pieces) + 1):
        assert not any(item in "".join(pieces[:end]) for item in stop)
