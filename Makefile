# Two entry points (see README): `make demo` and `make test`; both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
VGG := $(VENV)/bin/vggdeploy

.PHONY: setup setup-gpu setup-modelopt demo test test-slow bench gpu-check gpu-check-host clean
setup: $(VENV)/.installed

# torch first, pinned as DESIGN.md says (pip takes it from this machine's disk; a newer pin downloads GBs)
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[cpu,dev]'
	touch $@

# A GPU host's environment, beside .venv: onnxruntime-gpu replaces onnxruntime (never both), plus TensorRT 10
# for CUDA 13 and Polygraphy: the set pyproject's `gpu` extra pins, which works together (ORT's TensorRT provider links TensorRT 10)
setup-gpu: .venv-gpu/.installed
.venv-gpu/.installed: pyproject.toml
	python3 -m venv .venv-gpu
	.venv-gpu/bin/python -m pip install -q --upgrade pip
	.venv-gpu/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	.venv-gpu/bin/python -m pip install -q -e '.[gpu,dev]' openvino
	touch $@

# `--quantizer modelopt`: NVIDIA ModelOpt's ONNX PTQ in .venv, without its dependencies (its [onnx] extra pins
# onnxruntime-gpu and an older onnx, which would replace .venv's); what it needs to run on the CPU, by name
setup-modelopt: setup
	$(PY) -m pip install -q --no-deps nvidia-modelopt==0.47.0 onnx-graphsurgeon onnxconverter-common==1.16.0 \
	    cppimport lief pulp omegaconf antlr4-python3-runtime nvidia-ml-py onnxslim

# The main job on embedded defaults, offline: the bundled trained vgg-mini in all three forms, FP16
# and INT8 for both targets, checked, timed beside eager PyTorch into a report (engines/vgg-mini/run/
# report.html) and written as a Triton repository; then a seeded VGG16 in all three forms and INT8 for
# CPU, checked against eager PyTorch on the bundled photos and timed.
demo: setup
	$(VGG) export vgg-mini --form all --fp16 --int8 --target cpu --force
	$(VGG) quantize engines/vgg-mini/classifier.onnx --int8 --target tensorrt --force
	$(VGG) inspect --check-qdq tensorrt engines/vgg-mini/classifier.int8-tensorrt.onnx
	$(VGG) bench engines/vgg-mini --batch 1,8 --runs 5 --out engines/vgg-mini/run
	$(VGG) triton engines/vgg-mini/dense.onnx --repo engines/triton --platform python --dynamic-batching --force
	$(VGG) export vgg16 --weights random --seed 0 --form all --force
	$(VGG) quantize engines/vgg16-random0/classifier.onnx --int8 --target cpu --force
	$(VGG) bench engines/vgg16-random0/classifier.onnx --backend onnxruntime --batch 1 --runs 5
	$(VGG) bench engines/vgg16-random0/classifier.int8-cpu.onnx --batch 1 --runs 5

# the tests (about 8 minutes on 2 cores: 537 tests, 7.8 min in a fresh-clone CI run 2026-12-07 on the Emerald Rapids); test-slow: full-size VGGs, an emulated AVX2 CPU, a Ray cluster (CI runs both)
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -rs -m slow

bench: setup
	$(PY) benchmarks/export_bench.py
	$(PY) benchmarks/cpu_bench.py
	$(PY) benchmarks/reference_bench.py
	$(PY) benchmarks/nncf_bench.py
	$(PY) benchmarks/int8_layouts.py
	$(PY) benchmarks/cluster_bench.py

# On a GPU host: every gpu test (a skip fails it) and benchmarks/gpu_bench.py; elsewhere one line and exit 3.
# gpu-check-host: a GPU host with no network, its own python3, nothing installed (scripts/gpu_check.sh says more)
gpu-check:
	bash scripts/gpu_check.sh

gpu-check-host:
	bash scripts/gpu_check.sh --host

clean:
	rm -rf engines/*/ .pytest_cache
