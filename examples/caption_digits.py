"""Captioning digit canvases with no, soft and hard attention.

The measurable task of `keras_segattn.data.digit_captions`: 84x84 canvases
with 2-4 MNIST digits in a 3x3 grid, captioned by a fixed grammar ("three
left of seven above one"). Trains `ShowAttendTellCaptioner` three times
with `model.fit` (XLA): the plain RNN captioner (no attention: the mean
image feature as a fixed context), soft
attention (deterministic, doubly stochastic penalty) and hard attention
(sampled locations, REINFORCE with the --baseline, self-critical by
default, and an entropy bonus; with soft in --modes too it starts from the
soft model). Reports exact-match accuracy and sacreBLEU of greedy captions on
canvases built from the MNIST test pool, plots the attention map of every
word (upsampled α, as in the paper's figures; for hard attention also the
grid cell each word was read from) and exports the soft model
as a TF-Serving SavedModel (`images` uint8 [b, 84, 84, 1] -> `caption`,
`attention`).

Examples:

    # Full run (~15 minutes on 2 CPU cores); exports
    # saved_models/caption_digits/1/
    python examples/caption_digits.py --epochs 6

    # The same pipeline on real COCO images and captions (COCO-MINI: 80
    # images, 5 captions each; the last 20 % are held out and scored by
    # BLEU against all their references: a pipeline check, not a result)
    python examples/caption_digits.py --dataset coco --epochs 30 \\
        --data-dir ../shared/data/coco_mini --modes soft

    # Seconds-long check on seven-segment digits (no data files)
    python examples/caption_digits.py --smoke --output-dir /tmp/captions
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults

MAX_WORDS = 11  # 4 digits, 3 relations of <= 2 words, and [END]
MODES = ("none", "soft", "hard")
DATASETS = ("digits", "coco")
SCHEDULES = ("constant", "cosine")
COSINE_FLOOR = 0.01
COCO_MAX_WORDS = 20  # COCO captions are rarely longer; longer ones are left out
COCO_HELD_OUT_FRACTION = 0.2


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="digits",
        help="digit scenes with generated captions, or COCO captions",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="digits: folder with mnist_train.npz (default "
        "../shared/data/mnist); coco: a COCO folder with captions.json and "
        "images/ (default ../shared/data/coco_mini)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="default saved_models/caption_digits (digits) or "
        "runs/caption_coco (coco)",
    )
    parser.add_argument(
        "--image-size", type=int, default=96, help="coco: image side"
    )
    parser.add_argument(
        "--min-word-count",
        type=int,
        default=2,
        help="coco: rarer training words become [UNK]",
    )
    parser.add_argument("--epochs", type=int, default=6, help="training epochs")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="global batch size"
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=2e-3,
        help="Adam learning rate (the peak with --schedule cosine)",
    )
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="constant",
        help="learning rate over the run: constant, or cosine decay from "
        f"--learning-rate to {COSINE_FLOOR:g} times it at the last step",
    )
    parser.add_argument(
        "--num-train", type=int, default=20000, help="training images"
    )
    parser.add_argument(
        "--num-test", type=int, default=2000, help="test images"
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="attention modes to train (the first with attention exports)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the data and weights"
    )
    parser.add_argument(
        "--filters",
        type=lambda text: tuple(int(f) for f in text.split(",")),
        default=(16, 32, 64, 128),
        help="encoder widths, one stride-2 block each, comma-separated "
        "(default 16,32,64,128: a 6x6 grid on 84x84 canvases)",
    )
    parser.add_argument(
        "--block-depth",
        type=int,
        default=2,
        help="3x3 convs per encoder block; 2 with the default filters "
        "gives each annotation a 91-px receptive field (a 28-px cell and "
        "its neighbours)",
    )
    parser.add_argument(
        "--no-coordinates",
        action="store_true",
        help="leave out the (y, x) channels of the annotations (the "
        "previous encoder: --filters 32,64,64 --block-depth 1 "
        "--no-coordinates)",
    )
    parser.add_argument(
        "--doubly-stochastic",
        type=float,
        default=1.0,
        help="lambda of the doubly stochastic attention penalty",
    )
    parser.add_argument(
        "--baseline",
        choices=("moving_average", "self_critical", "learned"),
        default="self_critical",
        help="hard attention: REINFORCE baseline",
    )
    parser.add_argument(
        "--reward",
        choices=("log_likelihood", "token_accuracy"),
        default="log_likelihood",
        help="hard attention: per-caption reward",
    )
    parser.add_argument(
        "--entropy-weight",
        type=float,
        default=0.01,
        help="hard attention: weight of the entropy bonus",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start every mode from the weights of this model (.keras, "
        "e.g. the model.keras of a soft run, or model_none.keras of a "
        "none run): the curriculum from soft to "
        "hard, or a continuation; with soft and hard in --modes, hard "
        "starts from this run's soft model unless --init-from is given",
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
import tensorflow as tf  # noqa: E402

from keras_segattn import distribute  # noqa: E402
from keras_segattn import saving  # noqa: E402
from keras_segattn import visualization  # noqa: E402
from keras_segattn.data import CaptionVocabulary  # noqa: E402
from keras_segattn.data import caption_words  # noqa: E402
from keras_segattn.data import digit_captions  # noqa: E402
from keras_segattn.data import load_coco_captions  # noqa: E402
from keras_segattn.data import mnist  # noqa: E402
from keras_segattn.data import split_held_out  # noqa: E402
from keras_segattn.export import captioning as captioning_export  # noqa: E402
from keras_segattn.models import ShowAttendTellCaptioner  # noqa: E402
from keras_segattn.models import greedy_decode  # noqa: E402

from _common import backup_callbacks  # noqa: E402
from _common import check_compiled  # noqa: E402
from _common import cosine_decay  # noqa: E402
from _common import fit_context  # noqa: E402
from _common import global_batch_size  # noqa: E402
from _common import jit_compile_for  # noqa: E402
from _common import logging_callbacks  # noqa: E402
from _common import save_final_weights  # noqa: E402
from _common import setup_distribution  # noqa: E402

DIGITS = CaptionVocabulary(digit_captions.CAPTION_VOCABULARY, MAX_WORDS)


def make_coco_splits(args) -> tuple[dict, CaptionVocabulary]:
    """COCO images with their captions: the first 80 % of the images train
    (one pair per caption), the rest validate and test; the vocabulary
    comes from the training captions only."""
    images, captions, _ = load_coco_captions(
        args.data_dir or Path("../shared/data/coco_mini"), args.image_size
    )
    captions = [[caption_words(c) for c in group] for group in captions]
    train_rows, held_out = split_held_out(len(images), COCO_HELD_OUT_FRACTION)
    codec = CaptionVocabulary.from_captions(
        (c for i in train_rows for c in captions[i]),
        COCO_MAX_WORDS,
        min_count=args.min_word_count,
    )

    def pairs(rows):
        kept = [(i, c) for i in rows for c in captions[i] if codec.fits(c)]
        return images[[i for i, _ in kept]], [c for _, c in kept]

    splits = {
        "train": pairs(train_rows),
        "val": pairs(held_out),
        "test": (images[list(held_out)], [captions[i] for i in held_out]),
    }
    return splits, codec


def make_splits(args) -> tuple[dict, CaptionVocabulary]:
    if args.dataset == "coco":
        return make_coco_splits(args)
    if args.smoke:
        make = digit_captions.make_synthetic_digit_captions
        return {
            "train": make(256, seed=args.seed),
            "val": make(64, seed=args.seed + 1),
            "test": make(64, seed=args.seed + 2),
        }, DIGITS
    splits = {}
    for name, split, count, seed in (
        ("train", "train", args.num_train, args.seed),
        ("val", "validation", args.num_test // 2, args.seed + 1),
        ("test", "test", args.num_test, args.seed + 2),
    ):
        digits, labels = mnist.load_mnist_arrays(
            args.data_dir or Path("../shared/data/mnist"), split
        )
        splits[name] = digit_captions.make_digit_caption_arrays(
            digits, labels, count, max_shift=2, seed=seed
        )
    return splits, DIGITS


def dataset(images, captions, codec, batch_size, shuffle, seed):
    caption_in, caption_out = codec.encode(captions)
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


def evaluate(model, images, captions, codec=DIGITS, batch_size=256) -> dict:
    """Greedy captions against the references: one string per image
    (digits: BLEU and exact match) or a list of them (COCO: BLEU against
    all of them, cut to the smallest count)."""
    import sacrebleu

    hypotheses = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype("float32")
        decoded = greedy_decode(
            model, batch, codec.max_length, codec.start, codec.end
        )
        hypotheses += codec.decode(decoded["tokens"].numpy())
    result = {}
    if isinstance(captions[0], str):
        references = [captions]
        result["exact_match"] = float(
            np.mean([h == r for h, r in zip(hypotheses, captions, strict=True)])
        )
        # Exact match by the number of digits on the canvas.
        digits = [
            sum(w in digit_captions.DIGIT_WORDS for w in r.split())
            for r in captions
        ]
        result["exact_match_by_digits"] = {
            str(n): float(
                np.mean(
                    [
                        h == r
                        for h, r, d in zip(
                            hypotheses, captions, digits, strict=True
                        )
                        if d == n
                    ]
                )
            )
            for n in sorted(set(digits))
        }
    else:
        count = min(len(group) for group in captions)
        references = [[group[k] for group in captions] for k in range(count)]
    bleu = sacrebleu.corpus_bleu(hypotheses, references).score
    result["bleu"] = float(bleu)
    result["examples"] = list(
        zip(references[0][:5], hypotheses[:5], strict=True)
    )
    return result


def save_attention_plot(
    model,
    images,
    path: Path,
    codec: CaptionVocabulary = DIGITS,
    count: int = 3,
):
    """PNG of the attention α of each greedily decoded word over its image
    (`visualization.plot_attention_maps`); for hard attention also
    `<path stem>_locations.png`, the grid cell each word was read from
    (`visualization.plot_attention_locations`)."""
    count = min(count, len(images))
    decoded = greedy_decode(
        model,
        images[:count].astype("float32"),
        codec.max_length,
        codec.start,
        codec.end,
    )
    tokens = decoded["tokens"].numpy()
    weights = decoded["attention"].numpy()
    words = []
    for row in range(count):
        length = int(np.sum(tokens[row] > 0))
        emitted = [codec.vocabulary[t] for t in tokens[row][:length]]
        words.append([*emitted, "<end>"][: weights.shape[1]])
    figure = visualization.plot_attention_maps(
        images[:count], weights, words=words
    )
    figure.savefig(path, dpi=80)
    if model.attention_mode == "hard":
        # The hard decoder reads the annotation at α's argmax at inference:
        # the location each word was generated from (the paper's figure).
        side = int(round(np.sqrt(weights.shape[-1])))
        locations = np.where(
            np.sum(weights, axis=-1) > 0, np.argmax(weights, axis=-1), -1
        )
        figure = visualization.plot_attention_locations(
            images[:count], locations, side, words=words
        )
        figure.savefig(path.with_name(path.stem + "_locations.png"), dpi=80)


def copy_weights(source, target) -> None:
    """Every weight of `source` into the layer of `target` with the same
    name (the curriculum from soft to hard attention: the models differ
    only in how the decoder picks its context, and the learned baseline's
    value head, which starts fresh)."""
    if not isinstance(source, keras.Model):
        source = keras.saving.load_model(source)
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())


def train_mode(
    mode, splits, codec, args, out: Path, strategy, init=None
) -> tuple:
    small = args.smoke
    jit_compile = jit_compile_for(strategy, True)
    with strategy.scope():
        model = ShowAttendTellCaptioner(
            len(codec),
            image_shape=splits["train"][0].shape[1:],
            attention=mode,
            filters=(8, 16, 16) if small else args.filters,
            block_depth=1 if small else args.block_depth,
            coordinates=not args.no_coordinates,
            embedding_dim=16 if small else 64,
            decoder_units=32 if small else 192,
            attention_units=16 if small else 96,
            doubly_stochastic=args.doubly_stochastic,
            entropy_weight=args.entropy_weight,
            baseline=args.baseline,
            reward=args.reward,
        )
        if init is not None:
            copy_weights(init, model)
    batch_size = min(args.batch_size, len(splits["val"][1]))
    global_batch_size(batch_size, strategy)
    learning_rate = args.learning_rate
    if args.schedule == "cosine":
        steps = len(splits["train"][1]) // batch_size
        learning_rate = cosine_decay(
            args.learning_rate, steps, args.epochs, COSINE_FLOOR
        )
    with strategy.scope():
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate, clipnorm=5.0),
            jit_compile=jit_compile,
        )
    check_compiled(model, jit_compile)
    # In-memory arrays: every worker keeps its share of each global batch.
    train = distribute.auto_shard(
        dataset(*splits["train"], codec, batch_size, True, args.seed)
    )
    val = distribute.auto_shard(
        dataset(*splits["val"], codec, batch_size, False, args.seed)
    )
    started = time.time()
    with fit_context(model, strategy, lambda: next(iter(train))):
        history = model.fit(
            train,
            validation_data=val,
            epochs=args.epochs,
            verbose=2 if small else 1,
            callbacks=[
                *backup_callbacks(args, mode),
                *logging_callbacks(out, mode),
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
    save_final_weights(model, args, mode)
    result = evaluate(model, *splits["test"], codec)
    result.update(
        train_minutes=round(minutes, 2),
        parameters=int(model.count_params()),
        val_accuracy=float(history.history["val_accuracy"][-1]),
    )
    print(
        f"{mode}: exact match {result.get('exact_match', float('nan')):.3f}, "
        f"BLEU {result['bleu']:.1f}"
    )
    return model, result


def describe_data(args) -> str:
    if args.dataset == "coco":
        return (
            f"{args.data_dir or '../shared/data/coco_mini'}: the last "
            f"{COCO_HELD_OUT_FRACTION:.0%} of the images, all references"
        )
    if args.smoke:
        return "seven-segment digits (smoke)"
    return (
        f"{args.data_dir or '../shared/data/mnist'}; test canvases from the "
        "MNIST test pool (rows 50,000+)"
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.epochs = min(args.epochs, 1)
        args.batch_size = 32
        args.image_size = min(args.image_size, 32)
    strategy = setup_distribution(args)
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir or Path(
        "saved_models/caption_digits"
        if args.dataset == "digits"
        else "runs/caption_coco"
    )
    (out / "plots").mkdir(parents=True, exist_ok=True)
    splits, codec = make_splits(args)
    results, exported, models = {}, None, {}
    for mode in args.modes:
        init = args.init_from
        if mode == "hard" and init is None:
            init = models.get("soft")
        model, results[mode] = train_mode(
            mode, splits, codec, args, out, strategy, init
        )
        models[mode] = model
        if mode == "none":
            # Not exported; kept to continue it (--init-from).
            saving.save_model_atomic(model, out / "model_none.keras")
        else:
            save_attention_plot(
                model,
                splits["test"][0],
                out / "plots" / f"attention_{mode}.png",
                codec,
            )
            if exported is None:
                exported = captioning_export.export_captioner_for_serving(
                    model,
                    out,
                    list(codec.vocabulary),
                    max_output_length=codec.max_length,
                    warmup_images=splits["test"][0][:3],
                )
                saving.save_model_atomic(model, out / "model.keras")
    metrics = {
        "command": "python examples/caption_digits.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "data": describe_data(args),
        "train_pairs": len(splits["train"][1]),
        "test_images": len(splits["test"][1]),
        "vocabulary_size": len(codec),
        "epochs": args.epochs,
        "jit_compile": jit_compile_for(strategy, True),
        "results": results,
        "serving_dir": exported,
    }
    with open(out / "metrics.json", "w") as file:
        json.dump(metrics, file, indent=2)
    print(
        json.dumps(
            {
                m: {k: v for k, v in results[m].items() if k != "examples"}
                for m in results
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
