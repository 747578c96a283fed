"""Start a real tritonserver on loopback (the one in nvidia-pytriton's wheel, DESIGN.md fact 9),
for tests and benchmarks of the generated repositories. The environment comes from
scripts/triton_env.sh."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from .errors import MissingEnvironment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env_info(venv: Path) -> dict:
    code = ("import os, sys, sysconfig, site, pytriton; print(os.path.join(os.path.dirname(pytriton.__file__), "
            "'tritonserver')); print(sysconfig.get_config_var('LIBDIR')); print(site.getsitepackages()[0])")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise MissingEnvironment(f"{venv} has no pytriton", hint="bash scripts/triton_env.sh")
    root, libdir, site_packages = out.stdout.split()
    return {"root": Path(root), "libdir": libdir, "site": site_packages}


@contextlib.contextmanager
def start_server(repo: Path, venv: Path, timeout: float = 120.0):
    """tritonserver serving `repo` on 127.0.0.1 (free ports); yields {"http": url, "grpc": url}."""
    info = _env_info(Path(venv).resolve())
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    env = {**os.environ,
           # what the generated README sets: the stub embeds this interpreter, which needs its libpython
           # and the venv's packages (vggdeploy among them, an editable install's .pth included)
           "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [info["libdir"], os.environ.get("LD_LIBRARY_PATH")])),
           "VGGDEPLOY_PYTHONPATH": info["site"]}
    log = Path(repo).resolve().parent / f"tritonserver-{http}.log"
    cmd = [str(info["root"] / "bin" / "tritonserver"), f"--model-repository={Path(repo).resolve()}",
           f"--backend-directory={info['root'] / 'backends'}", "--http-address=127.0.0.1", f"--http-port={http}",
           "--grpc-address=127.0.0.1", f"--grpc-port={grpc}", f"--metrics-port={metrics}", "--allow-metrics=false"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                tail = log.read_text()[-2000:]
                raise MissingEnvironment(f"tritonserver did not become ready (exit {proc.poll()}); its log ends:\n{tail}")
            time.sleep(0.5)
        yield {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}", "log": str(log)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
