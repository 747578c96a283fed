"""A VGG ONNX exported elsewhere (Keras/tf2onnx, an older torch.onnx, a model zoo) made a vggdeploy
artifact, so that every verb works on it.

What a foreign graph can't say, the user states once: its input layout (NCHW or NHWC), channel order,
pixel range, mean/std, resize and crop, class names. `adopt` writes a copy whose input is vggdeploy's
(NCHW, RGB or gray, normalised as the metadata says; a Transpose and/or channel Gather in front of the
original graph when it wants NHWC or BGR), whose output is `logits`, with vggdeploy metadata (the VGG
configuration read off its convolutions) and a manifest entry, after a parity check against the
original file on ONNX Runtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput, OutOfMemory, first_line, out_of_memory, spelled
from .manifest import ManifestEntry
from .metadata import ArtifactMeta
from .preprocessing import Preprocessing
from .sources import WeightsSource
from .variants import CONFIGS, Variant

log = logging.getLogger("vggdeploy")

LAYOUTS = ("NCHW", "NHWC")
CHANNELS = ("RGB", "BGR", "gray")
PIXELS = ("0-1", "0-255")
OUTPUTS = ("logits", "probabilities")  # what the graph's output is: class scores, or already softmax


@dataclass(frozen=True)
class AdoptOptions:
    """What the user states about a foreign ONNX. `mean`/`std` are in the model's own channel order
    and pixel range (e.g. Keras' caffe mode: BGR, 0-255, mean 103.939,116.779,123.68, std 1,1,1)."""

    layout: str | None = None  # None: read off the input shape (channels of 1 or 3 first or last)
    channels: str = "RGB"
    pixels: str = "0-1"
    mean: tuple[float, ...] | None = None  # None: 0 per channel
    std: tuple[float, ...] | None = None  # None: 1 per channel
    size: tuple[int, int] | None = None  # only for an input whose H and W are not fixed in the graph
    resize: int | None = None  # shorter side before the centre crop (default: crop x 256/224)
    class_names: tuple[str, ...] | None = None
    name: str | None = None
    resize_only: bool = False  # the model's recipe: the whole image resized to the input size, no centre crop
    output: str = "logits"  # "probabilities" for a graph that ends in softmax: the output is named so

    def __post_init__(self):
        for flag, value, allowed in (("--layout", self.layout, LAYOUTS + (None,)), ("--channels", self.channels, CHANNELS),
                                     ("--pixels", self.pixels, PIXELS), ("--output", self.output, OUTPUTS)):
            if value not in allowed:
                raise BadInput(f"{flag} {value}: choose from {', '.join(a for a in allowed if a)}")
        if self.std is not None and not all(np.isfinite(s) and s > 0 for s in self.std):
            raise BadInput(f"--std {','.join(map(str, self.std))}: give positive numbers")
        if self.mean is not None and not all(np.isfinite(m) for m in self.mean):
            raise BadInput("--mean: give finite numbers")
        if self.size is not None and min(self.size) < 32:
            raise BadInput(f"--size {self.size[0]}x{self.size[1]}: a VGG needs at least 32x32")
        if self.resize is not None and self.resize < 1:
            raise BadInput(f"--resize {self.resize}: give a positive side")
        if self.resize is not None and self.resize_only:
            raise BadInput("--resize sets the shorter side before a centre crop; --resize-only resizes to the input size",
                           hint="give one of them")


@dataclass(frozen=True)
class ForeignGraph:
    """What adopt read off a foreign ONNX's graph."""

    input_name: str
    output_name: str
    layout: str
    in_channels: int
    size: tuple[int, int]
    config: str
    batch_norm: bool
    opset: int
    head: dict | None  # {"pool", "hidden"} of FC1, when it could be read (bench's compute floor uses it)


def read_foreign(model, options: AdoptOptions, label: str) -> ForeignGraph:
    """Check the graph is one image classifier adopt can wrap, and read its layout, size and VGG
    configuration. Raises BadInput naming what does not fit."""
    from onnx import TensorProto

    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise BadInput(f"{label} has {len(inputs)} inputs ({', '.join(v.name for v in inputs)}); adopt takes an image "
                       "classifier with one")
    if len(model.graph.output) != 1:
        raise BadInput(f"{label} has {len(model.graph.output)} outputs; adopt takes a classifier with one (the scores)")
    x = inputs[0]
    if x.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise BadInput(f"{label}: input {x.name} is not float32", hint="adopt the FP32 model; `vggdeploy quantize` makes FP16 and INT8")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in x.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise BadInput(f"{label}: input {x.name} has {len(dims)} axes {_shape(dims)}; an image batch has 4 (a batch axis first)")
    if dims[0] is not None:
        raise BadInput(f"{label}: input {x.name} {_shape(dims)} has a fixed batch of {dims[0]}",
                       hint="re-export it with a dynamic batch axis (torch: dynamic_shapes; tf2onnx: --inputs NAME[-1,...])")
    layout = _layout(dims, options.layout, label, x.name)
    c_axis, hw = (1, dims[2:]) if layout == "NCHW" else (3, dims[1:3])
    channels = dims[c_axis] or (1 if options.channels == "gray" else 3)
    if (channels == 1) != (options.channels == "gray") or channels not in (1, 3):
        raise BadInput(f"--channels {options.channels} contradicts {label}'s {channels} input channel(s) {_shape(dims)}",
                       hint="gray for 1 channel, RGB or BGR for 3")
    for flag, values in (("--mean", options.mean), ("--std", options.std)):
        if values is not None and len(values) != channels:
            raise BadInput(f"{flag} has {len(values)} value(s); {label} takes {channels} channel(s)")
    if None in hw:
        if options.size is None:
            raise BadInput(f"{label}: input {x.name} {_shape(dims)} does not fix its height and width",
                           hint="state the size it was trained at with --size HxW")
        size = options.size
    elif options.size is not None and tuple(options.size) != tuple(hw):
        raise BadInput(f"--size {options.size[0]}x{options.size[1]} contradicts {label}'s input {_shape(dims)}")
    else:
        size = tuple(hw)
    config, bn = vgg_config(model, label)
    head = _head(model, [t for t in CONFIGS[config] if not isinstance(t, str)][-1])
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ForeignGraph(x.name, model.graph.output[0].name, layout, channels, size, config, bn, opset, head)


def _shape(dims) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _layout(dims, stated: str | None, label: str, name: str) -> str:
    first, last = dims[1] in (1, 3), dims[3] in (1, 3)
    if stated == "NCHW" and not first and last:
        raise BadInput(f"{label}: input {name} {_shape(dims)} has its channels last, not NCHW", hint="pass --layout NHWC")
    if stated == "NHWC" and not last and first:
        raise BadInput(f"{label}: input {name} {_shape(dims)} has its channels first, not NHWC", hint="pass --layout NCHW")
    if stated:
        return stated
    if first != last:
        return "NCHW" if first else "NHWC"
    raise BadInput(f"{label}: can't tell the layout of input {name} {_shape(dims)}", hint="pass --layout NCHW or NHWC")


def vgg_config(model, label: str) -> tuple[str, bool]:
    """The VGG configuration of the graph's convolutions and pools, in graph order, up to the last
    max pool (what follows is the classifier). Raises BadInput when no configuration matches."""
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    tokens, bn = [], False
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and len(weights.get(node.input[1], [])) == 4:
            out, _, kh, kw = weights[node.input[1]]
            tokens.append(out if (kh, kw) == (3, 3) else (out, kh) if kh == kw else ("conv", kh, kw))
        elif node.op_type == "MaxPool":
            tokens.append("M")
        elif node.op_type == "LRN":
            tokens.append("LRN")
        elif node.op_type == "BatchNormalization":
            bn = True
    if "M" not in tokens:
        raise BadInput(f"{label} has no max pooling: not a VGG", hint="adopt takes VGGs (configurations A-E, mini)")
    features = tuple(tokens[: len(tokens) - tokens[::-1].index("M")])
    for name, layers in CONFIGS.items():
        if layers == features:
            return name, bn
    raise BadInput(f"{label}'s convolutions match no VGG configuration "
                   f"({sum(1 for t in features if t not in ('M', 'LRN'))} conv layers, {features.count('M')} pools)",
                   hint="adopt takes VGGs (configurations A-E, mini); export other networks with their own tools")


def _head(model, last) -> dict | None:
    """FC1's window and width, from the first weight after the last max pool: a (hidden, C, k, k)
    conv, or a Gemm/MatMul matrix with C x k x k on one side."""
    last = last if isinstance(last, int) else last[0]
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    pools = [i for i, n in enumerate(model.graph.node) if n.op_type == "MaxPool"]
    for node in model.graph.node[pools[-1] + 1:]:
        dims = next((weights[i] for i in node.input[1:2] if i in weights), None)
        if node.op_type == "Conv" and dims and len(dims) == 4:
            return {"pool": dims[2], "hidden": dims[0]}
        if node.op_type in ("Gemm", "MatMul") and dims and len(dims) == 2:
            transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in node.attribute)
            fan_in, hidden = (dims[1], dims[0]) if transposed else (dims[0], dims[1])
            pool = int(round((fan_in / last) ** 0.5))
            return {"pool": pool, "hidden": hidden} if pool * pool * last == fan_in else None
    return None


