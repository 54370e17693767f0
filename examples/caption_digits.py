"""Captioning digit canvases with no, soft and hard attention.

The measurable task of `keras_segattn.data.digit_captions`: 84x84 canvases
with 2-4 MNIST digits in a 3x3 grid, captioned by a fixed grammar ("three
left of seven above one"). Trains `ShowAttendTellCaptioner` three times
with `model.fit` (XLA): the plain RNN captioner (no attention: the mean
image feature as a fixed context), soft
attention (deterministic, doubly stochastic penalty) and hard attention
(sampled locations, REINFORCE with a moving-average baseline and entropy
bonus). Reports exact-match accuracy and sacreBLEU of greedy captions on
canvases built from the MNIST test pool, plots the attention map of every
word (upsampled α, as in the paper's figures) and exports the soft model
as a TF-Serving SavedModel (`images` uint8 [b, 84, 84, 1] -> `caption`,
`attention`).

Examples:

    # Full run (~15 minutes on 2 CPU cores); exports
    # saved_models/caption_digits/1/
    python examples/caption_digits.py --epochs 6

    # Seconds-long check on seven-segment digits (no data files)
    python examples/caption_digits.py --smoke --output-dir /tmp/captions
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn.data import digit_captions  # noqa: E402
from keras_segattn.data import mnist  # noqa: E402
from keras_segattn.export import captioning as captioning_export  # noqa: E402
from keras_segattn.models import ShowAttendTellCaptioner  # noqa: E402
from keras_segattn.models import greedy_decode  # noqa: E402

VOCABULARY = list(digit_captions.CAPTION_VOCABULARY)
WORD_IDS = {word: i for i, word in enumerate(VOCABULARY)}
START, END = WORD_IDS["[START]"], WORD_IDS["[END]"]
MAX_WORDS = 11  # 4 digits, 3 relations of <= 2 words, and [END]
MODES = ("none", "soft", "hard")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data/mnist"),
        help="folder with mnist_train.npz (default: %(default)s)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("saved_models/caption_digits")
    )
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--num-train", type=int, default=20000)
    parser.add_argument("--num-test", type=int, default=2000)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="attention modes to train (the first with attention exports)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seven-segment digits, tiny model, one epoch",
    )
    return parser


def encode_captions(captions):
    """(caption_in, caption_out) int32 [N, MAX_WORDS], 0-padded."""
    caption_in = np.zeros((len(captions), MAX_WORDS), np.int32)
    caption_out = np.zeros((len(captions), MAX_WORDS), np.int32)
    for row, caption in enumerate(captions):
        ids = [WORD_IDS[word] for word in caption.split()]
        if len(ids) + 1 > MAX_WORDS:
            raise ValueError(
                f"Caption longer than {MAX_WORDS - 1} words: {caption!r}"
            )
        caption_in[row, : len(ids) + 1] = [START, *ids]
        caption_out[row, : len(ids) + 1] = [*ids, END]
    return caption_in, caption_out


def make_splits(args):
    if args.smoke:
        make = digit_captions.make_synthetic_digit_captions
        return {
            "train": make(256, seed=args.seed),
            "val": make(64, seed=args.seed + 1),
            "test": make(64, seed=args.seed + 2),
        }
    splits = {}
    for name, split, count, seed in (
        ("train", "train", args.num_train, args.seed),
        ("val", "validation", args.num_test // 2, args.seed + 1),
        ("test", "test", args.num_test, args.seed + 2),
    ):
        digits, labels = mnist.load_mnist_arrays(args.data_dir, split)
        splits[name] = digit_captions.make_digit_caption_arrays(
            digits, labels, count, max_shift=2, seed=seed
        )
    return splits


def dataset(images, captions, batch_size, shuffle, seed):
    caption_in, caption_out = encode_captions(captions)
    data = tf.data.Dataset.from_tensor_slices(
        (
            {"images": images.astype("float32"), "caption_in": caption_in},
            caption_out,
        )
    )
    if shuffle:
        data = data.shuffle(len(images), seed=seed)
    return data.batch(batch_size, drop_remainder=True).prefetch(
        tf.data.AUTOTUNE
    )


def caption_texts(tokens) -> list[str]:
    return [
        " ".join(VOCABULARY[t] for t in row if t not in (0, START, END))
        for row in tokens
    ]


def evaluate(model, images, captions, batch_size=256) -> dict:
    import sacrebleu

    hypotheses = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype("float32")
        decoded = greedy_decode(model, batch, MAX_WORDS, START, END)
        hypotheses += caption_texts(decoded["tokens"].numpy())
    exact = float(
        np.mean([h == r for h, r in zip(hypotheses, captions, strict=True)])
    )
    bleu = sacrebleu.corpus_bleu(hypotheses, [captions]).score
    return {
        "exact_match": exact,
        "bleu": float(bleu),
        "examples": list(zip(captions[:5], hypotheses[:5], strict=True)),
    }


def save_attention_plot(model, images, path: Path, count: int = 3):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    decoded = greedy_decode(
        model, images[:count].astype("float32"), MAX_WORDS, START, END
    )
    tokens = decoded["tokens"].numpy()
    weights = decoded["attention"].numpy()
    grid = int(round(np.sqrt(weights.shape[-1])))
    size = images.shape[1]
    columns = MAX_WORDS + 1
    figure, axes = plt.subplots(
        count, columns, figsize=(1.6 * columns, 1.8 * count), squeeze=False
    )
    for row in range(count):
        length = int(np.sum(tokens[row] > 0)) + 1
        words = [VOCABULARY[t] for t in tokens[row][: length - 1]] + ["<end>"]
        axes[row, 0].imshow(images[row, ..., 0], cmap="gray")
        axes[row, 0].set_title("input", fontsize=8)
        for step in range(columns - 1):
            axis = axes[row, step + 1]
            if step < length:
                alpha = weights[row, step].reshape(grid, grid)
                # Nearest-neighbour upsampling of α onto the canvas.
                upsampled = np.kron(alpha, np.ones((size // grid + 1,) * 2))
                axis.imshow(images[row, ..., 0], cmap="gray")
                axis.imshow(
                    upsampled[:size, :size],
                    cmap="jet",
                    alpha=0.5,
                    extent=(0, size, size, 0),
                )
                axis.set_title(words[step], fontsize=8)
        for axis in axes[row]:
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def train_mode(mode, splits, args, out: Path) -> tuple:
    small = args.smoke
    model = ShowAttendTellCaptioner(
        len(VOCABULARY),
        image_shape=splits["train"][0].shape[1:],
        attention=mode,
        filters=(8, 16, 16) if small else (32, 64, 64),
        embedding_dim=16 if small else 64,
        decoder_units=32 if small else 192,
        attention_units=16 if small else 96,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate, clipnorm=5.0),
        jit_compile=True,
    )
    assert model.jit_compile is True
    train = dataset(*splits["train"], args.batch_size, True, args.seed)
    val = dataset(*splits["val"], args.batch_size, False, args.seed)
    started = time.time()
    history = model.fit(
        train,
        validation_data=val,
        epochs=args.epochs,
        verbose=2 if small else 1,
        callbacks=[
            keras.callbacks.TensorBoard(log_dir=str(out / "logs" / mode)),
            keras.callbacks.CSVLogger(str(out / f"history_{mode}.csv")),
            # Test with the weights of the best validation epoch.
            keras.callbacks.EarlyStopping(
                monitor="val_nll",
                mode="min",
                patience=args.epochs,
                restore_best_weights=True,
            ),
        ],
    )
    minutes = (time.time() - started) / 60
    result = evaluate(model, *splits["test"])
    result.update(
        train_minutes=round(minutes, 2),
        parameters=int(model.count_params()),
        val_accuracy=float(history.history["val_accuracy"][-1]),
    )
    print(
        f"{mode}: exact match {result['exact_match']:.3f}, "
        f"BLEU {result['bleu']:.1f}"
    )
    return model, result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.epochs = min(args.epochs, 1)
        args.batch_size = 32
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    (out / "plots").mkdir(parents=True, exist_ok=True)
    splits = make_splits(args)
    results, exported = {}, None
    for mode in args.modes:
        model, results[mode] = train_mode(mode, splits, args, out)
        if mode != "none":
            save_attention_plot(
                model,
                splits["test"][0],
                out / "plots" / f"attention_{mode}.png",
            )
            if exported is None:
                exported = captioning_export.export_captioner_for_serving(
                    model,
                    out,
                    VOCABULARY,
                    max_output_length=MAX_WORDS,
                    warmup_images=splits["test"][0][:3],
                )
                model.save(out / "model.keras")
    metrics = {
        "command": "python examples/caption_digits.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "data": "seven-segment digits (smoke)"
        if args.smoke
        else str(args.data_dir),
        "train_canvases": len(splits["train"][1]),
        "test_canvases": len(splits["test"][1]),
        "test_digits": "MNIST test pool (rows 50,000+)",
        "epochs": args.epochs,
        "jit_compile": True,
        "results": results,
        "serving_dir": exported,
    }
    with open(out / "metrics.json", "w") as file:
        json.dump(metrics, file, indent=2)
    print(
        json.dumps(
            {
                m: {k: results[m][k] for k in ("exact_match", "bleu")}
                for m in results
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
