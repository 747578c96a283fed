"""vggdeploy: deploy the VGG family fast and without losing accuracy.

Public API (the CLI is a thin layer over these):

    load_model(name_or_checkpoint, weights=None, seed=0, prefix=None) -> LoadedModel
    adopt(foreign_onnx, out_dir, AdoptOptions(layout=..., channels=..., mean=..., std=...)) -> Artifact
    export_onnx(loaded, forms, out_dir, size=..., taps=..., opset=..., verify=True, force=False)
    to_fp16(onnx_path, ...), to_int8(onnx_path, target=..., method=..., calib=...)
    deploy(loaded, forms, out_dir, precision=PrecisionPlan(fp16=..., int8=Int8Options(target)), engine=...)
        -> [Artifact]                              (what `vggdeploy export` does; derive(): `quantize`;
                                                   options=ExportOptions(...): every export option judged at once)
    Artifact.open(path) -> Artifact                (read once: .meta (ArtifactMeta), .spec, .variant; runners
                                                   take it or a path; export_onnx, to_fp16, to_int8, deploy return them;
                                                   .entry: its ManifestEntry)
    Preprocessing.from_table / .of_variant          (an artifact's declared preprocessing, callable on an image)
    inspect_onnx(path) -> dict;  qdq_violations(model) -> [violations]
    make_runner(backend, path) -> Runner       (context manager; .infer({name: array}))
    check_parity(reference, candidate, cases, thresholds) -> ParityReport
    preprocess(image_path_or_array, artifact) -> (C, H, W) float32   (the artifact's own preprocessing)
    predict(artifact, [images or folders], top=5) -> [{path, error, top: [{class, name, score}]}]
    extract(artifact, data_dir, out_dir, taps=..., pool=..., cluster=ClusterOptions(...)) -> summary

Names load on first use, so running an artifact (`make_runner`) does not import torch.
"""

from importlib import import_module

from ._version import __version__ as __version__

_API = {
    "AdoptOptions": "adoption", "adopt": "adoption", "Artifact": "artifact", "ArtifactMeta": "metadata",
    "PrecisionPlan": "pipeline", "ExportOptions": "pipeline", "deploy": "pipeline", "derive": "pipeline",
    "Int8Options": "layouts", "Fp16Options": "layouts", "ManifestEntry": "manifest", "Preprocessing": "preprocessing",
    "WeightsSource": "sources",
    "BACKENDS": "backends", "Runner": "backends", "make_runner": "backends",
    "ClusterOptions": "cluster", "extract": "extraction",
    "BadInput": "errors", "CheckFailed": "errors", "MissingEnvironment": "errors", "VggDeployError": "errors",
    "export_onnx": "export",
    "FORMS": "forms", "FormSpec": "forms", "form_spec": "forms",
    "inspect_onnx": "inspect",
    "VGG": "models", "build_form": "models",
    "THRESHOLDS": "parity", "check_parity": "parity", "default_cases": "parity",
    "to_fp16": "precision", "to_int8": "precision",
    "qdq_violations": "qdq", "predict": "prediction", "preprocess": "prediction",
    "VARIANTS": "variants", "Variant": "variants", "get_variant": "variants",
    "LoadedModel": "weights", "load_model": "weights",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'vggdeploy' has no attribute {name!r}")


def __dir__():
    return __all__
