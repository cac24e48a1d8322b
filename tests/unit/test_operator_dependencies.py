"""The operator's image installs only the `operator` extra: it must import nothing from the runtime's or the
test tools' dependencies (torch above all: the operator image stays small)."""

import subprocess
import sys

NOT_IN_THE_OPERATOR_IMAGE = [
    "torch",
    "numpy",
    "fastapi",
    "uvicorn",
    "httpx",
    "hypothesis",
    "pytest",
    "modeldeploy_runtime",
]


def test_operator_imports_without_runtime_or_dev_packages() -> None:
    blocked = ", ".join(repr(name) for name in NOT_IN_THE_OPERATOR_IMAGE)
    program = (
        f"import sys\nfor name in [{blocked}]:\n    sys.modules[name] = None\n"
        "import modeldeploy_operator.app, modeldeploy_operator.__main__, modeldeploy_operator.api.crd\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
