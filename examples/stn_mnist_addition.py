"""MNIST addition with two parallel spatial transformers.

The two-digit addition task of Jaderberg et al., "Spatial Transformer
Networks" (2015), section 4.1: each canvas holds two MNIST digits with
independent random rotations (up to 45 degrees), scales and translations,
one in each half, and the network predicts their sum (19 classes, 0..18).
Two `SpatialTransformer`s read the whole canvas in parallel, each with its
own localisation network; one shared digit CNN encodes both 24x24 outputs
and a small head classifies the sum. Each transformer starts on one half of
the canvas (its localisation head is zero-initialised with that crop as
bias, and learns 10x slower than the rest) and learns where to look from
the sum loss alone: no digit positions or digit labels are used.

Digits come from ../shared/data/mnist (`mnist_train.npz`): training canvases
from rows < 45,000, validation canvases from rows 45,000-49,999, test
canvases only from the test pool (rows 50,000+). Writes TensorBoard logs,
a history, `metrics.json`, the `.keras` model and a PNG of what each
transformer attends to.

Examples:

    python examples/stn_mnist_addition.py --epochs 9 --num-train 40000

    # Seconds-long end-to-end check on synthetic seven-segment digits
    python examples/stn_mnist_addition.py --smoke --output-dir /tmp/add
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults

# Initial crops (flat affine theta): a 0.6-wide square on each half.
INITIAL_THETAS = (
    (0.6, 0.0, -0.4, 0.0, 0.6, 0.0),
    (0.6, 0.0, 0.4, 0.0, 0.6, 0.0),
)
COLOURS = ("tab:red", "tab:cyan")
HEAD_SCALE = 0.1  # learning-rate multiplier of the localisation heads


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data/mnist"),
        help="folder with mnist_train.npz (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=int, default=9, help="training epochs")
    parser.add_argument(
        "--batch-size", type=int, default=128, help="global batch size"
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=2e-3,
        help="peak Adam learning rate (cosine decay)",
    )
    parser.add_argument(
        "--num-train", type=int, default=40_000, help="training canvases"
    )
    parser.add_argument(
        "--num-validation", type=int, default=2_000, help="validation canvases"
    )
    parser.add_argument(
        "--num-test", type=int, default=5_000, help="test canvases"
    )
    parser.add_argument(
        "--canvas-size",
        type=int,
        default=48,
        help="side of the canvases in pixels",
    )
    parser.add_argument(
        "--width", type=int, default=16, help="filters of the digit CNN"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/stn_mnist_addition"),
        help="logs, history, plots, model (default: %(default)s)",
    )
    parser.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile the train step with XLA (default: on)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the data and weights"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one short epoch on synthetic digits, in seconds",
    )
    add_distribution_arguments(parser)
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_segattn import distribute  # noqa: E402
from keras_segattn import layers  # noqa: E402
from keras_segattn import saving  # noqa: E402
from keras_segattn import visualization  # noqa: E402
from keras_segattn.data import mnist_addition  # noqa: E402

from _common import backup_callbacks  # noqa: E402
from _common import best_checkpoint  # noqa: E402
from _common import check_compiled  # noqa: E402
from _common import cosine_decay  # noqa: E402
from _common import fit_context  # noqa: E402
from _common import global_batch_size  # noqa: E402
from _common import jit_compile_for  # noqa: E402
from _common import logging_callbacks  # noqa: E402
from _common import save_final_weights  # noqa: E402
from _common import setup_distribution  # noqa: E402

NUM_CLASSES = mnist_addition.MNIST_ADDITION_NUM_CLASSES


def build_localization_network(canvas_size: int, initial_theta, name: str):
    """Affine localisation net on the 2x downsampled canvas, starting at
    `initial_theta` (zero kernel), with a 10x slower head."""
    images = keras.Input((canvas_size, canvas_size, 1), name="images")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(images)
    x = keras.layers.AveragePooling2D(2, name="downsample")(x)
    x = keras.layers.Conv2D(16, 5, activation="relu", name="conv0")(x)
    x = keras.layers.MaxPooling2D(2, name="pool0")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    # theta = HEAD_SCALE * (W x + b) with W = 0 and b = theta0 / HEAD_SCALE
    # at the start: Adam moves b by about the learning rate per step, so
    # theta moves HEAD_SCALE times slower (a lower learning rate for the
    # localisation head, as usual for STNs), and a transformer does not
    # leave the canvas, where zeros padding gives it no gradient, early on.
    theta = keras.layers.Dense(
        6,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(
            [t / HEAD_SCALE for t in initial_theta]
        ),
        dtype="float32",
        name="head",
    )(x)
    theta = keras.layers.Rescaling(HEAD_SCALE, dtype="float32", name="theta")(
        theta
    )
    return keras.Model(images, theta, name=name)


def build_digit_encoder(output_size, width: int) -> keras.Model:
    """The CNN shared by both transformer outputs."""
    crops = keras.Input((*output_size, 1), name="crops")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(crops)
    for i, filters in enumerate((width, 2 * width, 2 * width)):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"conv{i}"
        )(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="dense")(x)
    return keras.Model(crops, x, name="digit_encoder")


def build_addition_model(
    canvas_size: int = 48, output_size=(24, 24), width: int = 16
) -> tuple[keras.Model, keras.Model]:
    """`(training model, inspection model)` sharing every layer; the
    inspection model also returns each transformer's output and theta."""
    images = keras.Input((canvas_size, canvas_size, 1), name="images")
    encoder = build_digit_encoder(output_size, width)
    features, extras = [], {}
    for k, theta0 in enumerate(INITIAL_THETAS):
        transformed, theta = layers.SpatialTransformer(
            build_localization_network(
                canvas_size, theta0, name=f"localization_{k}"
            ),
            output_size,
            transform="affine",
            return_theta=True,
            name=f"spatial_transformer_{k}",
        )(images)
        features.append(encoder(transformed))
        extras[f"transformed_{k}"] = transformed
        extras[f"theta_{k}"] = theta
    x = keras.layers.Concatenate(name="concat")(features)
    x = layers.Dropout(0.3, name="dropout")(x)
    x = keras.layers.Dense(128, activation="relu", name="dense")(x)
    probabilities = keras.layers.Dense(
        NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities"
    )(x)
    model = keras.Model(images, probabilities, name="st_addition")
    inspection = keras.Model(
        images, {"probabilities": probabilities, **extras}, name="inspection"
    )
    return model, inspection


