"""Timing helpers shared by the benchmark scripts (no TensorFlow import).

- `time_call`: the first call (tracing, compilation) and the median of the
  following calls, each synchronised by reading every output back;
- `torch_rows`: the torch / torchvision reference rows, measured by
  `_torch_roi_worker.py` in a subprocess of the same interpreter on the
  same arrays (TensorFlow and torch crash in one process here);
- `write_json`: the rows of a run, for `report.py`;
- `set_process_defaults`: the examples' environment settings (Keras on
  TensorFlow, quiet logs, TensorFlow's pooling CPU allocator; see
  `examples/_cli.py`), which each script sets before importing TensorFlow,
  so that the benchmarks time what the examples run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_EXAMPLES = str(Path(__file__).resolve().parent.parent / "examples")
if _EXAMPLES not in sys.path:
    sys.path.append(_EXAMPLES)

from _cli import set_process_defaults  # noqa: E402, F401 (re-exported)


def block(result) -> None:
    """Waits for every tensor in `result` (nested lists, tuples, dicts)."""
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, (list, tuple)):
        for item in result:
            block(item)
    elif result is not None:
        np.asarray(result)


def time_call(fn, args, repeats: int, warmup: int = 0) -> tuple[float, float]:
    """(first call s, median ms over `repeats` calls after `warmup` more)."""
    start = time.perf_counter()
    block(fn(*args))
    first = time.perf_counter() - start
    for _ in range(warmup):
        block(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn(*args))
        times.append(time.perf_counter() - start)
    return first, 1e3 * statistics.median(times)


def torch_rows(task: str, arrays: dict, repeats: int, names) -> list[dict]:
    """Rows of the torch worker for `task` ("roi" or "grid_sample"); on a
    worker failure, one row per name in `names` with the error as note."""
    worker = Path(__file__).with_name("_torch_roi_worker.py")
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.npz", Path(folder) / "out.json"
        np.savez(
            source,
            task=np.array(task),
            repeats=np.array(repeats),
            threads=np.array(os.cpu_count() or 1),
            **arrays,
        )
        done = subprocess.run(
            [sys.executable, str(worker), str(source), str(target)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            note = f"torch worker failed: {done.stderr.strip()[-80:]}"
            return [{"op": n, "mode": "eager", "note": note} for n in names]
        return json.loads(target.read_text())


def write_json(path, payload) -> None:
    """Writes `payload` (rows and settings of a run) for `report.py`."""
    Path(path).write_text(json.dumps(payload, indent=1))
