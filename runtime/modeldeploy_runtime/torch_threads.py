"""How many threads torch runs: sized from the container's CPU limit, not from the node's cores.

torch sizes its pools from the cores it sees, and a container sees every core of its node: a replica limited to
2 CPUs on a 64-core node would run 64 intra-op threads, and the CFS quota would throttle it at every step. The
operator passes the limit (Downward API, in millicores); a fractional limit is rounded up, since a part of a core
still runs a thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modeldeploy_runtime.settings import ServeSettings


@dataclass(frozen=True)
class ThreadPlan:
    intra_op: int | None  # per worker thread (OpenMP keeps the count per calling thread); None: torch's default
    inter_op: int | None  # process-wide; None: torch's default
    source: str  # what the counts come from, for the start-up log


def plan_threads(settings: ServeSettings, cpu_count: int) -> ThreadPlan:
    workers = settings.model_workers
    if settings.cpu_limit_millicores is not None:
        cores = max(1, min(math.ceil(settings.cpu_limit_millicores / 1000), cpu_count))
        source = f"the CPU limit of {settings.cpu_limit_millicores}m: {cores} of {cpu_count} cores"
    else:
        cores, source = cpu_count, f"no CPU limit: the node's {cpu_count} cores"
    if settings.torch_threads is not None:
        intra_op: int | None = settings.torch_threads
        source = f"--torch-threads; {source}"
    elif settings.cpu_limit_millicores is not None or workers > 1:
        # Workers sharing the cores beat one worker with all of them: no barrier waits across cores.
        intra_op = max(1, cores // workers)
    else:
        intra_op, source = None, "no CPU limit: torch's default"
    if workers > 1:
        source += f", shared by {workers} workers"
    inter_op = cores if settings.cpu_limit_millicores is not None else None
    return ThreadPlan(intra_op, inter_op, source)
