"""Loads a Hugging Face model directory for text generation: safetensors weights only, never remote code.

`transformers` reads the directory (config, weights, tokenizer, chat template, generation config); this module
only decides what it may read: `use_safetensors=True` keeps it from unpickling `*.bin` weights,
`trust_remote_code=False` from importing Python files shipped with the model, and `local_files_only=True` from
reaching for a hub. Only architectures that `transformers` implements natively load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jinja2 import TemplateError
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from modeldeploy_runtime.errors import InvalidInput, ModelLoadError

_log = logging.getLogger(__name__)

PLATFORM = "huggingface_transformers"
# Weight files only the full unpickler reads; named in the refusal when they are all a directory has.
_PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass(frozen=True)
class TextGenerationModel:
    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    generation_config: GenerationConfig
    device: torch.device
    # Prompt plus completion, in tokens: --max-model-len, or the model's own context length.
    context_length: int
    eos_token_ids: tuple[int, ...]
    # Unix time the model was loaded: OpenAI's model object has a `created` field.
    created: int

    @property
    def vocabulary_size(self) -> int:
        return int(self.model.config.get_text_config().vocab_size)

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """The prompt of a chat: the tokenizer's chat template with the assistant's turn opened."""
        if not self.tokenizer.chat_template:
            raise InvalidInput(
                f"model '{self.name}' has no chat template (tokenizer_config.json or chat_template.jinja): "
                "use /v1/completions with a plain prompt",
                param="messages",
            )
        try:
            encoded: Any = self.tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=True, return_dict=True
            )
        except TemplateError as error:
            # The template's own raise_exception() messages ("roles must alternate ...") are meant for users.
            raise InvalidInput(f"the chat template refused the messages: {error}", param="messages") from None
        return list(encoded["input_ids"])


def load_text_generation_model(
    name: str, path: Path, device: torch.device, dtype: torch.dtype, max_model_len: int | None
) -> TextGenerationModel:
    """Raises ModelLoadError with a reason a person can act on."""
    _check_directory(path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path,
            config=config,
            dtype=dtype,
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
        )
    except Exception as error:
        raise ModelLoadError(
            f"cannot load {path} as a Hugging Face causal language model: {error.__class__.__name__}: {error}"
        ) from error
    model.to(device)  # type: ignore[arg-type]  # transformers types `to` as a decorator's wrapper
    model.eval()
    generation_config = model.generation_config
    context_length = _context_length(config, max_model_len, path)
    eos = generation_config.eos_token_id if generation_config.eos_token_id is not None else tokenizer.eos_token_id
    eos_token_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
    if not tokenizer.chat_template:
        _log.warning("%s has no chat template: /v1/chat/completions will answer 400", path)
    return TextGenerationModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        generation_config=generation_config,
        device=device,
        context_length=context_length,
        eos_token_ids=eos_token_ids,
        created=int(time.time()),
    )


def _check_directory(path: Path) -> None:
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} is not a directory (a Hugging Face model is a directory)")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json: not a Hugging Face model directory")
    files = sorted(item for item in path.rglob("*") if item.is_file())
    if not any(item.suffix == ".safetensors" for item in files):
        pickled = [item.name for item in files if item.suffix in _PICKLE_WEIGHT_SUFFIXES]
        found = f": {', '.join(pickled)} would need the unpickler, which this runtime never runs" if pickled else ""
        raise ModelLoadError(f"{path} has no *.safetensors weights{found}; convert the weights to safetensors")


def _context_length(config: Any, max_model_len: int | None, path: Path) -> int:
    native = getattr(config.get_text_config(), "max_position_embeddings", None)
    if max_model_len is None:
        if native is None:
            raise ModelLoadError(f"{path}: config.json declares no max_position_embeddings; set --max-model-len")
        return int(native)
    if native is not None and max_model_len > native:
        raise ModelLoadError(
            f"--max-model-len {max_model_len} exceeds the model's context length {native} (max_position_embeddings)"
        )
    return max_model_len
