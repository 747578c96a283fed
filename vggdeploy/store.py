"""The on-disk artifact store: a folder of artifacts, atomic writes and publishing, ONNX files
with their external-data side files, manifest.json.

An ONNX artifact is ``NAME.onnx`` plus, for large models, ``NAME.onnx.data`` beside it
(DESIGN.md fact 14): everything here moves, hashes and lists the pair as one artifact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .errors import BadInput, first_line, printable, spelled
from .manifest import ManifestEntry

log = logging.getLogger("vggdeploy")
MANIFEST = "manifest.json"
# every temporary file or folder vggdeploy makes in an artifact folder is named .staging-PID-...: a
# killed run's leftovers are recognised by their owner being gone
STAGING_RE = re.compile(r"^\.staging-(\d{1,7})-")  # PIDs stop at 2**22: a longer number is not ours


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str, what: str) -> str:
    """A user-given name that becomes one path component (a Triton model, a file): never a path."""
    if not NAME_RE.match(name or ""):
        raise BadInput(f"{what} {printable(repr(name))} is not a plain name",
                       hint="use letters, digits, '.', '_' and '-' (up to 128, starting with a letter or digit)")
    return name


def staging_prefix() -> str:
    return f".staging-{os.getpid()}-"


def cache_root() -> Path:
    """Where calibration ranges and OpenVINO's compiled models are cached ($VGGDEPLOY_CACHE)."""
    return Path(os.environ.get("VGGDEPLOY_CACHE", Path.home() / ".cache" / "vggdeploy"))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def artifact_sha256(onnx_path: Path) -> str:
    """One hash over an ONNX artifact's files (graph and weights): what a derived artifact records."""
    return hashlib.sha256("".join(sha256_file(p) for p in side_files(onnx_path)).encode()).hexdigest()


def side_files(onnx_path: Path) -> list[Path]:
    """The files that make up one ONNX artifact: the graph, then its external data if any."""
    data = onnx_path.with_name(onnx_path.name + ".data")
    return [onnx_path, data] if data.exists() else [onnx_path]


def save_onnx(model, path: Path) -> None:
    """The graph at `path`, its weights in `path`.data beside it. The tensors are marked here because
    onnx.save(location=...) refuses when a file of that name exists in the *current* directory."""
    import sys

    import onnx
    from onnx.external_data_helper import set_external_data

    for t in model.graph.initializer:
        if t.HasField("raw_data") and sys.getsizeof(t.raw_data) >= 1024:  # onnx.save's own threshold
            set_external_data(t, path.name + ".data")
    onnx.save(model, str(path))


def prepare_out_dir(out_dir: Path, names: list[str], force: bool) -> None:
    """Fail early (before any long work) if the folder can't be written or would be overwritten."""
    existing = [n for n in names if (out_dir / n).exists()]
    if existing and not force:
        raise BadInput(f"{out_dir / existing[0]} already exists", hint=f"pass {spelled('--force', 'force=True')} to overwrite it")
    require_writable(out_dir)
    read_manifest(out_dir)  # a damaged manifest is refused now, not after the work


def require_writable(folder: Path, hint: str = "choose a folder you can write to") -> None:
    """BadInput (one line) unless folder can be created and written."""
    error = write_error(folder)
    if error and error.errno == errno.ENOSPC:  # a full disk is said as one (exit 3), not as a permissions problem
        raise error
    if error:
        raise BadInput(f"cannot write to {folder}: {error.strerror or error}", hint=hint)


