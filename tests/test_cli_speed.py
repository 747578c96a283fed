"""Refusals of bad options, `--help` and `list` come before any heavy import: no torch, no runtime
(their times are in benchmarks/refusal_bench.py, not here)."""

import subprocess
import sys

import pytest

CASES = [["--help"], ["list"], ["export", "vgg16", "--form", "dens"], ["export", "vgg16", "--int8", "--target", "gpu"],
         ["bench", "x.onnx", "--backend", "ov"], ["eval", "x.onnx", "--data", "d", "--protocol", "centre"],
         ["quantize", "x.onnx", "--int8", "--target", "cpu", "--calib-method", "kl"],
         ["triton", "x.onnx", "--repo", "r", "--platform", "tf"], ["extract", "x.onnx", "--data", "d", "--out", "o", "--pool", "avg"],
         ["build", "x.onnx", "--hardware-compat", "turing"], ["export", "vgg16", "--backend", "ov"]]

PROBE = """
import sys
from vggdeploy.cli import main
code = main({args!r})
heavy = sorted(m for m in ("torch", "torchvision", "onnxruntime", "openvino") if m in sys.modules)
print(code, ",".join(heavy))
"""


@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a))
def test_refused_or_answered_before_heavy_imports(args, tmp_path):
    r = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, cwd=tmp_path)
    code, heavy = (r.stdout.strip().splitlines()[-1] + " ").split(" ")[:2]
    assert code == ("0" if args[0] in ("--help", "list") else "2"), r.stdout + r.stderr
    assert heavy == "", f"imported {heavy} before answering"
    if code == "2":
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) <= 2, r.stderr
