"""Timing of the RoI ops against keras-cv, crop_and_resize and torchvision.

Features [2, 50, 50, 256] (a stride-16 map of an 800 x 800 image), output
7 x 7, spatial scale 1/16, 64 and 256 random boxes per image. For each op
and mode ("graph": `tf.function`; "xla": `tf.function(jit_compile=True)`;
"eager") it reports the first call (tracing plus XLA compilation), then
the median forward and forward+backward times, and the ratio to our op
measured in the same run and mode (`roi_pool` for the max-pooling
baselines, `roi_align` for the bilinear ones).

Baselines:
- `crop_and_resize+maxpool`: `tf.image.crop_and_resize` to 14 x 14 then
  2 x 2 max pooling (the TF Object Detection API approximation; no XLA
  kernel, so its XLA rows report the error).
- keras-cv `ROIPooler`: Python loops over images, boxes and bins. Tracing
  it takes minutes, so only its eager forward is timed, and only when an
  extrapolation from one box stays under `--keras-cv-cap` seconds.
- torchvision `roi_pool` / `roi_align` (NCHW, CPU), when torch is
  importable by this interpreter (`make bench-torch`); they are timed in a
  subprocess (`_torch_roi_worker.py`) on the same arrays, since TF and
  torch crash in one process here.

Usage:
    python benchmarks/bench_roi_ops.py [--quick] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn.ops import roi_align  # noqa: E402
from keras_segattn.ops import roi_pool  # noqa: E402

IMAGE_SIZE = 800
SCALE = 1 / 16
OUTPUT = (7, 7)


def _random_boxes(rng, batch, num_boxes):
    corners = rng.uniform(0, IMAGE_SIZE, size=(batch, num_boxes, 2, 2))
    boxes = np.concatenate([corners.min(2), corners.max(2)], axis=-1)
    return boxes.astype("float32")


def _crop_and_resize_max_pool(features, boxes):
    batch, num_boxes = tf.shape(boxes)[0], tf.shape(boxes)[1]
    x1, y1, x2, y2 = tf.unstack(tf.reshape(boxes, (-1, 4)) / IMAGE_SIZE, 4, 1)
    index = tf.repeat(tf.range(batch), num_boxes)
    crops = tf.image.crop_and_resize(
        features, tf.stack([y1, x1, y2, x2], 1), index, (14, 14)
    )
    pooled = tf.nn.max_pool2d(crops, 2, 2, "VALID")
    return tf.reshape(pooled, (batch, num_boxes, *OUTPUT, -1))


OPS = {
    "roi_pool (ours)": lambda f, b: roi_pool(f, b, OUTPUT, SCALE),
    "roi_align (ours)": lambda f, b: roi_align(f, b, OUTPUT, SCALE, 2, True),
    "crop_and_resize+maxpool": _crop_and_resize_max_pool,
}
REFERENCE = {
    "roi_pool (ours)": "roi_pool (ours)",
    "roi_align (ours)": "roi_align (ours)",
    "crop_and_resize+maxpool": "roi_pool (ours)",
    "keras-cv ROIPooler": "roi_pool (ours)",
    "torchvision roi_pool": "roi_pool (ours)",
    "torchvision roi_align": "roi_align (ours)",
}


def _forward_backward(fn):
    def run(features, boxes):
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = tf.reduce_sum(fn(features, boxes))
        return tape.gradient(loss, features)

    return run


def _time(fn, args, repeats):
    """(first call s, median ms) of `fn(*args)`, synchronised by `.numpy()`."""
    start = time.perf_counter()
    np.asarray(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(fn(*args))
        times.append(time.perf_counter() - start)
    return first, 1e3 * statistics.median(times)


def _bench_tf(name, fn, mode, features, boxes, repeats):
    row = {"op": name, "mode": mode}
    for key, body in (("fwd", fn), ("fwd+bwd", _forward_backward(fn))):
        if mode == "eager":
            call = body
        else:
            call = tf.function(body, jit_compile=mode == "xla")
        try:
            first, median = _time(call, (features, boxes), repeats)
        except Exception as error:  # noqa: BLE001 - report, keep going
            row[key] = None
            row["note"] = f"{type(error).__name__}: {str(error)[:60]}"
            continue
        row[key] = median
        row[f"{key} first s"] = first
    return row


def _bench_keras_cv(features, boxes, cap):
    row = {"op": "keras-cv ROIPooler", "mode": "eager"}
    try:
        import keras_cv
    except ImportError:
        row["note"] = "keras-cv not installed"
        return row
    pooler = keras_cv.layers.ROIPooler(
        bounding_box_format="xyxy",
        target_size=list(OUTPUT),
        image_shape=[IMAGE_SIZE, IMAGE_SIZE, 3],
    )
    start = time.perf_counter()
    np.asarray(pooler(features[:1], boxes[:1, :1]))
    estimate = (time.perf_counter() - start) * boxes.shape[0] * boxes.shape[1]
    if estimate > cap:
        row["note"] = f"skipped (~{estimate:.0f} s estimated > cap {cap} s)"
        return row
    start = time.perf_counter()
    np.asarray(pooler(features, boxes))
    row["fwd"] = 1e3 * (time.perf_counter() - start)
    row["note"] = "one eager call; tracing (graph/XLA) takes minutes"
    return row


def _bench_torch(features, boxes, repeats):
    """torchvision rows, timed by `_torch_roi_worker.py` in a subprocess
    of the same interpreter (TF and torch crash in one process)."""
    worker = Path(__file__).with_name("_torch_roi_worker.py")
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.npz", Path(folder) / "out.json"
        np.savez(
            source,
            features=features.numpy(),
            boxes=boxes.numpy(),
            output_size=np.array(OUTPUT),
            spatial_scale=np.array(SCALE),
            repeats=np.array(repeats),
            threads=np.array(os.cpu_count() or 1),
        )
        done = subprocess.run(
            [sys.executable, str(worker), str(source), str(target)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            note = f"torch worker failed: {done.stderr.strip()[-60:]}"
            return [
                {"op": name, "mode": "eager", "note": note}
                for name in ("torchvision roi_pool", "torchvision roi_align")
            ]
        return json.loads(target.read_text())


def _format(rows, num_boxes):
    reference = {(r["op"], r["mode"]): r for r in rows}
    header = (
        f"{'op':<25} {'mode':<6} {'fwd ms':>9} {'ratio':>6} "
        f"{'fwd+bwd ms':>11} {'ratio':>6} {'1st fwd s':>9} {'1st f+b s':>9}"
        "  note"
    )
    lines = [f"\n{num_boxes} boxes per image", header, "-" * len(header)]
    for row in rows:
        ours = reference.get((REFERENCE[row["op"]], row["mode"])) or (
            reference.get((REFERENCE[row["op"]], "graph"), {})
        )
        cells = []
        for key in ("fwd", "fwd+bwd"):
            value, base = row.get(key), ours.get(key)
            cells.append(f"{value:9.1f}" if value is not None else f"{'-':>9}")
            ratio = value / base if value and base else None
            cells.append(f"{ratio:6.2f}" if ratio else f"{'-':>6}")
        firsts = [
            f"{row[k]:9.2f}" if row.get(k) is not None else f"{'-':>9}"
            for k in ("fwd first s", "fwd+bwd first s")
        ]
        lines.append(
            f"{row['op']:<25} {row['mode']:<6} {cells[0]} {cells[1]} "
            f"{cells[2]:>11} {cells[3]} {firsts[0]} {firsts[1]}  "
            f"{row.get('note', '')}"
        )
    return "\n".join(lines)


def _targets(rows) -> str:
    """The issue's targets: our XLA ops against torchvision (a ratio across
    modes, unlike the table's), and the slowest first call."""
    by_key = {(r["op"], r["mode"]): r for r in rows}
    lines = []
    for ours, theirs in (
        ("roi_pool (ours)", "torchvision roi_pool"),
        ("roi_align (ours)", "torchvision roi_align"),
    ):
        mine, reference = (
            by_key.get((ours, "xla"), {}),
            by_key.get((theirs, "eager"), {}),
        )
        cells = []
        for key in ("fwd", "fwd+bwd"):
            if mine.get(key) and reference.get(key):
                cells.append(f"{key} {mine[key] / reference[key]:.2f}x")
        if cells:
            lines.append(f"{ours} XLA / {theirs}: " + ", ".join(cells))
    firsts = [
        r[k]
        for r in rows
        if r["op"].endswith("(ours)")
        for k in ("fwd first s", "fwd+bwd first s")
        if r.get(k) is not None
    ]
    if firsts:
        lines.append(f"slowest first call of our ops: {max(firsts):.2f} s")
    lines.append("targets: roi_pool <= 0.5x torchvision, first call <= 5 s")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 repeats, no eager rows of our ops (a run of a few minutes)",
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--boxes", type=int, nargs="+", default=[64, 256], help="per image"
    )
    parser.add_argument(
        "--keras-cv-cap",
        type=float,
        default=60.0,
        help="skip keras-cv when its eager call is estimated to take longer",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    modes = ("graph", "xla") if args.quick else ("eager", "graph", "xla")

    rng = np.random.default_rng(args.seed)
    features = tf.constant(rng.normal(size=(2, 50, 50, 256)).astype("float32"))
    print(
        f"features {tuple(features.shape)}, output {OUTPUT}, scale 1/16, "
        f"image {IMAGE_SIZE}x{IMAGE_SIZE}, median of {repeats}; ratio = "
        "time / our op's time (same mode; eager rows vs our graph mode "
        "when our eager rows are skipped)"
    )
    for num_boxes in args.boxes:
        boxes = tf.constant(_random_boxes(rng, 2, num_boxes))
        rows = []
        for name, fn in OPS.items():
            for mode in modes:
                rows.append(_bench_tf(name, fn, mode, features, boxes, repeats))
        if num_boxes <= 64:
            rows.append(_bench_keras_cv(features, boxes, args.keras_cv_cap))
        else:
            rows.append(
                {
                    "op": "keras-cv ROIPooler",
                    "mode": "eager",
                    "note": "skipped (only the 64-box eager call is timed)",
                }
            )
        rows.extend(_bench_torch(features, boxes, repeats))
        print(_format(rows, num_boxes), flush=True)
        print(_targets(rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
