"""Plain CNN vs spatial-transformer CNN on 40x40 cluttered MNIST.

Reproduces the cluttered-MNIST experiment of Jaderberg et al., "Spatial
Transformer Networks" (2015) at laptop scale: the same small digit CNN is
trained twice with `model.fit` (XLA), once on the whole 40x40 image and once
behind a `SpatialTransformer` whose localisation network (on a 2x
downsampled image) learns to crop and zoom onto the digit. Both are scored
on the archive's `X_valid` split (the file's test part is held out of
../shared/data, so `X_valid` is the test set here; model selection uses the
last 1,000 rows of `X_train`). Writes TensorBoard logs, per-model histories,
a PNG of inputs next to their transformed versions, `metrics.json`, and the
ST-CNN as a TF-Serving SavedModel (`serving_default`: `images` uint8
[b, 40, 40, 1] -> `probabilities`, `classes`, `transformed_images`,
`theta`).

Examples:

    # Full run (about 10 minutes on 2 CPU cores); exports to
    # saved_models/stn_cluttered_mnist/1/
    python examples/stn_cluttered_mnist.py --epochs 20

    # Seconds-long end-to-end check on the embedded real sample
    python examples/stn_cluttered_mnist.py --smoke --output-dir /tmp/stn
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "sample_data" / "cluttered_mnist"
IMAGE_SHAPE = (40, 40, 1)
NUM_CLASSES = 10
TRANSFORMS = ("affine", "attention", "projective", "thin_plate_spline")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data/cluttered_mnist"),
        help="folder with cluttered_mnist_40x40_trainval.npz "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", type=int, default=20, help="training epochs"
    )
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
        "--validation-size",
        type=int,
        default=1000,
        help="rows of X_train held out for model selection",
    )
    parser.add_argument(
        "--max-shift",
        type=int,
        default=4,
        help="augmentation: random translations of the training images by "
        "up to this many pixels (0: off; default: %(default)s)",
    )
    parser.add_argument(
        "--transform",
        choices=TRANSFORMS,
        default="affine",
        help="transformation the localisation network predicts",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=("cnn", "st_cnn"),
        default=["cnn", "st_cnn"],
        help="which models to train (default: both)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/stn_cluttered_mnist"),
        help="logs, histories, plots, .keras files (default: %(default)s)",
    )
    parser.add_argument(
        "--export-dir",
        type=Path,
        default=None,
        help="SavedModel base dir (default: saved_models/stn_cluttered_mnist,"
        " or <output-dir>/serving with --smoke)",
    )
    parser.add_argument(
        "--version",
        type=int,
        default=1,
        help="SavedModel version written under serving/",
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
        help="one short epoch on the embedded sample, in seconds",
    )
    add_distribution_arguments(parser)
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn import distribute  # noqa: E402
from keras_segattn import export  # noqa: E402
from keras_segattn import layers  # noqa: E402
from keras_segattn import saving  # noqa: E402
from keras_segattn import visualization  # noqa: E402
from keras_segattn.data import cluttered_mnist  # noqa: E402

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

# --------------------------------------------------------------------------
# Models


def apply_digit_cnn(x, *, name: str, width: int = 32, dropout: float = 0.3):
    """The digit classifier shared by both models: conv-pool-conv-pool-conv
    -dense, on images already scaled to 0..1 (cheap enough for a CPU)."""
    for i, filters in enumerate((width, 2 * width, 2 * width)):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            activation="relu",
            name=f"{name}_conv{i}",
        )(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{i}")(x)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout0")(x)
    x = keras.layers.Dense(128, activation="relu", name=f"{name}_dense")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout1")(x)
    return keras.layers.Dense(
        NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities"
    )(x)


def build_localization_network(transform: str = "affine") -> keras.Model:
    """Regresses the transform from a 2x downsampled (20x20) image; ends in
    the identity-initialised head, so training starts from the identity."""
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(images)
    x = keras.layers.AveragePooling2D(2, name="downsample")(x)
    x = keras.layers.Conv2D(16, 5, activation="relu", name="conv0")(x)
    x = keras.layers.MaxPooling2D(2, name="pool0")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    theta = layers.build_localization_head(transform, name="theta")(x)
    return keras.Model(images, theta, name="localization")


def build_cnn(width: int = 32) -> keras.Model:
    """The plain CNN: the digit classifier on the whole 40x40 image."""
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(images)
    probabilities = apply_digit_cnn(x, name="classifier", width=width)
    return keras.Model(images, probabilities, name="cnn")


def build_st_cnn(
    transform: str = "affine",
    output_size: tuple[int, int] = (24, 24),
    width: int = 32,
) -> tuple[keras.Model, keras.Model]:
    """The ST-CNN, as `(training model, inspection model)`.

    Both share all layers; the training model returns the probabilities,
    the inspection model a dict with `probabilities`, `transformed_images`
    (0..255, what the classifier sees) and `theta`.
    """
    images = keras.Input(IMAGE_SHAPE, name="images")
    transformed, theta = layers.SpatialTransformer(
        build_localization_network(transform),
        output_size,
        transform=transform,
        return_theta=True,
        name="spatial_transformer",
    )(images)
    x = keras.layers.Rescaling(1 / 255, name="rescale")(transformed)
    probabilities = apply_digit_cnn(x, name="classifier", width=width)
    model = keras.Model(images, probabilities, name="st_cnn")
    inspection = keras.Model(
        images,
        {
            "probabilities": probabilities,
            "transformed_images": transformed,
            "theta": theta,
        },
        name="st_cnn_inspection",
    )
    return model, inspection


# --------------------------------------------------------------------------
# Training


def _datasets(args):
    if args.smoke:
        kwargs = dict(data_dir=SAMPLE_DIR, validation_size=40)
        batch = min(args.batch_size, 32)
    else:
        kwargs = dict(
            data_dir=args.data_dir, validation_size=args.validation_size
        )
        batch = args.batch_size
    train = cluttered_mnist.load_cluttered_mnist(
        split="train",
        batch_size=batch,
        seed=args.seed,
        max_shift=args.max_shift,
        **kwargs,
    )
    validation = cluttered_mnist.load_cluttered_mnist(
        split="validation", batch_size=batch, drop_remainder=False, **kwargs
    )
    test_images, test_labels = cluttered_mnist.load_cluttered_mnist_arrays(
        split="test", **kwargs
    )
    return train, validation, (test_images, test_labels)


def train_model(model, name, train, validation, args, out: Path) -> dict:
    """Fits `model` (built under `args.strategy_object`), keeps the weights
    of the best validation epoch."""
    epochs = 1 if args.smoke else args.epochs
    steps = int(train.cardinality())
    strategy = args.strategy_object
    jit_compile = jit_compile_for(strategy, args.jit_compile)
    with strategy.scope():
        model.compile(
            optimizer=keras.optimizers.Adam(
                cosine_decay(args.learning_rate, steps, epochs, alpha=0.01)
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=jit_compile,
        )
    check_compiled(model, jit_compile, steps)
    best = out / f"{name}.weights.h5"
    callbacks = [
        *backup_callbacks(args, name),
        *logging_callbacks(out, name),
        best_checkpoint(best, "val_accuracy", "max", weights_only=True),
    ]
    start = time.time()
    with fit_context(model, args.strategy_object, lambda: next(iter(train))):
        history = model.fit(
            train,
            validation_data=validation,
            epochs=epochs,
            callbacks=callbacks,
            shuffle=False,  # the dataset reshuffles itself every epoch
            verbose=2 if args.smoke else 1,
        )
    minutes = (time.time() - start) / 60
    save_final_weights(model, args, name)
    model.load_weights(best)
    best_epoch = int(np.argmax(history.history["val_accuracy"]))
    return {
        "parameters": model.count_params(),
        "epochs": epochs,
        "best_epoch": best_epoch + 1,
        "val_accuracy": float(history.history["val_accuracy"][best_epoch]),
        "train_minutes": round(minutes, 2),
    }


def _display_path(path) -> str:
    """`path` relative to the repository when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def compute_test_error(model, test) -> float:
    images, labels = test
    probabilities = model.predict(images, batch_size=250, verbose=0)
    return float(np.mean(np.argmax(probabilities, -1) != labels))


