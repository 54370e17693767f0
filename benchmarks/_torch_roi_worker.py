"""torch / torchvision reference timings in a process of their own.

`bench_roi_ops.py` and `bench_grid_sample.py` run this file in a
subprocess: TensorFlow and torch in one process crash on this machine
(both bring their own OpenMP/oneDNN), so the torch rows are measured here
on the same arrays, in the same run, and sent back as JSON.

Each reference is timed the way our ops are: the forward alone (under
`torch.no_grad`), and the training path, which returns the output and the
gradient together (forward, `backward` of a loss on the output, both
tensors read back).

    python benchmarks/_torch_roi_worker.py INPUT.npz OUTPUT.json

INPUT.npz holds `task` ("roi" or "grid_sample"), the arrays of that task,
`repeats` and `threads`.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

ROI_NAMES = (
    "torchvision roi_pool",
    "torchvision roi_align",
    "torchvision MultiScaleRoIAlign",
)


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


def _nchw(torch, array):
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def _row(torch, name, forward, inputs, repeats, weights=None):
    """Times `forward(*inputs)` alone and with the gradient of
    `sum(output * weights)` (or `sum(output)`) for every input."""

    def fwd():
        with torch.no_grad():
            return forward(*inputs).numpy()

    def fwd_bwd():
        leaves = [t.detach().requires_grad_(True) for t in inputs]
        output = forward(*leaves)
        loss = (output * weights).sum() if weights is not None else output.sum()
        loss.backward()
        return output.detach().numpy(), [t.grad.numpy() for t in leaves]

    row = {"op": name, "mode": "eager"}
    for key, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
        row[f"{key} first s"], row[key] = _time(fn, repeats)
    return row


def _roi_rows(torch, torchvision, arrays, repeats):
    output = tuple(int(v) for v in arrays["output_size"])
    scale = float(arrays["spatial_scale"])
    features = _nchw(torch, arrays["features"])
    boxes = arrays["boxes"]
    index = np.repeat(np.arange(boxes.shape[0]), boxes.shape[1])[:, None]
    rois = torch.tensor(
        np.concatenate([index, boxes.reshape(-1, 4)], 1), dtype=torch.float32
    )
    rows = [
        _row(
            torch,
            "torchvision roi_pool",
            lambda t: torchvision.ops.roi_pool(t, rois, output, scale),
            [features],
            repeats,
        ),
        _row(
            torch,
            "torchvision roi_align",
            lambda t: torchvision.ops.roi_align(
                t, rois, output, scale, 2, aligned=True
            ),
            [features],
            repeats,
        ),
    ]
    levels = [
        _nchw(torch, arrays[f"level_{i}"])
        for i in range(int(arrays["num_levels"]))
    ]
    image_size = int(arrays["image_size"])
    pooler = torchvision.ops.MultiScaleRoIAlign(
        [str(i) for i in range(len(levels))], output, 2
    )
    box_list = [torch.from_numpy(b) for b in boxes]
    image_shapes = [(image_size, image_size)] * boxes.shape[0]

    def multi_scale(*maps):
        named = {str(i): m for i, m in enumerate(maps)}
        return pooler(named, box_list, image_shapes)

    name = "torchvision MultiScaleRoIAlign"
    rows.append(_row(torch, name, multi_scale, levels, repeats))
    return rows


def _grid_sample_rows(torch, arrays, repeats):
    functional = torch.nn.functional
    images = _nchw(torch, arrays["images"])
    weights = _nchw(torch, arrays["weights"])
    theta = torch.from_numpy(arrays["theta"]).view(-1, 2, 3)

    def forward(images, theta):
        grid = functional.affine_grid(
            theta, list(images.shape), align_corners=False
        )
        return functional.grid_sample(
            images, grid, "bilinear", "zeros", align_corners=False
        )

    return [
        _row(
            torch,
            "torch grid_sample",
            forward,
            [images, theta],
            repeats,
            weights,
        )
    ]


def main(argv) -> int:
    source, target = argv
    arrays = np.load(source)
    task, repeats = str(arrays["task"]), int(arrays["repeats"])
    try:
        import torch
        import torchvision
    except ImportError:
        names = ROI_NAMES if task == "roi" else ("torch grid_sample",)
        rows = [
            {"op": name, "mode": "eager", "note": "torch not installed"}
            for name in names
        ]
    else:
        torch.set_num_threads(int(arrays["threads"]))
        if task == "roi":
            rows = _roi_rows(torch, torchvision, arrays, repeats)
        else:
            rows = _grid_sample_rows(torch, arrays, repeats)
        for row in rows:
            row["version"] = (
                f"torch {torch.__version__}, torchvision "
                f"{torchvision.__version__}"
            )
    with open(target, "w") as file:
        json.dump(rows, file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
