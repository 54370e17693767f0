"""Timing of the RoI ops against keras-cv, crop_and_resize and torchvision.

Features [2, 50, 50, 256] (a stride-16 map of an 800 x 800 image), output
7 x 7, spatial scale 1/16, 64 and 256 random boxes per image; for the
multi-scale op, an FPN pyramid of the same image ([2, 200, 200, C] ...
[2, 25, 25, C], scales 1/4 ... 1/32, `--pyramid-channels` C). For each op
and mode ("graph": `tf.function`; "xla": `tf.function(jit_compile=True)`;
"eager") it reports the first call (tracing plus XLA compilation), then
the median time of

- the forward: the op's output;
- the training path ("fwd+bwd"): the output and the gradient of
  `sum(output)` with respect to the features, returned together from one
  function, as a train step needs both (returning the gradient alone
  would let XLA prune the forward values); `roi_pool` runs there with
  `training=True`, as `RoIPool` does in a train step (the argmax found
  in the forward pass);

and the ratio to our op measured in the same run and mode (`roi_pool`
for the max-pooling baselines, `roi_align` for the bilinear ones).

Baselines:
- `crop_and_resize+maxpool`: `tf.image.crop_and_resize` to 14 x 14 then
  2 x 2 max pooling (the TF Object Detection API approximation; no XLA
  kernel, so its XLA rows report the error).
- keras-cv `ROIPooler`: Python loops over images, boxes and bins. Tracing
  it takes minutes, so only its eager forward is timed, and only when an
  extrapolation from one box stays under `--keras-cv-cap` seconds.
- torchvision `roi_pool` / `roi_align(aligned=True)` /
  `MultiScaleRoIAlign` (NCHW, CPU, forward under `no_grad`; training path
  forward + `backward`, output and gradient read back), when torch is
  importable by this interpreter (`make bench-torch`); they are timed in
  a subprocess (`_torch_roi_worker.py`) on the same arrays, since TF and
  torch crash in one process here. Our multi-scale op runs with
  `aligned=False`, as torchvision's `MultiScaleRoIAlign` does.

Usage:
    python benchmarks/bench_roi_ops.py [--quick] [--repeats 10] [--json F]
"""

from __future__ import annotations

import argparse
import time

from _timing import set_process_defaults

set_process_defaults()  # before TensorFlow is imported

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import time_call  # noqa: E402
from _timing import torch_rows  # noqa: E402
from _timing import write_json  # noqa: E402

from keras_segattn.ops import multilevel_roi_align  # noqa: E402
from keras_segattn.ops import roi_align  # noqa: E402
from keras_segattn.ops import roi_pool  # noqa: E402

IMAGE_SIZE = 800
SCALE = 1 / 16
OUTPUT = (7, 7)
PYRAMID_SCALES = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
TORCH_NAMES = (
    "torchvision roi_pool",
    "torchvision roi_align",
    "torchvision MultiScaleRoIAlign",
)


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
# The op as a train step calls it, where that differs from the forward.
TRAINING_OPS = {
    "roi_pool (ours)": lambda f, b: roi_pool(
        f, b, OUTPUT, SCALE, training=True
    ),
}
REFERENCE = {
    "roi_pool (ours)": "roi_pool (ours)",
    "roi_align (ours)": "roi_align (ours)",
    "crop_and_resize+maxpool": "roi_pool (ours)",
    "keras-cv ROIPooler": "roi_pool (ours)",
    "torchvision roi_pool": "roi_pool (ours)",
    "torchvision roi_align": "roi_align (ours)",
    "multilevel_roi_align (ours)": "multilevel_roi_align (ours)",
    "torchvision MultiScaleRoIAlign": "multilevel_roi_align (ours)",
}
# (ours, torchvision's) pairs of the targets.
PAIRS = (
    ("roi_pool (ours)", "torchvision roi_pool"),
    ("roi_align (ours)", "torchvision roi_align"),
    ("multilevel_roi_align (ours)", "torchvision MultiScaleRoIAlign"),
)


def _multi_scale(pyramid, boxes):
    return multilevel_roi_align(
        pyramid, boxes, OUTPUT, list(PYRAMID_SCALES), 2, aligned=False
    )


def _forward_backward(fn):
    """The training path: the op's output and the gradient of a loss on it
    with respect to the features, returned together from one function (a
    train step needs both; returning only the gradient would let XLA prune
    the forward value tables)."""

    def run(features, boxes):
        with tf.GradientTape() as tape:
            tape.watch(features)
            output = fn(features, boxes)
            loss = tf.reduce_sum(output)
        return output, tape.gradient(loss, features)

    return run


def _bench_tf(name, fn, mode, features, boxes, repeats):
    row = {"op": name, "mode": mode}
    training_fn = TRAINING_OPS.get(name, fn)
    for key, body in (("fwd", fn), ("fwd+bwd", _forward_backward(training_fn))):
        if mode == "eager":
            call = body
        else:
            call = tf.function(body, jit_compile=mode == "xla")
        try:
            first, median = time_call(call, (features, boxes), repeats)
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


