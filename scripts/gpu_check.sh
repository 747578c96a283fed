#!/usr/bin/env bash
# GPU truth from a fresh clone, on a GPU host: the `gpu` tests, then benchmarks/gpu_bench.py
# (TensorRT engines of vgg16/vgg19 beside eager PyTorch on CUDA -> benchmarks/results/gpu.md/.json).
# Elsewhere: one line saying what is missing, exit 3, nothing installed.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=$(python3 -c 'import sys; sys.path.insert(0, "."); from vggdeploy.gpu import missing_for_tensorrt as m; print("; ".join(x for x in m() if "TensorRT" not in x))')
if [ -n "$missing" ]; then
  echo "error: gpu-check needs a GPU host: $missing" >&2
  exit 3
fi
make setup-gpu
.venv-gpu/bin/python -m pytest -q -rs -m gpu
.venv-gpu/bin/python benchmarks/gpu_bench.py "$@"
