"""The dynamic batching engine: gathers concurrent requests into one model call."""

from modeldeploy_runtime.batching.engine import BatchObserver, DynamicBatcher, Slot

__all__ = ["BatchObserver", "DynamicBatcher", "Slot"]
