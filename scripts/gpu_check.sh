#!/usr/bin/env bash
# GPU truth on a GPU host. Elsewhere: one line saying what is missing, exit 3, nothing installed.
#
#   scripts/gpu_check.sh          (make gpu-check) a host with a network: .venv-gpu (make setup-gpu: onnxruntime-gpu
#                                 1.31, TensorRT 10, Polygraphy), every `gpu` test with VGGDEPLOY_REQUIRE_GPU=1 (a
#                                 skipped gpu test fails the run), then benchmarks/gpu_bench.py
#   scripts/gpu_check.sh --host   (make gpu-check-host) a GPU host with no network: the host's own python3, nothing
#                                 installed; the gpu tests run where pytest and their parts exist (each skip says
#                                 why), gpu_bench.py runs every path that can run and names the others; exit 3 only
#                                 if no GPU path ran
# Both write benchmarks/results/gpu.md and gpu.json. The host mode stops within 8 minutes (150 s of tests, 300 s of benchmark).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
py=python3
missing=$($py -c 'import sys; sys.path.insert(0, "."); from vggdeploy.gpu import cuda_info as c; i = c(); print("" if i.available else i.problem)')
if [ -n "$missing" ]; then
  echo "error: gpu-check needs a GPU host: $missing" >&2
  exit 3
fi
if [ "$mode" = "--host" ]; then
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  if $py -c 'import pytest' 2>/dev/null; then
    timeout 150 $py -m pytest -q -rs -m gpu tests/test_gpu.py -p no:cacheprovider || echo "gpu tests: exit $? (see above)" >&2
  else
    echo "gpu tests: not run (pytest is not installed on this host)" >&2
  fi
  timeout 300 $py benchmarks/gpu_bench.py "${@:2}"
  exit $?
fi
set -e
make setup-gpu
export VGGDEPLOY_REQUIRE_GPU=1
.venv-gpu/bin/python -m pytest -q -rs -m gpu
.venv-gpu/bin/python benchmarks/gpu_bench.py "${@:2}"
