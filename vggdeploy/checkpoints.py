"""A user's checkpoint read as a torchvision-named VGG state dict.

Accepted: a state dict saved by `torch.save` (.pth/.pt/.bin/.ckpt) or safetensors, or a folder
holding one (Hugging Face / timm hub folders hold `model.safetensors` or `pytorch_model.bin`); bare
or wrapped in a training checkpoint (Lightning's `state_dict`, timm's `state_dict`, `model`, ...);
with any module prefix (`module.`, `model.`, `net.`, ... found from the tensors, or given); in
torchvision's layout or timm's (`pre_logits.fc1` a 7x7 conv, `pre_logits.fc2` a 1x1 conv, `head.fc`).

Pickles are read with torch's weights-only unpickler: a training checkpoint's non-tensor objects
(argparse namespaces, hyper-parameter dicts) become inert stubs, never imported or run.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput, first_line

SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
FOLDER_FILES = ("model.safetensors", "pytorch_model.bin")  # what hub folders hold
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
ANCHOR = "features.0.weight"  # the first conv: every VGG layout has it
SAVE_HINT = "save a state dict instead: torch.save(model.state_dict(), 'model.pth')"
TIMM_TO_TORCHVISION = {"pre_logits.fc1": "classifier.0", "pre_logits.fc2": "classifier.3", "head.fc": "classifier.6"}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file's VGG tensors under torchvision's names, and one line saying how."""

    file: Path
    state_dict: dict
    mapping: str


def find_file(path: Path) -> Path:
    """The checkpoint file itself, or the one a folder holds. Raises BadInput."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise BadInput(f"checkpoint {path} not found")
    for name in FOLDER_FILES:
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise BadInput(f"no checkpoint in folder {path}", hint=f"looked for {', '.join(FOLDER_FILES)} or one *{'/*'.join(SUFFIXES)} file")
    raise BadInput(f"folder {path} holds {len(found)} checkpoints ({', '.join(p.name for p in found[:4])})",
                   hint="give the file itself")


def read_checkpoint(path: Path, prefix: str | None = None) -> Checkpoint:
    """Read, unwrap, remove the prefix and map timm's names. Raises BadInput, in one line."""
    file = find_file(path)
    raw = _read_safetensors(file) if file.suffix == ".safetensors" else _read_pickle(file)
    tensors, wrapper = _unwrap(raw, file)
    sd, found_prefix, ignored = _strip_prefix(tensors, prefix, file)
    sd, layout = _to_torchvision(sd, file)
    said = [f"read {file.name}: {layout} layout"]
    if wrapper:
        said.append(f"under '{wrapper}'")
    if found_prefix:
        said.append(f"prefix '{found_prefix}' removed")
    if ignored:
        said.append(f"{ignored} other tensor(s) ignored")
    return Checkpoint(file, sd, ", ".join(said))


def _read_safetensors(file: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(file)
    except (SafetensorError, OSError, ValueError) as e:
        raise BadInput(f"cannot read {file.name} as safetensors: {first_line(e)}") from None


class _Stub:
    """Stands for any non-tensor object in a training checkpoint; built from nothing, runs nothing."""

    global_name = "?"

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _read_pickle(file: Path) -> object:
    import torch

    try:
        if zipfile.is_zipfile(file) and any(n.endswith("/constants.pkl") for n in zipfile.ZipFile(file).namelist()):
            raise BadInput(f"{file.name} is a TorchScript program, not a state dict",
                           hint=f"torch.save(torch.jit.load('{file.name}').state_dict(), 'model.pth')")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zipped = zipfile.is_zipfile(file)  # torch reads the globals of the zip format only
            names = torch.serialization.get_unsafe_globals_in_checkpoint(file) if zipped else []
            stubs = [(type(n.rsplit(".", 1)[-1], (_Stub,), {"global_name": n}), n) for n in names]
            with torch.serialization.safe_globals(stubs):
                # zip format: mapped, not read (a checkpoint of another architecture is refused
                # from its names without reading its tensors); the legacy format can't be mapped
                obj = torch.load(file, map_location="cpu", weights_only=True, mmap=zipped)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, zipfile.BadZipFile) as e:
        said = first_line(e)
        if isinstance(e, zipfile.BadZipFile) or "zip archive" in said:  # torch's miniz reader says it at length
            raise BadInput(f"cannot read checkpoint {file.name}: its zip archive is damaged ({said.split('. ')[0]})",
                           hint="the file was truncated or changed after saving: copy or save it again") from None
        raise BadInput(f"cannot read checkpoint {file.name}: {said}", hint=SAVE_HINT) from None
    if isinstance(obj, _Stub):
        raise BadInput(f"{file.name} holds a whole pickled {obj.global_name}, not a state dict", hint=SAVE_HINT)
    return obj


