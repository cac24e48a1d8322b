import sys
from pathlib import Path

# pytest runs in importlib mode (pyproject), which puts no test folder on sys.path: the helper module beside
# this file (benchmark_scripts) becomes importable here.
sys.path.insert(0, str(Path(__file__).parent))
