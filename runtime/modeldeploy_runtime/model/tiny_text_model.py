"""A tiny Hugging Face text-generation model directory, built offline: tests, examples and the benchmark.

No model hub is reachable where this project is built and tested, so the model is made here: a byte-level BPE
tokenizer trained with `tokenizers` on a small text, a chat template, and a seeded, randomly initialised Llama
causal LM of about three million parameters, all written with `save_pretrained` (safetensors weights).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
# ChatML, as Qwen2 and many instruction-tuned models use it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_TRAINING_TEXT = """\
Model as a service means large language models behind an OpenAI-compatible API.
A ModelDeployment turns a model directory into a GPU-scheduled service with probes, metrics and autoscaling.
The runtime batches requests between decode steps, so a short request never waits for a long one.
Tokens stream back as server-sent events; every answer reports its usage and why it finished.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
"""
VOCAB_SIZE = 512
CONTEXT_LENGTH = 512


def train_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, BOS, EOS, "<|im_start|>", "<|im_end|>"],
        # Only the bytes of the (ASCII) training text: every token decodes to whole characters, so text
        # compares exactly with a reference decoding; other characters of a prompt are dropped.
    )
    tokenizer.train_from_iterator(_TRAINING_TEXT.splitlines() * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=CONTEXT_LENGTH,
    )


def build_tiny_text_model(
    out: Path, seed: int = 0, chat_template: bool = True, eos_token: str = "<|im_end|>"
) -> LlamaForCausalLM:
    """Writes the model directory to `out` and returns the model, in eval mode, as written."""
    tokenizer = train_tokenizer()
    if not chat_template:
        tokenizer.chat_template = None
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(eos_token),
        pad_token_id=tokenizer.pad_token_id,
        # Wider than the default 0.02: well-separated logits, so greedy decoding does not hinge on rounding.
        initializer_range=0.5,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model
