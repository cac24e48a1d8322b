"""Imports a script of benchmarks/ (not a package) as a module, for the tests of its pure parts, and runs one as
its users do."""

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def load_benchmark(file_name: str) -> ModuleType:
    path = BENCHMARKS / file_name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def run_benchmark(file_name: str, *args: str) -> str:
    """Runs the script to the end (a tiny size: its own cluster, every phase); returns what it printed."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / file_name), *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def table_rows(printed: str, starting: str = "| ") -> list[list[str]]:
    """The cells of the printed Markdown table rows that start with `starting`."""
    return [line.strip("|").split("|") for line in printed.splitlines() if line.startswith(starting)]
