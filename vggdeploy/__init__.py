"""vggdeploy: deploy the VGG family fast and without losing accuracy.

Public API (the CLI is a thin layer over these):

    load_model(name_or_checkpoint, weights=None, seed=0) -> LoadedModel
    export_onnx(loaded, forms, out_dir, size=..., taps=..., opset=..., verify=True, force=False)
    inspect_onnx(path) -> dict
    make_runner(backend, path) -> Runner       (context manager; .infer({name: array}))
    check_parity(reference, candidate, cases, thresholds) -> ParityReport
"""

__version__ = "0.1.0"

from .backends import BACKENDS, Runner, make_runner  # noqa: E402
from .errors import BadInput, CheckFailed, MissingEnvironment, VggDeployError  # noqa: E402
from .export import export_onnx, form_spec  # noqa: E402
from .inspect import inspect_onnx  # noqa: E402
from .models import FORMS, VGG, build_form  # noqa: E402
from .parity import THRESHOLDS, check_parity, default_cases  # noqa: E402
from .variants import VARIANTS, Variant, get_variant  # noqa: E402
from .weights import LoadedModel, load_model  # noqa: E402

__all__ = [
    "BACKENDS", "FORMS", "THRESHOLDS", "VARIANTS", "VGG", "BadInput", "CheckFailed", "LoadedModel",
    "MissingEnvironment", "Runner", "Variant", "VggDeployError", "build_form", "check_parity",
    "default_cases", "export_onnx", "form_spec", "get_variant", "inspect_onnx", "load_model", "make_runner",
]
