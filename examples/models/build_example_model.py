"""Builds the playground's model: a small MLP classifier, trained in a second on synthetic data.

    python examples/models/build_example_model.py --out /tmp/models/iris-like.pt

Input `features` FP32 [-1, 4]; output `logits` FP32 [-1, 3] (three well-separated Gaussian classes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from modeldeploy_runtime.model.metadata import Datatype, ModelMetadata, TensorSpec
from modeldeploy_runtime.model.packaging import save_torchscript

FEATURES = 4
CLASSES = 3
METADATA = ModelMetadata(
    inputs=(TensorSpec(name="features", datatype=Datatype.FP32, shape=(-1, FEATURES)),),
    outputs=(TensorSpec(name="logits", datatype=Datatype.FP32, shape=(-1, CLASSES)),),
)


class Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(FEATURES, 16), torch.nn.ReLU(), torch.nn.Linear(16, CLASSES))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def train(steps: int = 300, seed: int = 0) -> Classifier:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(CLASSES, FEATURES, generator=generator) * 3.0
    labels = torch.randint(0, CLASSES, (600,), generator=generator)
    features = centers[labels] + torch.randn(600, FEATURES, generator=generator)
    torch.manual_seed(seed)
    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        loss.backward()
        optimizer.step()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where to write the TorchScript file")
    arguments = parser.parse_args()
    path = save_torchscript(train(), arguments.out, METADATA)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
