"""Users' own checkpoints, made by the libraries they train with (torchvision layout, timm, Lightning,
safetensors, hub folders), exported and compared with those libraries' own forward passes; and the
files that are not state dicts, refused in one line."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from vggdeploy import VGG, BadInput, export_onnx, get_variant, load_model
from vggdeploy.backends import make_runner
from vggdeploy.variants import Variant
from vggdeploy.weights import infer_variant

timm = pytest.importorskip("timm", reason="timm is a test dependency (pip install -e '.[dev]')")
MINI_CFG = [16, "M", 32, "M", 64, 64, "M"]


def timm_vgg(bn: bool, seed: int = 0) -> torch.nn.Module:
    """timm's own VGG class on vgg-mini's layers (a 7x7 FC1 conv, FC2 a 1x1 conv, head.fc)."""
    from timm.models.vgg import VGG as TimmVGG

    torch.manual_seed(seed)
    model = TimmVGG(MINI_CFG, num_classes=10, in_chans=1, norm_layer=torch.nn.BatchNorm2d if bn else None)
    with torch.no_grad():  # non-trivial BN statistics, so that folding them is checked too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def onnx_out(path, x: torch.Tensor, output: str = "logits") -> np.ndarray:
    with make_runner("onnxruntime", path) as runner:
        return runner.infer({"input": x.numpy()})[output]


def test_alphabetical_vgg16_state_dict_infers_vgg16():
    with torch.device("meta"):
        sd = VGG(get_variant("vgg16")).state_dict()
    got = infer_variant(dict(sorted(sd.items())), "sorted")  # safetensors' order: features.10 before features.2
    assert (got.config, got.pool, got.num_classes) == ("D", 7, 1000)


@pytest.mark.parametrize("bn", [False, True], ids=["plain", "bn"])
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_timm_checkpoint_exports_and_matches_timm(tmp_path, bn, fmt):
    model = timm_vgg(bn)
    path = tmp_path / f"timm-mini.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), path)
    else:
        torch.save(model.state_dict(), path)
    loaded = load_model(str(path))
    assert "timm layout" in loaded.inferred and f"config mini{' with BN' if bn else ''}" in loaded.inferred
    assert (loaded.variant.pool, loaded.variant.hidden, loaded.variant.in_channels) == (7, 4096, 1)
    out = tmp_path / "art"
    export_onnx(loaded, ["classifier", "dense"], out, verify=False)
    g = torch.Generator().manual_seed(1)
    x32, x80 = torch.randn(2, 1, 32, 32, generator=g), torch.randn(2, 1, 80, 96, generator=g)
    with torch.no_grad():  # timm's forward: ConvMlp pools a small map up to 7x7; larger maps give a score map
        want32, want80 = model(x32).numpy(), model(x80).numpy()
    np.testing.assert_allclose(onnx_out(out / "classifier.onnx", x32), want32, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(onnx_out(out / "dense.onnx", x80), want80, rtol=1e-4, atol=1e-4)


def test_lightning_checkpoint_with_model_prefix(tmp_path):
    pl = pytest.importorskip("pytorch_lightning", reason="Lightning is a test dependency")
    from vggdeploy.weights import random_model

    class Module(pl.LightningModule):
        def __init__(self, lr: float = 0.05):
            super().__init__()
            self.save_hyperparameters()
            self.model = random_model(get_variant("vgg-mini"), 0).train()

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    data = torch.utils.data.TensorDataset(torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,)))
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    module = Module()
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(tmp_path / "epoch=0.ckpt")
    loaded = load_model(str(tmp_path / "epoch=0.ckpt"))
    assert "under 'state_dict'" in loaded.inferred and "prefix 'model.' removed" in loaded.inferred
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), module.model.eval()(x))


def test_hub_folder_and_training_checkpoint_with_python_objects(tmp_path):
    import argparse

    from safetensors.torch import save_file

    sd = timm_vgg(bn=False).state_dict()
    (tmp_path / "my-vgg").mkdir()
    save_file(sd, tmp_path / "my-vgg" / "model.safetensors")
    loaded = load_model(str(tmp_path / "my-vgg"))
    assert loaded.variant.name == "my-vgg" and loaded.weights.endswith("model.safetensors")
    # timm's train.py saves argparse arguments beside the weights: read as inert stubs, never imported
    torch.save({"epoch": 3, "arch": "vgg", "args": argparse.Namespace(lr=0.1), "state_dict": sd,
                "state_dict_ema": {f"ema.{k}": t for k, t in sd.items()}}, tmp_path / "train.pth.tar.pth")
    assert load_model(str(tmp_path / "train.pth.tar.pth")).variant.config == "mini"


def test_two_networks_need_a_prefix(tmp_path, mini):
    sd = mini.model.state_dict()
    torch.save({**{f"student.{k}": t for k, t in sd.items()}, **{f"teacher.{k}": t for k, t in sd.items()}},
               tmp_path / "distill.pth")
    with pytest.raises(BadInput, match=r"holds 2 VGGs \(prefixes 'student.', 'teacher.'\)"):
        load_model(str(tmp_path / "distill.pth"))
    loaded = load_model(str(tmp_path / "distill.pth"), prefix="teacher.")
    assert f"prefix 'teacher.' removed, {len(sd)} other tensor(s) ignored" in loaded.inferred


BAD = {
    "whole module": (lambda p, m: torch.save(m, p), r"holds a whole pickled vggdeploy\.models\.VGG, not a state dict"),
    "torchscript": (lambda p, m: torch.jit.trace(m, torch.randn(1, 1, 32, 32)).save(p), "is a TorchScript program"),
    "truncated": (lambda p, m: (torch.save(m.state_dict(), p), p.write_bytes(p.read_bytes()[:5000])), "cannot read checkpoint"),
    "truncated safetensors": (lambda p, m: _truncated_safetensors(p, m), "cannot read model.safetensors as safetensors"),
    "timm extra head": (lambda p, m: torch.save({**timm_vgg(False).state_dict(), "head.fc2.weight": torch.zeros(3, 10)}, p),
                        r"unexpected head\.fc2\.weight"),
    "missing tensor": (lambda p, m: torch.save({k: t for k, t in m.state_dict().items() if k != "classifier.3.bias"}, p),
                       r"missing classifier\.3\.bias"),
    "extra head": (lambda p, m: torch.save({**m.state_dict(), "classifier.9.weight": torch.zeros(5, 10)}, p),
                   r"unexpected classifier\.9\.weight"),
    "no head": (lambda p, m: torch.save({k: t for k, t in m.state_dict().items() if k.startswith("features")}, p),
                "without a classifier"),
    "not a vgg": (lambda p, m: torch.save({"conv1.weight": torch.zeros(3)}, p), "not a VGG checkpoint"),
    # a 1-element storage expanded to 10^12 elements: reading it whole asked for 4 TB
    "expanded storage": (lambda p, m: torch.save({**m.state_dict(), "classifier.0.weight": torch.zeros(1).expand(10**6, 10**6)}, p),
                         r"classifier\.0\.weight has shape \(1000000, 1000000\), 1e\+12 elements"),
    "fan-in 0": (lambda p, m: torch.save({**m.state_dict(), "classifier.0.weight": torch.zeros(64, 0)}, p), "an empty dimension"),
    "zip directory": (lambda p, m: _damaged_zip_directory(p, m), "its zip archive is damaged"),
    "four channels": (lambda p, m: torch.save(VGG(Variant("x", "mini", in_channels=4, pool=4, hidden=64)).state_dict(), p),
                      "takes 4 input channels"),
}


def _truncated_safetensors(path, model):
    from safetensors.torch import save_file

    save_file(model.state_dict(), path)
    path.write_bytes(path.read_bytes()[:3000])


def _damaged_zip_directory(path, model):
    torch.save(model.state_dict(), path)
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x01\x02")  # the last central-directory record: its sizes and offset overwritten
    data[at + 20:at + 46] = b"\xff" * 26
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", BAD)
def test_bad_checkpoints_are_one_line(tmp_path, mini, case):
    write, message = BAD[case]
    path = tmp_path / ("model.safetensors" if "safetensors" in case else "model.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write(path, mini.model.eval())
    with pytest.raises(BadInput, match=message):
        load_model(str(path))


def test_cli_refuses_a_torchscript_file_in_one_line_without_warnings(tmp_path, mini):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(mini.model.eval(), torch.randn(1, 1, 32, 32)).save(tmp_path / "scripted.pt")
    # -q: a slow import under load would otherwise add a progress line before the error
    r = subprocess.run([sys.executable, "-m", "vggdeploy", "-q", "export", str(tmp_path / "scripted.pt"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[0].startswith("error: scripted.pt is a TorchScript program"), r.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: torch.save(torch.jit.load(")  # no warning leaked
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case, message", [
    ("int32", "is int32; vggdeploy takes float16"), ("bool", "is bool;"), ("complex", "is complex64;"),
    ("float8", "is float8_e4m3fn;"), ("meta", "on the meta device"), ("sparse", "sparse_coo \\(not dense\\)"),
])
def test_weights_that_are_not_dense_floats_are_refused(tmp_path, mini, case, message):
    """The README says a wrong dtype is refused: int32/bool/complex weights used to export silently
    (the imaginary part dropped); float8, meta and sparse tensors ended in tracebacks."""
    sd = mini.model.state_dict()
    t = sd["features.0.weight"]
    sd["features.0.weight"] = {"int32": lambda: t.to(torch.int32), "bool": lambda: t > 0, "complex": lambda: t.to(torch.complex64),
                               "float8": lambda: t.to(torch.float8_e4m3fn), "meta": lambda: t.to("meta"),
                               "sparse": lambda: t.to_sparse()}[case]()
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(BadInput, match=message):
        load_model(str(tmp_path / "w.pth"))


def test_a_legacy_format_state_dict_loads(tmp_path, mini):
    """torch.save(..., _use_new_zipfile_serialization=False): a harmless state dict, refused before."""
    torch.save(mini.model.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    loaded = load_model(str(tmp_path / "legacy.pth"))
    assert loaded.variant.config == "mini"
    assert torch.equal(loaded.model.state_dict()["features.0.weight"], mini.model.state_dict()["features.0.weight"])