def _datasets(args):
    if args.smoke:
        make = mnist_addition.make_synthetic_mnist_addition
        return (
            make(64, args.canvas_size, seed=0, batch_size=16, shuffle=True),
            make(32, args.canvas_size, seed=1, batch_size=16),
            make(32, args.canvas_size, seed=2, batch_size=16),
        )
    common = dict(
        data_dir=args.data_dir,
        canvas_size=args.canvas_size,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    return (
        mnist_addition.load_mnist_addition(
            split="train", num_examples=args.num_train, **common
        ),
        mnist_addition.load_mnist_addition(
            split="validation",
            num_examples=args.num_validation,
            drop_remainder=False,
            **common,
        ),
        mnist_addition.load_mnist_addition(
            split="test",
            num_examples=args.num_test,
            drop_remainder=False,
            **common,
        ),
    )


def save_attention_plot(inspection, images, labels, path: Path, n=6):
    """PNG (`visualization.plot_sampling_grids`): each canvas with the two
    sampled regions outlined, above the two transformer outputs."""
    n = min(n, len(images))
    out = inspection.predict(images[:n], verbose=0)
    predicted = np.argmax(out["probabilities"], -1)
    figure = visualization.plot_sampling_grids(
        images[:n],
        np.stack([out[f"theta_{k}"] for k in range(len(COLOURS))], 1),
        transformed=[out[f"transformed_{k}"] for k in range(len(COLOURS))],
        titles=[f"sum {labels[i]}, predicted {predicted[i]}" for i in range(n)],
        colors=COLOURS,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    strategy = setup_distribution(args)
    global_batch_size(16 if args.smoke else args.batch_size, strategy)
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    train, validation, test = _datasets(args)
    # In-memory arrays: every worker keeps its share of each global batch.
    train, validation = (
        distribute.auto_shard(train),
        distribute.auto_shard(validation),
    )
    data_minutes = (time.time() - start) / 60
    width = 4 if args.smoke else args.width
    epochs = 1 if args.smoke else args.epochs
    steps = int(train.cardinality())
    jit_compile = jit_compile_for(strategy, args.jit_compile)
    with strategy.scope():
        model, inspection = build_addition_model(args.canvas_size, width=width)
        model.compile(
            optimizer=keras.optimizers.Adam(
                cosine_decay(args.learning_rate, steps, epochs, alpha=0.01)
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=jit_compile,
        )
    check_compiled(model, jit_compile, steps)
    best = out / "st_addition.weights.h5"
    start = time.time()
    with fit_context(model, strategy, lambda: next(iter(train))):
        history = model.fit(
            train,
            validation_data=validation,
            epochs=epochs,
            shuffle=False,  # the dataset reshuffles itself every epoch
            callbacks=[
                *backup_callbacks(args),
                *logging_callbacks(out),
                best_checkpoint(best, "val_accuracy", "max", weights_only=True),
            ],
            verbose=2 if args.smoke else 1,
        )
    minutes = (time.time() - start) / 60
    save_final_weights(model, args)
    model.load_weights(best)
    results = model.evaluate(test, return_dict=True, verbose=0)
    saving.save_model_atomic(model, out / "st_addition.keras")
    images, labels = next(iter(test))
    save_attention_plot(
        inspection,
        np.asarray(images),
        np.asarray(labels),
        out / "plots" / "attention.png",
    )
    summary = {
        "command": "python examples/stn_mnist_addition.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "parameters": model.count_params(),
        "epochs": epochs,
        "best_epoch": int(np.argmax(history.history["val_accuracy"])) + 1,
        "val_accuracy": float(max(history.history["val_accuracy"])),
        "test_accuracy": float(results["accuracy"]),
        "test_examples": int(sum(len(y) for _, y in test)),
        "data_minutes": round(data_minutes, 2),
        "train_minutes": round(minutes, 2),
        "jit_compile": jit_compile,
    }
    text = json.dumps(summary, indent=2)
    (out / "metrics.json").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
