"""Training throughput on one device and under `MirroredStrategy`.

Examples per second of `fit` for FCN-8s (`fcn8s_small`, a Keras loss) and
a small Mask R-CNN (`FasterRCNN(mask_head=True)`, losses in
`compute_loss`), with the same global batch:

- `default`: the default strategy on one device, with and without XLA;
- `mirrored`: `MirroredStrategy` over `--devices` devices.

On a CPU machine the devices are logical CPUs made by
`tf.config.set_logical_device_configuration`: they share the same cores,
so the mirrored column measures the overhead of the replica machinery
(and that it runs), not a speed-up. On a GPU machine (`--gpu`) it uses the
visible GPUs. The timed work is `fit` over `--steps` batches after one
warm-up epoch (tracing and compilation excluded): each step returns the
losses and applies the gradients, what a user pays for.

Usage:
    python benchmarks/bench_distribute.py --steps 20 --batch-size 8
"""

from __future__ import annotations

import argparse
import time

from _timing import set_process_defaults

set_process_defaults()  # before TensorFlow is imported


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", type=int, default=20, help="timed steps per run (20)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="global batch size (8)"
    )
    parser.add_argument(
        "--devices", type=int, default=2, help="replicas when mirrored (2)"
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="mirror over the visible GPUs instead of logical CPUs",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["fcn8s", "mask_rcnn"],
        choices=["fcn8s", "mask_rcnn"],
        help="models to time (both)",
    )
    return parser.parse_args(argv)


def _devices(args):
    import tensorflow as tf

    if args.gpu:
        gpus = tf.config.list_logical_devices("GPU")
        return [d.name for d in gpus[: args.devices]]
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * args.devices
    )
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _fcn8s(batch, rng):
    import keras

    from keras_segattn.models import build_segmentation_model

    model = build_segmentation_model("fcn8s_small", 4, image_shape=(64, 64, 3))
    images = rng.uniform(0, 255, (batch, 64, 64, 3)).astype("float32")
    masks = rng.integers(0, 4, (batch, 64, 64)).astype("int32")
    loss = keras.losses.SparseCategoricalCrossentropy()
    return model, loss, images, masks


def _mask_rcnn(batch, rng):
    from keras_segattn.data import make_synthetic_digit_scenes
    from keras_segattn.models import FasterRCNN

    del rng
    model = FasterRCNN(
        10,
        image_shape=(64, 64, 3),
        mask_head=True,
        backbone_kwargs={"filters": (8, 16, 32, 32, 32), "convs_per_stage": 1},
        seed=0,
    )
    scenes = make_synthetic_digit_scenes(batch, seed=0, image_size=64)
    images = scenes["images"].astype("float32")
    targets = {
        "boxes": scenes["boxes"],
        "classes": scenes["classes"],
        "masks": scenes["masks"].astype("float32"),
    }
    return model, None, images, targets


BUILDERS = {"fcn8s": _fcn8s, "mask_rcnn": _mask_rcnn}


def _examples_per_second(name, strategy, jit_compile, args) -> tuple:
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model, loss, x, y = BUILDERS[name](
            args.batch_size, np.random.default_rng(0)
        )
        model.compile(optimizer="adam", loss=loss, jit_compile=jit_compile)
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat()
    data = data.batch(args.batch_size, drop_remainder=True).prefetch(2)
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # trace, compile
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    return args.steps * args.batch_size / seconds, bool(model.jit_compile)


def main(argv=None) -> int:
    args = _parse(argv)
    devices = _devices(args)  # before TensorFlow initialises its devices
    import tensorflow as tf

    rows = []
    default = tf.distribute.get_strategy()
    # One instance for the whole run: two MirroredStrategy objects in one
    # process can collide in their collective instance keys.
    mirrored = tf.distribute.MirroredStrategy(devices)
    for name in args.models:
        runs = [
            ("default (1 device), no XLA", default, False),
            ("default (1 device), XLA", default, True),
            (f"mirrored ({len(devices)} devices), no XLA", mirrored, False),
        ]
        reference = None
        for label, strategy, jit in runs:
            rate, compiled = _examples_per_second(name, strategy, jit, args)
            reference = reference or rate
            rows.append((name, label, compiled, rate, rate / reference))
    print(
        f"global batch {args.batch_size}, {args.steps} timed steps, devices "
        f"{devices}"
    )
    print(f"{'model':10} {'run':34} {'XLA':5} {'examples/s':>11} {'ratio':>6}")
    for name, label, compiled, rate, ratio in rows:
        print(f"{name:10} {label:34} {compiled!s:5} {rate:11.1f} {ratio:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