def write_error(folder: Path) -> OSError | None:
    """Create folder if needed and try a file in it: None if it can be written, else the error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=staging_prefix() + "write-test-"):
            return None
    except OSError as e:
        return e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(folder: Path) -> list[Path]:
    """Remove the temporary files and folders of runs that are gone (killed, out of memory)."""
    removed = []
    for p in folder.iterdir() if folder.is_dir() else []:
        m = STAGING_RE.match(p.name)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.info("removed %d leftover(s) of killed runs in %s", len(removed), folder)
    return removed


@contextlib.contextmanager
def staging(out_dir: Path):
    """A temp folder inside out_dir; files moved out of it with `publish` land atomically.
    Leftovers of killed runs in out_dir are removed first."""
    clean_stale(out_dir)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=staging_prefix()))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def copy_into(onnx_path: Path, folder: Path) -> Path:
    """A private copy of an ONNX artifact's files in `folder`, made fresh inside a staging folder:
    tools that write beside their input (ONNX Runtime's quantizer writes NAME-inferred.onnx) then
    write there, never beside the user's files or through a link planted there."""
    folder.mkdir()
    for f in side_files(onnx_path):
        shutil.copyfile(f, folder / f.name)
    return folder / onnx_path.name


def publish(files: list[Path], out_dir: Path) -> Path:
    """Move one artifact's files (main file first, e.g. side_files(x.onnx)) from staging into
    out_dir; the main file lands last, so a present main file always has its side files."""
    for part in reversed(files):
        os.chmod(part, 0o644)  # some writers create side files 0600; servers often run as another user
        os.replace(part, out_dir / part.name)
    return out_dir / files[0].name


def publish_recorded(files: list[Path], out_dir: Path, entry: ManifestEntry, force: bool) -> tuple[Path, ManifestEntry]:
    """Move one artifact's staged files (main file first) into out_dir and record its entry (sizes and
    sha256 added) in the manifest, as one step under the manifest lock; the published path and the
    entry as recorded. Everything that can fail is
    done before anything moves: the manifest is read and the new one written to a temporary file, and
    without `force` a file another run published meanwhile is refused, so a failure (a damaged
    manifest, a full disk, a concurrent writer) leaves out_dir as it was."""
    entry = dataclasses.replace(entry, **file_entry(files))
    with manifest_lock(out_dir):
        if not force and (out_dir / files[0].name).exists():
            raise BadInput(f"{out_dir / files[0].name} already exists (another run published it meanwhile)",
                           hint=f"pass {spelled('--force', 'force=True')} to overwrite it")
        manifest = _with_entry(read_manifest(out_dir), files[0].name, entry)
        staged = _staged_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        try:
            final = publish(files, out_dir)
            os.replace(staged, out_dir / MANIFEST)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
    return final, ManifestEntry.from_json(manifest["artifacts"][files[0].name])


def _with_entry(manifest: dict, name: str, entry: ManifestEntry) -> dict:
    stamped = dataclasses.replace(entry, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command=command_line())
    manifest.setdefault("artifacts", {})[name] = stamped.to_json()
    manifest["artifacts"] = dict(sorted(manifest["artifacts"].items()))
    return manifest


def _staged_text(path: Path, text: str) -> str:
    """`text` written and flushed to a temporary file beside `path` (mode 0644); returns its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{staging_prefix()}{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write_text(path: Path, text: str) -> None:
    tmp = _staged_text(path, text)
    try:
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


def manifest_lock(out_dir: Path):
    """An exclusive lock on out_dir's manifest: concurrent exports, quantizations and builds into
    one folder each read-modify-write it in turn, so no entry is lost."""
    from filelock import FileLock

    return FileLock(str(out_dir / f".{MANIFEST}.lock"), timeout=600)


@contextlib.contextmanager
def sole_writer(out_dir: Path, verb: str):
    """Hold out_dir for one writer: an exclusive flock on the folder itself (no lock file left in it;
    the kernel drops it when the process ends, however it ends). A second run into the folder while
    the first holds it is BadInput at once. The folder is created if need be (require_writable first)."""
    import fcntl

    require_writable(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(f"another vggdeploy {verb} is writing to {out_dir}",
                           hint="wait for it to finish, or give another output folder") from None
        yield
    finally:
        os.close(fd)


def record(out_dir: Path, name: str, entry: ManifestEntry) -> dict:
    """Add or replace one artifact's entry in out_dir/manifest.json (atomically, under its lock)."""
    with manifest_lock(out_dir):
        manifest = _with_entry(read_manifest(out_dir), name, entry)
        atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def entry_of(path: Path, manifest: dict | None = None) -> ManifestEntry | None:
    """The manifest entry of the artifact at `path` (from its folder's manifest, or `manifest` if
    already read), or None where it has none."""
    if manifest is None:
        manifest = read_manifest(path.parent)
    record = manifest["artifacts"].get(path.name)
    return None if record is None else ManifestEntry.from_json(record)


def entries(folder: Path) -> dict[str, ManifestEntry]:
    """Every entry in `folder`'s manifest, by artifact name."""
    return {name: ManifestEntry.from_json(e) for name, e in read_manifest(folder)["artifacts"].items()}


def read_manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    if not path.exists():
        return {"format": "vggdeploy-manifest/1", "artifacts": {}}
    if not path.is_file():
        raise BadInput(f"{path} is not a file", hint="move it away and re-run")
    try:
        manifest = json.loads(path.read_text())
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}", hint="move it away and re-run") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{path} is not valid JSON ({e})", hint="move it away and re-run") from None
    except RecursionError:
        raise BadInput(f"{path} nests too deeply to be a manifest", hint="move it away and re-run") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), dict):
        raise BadInput(f"{path} is not a vggdeploy manifest (no 'artifacts' table)", hint="move it away and re-run")
    for name, entry in manifest["artifacts"].items():
        problem = _entry_problem(name, entry)
        if problem:
            raise BadInput(printable(f"{path}: artifact {name!r}: {problem}"), hint="move it away and re-run")
    return manifest


