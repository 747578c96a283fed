"""README's "Bring your own model" commands, run as written on files made by the libraries they name
(torchvision, safetensors, timm, Lightning, torch's TorchScript-based ONNX exporter), full-size and
seeded: one file per line of the README."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from user_models import foreign_onnx

pytestmark = pytest.mark.slow
README = Path(__file__).parents[1] / "README.md"


def readme_commands(section: str) -> list[list[str]]:
    text = README.read_text()
    body = text[text.index(f"### {section}"):]
    block = re.search(r"```bash\n(.*?)```", body, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def lightning_checkpoint(path: Path) -> None:
    import pytorch_lightning as pl
    import torchvision

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = torchvision.models.vgg11(num_classes=5)

        def training_step(self, batch, _):
            return torch.nn.functional.cross_entropy(self.model(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(2, 3, 32, 32), torch.randint(0, 5, (2,)))
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=path.parent)
    trainer.fit(Module(), torch.utils.data.DataLoader(data, batch_size=2))
    trainer.save_checkpoint(path)


def make(name: str, cwd: Path) -> torch.nn.Module | None:
    """Write the file a README line names; return the library's model when its forward is comparable."""
    import timm
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    if name == "finetuned_vgg16.pth":
        model = torchvision.models.vgg16(num_classes=5)
        torch.save(model.state_dict(), cwd / name)
        return model
    elif name == "vgg16_bn.safetensors":
        model = torchvision.models.vgg16_bn(num_classes=5)
        with torch.no_grad():  # non-trivial BN statistics
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        save_file(model.state_dict(), cwd / name)
        return model
    elif name == "./timm-vgg16/":
        (cwd / name).mkdir()
        model = timm.create_model("vgg16", num_classes=5)
        save_file(model.state_dict(), cwd / name / "model.safetensors")
        return model
    elif name.endswith(".ckpt"):
        lightning_checkpoint(cwd / name)
    elif name == "distill.pth":
        sd = torchvision.models.vgg11(num_classes=5).state_dict()
        torch.save({**{f"student.{k}": t for k, t in sd.items()}, **{f"teacher.{k}": t for k, t in sd.items()}}, cwd / name)
    elif name == "keras_vgg16.onnx":
        foreign_onnx(cwd / name, shape=(1, 224, 224, 3), net=timm.create_model("vgg16", num_classes=5).eval())
    else:
        raise AssertionError(f"README names {name}: teach this test to make it")
    return None


@pytest.mark.parametrize("command", readme_commands("Bring your own model"), ids=lambda c: c[2])
def test_bring_your_own_model_commands_run_as_written(tmp_path, command):
    assert command[0] == "vggdeploy"
    model = make(command[2], tmp_path)
    r = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    written = Path(tmp_path / r.stdout.split()[-1])
    assert written.suffix == ".onnx" and written.exists() and written.parent.parent.name == "engines"
    assert "parity" in r.stderr  # checked against PyTorch, or against the original ONNX
    if model is not None:  # the library's own forward pass, on the exported ONNX
        import onnxruntime as ort

        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            want = model.eval()(x).numpy()
        got = ort.InferenceSession(str(written)).run(None, {"input": x.numpy()})[0]
        assert abs(got - want).max() <= 1e-4 * max(1.0, abs(want).max()), abs(got - want).max()


def test_python_example_runs_as_written(tmp_path):
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("## Use"):], re.S).group(1)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "'score_map': (2, 1000, 2, 4), 'logits': (2, 1000)" in r.stdout


def test_every_public_name_is_itself_and_documented_whatever_was_imported():
    """`from vggdeploy import extract` is the function even once vggdeploy.cli (which imports every
    stage) is loaded: no public name may be a submodule's name (the submodule would shadow it)."""
    import importlib
    import pkgutil
    import types

    import vggdeploy

    for info in pkgutil.walk_packages(vggdeploy.__path__, "vggdeploy."):
        importlib.import_module(info.name)
    for name in vggdeploy.__all__:
        obj = getattr(vggdeploy, name)
        assert not isinstance(obj, types.ModuleType), f"vggdeploy.{name} is a module"
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"vggdeploy.{name} has no docstring"
