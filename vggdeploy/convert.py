"""`vggdeploy convert`: an ONNX artifact in a runtime's own format (OpenVINO IR: NAME.xml + NAME.bin),
published beside it with a manifest entry naming its source."""

from __future__ import annotations

from pathlib import Path

from .artifact import Artifact
from .errors import MissingEnvironment
from .manifest import ManifestEntry


def save_ir(onnx_path: Path, out_dir: Path | None = None, force: bool = False) -> Artifact:
    """Write the OpenVINO IR (NAME.xml + NAME.bin) of an ONNX artifact, for serving with OpenVINO
    directly. Weights stay in the artifact's precision (no FP16 compression of an FP32 model)."""
    from .store import prepare_out_dir, publish_recorded, staging

    try:
        import openvino as ov
    except ImportError:
        raise MissingEnvironment("OpenVINO is not installed", hint="pip install openvino") from None
    from .filetypes import check_foreign_onnx
    from .artifact import load_graph

    onnx_path = Path(onnx_path)
    check_foreign_onnx(load_graph(onnx_path), onnx_path)  # before OpenVINO reads a file it may not be able to
    out_dir = Path(out_dir or onnx_path.parent)
    stem = onnx_path.name.removesuffix(".onnx")
    prepare_out_dir(out_dir, [f"{stem}.xml"], force)
    model = ov.Core().read_model(str(onnx_path))
    with staging(out_dir) as tmp:
        ov.save_model(model, str(tmp / f"{stem}.xml"), compress_to_fp16=False)
        xml, entry = publish_recorded([tmp / f"{stem}.xml", tmp / f"{stem}.bin"], out_dir,
                                      ManifestEntry("openvino-ir", source=onnx_path.name,
                                                    details={"versions": {"openvino": ov.get_version()}}), force)
    return Artifact(xml, "openvino-ir", entry=entry)


__all__ = ["save_ir"]
