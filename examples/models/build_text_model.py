"""Builds the text generation example's model: a tiny Llama with a trained tokenizer and a chat template.

    python examples/models/build_text_model.py --out /tmp/models/tiny-llama [--archive]

A seeded, randomly initialised causal LM (about three million parameters): it answers in fluent nonsense, but
through every path a real model takes (tokenizer, chat template, continuous batching, streaming). `--archive`
also writes `OUT.tar.gz`, the form an https:// model.uri fetches, and prints its sha256 for model.sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import tarfile
from pathlib import Path

from modeldeploy_runtime.model.tiny_text_model import build_tiny_text_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the model directory to write")
    parser.add_argument("--archive", action="store_true", help="also write OUT.tar.gz and print its sha256")
    arguments = parser.parse_args()
    build_tiny_text_model(arguments.out)
    print(f"wrote {arguments.out}")
    if arguments.archive:
        archive = arguments.out.with_name(arguments.out.name + ".tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(arguments.out, arcname=arguments.out.name)
        print(f"wrote {archive} (sha256 {hashlib.sha256(archive.read_bytes()).hexdigest()})")


if __name__ == "__main__":
    main()
