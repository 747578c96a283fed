"""A real two-node Ray cluster on loopback (head 127.0.0.2, worker 127.0.0.3, one CPU each), for
tests and benchmarks of `--cluster`: private temp dirs and auth token (set before ray is imported), small
object stores, each node a `ray start --block` child stopped by its PID (never `ray stop`, which
stops every Ray process on the machine), and a check that nothing of it is left running. No
traffic leaves 127.0.0.0/8."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_USAGE_STATS_ENABLED")


TWO_NODES = """import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, include_dashboard=False)
end = time.monotonic() + 90
while sum(n["Alive"] for n in ray.nodes()) < 2:
    assert time.monotonic() < end, "two live nodes"
    time.sleep(0.5)
"""


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait(predicate, seconds: float, what: str):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(what)


class LoopbackCluster:
    """Two `ray start --block` children with private temp dirs and a private auth token. Ray reads
    its auth settings when imported: `start` sets them in this process before it imports ray."""

    def __init__(self, root: Path):
        self.root = root
        token = root / "token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.port = _free_port("127.0.0.2")
        self.address = f"127.0.0.2:{self.port}"
        self.temps = [tempfile.mkdtemp(prefix="rci.") for _ in range(2)]  # short: AF_UNIX paths < 108 bytes
        self.nodes: list[subprocess.Popen] = []

    def _start(self, ip: str, temp: str, head: bool) -> subprocess.Popen:
        args = [str(RAY), "start", f"--node-ip-address={ip}", "--num-cpus=1", "--object-store-memory=268435456",
                "--disable-usage-stats", f"--temp-dir={temp}", "--block"]
        args += ["--head", f"--port={self.port}", "--include-dashboard=false"] if head else [f"--address={self.address}"]
        log = open(self.root / f"{ip}.log", "w")
        return subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, connect: bool = True):
        """Both nodes up; this process joined as a driver, or (connect=False: a test that takes the head
        down, which would end every driver) the two nodes awaited from a child process."""
        self.saved_env = {k: os.environ.get(k) for k in AUTH_ENV}
        os.environ.update({k: self.env[k] for k in AUTH_ENV})  # the driver (this process) too, before import
        self.nodes.append(self._start("127.0.0.2", self.temps[0], head=True))
        _wait(lambda: socket.socket().connect_ex(("127.0.0.2", self.port)) == 0, 90, "the head node's GCS")
        self.nodes.append(self._start("127.0.0.3", self.temps[1], head=False))
        self.connected = connect
        if not connect:
            subprocess.run([sys.executable, "-c", TWO_NODES, self.address], env=self.env, check=True, timeout=120,
                           capture_output=True)
            return
        import ray

        ray.init(address=self.address, _node_ip_address="127.0.0.2", log_to_driver=False, include_dashboard=False)
        _wait(lambda: sum(n["Alive"] for n in ray.nodes()) == 2, 90, "two live nodes")

    def gcs_pid(self) -> int:
        """The head's GCS server: killing it is losing the head."""
        out = subprocess.run(["pgrep", "-f", f"gcs_server.*{self.temps[0]}"], capture_output=True, text=True)
        return int(out.stdout.split()[0])

    def raylet_pid(self, ip: str) -> int:
        out = subprocess.run(["pgrep", "-f", f"raylet.*--node_ip_address={ip}"], capture_output=True, text=True)
        return int(out.stdout.split()[0])

    def stop(self):
        if getattr(self, "connected", False):
            import ray

            ray.shutdown()
        for node in reversed(self.nodes):
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
        for node in self.nodes:
            try:
                node.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
        for k, v in getattr(self, "saved_env", {}).items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        # A node whose raylet was killed leaves workers that notice only after a few seconds: give
        # them a grace period, then SIGKILL what is left; only a process that survives that is an error.
        _wait_quietly(lambda: not self._leftovers(), 30)
        stragglers = self._leftovers()
        for pid in stragglers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if stragglers:
            print(f"loopback cluster: killed {len(stragglers)} straggler process(es) {stragglers}", file=sys.stderr)
        _wait_quietly(lambda: not self._leftovers(), 10)
        if left := self._leftovers():
            raise RuntimeError(f"processes of the loopback cluster survived SIGKILL: {left}")

    def _leftovers(self) -> list[int]:
        """PIDs of live processes started with one of this cluster's temp dirs on their command line."""
        pids = []
        for temp in self.temps:
            out = subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True).stdout.split()
            pids += [int(p) for p in out if _alive(int(p))]
        return pids


def _alive(pid: int) -> bool:
    """False for a zombie (exited, not yet reaped by its parent) or a process that is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_quietly(predicate, seconds: float):
    try:
        _wait(predicate, seconds, "")
    except TimeoutError:
        pass

__all__ = ["AUTH_ENV", "LoopbackCluster"]
