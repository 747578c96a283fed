"""The artifact folder: atomic writes, ONNX files with their external-data side files, manifest.json.

An ONNX artifact is ``NAME.onnx`` plus, for large models, ``NAME.onnx.data`` beside it
(DESIGN.md fact 14): everything here moves, hashes and lists the pair as one artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from .errors import BadInput

MANIFEST = "manifest.json"


def cache_root() -> Path:
    """Where calibration ranges and OpenVINO's compiled models are cached ($VGGDEPLOY_CACHE)."""
    return Path(os.environ.get("VGGDEPLOY_CACHE", Path.home() / ".cache" / "vggdeploy"))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def side_files(onnx_path: Path) -> list[Path]:
    """The files that make up one ONNX artifact: the graph, then its external data if any."""
    data = onnx_path.with_name(onnx_path.name + ".data")
    return [onnx_path, data] if data.exists() else [onnx_path]


def prepare_out_dir(out_dir: Path, names: list[str], force: bool) -> None:
    """Fail early (before any long work) if the folder can't be written or would be overwritten."""
    existing = [n for n in names if (out_dir / n).exists()]
    if existing and not force:
        raise BadInput(f"{out_dir / existing[0]} already exists", hint="pass --force to overwrite it")
    error = write_error(out_dir)
    if error:
        raise BadInput(f"cannot write to {out_dir}: {error.strerror or error}", hint="choose another --out")


def write_error(folder: Path) -> OSError | None:
    """Create folder if needed and try a file in it: None if it can be written, else the error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            return None
    except OSError as e:
        return e


@contextlib.contextmanager
def staging(out_dir: Path):
    """A temp folder inside out_dir; files moved out of it with `publish` land atomically."""
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".staging-"))
    try:
        yield tmp
    finally:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


def publish(files: list[Path], out_dir: Path) -> Path:
    """Move one artifact's files (main file first, e.g. side_files(x.onnx)) from staging into
    out_dir; the main file lands last, so a present main file always has its side files."""
    for part in reversed(files):
        os.chmod(part, 0o644)  # some writers create side files 0600; servers often run as another user
        os.replace(part, out_dir / part.name)
    return out_dir / files[0].name


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_entry(files: list[Path]) -> dict:
    """Manifest fields for one artifact's files: sha256 and size of each, total size."""
    return {
        "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
        "bytes": sum(p.stat().st_size for p in files),
    }


def record(out_dir: Path, name: str, entry: dict) -> dict:
    """Add or replace one artifact's entry in out_dir/manifest.json (atomically)."""
    path = out_dir / MANIFEST
    manifest = read_manifest(out_dir)
    manifest.setdefault("artifacts", {})[name] = {
        **entry,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command_line(),
    }
    manifest["artifacts"] = dict(sorted(manifest["artifacts"].items()))
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    if not path.exists():
        return {"format": "vggdeploy-manifest/1", "artifacts": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BadInput(f"{path} is not valid JSON ({e})", hint="move it away and re-run") from None


def command_line() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return shlex.join(argv)
