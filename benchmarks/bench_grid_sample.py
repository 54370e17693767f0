"""Forward+backward time of affine_grid + grid_sample (bilinear, zeros).

For each shape, times one training-like step: sample the images through a
random affine grid of the same size, reduce with fixed weights and take the
gradient with respect to the images and theta. Implementations:

- `keras_segattn`: `affine_grid` + `grid_sample`, `tf.function` without and
  with XLA (`jit_compile=True`);
- `map_coordinates`: `keras.ops.image.map_coordinates(order=1,
  fill_mode="constant")` on the same pixel coordinates (one coordinate
  array per input axis, channels included), the Keras alternative;
- `torch`: `torch.nn.functional.affine_grid` + `grid_sample` on CPU, when
  `import torch` works in this environment (otherwise the table says so).

Prints, per row, the first call (trace + compile + run) and the median of
`--steps` calls after `--warmup`, and the ratios to keras_segattn's XLA
time, all measured in the same run.

Usage:
    python benchmarks/bench_grid_sample.py [--steps 10] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

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


def _time(fn, args, warmup, steps):
    start = time.perf_counter()
    _block(fn(*args))
    first = time.perf_counter() - start
    for _ in range(warmup):
        _block(fn(*args))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        _block(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times) * 1e3


def _block(outputs):
    for o in outputs:
        np.asarray(o)  # waits for the result


def _ours(jit_compile, size):
    @tf.function(jit_compile=jit_compile)
    def step(images, theta, weights):
        with tf.GradientTape() as tape:
            tape.watch([images, theta])
            out = grid_sample(images, affine_grid(theta, size))
            loss = tf.reduce_sum(out * weights)
        return tape.gradient(loss, [images, theta])

    return step


def _map_coordinates(jit_compile, shape):
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
        return tape.gradient(loss, [images, theta])

    return step


def _torch_step(torch, shape):
    functional = torch.nn.functional

    def step(images, theta, weights):
        images = images.detach().requires_grad_(True)
        theta = theta.detach().requires_grad_(True)
        grid = functional.affine_grid(
            theta.view(-1, 2, 3), list(images.shape), align_corners=False
        )
        out = functional.grid_sample(
            images, grid, "bilinear", "zeros", align_corners=False
        )
        (out * weights).sum().backward()
        return images.grad.numpy(), theta.grad.numpy()

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 steps, 1 warmup, map_coordinates only without XLA",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = 3, 1
    try:
        import torch

        torch_note = f"torch {torch.__version__}, CPU"
    except ImportError:
        torch = None
        torch_note = "torch not importable here: its rows are skipped"
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; {torch_note}"
    )
    print(f"{os.cpu_count()} CPUs; median of {args.steps} steps")
    header = (
        f"{'shape (B,H,W,C)':<20} {'implementation':<18} {'mode':<6} "
        f"{'first call s':>12} {'median ms':>10} {'vs ours XLA':>12}"
    )
    print(header)
    print("-" * len(header))
    for shape in SHAPES:
        images, theta, weights = _inputs(shape)
        rows = []
        for jit in (False, True):
            first, median = _time(
                _ours(jit, shape[1:3]),
                (images, theta, weights),
                args.warmup,
                args.steps,
            )
            rows.append(
                ("keras_segattn", "XLA" if jit else "graph", first, median)
            )
        for jit in (False,) if args.quick else (False, True):
            first, median = _time(
                _map_coordinates(jit, shape),
                (images, theta, weights),
                args.warmup,
                args.steps,
            )
            rows.append(
                ("map_coordinates", "XLA" if jit else "graph", first, median)
            )
        if torch is not None:
            nchw = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
            w = torch.from_numpy(weights.transpose(0, 3, 1, 2).copy())
            first, median = _time(
                _torch_step(torch, shape),
                (nchw, torch.from_numpy(theta), w),
                args.warmup,
                args.steps,
            )
            rows.append(("torch", "eager", first, median))
        reference = rows[1][3]
        for name, mode, first, median in rows:
            print(
                f"{str(shape):<20} {name:<18} {mode:<6} {first:>12.2f} "
                f"{median:>10.1f} {median / reference:>11.2f}x"
            )
        if torch is None:
            print(
                f"{str(shape):<20} {'torch':<18} {'-':<6} {'n/a':>12} "
                f"{'n/a':>10} {'n/a':>12}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
