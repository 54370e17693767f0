"""DRAW with attention on binarised MNIST (Gregor et al., 2015).

Trains `keras_segattn.models.DRAW` (LSTM encoder and decoder, T glimpses,
an N x N read and write, the paper's 2x2 read and 5x5 write by default)
with `model.fit` (XLA) and reports the negative variational bound
`L^x + L^z` in nats, averaged over the MNIST test pool (rows 50,000+ of
mnist_train.npz, never trained on). Writes TensorBoard logs, the history,
PNGs of the canvas sequence as the model draws (samples from the prior and
reconstructions of test digits) and of generated digits, and
`metrics.json`.

`--binarisation stochastic` (default) is the paper's setup: each pixel is
Bernoulli with its intensity, fresh samples every training epoch and one
fixed sample (seed 0) of the test pool; Gregor et al. report <= 80.97 nats
with attention at T = 64 there. `--binarisation threshold` cuts at 0.5, an
easier distribution whose numbers are not comparable with the paper's.

Examples:

    python examples/draw_mnist.py --epochs 10 --steps 16
    python examples/draw_mnist.py --binarisation threshold --epochs 20 \
        --steps 16 --read-size 5
    python examples/draw_mnist.py --smoke --output-dir /tmp/draw
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults

BINARISATIONS = ("stochastic", "threshold")
TEST_BINARISATION_SEED = 0
"""Seed of the one stochastic binarisation of the test pool."""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data/mnist"),
        help="MNIST folder (layout of ../shared/data/mnist)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/draw_mnist"),
        help="where the model, plots and metrics go",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: 10 (--smoke: 1)"
    )
    parser.add_argument("--steps", type=int, default=16, help="glimpses T")
    parser.add_argument(
        "--binarisation",
        choices=BINARISATIONS,
        default="stochastic",
        help="stochastic: Bernoulli(intensity), fresh every epoch, a fixed "
        "sample of the test pool (the paper's setup); threshold: at 0.5",
    )
    parser.add_argument(
        "--read-size",
        type=int,
        default=2,
        help="N of the N x N read (the paper's MNIST model: 2)",
    )
    parser.add_argument(
        "--write-size", type=int, default=5, help="N of the N x N write patch"
    )
    parser.add_argument(
        "--units",
        type=int,
        default=256,
        help="LSTM units of the encoder and the decoder",
    )
    parser.add_argument(
        "--latent-dim", type=int, default=100, help="size of each latent z_t"
    )
    parser.add_argument(
        "--batch-size", type=int, default=100, help="global batch size"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=1e-3, help="Adam learning rate"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data, weights and noise",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seven-segment digits, tiny model, one epoch",
    )
    add_distribution_arguments(parser)
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_segattn import saving  # noqa: E402
from keras_segattn import visualization  # noqa: E402
from keras_segattn.data import mnist  # noqa: E402
from keras_segattn.data import synthetic_digits  # noqa: E402
from keras_segattn.models.draw import DRAW  # noqa: E402

from _common import backup_callbacks  # noqa: E402
from _common import check_compiled  # noqa: E402
from _common import fit_context  # noqa: E402
from _common import global_batch_size  # noqa: E402
from _common import jit_compile_for  # noqa: E402
from _common import logging_callbacks  # noqa: E402
from _common import save_final_weights  # noqa: E402
from _common import setup_distribution  # noqa: E402
from _common import trim_to_replicas  # noqa: E402


def binarise(digits) -> np.ndarray:
    """uint8 [N, 28, 28] -> float32 {0, 1} [N, 28, 28, 1]."""
    return (np.asarray(digits)[..., None] >= 128).astype("float32")


def load_splits(args):
    """(train, test): the training images (threshold: a binary array;
    stochastic: a dataset of fresh samples every epoch) and the binary test
    pool [N, 28, 28, 1]."""
    if args.smoke:
        digits, _ = synthetic_digits.make_synthetic_digits(256, seed=args.seed)
        digits = np.asarray(digits).reshape(-1, 28, 28)
        train, test = digits[:192], digits[192:]
    else:
        train, _ = mnist.load_mnist_arrays(args.data_dir, "train")
        test, _ = mnist.load_mnist_arrays(args.data_dir, "test")
    if args.binarisation == "threshold":
        return binarise(train), binarise(test)
    intensities = np.asarray(train, "float32")[..., None] / 255.0
    test = mnist.binarise_stochastic(
        np.asarray(test, "float32")[..., None] / 255.0,
        seed=TEST_BINARISATION_SEED,
    )
    train = mnist.make_stochastic_binarised_dataset(
        intensities, args.batch_size, seed=args.seed
    )
    return train, test


def mean_bound(model, images, batch_size=500) -> dict:
    """Average negative bound (nats) and its terms over `images`."""
    totals = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        total, reconstruction, kl = model.negative_bound(batch, model(batch))
        totals.append(np.stack([total, reconstruction, kl], -1))
    totals = np.concatenate(totals)
    return dict(
        zip(
            ("nll_bound", "reconstruction", "kl"),
            map(float, totals.mean(0)),
            strict=True,
        )
    )


def save_canvas_plot(model, test_images, path: Path, count=6, columns=16):
    """PNG of the canvas after each glimpse (`visualization
    .plot_canvas_sequence`; at most `columns` evenly spaced glimpses, the
    last included): prior samples, then reconstructions."""
    samples = np.asarray(model.generate(count, seed=1))
    outputs = model(test_images[:count])
    reconstructions = 1.0 / (1.0 + np.exp(-np.asarray(outputs["canvases"])))
    steps = samples.shape[1]
    shown = np.unique(np.linspace(0, steps - 1, min(steps, columns)).round())
    figure = visualization.plot_canvas_sequence(
        np.concatenate([samples, reconstructions])[:, shown.astype(int)],
        row_labels=["sample"] * len(samples)
        + ["reconstruction"] * len(reconstructions),
        title="canvas after each glimpse: prior samples, then "
        "reconstructions of test digits",
    )
    figure.savefig(path, dpi=80)


def save_samples_grid(model, path: Path, rows=8, columns=8):
    """PNG of `rows` x `columns` final canvases sampled from the prior
    (Bernoulli means, white on black as in the paper's figures)."""
    from matplotlib.image import imsave

    samples = np.asarray(model.generate(rows * columns, seed=2))[:, -1]
    height, width = samples.shape[1:3]
    grid = samples.reshape(rows, columns, height, width)
    grid = grid.transpose(0, 2, 1, 3).reshape(rows * height, columns * width)
    imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.steps, args.units, args.latent_dim = 3, 16, 4
        args.batch_size = 32
    args.epochs = args.epochs or (1 if args.smoke else 10)
    strategy = setup_distribution(args)
    global_batch_size(args.batch_size, strategy)
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    (out / "plots").mkdir(parents=True, exist_ok=True)
    train, test = load_splits(args)
    # Keras batches in-memory arrays itself (auto-shard policy DATA); cut
    # them so every batch splits evenly over the replicas.
    if isinstance(train, np.ndarray):
        train = trim_to_replicas(train, strategy)
        fit_kwargs = {"batch_size": args.batch_size, "shuffle": True}
        first_batch = lambda: (train[: args.batch_size],)  # noqa: E731
    else:  # batched dataset, drop_remainder: splits evenly already
        fit_kwargs = {"shuffle": False}  # the dataset reshuffles itself
        first_batch = lambda: (next(iter(train)),)  # noqa: E731
    jit_compile = jit_compile_for(strategy, True)
    with strategy.scope():
        model = DRAW(
            steps=args.steps,
            read_size=args.read_size,
            write_size=args.write_size,
            units=args.units,
            latent_dim=args.latent_dim,
            seed=args.seed,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate, clipnorm=10.0),
            jit_compile=jit_compile,
        )
    check_compiled(model, jit_compile)
    started = time.time()
    with fit_context(model, strategy, first_batch):
        model.fit(
            train,
            epochs=args.epochs,
            **fit_kwargs,
            verbose=2 if args.smoke else 1,
            callbacks=[*backup_callbacks(args), *logging_callbacks(out)],
        )
    save_final_weights(model, args)
    minutes = (time.time() - started) / 60
    result = mean_bound(model, test)
    save_canvas_plot(model, test, out / "plots" / "canvas.png")
    save_samples_grid(model, out / "plots" / "samples.png")
    saving.save_model_atomic(model, out / "model.keras")
    metrics = {
        "command": "python examples/draw_mnist.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "test_split": "MNIST test pool (rows 50,000+), "
        + (
            "binarised at 0.5"
            if args.binarisation == "threshold"
            else "Bernoulli(intensity) binarised with seed "
            f"{TEST_BINARISATION_SEED}"
        ),
        "binarisation": args.binarisation,
        "test_images": len(test),
        "steps": args.steps,
        "read_size": args.read_size,
        "write_size": args.write_size,
        "epochs": args.epochs,
        "train_minutes": round(minutes, 2),
        "jit_compile": jit_compile,
        "batch_size": args.batch_size,
        "units": args.units,
        "latent_dim": args.latent_dim,
        "paper_nll_bound_T64": 80.97,
        **result,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