def save_transform_plot(inspection, images, labels, path: Path, n=10):
    """PNG (`visualization.plot_sampling_grids`): inputs (top row, with the
    sampled region outlined when the transform is affine or attention)
    above what the spatial transformer makes of them, titled with the true
    and predicted classes."""
    n = min(n, len(images))
    out = inspection.predict(images[:n], verbose=0)
    predicted = np.argmax(out["probabilities"], -1)
    theta = np.asarray(out["theta"])
    if theta.shape[-1] == 3:  # attention: (scale, tx, ty)
        scale, tx, ty = theta.T
        zeros = np.zeros_like(scale)
        theta = np.stack([scale, zeros, tx, zeros, scale, ty], -1)
    figure = visualization.plot_sampling_grids(
        images[:n],
        theta if theta.shape[-1] == 6 else None,
        transformed=out["transformed_images"],
        titles=[f"label {labels[i]}, pred {predicted[i]}" for i in range(n)],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    strategy = args.strategy_object = setup_distribution(args)
    global_batch_size(
        min(args.batch_size, 32) if args.smoke else args.batch_size, strategy
    )
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    export_dir = args.export_dir or (
        out / "serving"
        if args.smoke
        else ROOT / "saved_models" / "stn_cluttered_mnist"
    )
    # In-memory arrays: every worker keeps its share of each global batch.
    train, validation = (
        distribute.auto_shard(ds) for ds in _datasets(args)[:2]
    )
    test = _datasets(args)[2]
    width = 8 if args.smoke else 32
    summary = {
        "command": "python examples/stn_cluttered_mnist.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "data": str(SAMPLE_DIR if args.smoke else args.data_dir),
        "test_split": "X_valid of the archive (its own test part is held out)",
        "test_examples": len(test[1]),
        "jit_compile": jit_compile_for(strategy, args.jit_compile),
        "max_shift": args.max_shift,
    }
    if "cnn" in args.models:
        with strategy.scope():
            cnn = build_cnn(width)
        summary["cnn"] = train_model(cnn, "cnn", train, validation, args, out)
        summary["cnn"]["test_error"] = compute_test_error(cnn, test)
        saving.save_model_atomic(cnn, out / "cnn.keras")
    if "st_cnn" in args.models:
        with strategy.scope():
            st_cnn, inspection = build_st_cnn(args.transform, width=width)
        summary["st_cnn"] = train_model(
            st_cnn, "st_cnn", train, validation, args, out
        )
        summary["st_cnn"]["test_error"] = compute_test_error(st_cnn, test)
        summary["st_cnn"]["transform"] = args.transform
        saving.save_model_atomic(st_cnn, out / "st_cnn.keras")
        plot = out / "plots" / "transformed.png"
        save_transform_plot(inspection, test[0], test[1], plot)
        images_uint8 = np.clip(np.rint(test[0][:4]), 0, 255).astype(np.uint8)
        serving_dir = export.export_classifier_for_serving(
            inspection,
            export_dir,
            version=args.version,
            warmup_images=list(images_uint8),
        )
        summary["serving_dir"] = _display_path(serving_dir)
        # The SavedModel answers like the Keras model, from uint8 images.
        reloaded = tf.saved_model.load(serving_dir)
        served = reloaded.signatures["serving_default"](
            images=tf.constant(images_uint8)
        )
        expected = inspection.predict(images_uint8.astype("float32"), verbose=0)
        np.testing.assert_allclose(
            served["probabilities"].numpy(),
            expected["probabilities"],
            atol=1e-5,
        )
    for name in ("cnn", "st_cnn"):
        if name in summary:
            print(
                f"{name}: test error {100 * summary[name]['test_error']:.2f} %"
            )
    text = json.dumps(summary, indent=2)
    (out / "metrics.json").write_text(text)
    if "serving_dir" in summary:
        (Path(export_dir) / "metrics.json").write_text(text)
        shutil.copy(out / "plots" / "transformed.png", Path(export_dir))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