class OriginalRunner:
    """The foreign file itself on ONNX Runtime, fed vggdeploy's NCHW RGB batches: the parity reference."""

    name = "original ONNX (onnxruntime)"

    def __init__(self, path: Path, graph: ForeignGraph, channels: str, output: str = "logits"):
        self.path, self.graph, self.channels, self.output = path, graph, channels, output

    def __enter__(self):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        return self

    def __exit__(self, *exc):
        self.session = None

    @property
    def output_names(self) -> list[str]:
        return [self.output]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feed["input"]
        if self.channels == "BGR":
            x = x[:, ::-1]
        if self.graph.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return {self.output: self.session.run(None, {self.graph.input_name: np.ascontiguousarray(x)})[0]}


def wrap(model, graph: ForeignGraph, channels: str, num_classes: int, output: str = "logits") -> None:
    """In place: input `input` (N, C, H, W) in front of the original graph (channel Gather for BGR,
    Transpose for NHWC), output `output` (N, classes: `logits`, or `probabilities`) after it."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    _rename(g, graph.input_name, "vggdeploy_original_input")
    _rename(g, graph.output_name, "vggdeploy_original_output")
    for ours in ("input", output):  # a tensor inside the graph may already carry one of the names we add
        _rename(g, ours, f"vggdeploy_inner_{ours}")
    front, x = [], "input"
    if channels == "BGR":
        g.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "vggdeploy_bgr"))
        front.append(helper.make_node("Gather", [x, "vggdeploy_bgr"], ["vggdeploy_bgr_input"], axis=1, name="vggdeploy_rgb_to_bgr"))
        x = "vggdeploy_bgr_input"
    front.append(helper.make_node("Transpose", [x], ["vggdeploy_original_input"], perm=[0, 2, 3, 1], name="vggdeploy_nchw_to_nhwc")
                 if graph.layout == "NHWC" else helper.make_node("Identity", [x], ["vggdeploy_original_input"], name="vggdeploy_input"))
    for node in reversed(front):
        g.node.insert(0, node)
    g.node.append(helper.make_node("Identity", ["vggdeploy_original_output"], [output], name=f"vggdeploy_{output}"))
    old_input = next(v for v in g.input if v.name == "vggdeploy_original_input")
    g.input.remove(old_input)
    g.input.insert(0, helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", graph.in_channels, *graph.size]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", num_classes]))


def _rename(g, old: str, new: str) -> None:
    for node in g.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for v in list(g.input) + list(g.output) + list(g.value_info) + list(g.initializer):
        if v.name == old:
            v.name = new


def adopt(src: Path, out_dir: Path, options: AdoptOptions = AdoptOptions(), *, force: bool = False):
    """Write `out_dir/classifier.onnx` (+ .data): `src` with vggdeploy's input, output and metadata,
    checked against `src` on ONNX Runtime and recorded in the manifest. Returns it (an Artifact). Raises
    BadInput for a graph adopt can't take or options that contradict it (before anything is written)
    and CheckFailed when the copy does not match the original."""
    src, out_dir = Path(src), Path(out_dir)
    import onnx

    from .store import artifact_sha256, check_name, prepare_out_dir, save_onnx, staging
    from .publish import publish_checked, verify_artifact
    from .naming import artifact_name
    from .forms import FormSpec
    from .filetypes import check_foreign_onnx
    from .artifact import load_graph

    header = load_graph(src)
    check_foreign_onnx(header, src)
    foreign = read_foreign(header, options, src.name)
    name = check_name(options.name or src.stem, "--name")
    mean01, std01 = _normalisation(options, foreign.in_channels)
    crop = foreign.size[0] if foreign.size[0] == foreign.size[1] else min(foreign.size)
    v = Variant(name, foreign.config, foreign.batch_norm, in_channels=foreign.in_channels, image_size=crop,
                resize=options.resize or round(crop * 256 / 224), mean=mean01, std=std01)
    spec = FormSpec("classifier", tuple(foreign.size), v.stride, v.stride)
    out_name = artifact_name("classifier")
    reference = OriginalRunner(src, foreign, options.channels, options.output)
    with reference as ref:  # the class count, from one run of the original
        try:
            probe = ref.infer({"input": np.random.default_rng(0).standard_normal(
                (2, foreign.in_channels, *foreign.size), dtype=np.float32)})[options.output]
        except Exception as e:
            if out_of_memory(e):
                raise OutOfMemory.of(e) from None
            raise BadInput(f"ONNX Runtime can't run {src.name}: {first_line(e)[:300]}") from None
    if probe.ndim != 2:
        raise BadInput(f"{src.name}'s output is {probe.shape[1:]} per image; adopt takes a classifier's (classes,) scores")
    classes = probe.shape[1]
    softmaxed = bool(np.all(probe >= 0) and np.allclose(probe.sum(axis=1), 1, atol=1e-3))
    as_probabilities = spelled("--output probabilities", 'output="probabilities"')
    if options.output == "probabilities" and not softmaxed:
        raise BadInput(f"{src.name}'s output is not probabilities (its rows do not sum to 1)",
                       hint=f"leave out {as_probabilities}: it gives logits")
    if options.class_names is not None and len(options.class_names) != classes:
        raise BadInput(f"{len(options.class_names)} class names for {src.name}'s {classes} outputs")
    if options.output == "logits" and softmaxed:  # said once every refusal is past
        log.warning("%s's output sums to 1 per image: it looks like probabilities (a softmax at the end); "
                    "%s names it so", src.name, as_probabilities)
    prepare_out_dir(out_dir, [out_name], force)
    log.info("adopting %s: %s input %s, VGG config %s%s, %d classes", src.name, foreign.layout,
             "x".join(map(str, foreign.size)), foreign.config, " with BN" if foreign.batch_norm else "", classes)
    model = onnx.load(str(src))
    wrap(model, foreign, options.channels, classes, options.output)
    stated = {"file": src.name, "sha256": artifact_sha256(src), "layout": foreign.layout, "channels": options.channels,
              "pixels": options.pixels, "mean": list(options.mean or []), "std": list(options.std or []),
              **({"output": options.output} if options.output != "logits" else {}),
              **({"resize_only": True} if options.resize_only else {})}
    meta = ArtifactMeta(
        form="classifier", variant=name, config=foreign.config, batch_norm=foreign.batch_norm, num_classes=classes,
        input_sizes=spec.input_sizes(),
        preprocessing=Preprocessing("gray" if foreign.in_channels == 1 else "RGB", v.resize, crop, tuple(mean01),
                                    tuple(std01), options.resize_only),
        head=foreign.head or None, class_names=tuple(options.class_names) if options.class_names else None,
        weights=str(WeightsSource("adopted", src.name)), weights_sha256=stated["sha256"], adopted=stated)
    del model.metadata_props[:]
    model.metadata_props.extend(onnx.StringStringEntryProto(key=k, value=val) for k, val in meta.to_props().items())
    entry = ManifestEntry("onnx", "classifier", "fp32", name, details={
        "opset": foreign.opset, "input": {"name": "input", "shape": ["batch", foreign.in_channels, *foreign.size]},
        "input_sizes": spec.input_sizes(), "outputs": [options.output], "weights": meta.weights,
        "weights_sha256": stated["sha256"], "adopted": stated})
    with staging(out_dir) as tmp:
        staged = tmp / out_name
        save_onnx(model, staged)
        del model
        check = lambda path: verify_artifact(path, OriginalRunner(src, foreign, options.channels, options.output), v, spec)  # noqa: E731
        final = publish_checked(staged, out_dir, entry, check, force)
    log.info("adopted %s as %s", src.name, final)
    return final


def _normalisation(options: AdoptOptions, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The user's mean/std (model's channel order and pixel range) as vggdeploy's: RGB order, 0-1 pixels."""
    scale = 255.0 if options.pixels == "0-255" else 1.0
    mean = [m / scale for m in (options.mean or [0.0] * channels)]
    std = [s / scale for s in (options.std or [1.0] * channels)]
    if options.channels == "BGR":
        mean, std = mean[::-1], std[::-1]
    return tuple(mean), tuple(std)


__all__ = ["AdoptOptions", "ForeignGraph", "adopt", "read_foreign", "vgg_config"]
