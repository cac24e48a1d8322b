"""Every GPU a replica is given, used: one copy of the model on each visible device, batches spread across them.

Kubernetes' device plugin makes exactly the pod's GPUs visible to the container, so "every visible CUDA device" is
"every GPU of gpu.count". Each inference thread of the batching engine is bound to one copy, round robin, so
batches that run at once run on different GPUs (data parallelism, as Triton's instance groups across GPUs).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

import torch

from modeldeploy_runtime.errors import ModelLoadError
from modeldeploy_runtime.model.servable import ServableModel
from modeldeploy_runtime.settings import DeviceChoice


def visible_devices(choice: DeviceChoice, cuda_devices: int) -> list[torch.device]:
    """The devices to load the model on, given how many CUDA devices the container sees."""
    if choice is DeviceChoice.CUDA and cuda_devices == 0:
        raise ModelLoadError("device 'cuda' was asked for but CUDA is not available in this container")
    if choice is DeviceChoice.CPU or cuda_devices == 0:
        return [torch.device("cpu")]
    return [torch.device("cuda", index) for index in range(cuda_devices)]


def detect_devices(choice: DeviceChoice) -> list[torch.device]:
    """visible_devices for this container."""
    return visible_devices(choice, torch.cuda.device_count() if torch.cuda.is_available() else 0)


def worker_count(configured: int, devices: int) -> int:
    """At least one worker per device, and as many on each: the configured count rounded up to a multiple."""
    return -(-max(configured, devices) // devices) * devices


class ModelCopies:
    """One copy of the model per device; each inference thread runs its batches on the copy it was given."""

    def __init__(self, copies: Sequence[ServableModel]) -> None:
        self._copies = list(copies)
        self._assigned = itertools.count()
        self._thread = threading.local()

    def __len__(self) -> int:
        return len(self._copies)

    def bind_thread(self) -> None:
        """Gives the calling thread the next copy, round robin (the engine's thread initializer calls it)."""
        self._thread.copy = self._copies[next(self._assigned) % len(self._copies)]

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        # Batches too cheap to hand off run on the event loop's thread, which no initializer bound: the first copy.
        copy: ServableModel = getattr(self._thread, "copy", self._copies[0])
        return copy.run(inputs)
