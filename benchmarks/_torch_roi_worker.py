"""torchvision RoI timings in a process of their own (no TensorFlow).

`bench_roi_ops.py` runs this file in a subprocess: TensorFlow and torch in
one process crash on this machine (both bring their own OpenMP/oneDNN), so
the torch rows are measured here on the same arrays, at the same time, and
sent back as JSON.

    python benchmarks/_torch_roi_worker.py INPUT.npz OUTPUT.json
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np


def _time(fn, repeats):
    """(first call s, median ms) of `fn()`."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, 1e3 * statistics.median(times)


def main(argv) -> int:
    source, target = argv
    arrays = np.load(source)
    output = tuple(int(v) for v in arrays["output_size"])
    scale, repeats = float(arrays["spatial_scale"]), int(arrays["repeats"])
    try:
        import torch
        import torchvision
    except ImportError:
        rows = [
            {"op": name, "mode": "eager", "note": "torch not installed"}
            for name in ("torchvision roi_pool", "torchvision roi_align")
        ]
        with open(target, "w") as file:
            json.dump(rows, file)
        return 0
    torch.set_num_threads(int(arrays["threads"]))
    x = torch.tensor(np.transpose(arrays["features"], (0, 3, 1, 2)))
    boxes = arrays["boxes"]
    index = np.repeat(np.arange(boxes.shape[0]), boxes.shape[1])[:, None]
    rois = torch.tensor(
        np.concatenate([index, boxes.reshape(-1, 4)], 1), dtype=x.dtype
    )
    ops = {
        "torchvision roi_pool": lambda t: torchvision.ops.roi_pool(
            t, rois, output, scale
        ),
        "torchvision roi_align": lambda t: torchvision.ops.roi_align(
            t, rois, output, scale, 2, aligned=True
        ),
    }
    rows = []
    for name, op in ops.items():

        def forward(op=op):
            with torch.no_grad():
                return op(x).numpy()

        def backward(op=op):
            t = x.clone().requires_grad_(True)
            op(t).sum().backward()
            return t.grad.numpy()

        row = {"op": name, "mode": "eager"}
        for key, fn in (("fwd", forward), ("fwd+bwd", backward)):
            row[f"{key} first s"], row[key] = _time(fn, repeats)
        rows.append(row)
    with open(target, "w") as file:
        json.dump(rows, file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
