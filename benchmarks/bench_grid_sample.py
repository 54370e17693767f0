"""Forward and training-path time of affine_grid + grid_sample (bilinear).

For each shape, samples the images through a random affine grid of the
same size (zeros padding, `align_corners=False`) and times

- the forward: the sampled images;
- the training path ("fwd+bwd"): the sampled images and the gradient of
  `sum(output * weights)` (fixed random weights) with respect to the
  images and theta, returned together from one function, as a train step
  needs both.

Implementations:

- `keras_segattn`: `affine_grid` + `grid_sample`, `tf.function` without and
  with XLA (`jit_compile=True`);
- `map_coordinates`: `keras.ops.image.map_coordinates(order=1,
  fill_mode="constant")` on the same pixel coordinates (one coordinate
  array per input axis, channels included), the Keras alternative;
- `torch`: `torch.nn.functional.affine_grid` + `grid_sample` on CPU (NCHW,
  forward under `no_grad`; training path forward + `backward`), timed on
  the same arrays by `_torch_roi_worker.py` in a subprocess (TF and torch
  crash in one process here), when torch is importable by this
  interpreter (`make bench-torch`; otherwise the table says so).

Both sides get their inputs as tensors made once before timing. Prints,
per row, the first call (trace + compile + run) and the median of
`--steps` calls after `--warmup`, and the ratios to keras_segattn's XLA
time, all measured in the same run.

Usage:
    python benchmarks/bench_grid_sample.py [--steps 10] [--quick] [--json F]
"""

from __future__ import annotations

import argparse
import os

from _timing import set_process_defaults

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import time_call  # noqa: E402
from _timing import torch_rows  # noqa: E402
from _timing import write_json  # noqa: E402

from keras_segattn.ops import affine_grid  # noqa: E402
from keras_segattn.ops import grid_sample  # noqa: E402

SHAPES = ((64, 60, 60, 1), (16, 128, 128, 32))


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=shape).astype("float32")
    identity = np.array([1, 0, 0, 0, 1, 0], "float32")
    theta = identity + 0.2 * rng.normal(size=(shape[0], 6)).astype("float32")
    weights = rng.normal(size=shape).astype("float32")
    return images, theta.astype("float32"), weights


def _ours(jit_compile, shape, training):
    size = shape[1:3]

    @tf.function(jit_compile=jit_compile)
    def forward(images, theta, weights):
        del weights
        return grid_sample(images, affine_grid(theta, size))

    @tf.function(jit_compile=jit_compile)
    def step(images, theta, weights):
        with tf.GradientTape() as tape:
            tape.watch([images, theta])
            out = grid_sample(images, affine_grid(theta, size))
            loss = tf.reduce_sum(out * weights)
        return out, tape.gradient(loss, [images, theta])

    return step if training else forward


def _map_coordinates(jit_compile, shape, training):
    batch, height, width, channels = shape

    @tf.function(jit_compile=jit_compile)
    def step(images, theta, weights):
        with tf.GradientTape() as tape:
            tape.watch([images, theta])
            grid = affine_grid(theta, (height, width))
            # Pixel coordinates (align_corners=False), one array per axis.
            x = ((grid[..., 0] + 1.0) * width - 1.0) / 2.0
            y = ((grid[..., 1] + 1.0) * height - 1.0) / 2.0
            full = (batch, height, width, channels)
            b = tf.broadcast_to(
                tf.reshape(tf.range(batch, dtype=tf.float32), (-1, 1, 1, 1)),
                full,
            )
            c = tf.broadcast_to(tf.range(channels, dtype=tf.float32), full)
            coordinates = tf.stack(
                [
                    b,
                    tf.broadcast_to(y[..., None], full),
                    tf.broadcast_to(x[..., None], full),
                    c,
                ]
            )
            out = keras.ops.image.map_coordinates(
                images, coordinates, order=1, fill_mode="constant"
            )
            loss = tf.reduce_sum(out * weights)
        if not training:
            return out
        return out, tape.gradient(loss, [images, theta])

    return step


def _torch(images, theta, weights, repeats):
    """torch's forward and training-path rows on the same arrays."""
    arrays = {"images": images, "theta": theta, "weights": weights}
    return torch_rows("grid_sample", arrays, repeats, ("torch grid_sample",))


def _time_ours(make, jit, shape, inputs, args):
    row = {}
    for key, training in (("fwd", False), ("fwd+bwd", True)):
        first, median = time_call(
            make(jit, shape, training), inputs, args.steps, args.warmup
        )
        row[key], row[f"{key} first s"] = median, first
    return row


def _format_row(shape, row, reference) -> str:
    cells = []
    for key, width in (("fwd", 8), ("fwd+bwd", 10)):
        value = row.get(key)
        cells.append(f"{value:{width}.1f}" if value else f"{'-':>{width}}")
        cells.append(f"{value / reference[key]:5.2f}x" if value else "     -")
    first = row.get("fwd+bwd first s")
    first = f"{first:9.2f}" if first is not None else f"{'-':>9}"
    return (
        f"{str(shape):<20} {row['op']:<18} {row['mode']:<6} "
        f"{' '.join(cells)} {first}  {row.get('note', '')}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 steps, 1 warmup, map_coordinates only without XLA",
    )
    parser.add_argument(
        "--no-map-coordinates",
        action="store_true",
        help="skip the keras map_coordinates rows",
    )
    parser.add_argument(
        "--json", help="also write the rows and settings to this JSON file"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = 3, 1
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}")
    print(f"{os.cpu_count()} CPUs; median of {args.steps} steps")
    header = (
        f"{'shape (B,H,W,C)':<20} {'implementation':<18} {'mode':<6} "
        f"{'fwd ms':>8} {'ratio':>6} {'fwd+bwd ms':>10} {'ratio':>6} "
        f"{'1st f+b s':>9}  note"
    )
    print(header)
    print("-" * len(header))
    results = []
    for shape in SHAPES:
        images, theta, weights = _inputs(shape)
        # Tensors made once, as the torch worker makes its tensors once:
        # NumPy arguments would add a host copy to every timed call.
        inputs = tuple(tf.constant(a) for a in (images, theta, weights))
        rows = []
        for jit in (False, True):
            row = _time_ours(_ours, jit, shape, inputs, args)
            rows.append(
                {
                    "op": "keras_segattn",
                    "mode": "xla" if jit else "graph",
                    **row,
                }
            )
        if not args.no_map_coordinates:
            for jit in (False,) if args.quick else (False, True):
                row = _time_ours(_map_coordinates, jit, shape, inputs, args)
                rows.append(
                    {
                        "op": "map_coordinates",
                        "mode": "xla" if jit else "graph",
                        **row,
                    }
                )
        for row in _torch(images, theta, weights, args.steps):
            row["op"] = "torch"
            rows.append(row)
        reference = rows[1]
        for row in rows:
            print(_format_row(shape, row, reference))
        torch_row = rows[-1]
        ratio = {
            key: reference[key] / torch_row[key]
            for key in ("fwd", "fwd+bwd")
            if torch_row.get(key)
        }
        if ratio:
            print(
                f"{str(shape):<20} keras_segattn XLA / torch: "
                + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items())
            )
        results.append(
            {"shape": list(shape), "rows": rows, "ratio_to_torch": ratio}
        )
    print(
        "targets: fwd+bwd <= 1.0x torch at (64, 60, 60, 1), <= 0.75x at "
        "(16, 128, 128, 32)"
    )
    if args.json:
        write_json(args.json, {"steps": args.steps, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