def _unwrap(obj: object, file: Path) -> tuple[dict, str]:
    """The tensors of a bare state dict, or of the first wrapper key that holds one."""
    import torch

    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return _tensors_of(obj[key], file), key
        raise BadInput(f"{file.name} holds no state dict", hint=f"expected tensors, or a dict of them under one of {WRAPPER_KEYS}")
    if not isinstance(obj, dict):
        raise BadInput(f"{file.name} holds no state dict (a {type(obj).__name__})", hint=SAVE_HINT)
    return _tensors_of(obj, file), ""


PARAMETER_SUFFIXES = (".weight", ".bias", ".running_mean", ".running_var")
MAX_ELEMENTS = 1 << 30  # VGG's largest tensor (FC1 of a 7x7 head) has 103 M; 1 G is 4 GB of float32


def _tensors_of(sd: dict, file: Path) -> dict:
    import torch

    tensors = {k: v for k, v in sd.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    floats = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    for k, t in tensors.items():  # parameters and BatchNorm statistics: dense float tensors with their data
        if not k.endswith(PARAMETER_SUFFIXES):
            continue
        if t.layout != torch.strided or t.is_meta:
            raise BadInput(f"{file.name}: tensor {k} is {'on the meta device (no data)' if t.is_meta else f'{t.layout} (not dense)'}",
                           hint="save the model's real weights: model.state_dict() after loading them")
        if t.numel() == 0 or t.numel() > MAX_ELEMENTS:
            raise BadInput(f"{file.name}: tensor {k} has shape {tuple(t.shape)}, "
                           + ("an empty dimension" if t.numel() == 0 else f"{t.numel():.3g} elements (more than {MAX_ELEMENTS:.3g})"),
                           hint="the checkpoint is damaged or not a VGG's")
        if t.untyped_storage().nbytes() < t.numel() * t.element_size():  # a view expanded over a smaller storage
            raise BadInput(f"{file.name}: tensor {k} has shape {tuple(t.shape)} but only {t.untyped_storage().nbytes()} bytes "
                           "of data (an expanded view)", hint="save real weights: {k: v.contiguous() for k, v in sd.items()}")
        if t.dtype not in floats:
            raise BadInput(f"{file.name}: tensor {k} is {str(t.dtype).removeprefix('torch.')}; vggdeploy takes float16, "
                           "bfloat16, float32 or float64 weights (exported as float32)",
                           hint="dequantize a quantized or float8 model first")
    bad = [k for k, t in tensors.items() if k.endswith(PARAMETER_SUFFIXES) and not torch.isfinite(t).all()]
    if bad:
        raise BadInput(f"{file.name}: tensor {bad[0]} holds NaN or infinite values"
                       + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""), hint="the checkpoint is damaged or diverged")
    return tensors


def _strip_prefix(sd: dict, prefix: str | None, file: Path) -> tuple[dict, str, int]:
    """Keep the tensors under one network's prefix, found from where `features.0.weight` sits."""
    if prefix is None:
        found = sorted({k[: -len(ANCHOR)] for k in sd if k.endswith(ANCHOR)}, key=lambda p: (len(p), p))
        if not found:
            shown = ", ".join(list(sd)[:3]) or "no tensors"
            raise BadInput(f"{file.name}: not a VGG checkpoint (no tensor named {ANCHOR}, under any prefix; it has {shown})",
                           hint="vggdeploy reads torchvision and timm VGGs")
        if len(found) > 1:
            raise BadInput(f"{file.name} holds {len(found)} VGGs (prefixes {', '.join(repr(p) for p in found)})",
                           hint="choose one with --prefix")
        prefix = found[0]
    elif prefix + ANCHOR not in sd:
        raise BadInput(f"{file.name}: no {prefix}{ANCHOR}", hint="check --prefix (leave it out to find it)")
    kept = {k[len(prefix):]: t for k, t in sd.items() if k.startswith(prefix)}
    return kept, prefix, len(sd) - len(kept)


def _to_torchvision(sd: dict, file: Path) -> tuple[dict, str]:
    """timm's pre_logits/head as torchvision's classifier.0/3/6 (FC1 is timm's 7x7 conv, flattened)."""
    if "pre_logits.fc1.weight" not in sd:
        if "classifier.6.weight" not in sd:
            raise BadInput(f"{file.name}: a VGG backbone without a classifier (no classifier.6 or head.fc)",
                           hint="vggdeploy exports whole VGGs: save the model with its head")
        return sd, "torchvision"
    out = {}
    for name, t in sd.items():
        module, _, param = name.rpartition(".")
        target = TIMM_TO_TORCHVISION.get(module)
        out[f"{target}.{param}" if target else name] = t.flatten(1) if target and param == "weight" else t
    return out, "timm"


__all__ = ["Checkpoint", "FOLDER_FILES", "SUFFIXES", "find_file", "read_checkpoint"]
