"""Recording what `kubectl get --watch` reports while a test acts, so that what happened in between is asserted
without timing anything."""

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recorded:
    """Each version of the watched objects, with when it arrived."""

    versions: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [obj for _, obj in self.versions]


@contextmanager
def watching(kube: Any, *what: str) -> Iterator[Recorded]:
    """Records what `kubectl get WHAT --watch -o json` reports until the block ends (the current state first)."""
    argv = [str(kube.cluster.bin_dir / "kubectl"), f"--kubeconfig={kube.cluster.kubeconfig}"]
    argv += ["get", *what, "-n", kube.namespace, "--watch", "-o", "json"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    recorded = Recorded()

    def read() -> None:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if line.rstrip() == "}":  # kubectl prints each object indented, closing it at column 0
                recorded.versions.append((time.monotonic(), json.loads("".join(lines))))
                lines = []

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        kube.wait_for(f"the watch of {' '.join(what)} to start", lambda: recorded.versions)
        yield recorded
    finally:
        process.terminate()
        process.wait()
        reader.join()
