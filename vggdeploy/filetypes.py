"""What a file is, from its first bytes: the check every verb that takes a model makes before any
import or parse, so that a photo passed as a model is refused in one line, at once."""

from __future__ import annotations

from pathlib import Path

from .errors import BadInput, printable

# magic bytes -> what the file is (the ones users pass by mistake, and the model formats we read)
MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive (torch.save's format)"),
    (b"\x1f\x8b", "a gzip archive"), (b"\x80", "a pickle (torch.save's legacy format)"),
    (b"\x89HDF", "an HDF5 file (Keras .h5)"), (b"ftrt", "a TensorRT engine"),
)
IMAGE_HINT = "that is an image: give it as the data (e.g. `vggdeploy predict ARTIFACT IMAGE`), and the model first"


def sniff(path: Path) -> str | None:
    """What the file's first bytes say it is (None: not one of MAGIC's)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    return next((what for magic, what in MAGIC if head.startswith(magic)), None)


def require_onnx(path: Path) -> None:
    """BadInput unless `path` exists and could be an ONNX file: one line naming what it is instead."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{printable(str(path))} not found" if not path.exists() else f"{printable(str(path))} is not a file")
    if not path.stat().st_size:
        raise BadInput(f"{printable(path.name)} is empty (0 bytes), not an ONNX model")
    what = sniff(path)
    if what:
        raise BadInput(f"{printable(path.name)} is {what}, not an ONNX model",
                       hint=IMAGE_HINT if what.endswith("image") else
                       "a checkpoint (.pth, .safetensors, a timm or Lightning folder) goes to `vggdeploy export CHECKPOINT` first")


def require_model_file(path: Path, wanted: str = "a checkpoint") -> None:
    """BadInput for a file that is surely not a model (an image, a PDF): before torch is imported."""
    what = sniff(path)
    if what and what.endswith(("image", "document")):
        raise BadInput(f"{printable(Path(path).name)} is {what}, not {wanted}", hint=IMAGE_HINT)


def check_model_arg(model: str, weights: str | None = None) -> None:
    """`export MODEL [--weights W]` judged before torch is imported: MODEL a variant's name or an
    existing checkpoint file or folder, neither of them an image or an ONNX file."""
    import os

    from .variants import VARIANTS, get_variant

    for given in (model, weights):
        path = Path(given) if given else None
        if path is None or (given in VARIANTS and os.sep not in given) or not path.is_file():
            continue
        require_model_file(path)
        if path.suffix == ".onnx":
            raise BadInput(f"{printable(path.name)} is an ONNX model, not a checkpoint",
                           hint="`vggdeploy adopt` makes an ONNX exported elsewhere an artifact every verb takes")
    path = Path(model)
    if not (model in VARIANTS and os.sep not in model) and not path.exists():
        if os.sep in model or path.suffix:  # a path, not a name
            raise BadInput(f"checkpoint {printable(model)} not found", hint="give a variant name (`vggdeploy list`) or a checkpoint file or folder")
        get_variant(model)  # an unknown name: BadInput with the closest names


FOREIGN_MIN_OPSET = 7  # the oldest opset ONNX Runtime loads


def check_foreign_onnx(model, path: Path) -> None:
    """BadInput unless a graph made elsewhere is safe and sound to hand to a runtime: standard operators
    at an opset the runtimes know, external data that stays inside the model's folder (regular files,
    offsets within them), no empty axis, and a graph `onnx.checker` accepts (acyclic, one definition
    per name). `model` is the graph read without its external data."""
    import onnx

    label = printable(Path(path).name)
    custom = sorted(({o.domain for o in model.opset_import} | {n.domain for n in model.graph.node}) - {"", "ai.onnx"})
    if custom:
        raise BadInput(f"{label} uses operators from custom domain(s) {', '.join(map(printable, custom))}",
                       hint="export it with standard ONNX operators only: the runtimes we deploy to know no others")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    newest = onnx.defs.onnx_opset_version()
    if not FOREIGN_MIN_OPSET <= opset <= newest:
        raise BadInput(f"{label} is stamped opset {opset}; ONNX Runtime and OpenVINO run {FOREIGN_MIN_OPSET}..{newest}",
                       hint="re-export it at a released opset (17 or 18 are safe)")
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            _check_external(t, Path(path).parent, label)
    for v in model.graph.input:
        if any(d.HasField("dim_value") and d.dim_value <= 0 for d in v.type.tensor_type.shape.dim):
            raise BadInput(f"{label}: input {printable(v.name)} has an empty axis (a dimension of 0)")
    try:
        onnx.checker.check_model(str(path))  # by path: external data is looked up beside the model
    except (onnx.checker.ValidationError, ValueError) as e:
        raise BadInput(f"{label} is not a valid ONNX graph: {printable(' '.join(str(e).split()))[:300]}") from None


def _check_external(tensor, folder: Path, label: str) -> None:
    import stat

    info = {e.key: e.value for e in tensor.external_data}
    where, name = info.get("location", ""), printable(tensor.name)
    target = folder / where
    if not where or Path(where).is_absolute() or ".." in Path(where).parts:
        raise BadInput(f"{label}: weight {name}'s external data {printable(where)!r} is not a file beside the model",
                       hint="external data must sit in the model's folder (a relative name, no '..')")
    try:
        st = target.lstat()
    except OSError:
        raise BadInput(f"{label}: weight {name}'s external data {printable(where)} is missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"{label}: weight {name}'s external data {printable(where)} is not a regular file "
                       f"({'a symbolic link' if stat.S_ISLNK(st.st_mode) else 'a FIFO, device or folder'})")
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", st.st_size - int(info.get("offset", 0))))
    except ValueError:
        raise BadInput(f"{label}: weight {name}'s external data has a non-numeric offset or length") from None
    if offset < 0 or length < 0 or offset + length > st.st_size:
        raise BadInput(f"{label}: weight {name}'s external data reaches byte {offset + length} of {printable(where)}, "
                       f"which has {st.st_size}")
