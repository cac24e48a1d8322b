"""Every GPU a replica is given, used: which devices get a copy of the model, and which copy each thread runs."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch
from modeldeploy_runtime.errors import ModelLoadError
from modeldeploy_runtime.model.devices import ModelCopies, visible_devices, worker_count
from modeldeploy_runtime.settings import DeviceChoice


def test_every_visible_gpu_gets_a_copy() -> None:
    assert visible_devices(DeviceChoice.AUTO, 4) == [torch.device("cuda", i) for i in range(4)]
    assert visible_devices(DeviceChoice.CUDA, 1) == [torch.device("cuda", 0)]


def test_the_cpu_when_no_gpu_is_visible_or_asked_for() -> None:
    assert visible_devices(DeviceChoice.AUTO, 0) == [torch.device("cpu")]
    assert visible_devices(DeviceChoice.CPU, 8) == [torch.device("cpu")]
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        visible_devices(DeviceChoice.CUDA, 0)


def test_each_device_gets_as_many_workers() -> None:
    assert worker_count(1, 1) == 1
    assert worker_count(1, 4) == 4, "at least one worker per GPU"
    assert worker_count(6, 4) == 8, "rounded up to a multiple of the GPUs"


class _FakeCopy:
    def __init__(self, device: str, batches_at_once: threading.Barrier) -> None:
        self.device = device
        self._batches_at_once = batches_at_once

    def run(self, inputs: Sequence[Any]) -> list[Any]:
        self._batches_at_once.wait(timeout=30)
        return [self.device]


def test_batches_that_run_at_once_run_on_different_gpus() -> None:
    together = threading.Barrier(2)  # each batch waits for the other: they must run in two threads at once
    copies = ModelCopies([_FakeCopy("cuda:0", together), _FakeCopy("cuda:1", together)])  # type: ignore[list-item]
    with ThreadPoolExecutor(max_workers=worker_count(1, len(copies)), initializer=copies.bind_thread) as pool:
        ran_on = list(pool.map(copies.run, [["batch 1"], ["batch 2"]]))
    assert sorted(device for (device,) in ran_on) == ["cuda:0", "cuda:1"]
