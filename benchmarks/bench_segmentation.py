"""Training-step time of the segmentation presets, with and without XLA.

For each model (default: FCN-8s `fcn8s_small` and `deconvnet_small`) this
builds the model twice from the same seed, compiles it with
`jit_compile=False` and `jit_compile=True`, and times `train_on_batch` on
one synthetic batch: the first call (tracing plus, with XLA, compilation)
and the median of `--steps` calls after `--warmup` more. Prints a table.

Usage:
    python benchmarks/bench_segmentation.py --steps 10 --batch-size 8 \
        --image-size 128
"""

from __future__ import annotations

import argparse
import statistics
import time

from _timing import set_process_defaults

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_segattn.models import build_segmentation_model  # noqa: E402

DEFAULT_MODELS = ("fcn8s_small", "deconvnet_small")


def _time_training(model_name, jit_compile, args):
    keras.utils.set_random_seed(args.seed)
    model = build_segmentation_model(
        model_name,
        args.num_classes,
        image_shape=(args.image_size, args.image_size, 3),
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(
            ignore_class=args.num_classes
        ),
        jit_compile=jit_compile,
    )
    if model.jit_compile is not jit_compile:
        raise RuntimeError(
            f"{model_name}: asked for jit_compile={jit_compile}, Keras "
            f"resolved it to {model.jit_compile}."
        )
    rng = np.random.default_rng(args.seed)
    shape = (args.batch_size, args.image_size, args.image_size)
    images = rng.uniform(0, 255, (*shape, 3)).astype("float32")
    masks = rng.integers(0, args.num_classes + 1, shape).astype("int32")

    start = time.perf_counter()
    model.train_on_batch(images, masks)  # returns a NumPy loss: synchronous
    first_call = time.perf_counter() - start
    for _ in range(args.warmup):
        model.train_on_batch(images, masks)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        model.train_on_batch(images, masks)
        times.append(time.perf_counter() - start)
    return model.count_params(), statistics.median(times) * 1e3, first_call


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Median train-step time of segmentation presets with and "
            "without XLA (jit_compile), measured in the same run."
        )
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        help="preset or architecture names (default: %(default)s)",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps after the first"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-classes", type=int, default=11)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.image_size < 1:
        parser.error("--steps, --batch-size and --image-size must be >= 1")

    print(
        f"batch {args.batch_size} x {args.image_size}x{args.image_size}x3, "
        f"{args.num_classes} classes, median of {args.steps} steps after "
        f"{args.warmup} warm-up steps, backend {keras.backend.backend()}"
    )
    header = (
        f"{'model':<18} {'params':>10} {'ms/step':>9} {'ms/step':>9} "
        f"{'speed-up':>9} {'1st call':>9} {'1st call':>9}"
    )
    sub = (
        f"{'':<18} {'':>10} {'no XLA':>9} {'XLA':>9} "
        f"{'no/XLA':>9} {'no XLA s':>9} {'XLA s':>9}"
    )
    rows = []
    for name in args.models:
        params, eager_ms, eager_first = _time_training(name, False, args)
        _, xla_ms, xla_first = _time_training(name, True, args)
        rows.append(
            f"{name:<18} {params:>10,} {eager_ms:>9.1f} {xla_ms:>9.1f} "
            f"{eager_ms / xla_ms:>8.2f}x {eager_first:>9.2f} "
            f"{xla_first:>9.2f}"
        )
    print(header)
    print(sub)
    print("-" * len(header))
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