def _bench_torch(features, boxes, pyramid, repeats):
    """torchvision rows (roi_pool, roi_align, MultiScaleRoIAlign) on the
    same arrays, timed in a subprocess (see `_timing.torch_rows`)."""
    arrays = {
        "features": features.numpy(),
        "boxes": boxes.numpy(),
        "output_size": np.array(OUTPUT),
        "spatial_scale": np.array(SCALE),
        "image_size": np.array(IMAGE_SIZE),
        "num_levels": np.array(len(pyramid)),
    }
    for i, level in enumerate(pyramid):
        arrays[f"level_{i}"] = level.numpy()
    return torch_rows("roi", arrays, repeats, TORCH_NAMES)


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


def ratios_to_reference(rows) -> list[dict]:
    """Our XLA ops over torchvision's times (forward and training path),
    from rows of the same run."""
    by_key = {(r["op"], r["mode"]): r for r in rows}
    ratios = []
    for ours, theirs in PAIRS:
        mine = by_key.get((ours, "xla"), {})
        reference = by_key.get((theirs, "eager"), {})
        entry = {"op": ours, "reference": theirs}
        for key in ("fwd", "fwd+bwd"):
            if mine.get(key) and reference.get(key):
                entry[key] = mine[key] / reference[key]
        if len(entry) > 2:
            ratios.append(entry)
    return ratios


def _targets(rows) -> str:
    """The issue's targets: our XLA ops against torchvision (a ratio across
    modes, unlike the table's), and the slowest first call."""
    lines = [
        f"{r['op']} XLA / {r['reference']}: "
        + ", ".join(
            f"{key} {r[key]:.2f}x" for key in ("fwd", "fwd+bwd") if key in r
        )
        for r in ratios_to_reference(rows)
    ]
    firsts = [
        r[k]
        for r in rows
        if r["op"].endswith("(ours)")
        for k in ("fwd first s", "fwd+bwd first s")
        if r.get(k) is not None
    ]
    if firsts:
        lines.append(f"slowest first call of our ops: {max(firsts):.2f} s")
    lines.append(
        "targets: roi_pool <= 0.5x torchvision (forward and training path), "
        "roi_align forward <= 0.3x, first call <= 5 s"
    )
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
        "--ops",
        nargs="+",
        default=["roi_pool", "roi_align", "multi_scale", "baselines"],
        choices=["roi_pool", "roi_align", "multi_scale", "baselines"],
        help="what to time (all): our single-level ops, the multi-scale "
        "op, the TF/keras-cv baselines",
    )
    parser.add_argument(
        "--pyramid-channels",
        type=int,
        default=256,
        help="channels of the multi-scale pyramid (256)",
    )
    parser.add_argument(
        "--keras-cv-cap",
        type=float,
        default=60.0,
        help="skip keras-cv when its eager call is estimated to take longer",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json", help="also write the rows and settings to this JSON file"
    )
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    modes = ("graph", "xla") if args.quick else ("eager", "graph", "xla")

    rng = np.random.default_rng(args.seed)
    features = tf.constant(rng.normal(size=(2, 50, 50, 256)).astype("float32"))
    pyramid = [
        tf.constant(
            rng.normal(
                size=(2, int(IMAGE_SIZE * s), int(IMAGE_SIZE * s), c)
            ).astype("float32")
        )
        for s, c in zip(
            PYRAMID_SCALES, [args.pyramid_channels] * 4, strict=True
        )
    ]
    print(
        f"features {tuple(features.shape)}, output {OUTPUT}, scale 1/16, "
        f"image {IMAGE_SIZE}x{IMAGE_SIZE}, pyramid "
        f"{[tuple(p.shape) for p in pyramid]}, median of {repeats}; ratio = "
        "time / our op's time (same mode; eager rows vs our graph mode "
        "when our eager rows are skipped)"
    )
    ops_to_time = dict(OPS)
    if "baselines" not in args.ops:
        del ops_to_time["crop_and_resize+maxpool"]
    for name in ("roi_pool", "roi_align"):
        if name not in args.ops:
            del ops_to_time[f"{name} (ours)"]
    results = []
    for num_boxes in args.boxes:
        boxes = tf.constant(_random_boxes(rng, 2, num_boxes))
        rows = []
        for name, fn in ops_to_time.items():
            for mode in modes:
                rows.append(_bench_tf(name, fn, mode, features, boxes, repeats))
        if "multi_scale" in args.ops:
            for mode in ("graph", "xla"):
                rows.append(
                    _bench_tf(
                        "multilevel_roi_align (ours)",
                        _multi_scale,
                        mode,
                        pyramid,
                        boxes,
                        repeats,
                    )
                )
        if "baselines" not in args.ops:
            pass
        elif num_boxes <= 64:
            rows.append(_bench_keras_cv(features, boxes, args.keras_cv_cap))
        else:
            rows.append(
                {
                    "op": "keras-cv ROIPooler",
                    "mode": "eager",
                    "note": "skipped (only the 64-box eager call is timed)",
                }
            )
        rows.extend(_bench_torch(features, boxes, pyramid, repeats))
        print(_format(rows, num_boxes), flush=True)
        print(_targets(rows), flush=True)
        results.append(
            {
                "boxes_per_image": num_boxes,
                "rows": rows,
                "ratios": ratios_to_reference(rows),
            }
        )
    if args.json:
        write_json(
            args.json,
            {
                "features": list(features.shape),
                "pyramid": [list(p.shape) for p in pyramid],
                "output_size": list(OUTPUT),
                "repeats": repeats,
                "results": results,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
