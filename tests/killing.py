"""Runs a Python script in a child process and SIGKILLs it at a chosen point.

The script signals that it reached the point by creating the file named by
the `READY_FILE` environment variable, then blocks; the test kills it there,
as a preempted job or an OOM kill would, and inspects what it left on disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

# Prepended to every script: block forever once the point is reached.
_PRELUDE = """
import os, time

def reached_kill_point():
    open(os.environ["READY_FILE"], "w").close()
    while True:
        time.sleep(60)
"""


def run_and_kill(script: str, tmp_path: Path, wait_s: float = 240.0) -> str:
    """Runs `script` until it calls `reached_kill_point()`, then SIGKILLs it.

    `wait_s` only bounds a hung child (the test then fails); nothing is
    timed. Returns the child's stderr.
    """
    ready = tmp_path / "ready"
    path = tmp_path / "child.py"
    path.write_text(_PRELUDE + textwrap.dedent(script))
    env = {
        **os.environ,
        "READY_FILE": str(ready),
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1])]
            + [p for p in [os.environ.get("PYTHONPATH")] if p]
        ),
    }
    stderr_path = tmp_path / "child.stderr"
    with open(stderr_path, "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        deadline = time.monotonic() + wait_s
        try:
            while not ready.exists():
                if child.poll() is not None:
                    raise AssertionError(
                        "The child exited before its kill point "
                        f"(code {child.returncode}):\n"
                        + stderr_path.read_text()[-3000:]
                    )
                if time.monotonic() > deadline:
                    raise AssertionError("The child never reached its point.")
                time.sleep(0.05)
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return stderr_path.read_text()
