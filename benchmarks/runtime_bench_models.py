"""The benchmark's two models, built from torch.nn and saved as TorchScript with declared metadata.

- `tiny_mlp`: 64 -> 256 -> 256 -> 10; serving overhead dominates.
- `resnet50`: the ResNet-50 architecture (bottleneck blocks 3-4-6-3, 224x224 RGB, 1000 classes) with
  random weights; compute dominates.
"""

from __future__ import annotations

from pathlib import Path

import torch
from modeldeploy_runtime.model.metadata import Datatype, ModelMetadata, TensorSpec
from modeldeploy_runtime.model.packaging import save_torchscript
from torch import nn

MLP_INPUT = (64,)
CNN_INPUT = (3, 224, 224)


class TinyMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
        )  # fmt: skip
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.shortcut(x))


class ResNet50(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )  # fmt: skip
        blocks: list[nn.Module] = []
        in_channels = 64
        for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for index in range(count):
                blocks.append(Bottleneck(in_channels, width, stride if index == 0 else 1))
                in_channels = width * Bottleneck.expansion
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(in_channels, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(image))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1))


def _spec(name: str, shape: tuple[int, ...]) -> TensorSpec:
    return TensorSpec(name=name, datatype=Datatype.FP32, shape=(-1, *shape))


def build(kind: str, path: Path) -> Path:
    torch.manual_seed(0)
    if kind == "tiny_mlp":
        metadata = ModelMetadata(inputs=(_spec("features", MLP_INPUT),), outputs=(_spec("logits", (10,)),))
        return save_torchscript(TinyMlp(), path, metadata)
    metadata = ModelMetadata(inputs=(_spec("image", CNN_INPUT),), outputs=(_spec("logits", (1000,)),))
    return save_torchscript(ResNet50(), path, metadata)


INPUT_SHAPES = {"tiny_mlp": MLP_INPUT, "resnet50": CNN_INPUT}
INPUT_NAMES = {"tiny_mlp": "features", "resnet50": "image"}
