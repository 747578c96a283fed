"""Long steps talk: one line per step when stderr is not a terminal, 'still running' during a long
one, nothing under -q; and the vgg-mini journey's log never goes quiet for 10 s."""

import logging
import subprocess
import sys
import threading
import time

import pytest

from vggdeploy import progress


def test_a_long_step_says_it_is_still_running(monkeypatch, caplog):
    monkeypatch.setattr(progress, "HEARTBEAT", 0.2)
    monkeypatch.setattr(progress, "QUICK", 0.5)
    with caplog.at_level(logging.INFO, logger="vggdeploy"):
        with progress.step("thinking", total=4) as advance:
            advance(3)
            time.sleep(0.7)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("thinking: still running") and lines[-1].startswith("thinking: done in")
    assert any("3 of 4" in line for line in lines[:-1])


def test_a_failing_step_leaves_only_its_error(caplog):
    with caplog.at_level(logging.INFO, logger="vggdeploy"):
        try:
            with progress.step("thinking"):
                raise ValueError("no")
        except ValueError:
            pass
    assert caplog.records == []


def test_quiet_steps_say_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="vggdeploy"):
        with progress.step("thinking"):
            pass
    assert caplog.records == []


@pytest.mark.slow
def test_the_journey_never_goes_quiet_for_10_seconds(tmp_path):
    """The README's journey on vgg-mini, stderr read line by line as it arrives."""
    proc = subprocess.Popen([sys.executable, "-m", "vggdeploy", "export", "vgg-mini", "--form", "all", "--fp16", "--int8",
                             "--target", "cpu", "--out", str(tmp_path / "mini")], stderr=subprocess.PIPE, text=True,
                            stdout=subprocess.DEVNULL)
    arrivals = []
    reader = threading.Thread(target=lambda: arrivals.extend((time.monotonic(), line) for line in proc.stderr))
    start = time.monotonic()
    reader.start()
    assert proc.wait(600) == 0
    reader.join()
    times = [start] + [t for t, _ in arrivals]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) < 10, max(zip(gaps, [line for _, line in arrivals]))
    assert any(line.startswith("parity ") for _, line in arrivals)  # each artifact's check, as it ends
    assert any("calibrating on 256 of 4000" in line for _, line in arrivals)


def test_global_flags_after_the_verb(tmp_path):
    quiet = subprocess.run([sys.executable, "-m", "vggdeploy", "export", "vgg-mini", "--out", str(tmp_path / "a"), "-q"],
                           capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    debug = subprocess.run([sys.executable, "-m", "vggdeploy", "inspect", str(tmp_path / "missing.onnx"), "--debug"],
                           capture_output=True, text=True)
    assert debug.returncode == 2 and "Traceback" in debug.stderr  # the traceback, and the same exit code
