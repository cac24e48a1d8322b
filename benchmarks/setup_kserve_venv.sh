#!/usr/bin/env bash
# Creates .venv-kserve for the runtime benchmark: KServe with its own dependency pins, kept out of .venv.
# torch and modeldeploy_runtime come from .venv through a .pth line that appends .venv's site-packages to
# sys.path, so kserve's pins (first on the path) win and torch is not downloaded a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
"$python" -m venv .venv-kserve
.venv-kserve/bin/pip install -q --upgrade pip
.venv-kserve/bin/pip install -q kserve==0.21.0
purelib() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
echo "import site; site.addsitedir('$(purelib "$PWD/.venv/bin/python")')" \
  > "$(purelib .venv-kserve/bin/python)/zz_modeldeploy_venv.pth"
.venv-kserve/bin/python -c 'import kserve, torch, modeldeploy_runtime'
touch .venv-kserve/.installed
