# Two entry points (see README): `make demo` and `make test`; both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
VGG := $(VENV)/bin/vggdeploy

.PHONY: setup demo test test-fast bench clean
setup: $(VENV)/.installed

# torch first, pinned as DESIGN.md says (pip takes it from this machine's disk; a newer pin downloads GBs)
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[cpu,dev]'
	touch $@

# The main job on an embedded default, offline: a seeded VGG16 in all three forms, checked against
# eager PyTorch on the bundled photos.
demo: setup
	$(VGG) export vgg16 --weights random --seed 0 --form all --force
	$(VGG) inspect engines/vgg16-random0/dense.onnx

test: setup
	$(PY) -m pytest -q -rs

test-fast: setup
	$(PY) -m pytest -q -rs -m "not slow"

bench: setup
	$(PY) benchmarks/export_bench.py

clean:
	rm -rf engines/*/ .pytest_cache
