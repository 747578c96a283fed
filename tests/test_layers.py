"""The package's import graph, imports inside functions included (most of ours are: they keep the
CLI's start-up fast, and hid every cycle from Python itself): no cycles, and nothing imported from a
higher layer. The layers are declared here, as import-linter's `layers` contract declares them; a
new module must be placed in one."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vggdeploy"

# lowest first; a module imports only from its own layer or lower ones
LAYERS = [
    ("foundation", {"_version", "errors", "naming", "progress", "signals", "tables", "isa", "limits", "ray_local",
                    "manifest", "sources"}),
    ("facts and files", {"variants", "metadata", "forms", "runs", "dataset", "data", "mnist", "preprocessing",
                         "filetypes", "store", "checkpoints", "gpu", "trt_calls", "triton_server", "budget",
                         "cluster"}),
    ("models, graph edits, quantizers", {"models", "weights", "calibration", "equalize", "layer_error",
                                         "nncf_quantize", "modelopt_quantize", "layouts"}),
    ("the artifact", {"artifact", "inspect", "qdq", "report"}),
    ("runtimes", {"backends.base", "backends.eager", "backends.ort", "backends.openvino", "backends.tensorrt",
                  "backends.peers", "backends", "parity"}),
    ("stages", {"publish", "convert", "export", "precision", "derived", "graph_edits", "fp16", "int8", "adoption", "engine", "bench", "benchrun", "doctor", "triton", "prediction",
                "evaluate", "extraction", "pipeline", "report_files"}),
    ("interface", {"cli", "cli_options", "__main__", ""}),
]
LAYER_OF = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}


def modules() -> dict[str, Path]:
    """{'backends.ort': path, ...}: every module of the package, named relative to it ('' is the package)."""
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(name: str, path: Path, known: dict) -> list[tuple[str, int]]:
    """(module imported, line) for every import of the package's own modules in `path`, at any depth."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif (node.module or "").split(".")[0] == "vggdeploy":
                base = node.module.split(".")[1:]
            else:
                continue
            target = ".".join(base)
            for alias in node.names:
                sub = f"{target}.{alias.name}".lstrip(".")
                found.append((sub if sub in known else target, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".", 1)[1] if "." in a.name else "", node.lineno)
                      for a in node.names if a.name.split(".")[0] == "vggdeploy"]
    return [(t, line) for t, line in found if t in known and t != name]


def graph() -> dict[str, list[tuple[str, int]]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_is_in_one_layer():
    declared = [m for _, mods in LAYERS for m in mods]
    assert len(declared) == len(set(declared)), "a module is declared in two layers"
    assert set(modules()) == set(declared), (
        f"undeclared: {sorted(set(modules()) - set(declared))}; gone: {sorted(set(declared) - set(modules()))}")


def test_nothing_is_imported_from_a_higher_layer():
    upward = [f"{m or 'vggdeploy'} ({LAYERS[LAYER_OF[m]][0]}) line {line} imports {t} ({LAYERS[LAYER_OF[t]][0]})"
              for m, edges in graph().items() for t, line in edges if LAYER_OF[t] > LAYER_OF[m]]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    g = graph()
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t, _ in g[m]:
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_the_check_sees_imports_inside_functions(tmp_path):
    """The walk finds a function-level relative import (as the cycles it guards against were)."""
    f = tmp_path / "probe.py"
    f.write_text("def f():\n    from .backends.base import Runner\n    from ..x import y\n")
    assert imports("probe", f, modules()) == [("backends.base", 2)]


def test_the_design_notes_and_the_readme_name_every_module():
    """DESIGN.md's module map and the README's layout stay current: each names every top-level module."""
    root = PACKAGE.parent
    design = (root / "DESIGN.md").read_text().split("## Shape of the code")[1].split("\n## ")[0]
    layout = (root / "README.md").read_text().split("\n## Layout")[1].split("\n## ")[0]
    modules_ = {m for m in LAYER_OF if m and "." not in m and m not in ("__main__", "backends")}
    assert not [m for m in sorted(modules_) if f"`{m}`" not in design], "DESIGN.md's module map lacks these"
    assert not [m for m in sorted(modules_ - {"_version"}) if f"`{m}`" not in layout], "the README's layout lacks these"