def _entry_problem(name: str, entry) -> str | None:
    """What is wrong with one manifest entry's shape, or None: it must be a table whose files are
    plain names in the folder (never absolute or escaping paths) with a sha256 and a size each."""
    if not NAME_RE.match(name):
        return "is not a plain file name"
    if not isinstance(entry, dict):
        return f"entry is a {type(entry).__name__}, not a table"
    files = entry.get("files", {})
    if not isinstance(files, dict):
        return f"'files' is a {type(files).__name__}, not a table"
    for fname, f in files.items():
        if not NAME_RE.match(fname):
            return f"file {fname!r} is not a plain name in the folder (absolute or escaping paths are refused)"
        if not (isinstance(f, dict) and isinstance(f.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", f["sha256"])
                and isinstance(f.get("bytes"), int) and f["bytes"] >= 0):
            return f"file {fname!r} lacks a sha256 and a size"
    return None


def check_onnx_files(onnx_path: Path, model=None, manifest: dict | None = None) -> ManifestEntry | None:
    """Before a runtime loads an ONNX: every external-data reference stays inside its folder, its
    file exists and is long enough, and the files match the manifest's sizes where it lists them.
    One BadInput naming the problem, instead of the runtime's traceback. `model`, `manifest`: the
    header and the folder's manifest when already read. Returns its manifest entry (None if unlisted)."""
    import onnx

    model = model if model is not None else onnx.load(str(onnx_path), load_external_data=False)
    folder = onnx_path.parent.resolve()
    needed: dict[str, int] = {}
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        target = (folder / loc).resolve()
        if not loc or os.path.isabs(loc) or folder not in target.parents:
            raise BadInput(f"{onnx_path.name}: tensor {t.name!r} points outside its folder ({loc!r})",
                           hint="external data must sit beside the .onnx; re-export it")
        try:
            end = int(info.get("offset", 0)) + int(info.get("length", 0))
        except ValueError:
            raise BadInput(f"{onnx_path.name}: tensor {t.name!r} has a non-numeric external-data offset or length",
                           hint="the graph was edited or damaged; re-export it") from None
        needed[loc] = max(needed.get(loc, 0), end)
    for loc, end in needed.items():
        data = folder / loc
        if not data.is_file():
            raise BadInput(f"{onnx_path.name}: its weights file {loc} is missing",
                           hint="an ONNX artifact is the .onnx and its .onnx.data: copy or move them together")
        if data.stat().st_size < end:
            raise BadInput(f"{onnx_path.name}: its weights file {loc} is truncated ({data.stat().st_size} of {end} bytes)",
                           hint="copy it again, or re-export")
    if manifest is None and (onnx_path.parent / MANIFEST).exists():
        manifest = read_manifest(onnx_path.parent)
    entry = entry_of(onnx_path, manifest) if manifest else None
    for fname, f in (entry.files if entry else {}).items():
        p = onnx_path.parent / fname
        if p.is_file() and p.stat().st_size != f["bytes"]:
            raise BadInput(f"{fname} is {p.stat().st_size} bytes, the manifest says {f['bytes']} (changed or truncated)",
                           hint=f"`vggdeploy verify {onnx_path.parent}` checks the whole folder")
    return entry


def verify_folder(folder: Path) -> list[str]:
    """Every artifact in folder's manifest re-checked: files present, sizes and sha256 as recorded,
    ONNX graphs loadable with their side files. Returns the problems (empty when all is well)."""
    import onnx

    if not (folder / MANIFEST).is_file():
        raise BadInput(f"{folder} has no {MANIFEST}", hint="give an artifact folder made by vggdeploy")
    problems, manifest = [], read_manifest(folder)
    for name, entry in manifest["artifacts"].items():
        for fname, f in entry.get("files", {}).items():
            p = folder / fname
            if not p.is_file():
                problems.append(f"{name}: {fname} is missing")
            elif p.stat().st_size != f["bytes"]:
                problems.append(f"{name}: {fname} is {p.stat().st_size} bytes, recorded {f['bytes']}")
            elif sha256_file(p) != f["sha256"]:
                problems.append(f"{name}: {fname} changed (sha256 differs from the manifest)")
        if name.endswith(".onnx") and (folder / name).is_file():
            try:
                check_onnx_files(folder / name, manifest=manifest)
                onnx.checker.check_model(str(folder / name))
            except BadInput as e:
                problems.append(f"{name}: {e}")
            except Exception as e:  # onnx's own parse or check error
                problems.append(f"{name}: does not load ({first_line(e)})")
    return problems


def command_line() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return shlex.join(argv)
