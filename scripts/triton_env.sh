#!/usr/bin/env bash
# A real tritonserver for CPU serving tests, in an environment of its own (DESIGN.md fact 9): the
# server inside nvidia-pytriton's wheel (2.5x, python backend), numpy<2, vggdeploy's CPU runtimes,
# and vggdeploy itself (without torch: running an artifact does not import it), so the generated
# model.py runs the artifact with vggdeploy's fastest CPU runner. Prints the tritonserver path.
# Usage: scripts/triton_env.sh [VENV] (default .venv-triton)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-triton}
if ! [ -f "$venv/.installed" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q nvidia-pytriton 'numpy<2' onnxruntime openvino onnx filelock psutil
  "$venv/bin/python" -m pip install -q --no-deps -e .
  touch "$venv/.installed"
fi
root=$("$venv/bin/python" -c 'import os, pytriton; print(os.path.join(os.path.dirname(pytriton.__file__), "tritonserver"))')
pyver=$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
# the python backend needs the stub built for this interpreter beside it
cp -n "$root/python_backend_stubs/$pyver/triton_python_backend_stub" "$root/backends/python/" 2>/dev/null || true
echo "$root/bin/tritonserver"
