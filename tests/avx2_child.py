"""Run by test_isa.py under `qemu-x86_64 -cpu EPYC-Milan` (an AVX2-only AMD Zen 3): what this
CPU looks like to vggdeploy, which runtime `cpu` picks, and ONNX Runtime's correct digits per artifact.

    python tests/avx2_child.py DIGITS.npz ARTIFACT.onnx ...    -> one JSON line on stdout
"""

import json
import sys
from pathlib import Path

import numpy as np

from vggdeploy.backends import artifact_precision, default_cpu_backend, make_runner
from vggdeploy.isa import cpu_isa


def main(digits: str, paths: list[str]) -> None:
    data = np.load(digits)
    out = {"isa": cpu_isa().as_dict(), "correct": {}, "cpu_backend": {}}
    for p in map(Path, paths):
        with make_runner("onnxruntime", p) as r:
            pred = np.concatenate([r.infer({"input": data["x"][i:i + 250]})["logits"].argmax(1)
                                   for i in range(0, len(data["x"]), 250)])
        out["correct"][str(p)] = int((pred == data["y"]).sum())
        out["cpu_backend"][str(p)] = default_cpu_backend(*artifact_precision(p))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
