"""Locate the control plane's binaries, building them on the first use on a machine.

devcluster/build-binaries.sh owns the versions (versions.env) and the cache layout; it answers at once
when the cache already holds them, so calling it is the single source of truth for the bin directory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "build-binaries.sh"


class BinariesUnavailable(RuntimeError):
    """The binaries could not be found or built."""


def ensure_binaries() -> Path:
    """The directory holding every required binary (the script fails when one is missing); the build's progress
    goes to our stderr."""
    if not BUILD_SCRIPT.is_file():
        raise BinariesUnavailable(f"{BUILD_SCRIPT} is missing: modeldeploy_devcluster must run from a source checkout")
    result = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise BinariesUnavailable(f"{BUILD_SCRIPT} failed with exit code {result.returncode} (see above)")
    return Path(result.stdout.strip().splitlines()[-1])
