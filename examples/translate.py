"""Spanish -> English translation with Bahdanau attention (RNNsearch).

Trains `keras_segattn.models.Seq2SeqTranslator` (bidirectional GRU encoder,
GRU decoder with `BahdanauAttention`, maxout readout) on the Tatoeba/Anki
spa-eng pairs of ../shared/data with teacher forcing (`model.fit`, XLA),
holds out a validation split that shares no sentence with training, scores
it with sacreBLEU (greedy and beam search), plots attention alignments and
exports a TF-Serving SavedModel whose `serving_default` maps `text`
(tf.string [b]) to `translation` (plus `serving_beam`).

Sub-commands:

    # Train and export (saved_models/nmt_spa_eng/1/); ~1 hour on 2 cores
    python examples/translate.py train --epochs 10

    # The baseline without attention (Cho et al., 2014)
    python examples/translate.py train --no-attention \\
        --output-dir runs/nmt_spa_eng_no_attention --epochs 5

    # Redo BLEU, plots and export for a trained model.keras
    python examples/translate.py finish saved_models/nmt_spa_eng

    # BLEU overall and by source length, side by side
    python examples/translate.py evaluate saved_models/nmt_spa_eng \\
        runs/nmt_spa_eng_no_attention

    # Translate sentences with an exported SavedModel
    python examples/translate.py translate saved_models/nmt_spa_eng/1 \\
        "¿Dónde está la estación?" "Tengo hambre."

    # Seconds-long end-to-end check on the embedded sample
    python examples/translate.py train --smoke --output-dir /tmp/nmt

Standardisation (both languages, `keras_segattn.data.text`): Unicode NFKD,
lower case, keep a-z, digits and . , ? ! ¿ ¡ ' " : ; -, split punctuation
off words. Outputs are detokenised and re-cased from the training text's
most frequent spelling of each word ("tom" -> "Tom"). BLEU is sacreBLEU's
default (13a tokenisation, cased) against the raw English references.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults

VOCABULARY_FILE = "vocabularies.json"
TRAINING_FILE = "training.json"
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data" / "spa_eng"
LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 15), (16, 20), (21, 1000))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, evaluate and export")
    train.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data/spa_eng"),
        help="folder with spa.txt.gz (default: %(default)s)",
    )
    train.add_argument(
        "--output-dir",
        type=Path,
        default=Path("saved_models/nmt_spa_eng"),
        help="where the model, vocabularies, plots and SavedModel go",
    )
    train.add_argument("--epochs", type=int, default=10, help="training epochs")
    train.add_argument(
        "--batch-size", type=int, default=128, help="global batch size"
    )
    train.add_argument(
        "--learning-rate", type=float, default=1e-3, help="Adam learning rate"
    )
    train.add_argument(
        "--validation-size",
        type=int,
        default=3000,
        help="pairs held out (whole groups of pairs sharing a sentence)",
    )
    train.add_argument(
        "--source-vocabulary-size",
        type=int,
        default=10000,
        help="Spanish words kept (the rest map to [UNK])",
    )
    train.add_argument(
        "--target-vocabulary-size",
        type=int,
        default=7000,
        help="English words kept (the rest map to [UNK])",
    )
    train.add_argument(
        "--embedding-dim", type=int, default=128, help="word embedding size"
    )
    train.add_argument(
        "--encoder-units",
        type=int,
        default=256,
        help="units of each encoder GRU direction",
    )
    train.add_argument(
        "--decoder-units", type=int, default=256, help="decoder GRU units"
    )
    train.add_argument(
        "--attention-units",
        type=int,
        default=256,
        help="units of the Bahdanau attention projections",
    )
    train.add_argument(
        "--readout-units",
        type=int,
        default=192,
        help="units of the maxout readout layer",
    )
    train.add_argument(
        "--dropout", type=float, default=0.2, help="dropout rate"
    )
    train.add_argument(
        "--no-attention",
        action="store_true",
        help="train the fixed-context baseline (RNN Encoder-Decoder)",
    )
    train.add_argument(
        "--beam-width",
        type=int,
        default=4,
        help="beam width of the beam-search BLEU",
    )
    train.add_argument(
        "--max-output-length",
        type=int,
        default=50,
        help="longest translation decoded, in tokens",
    )
    train.add_argument(
        "--no-jit", action="store_true", help="train without XLA"
    )
    train.add_argument(
        "--seed", type=int, default=0, help="seed of the data and weights"
    )
    train.add_argument(
        "--smoke",
        action="store_true",
        help="tiny model on the embedded 400-pair sample, seconds",
    )
    add_distribution_arguments(train)

    evaluate = commands.add_parser(
        "evaluate", help="BLEU of trained models by source length"
    )
    evaluate.add_argument(
        "model_dirs",
        type=Path,
        nargs="+",
        help="output directories of `train` (metrics.json + SavedModel)",
    )
    evaluate.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data/spa_eng"),
        help="folder of the Spanish-English pairs (spa.txt)",
    )
    evaluate.add_argument(
        "--version", type=int, default=1, help="SavedModel version to load"
    )

    finish = commands.add_parser(
        "finish",
        help="BLEU, plots and SavedModel for a trained OUTPUT_DIR/model.keras",
    )
    finish.add_argument(
        "output_dir",
        type=Path,
        help="a train run's output folder (with model.keras)",
    )
    finish.add_argument(
        "--beam-width",
        type=int,
        default=4,
        help="beam width of the beam-search BLEU",
    )
    finish.add_argument(
        "--max-output-length",
        type=int,
        default=50,
        help="longest translation decoded, in tokens",
    )

    translate = commands.add_parser(
        "translate", help="translate sentences with an exported SavedModel"
    )
    translate.add_argument(
        "saved_model", type=Path, help="SavedModel version folder (…/serving/1)"
    )
    translate.add_argument(
        "sentences", nargs="+", help="Spanish sentences to translate"
    )
    translate.add_argument(
        "--beam",
        action="store_true",
        help="beam search instead of greedy decoding",
    )
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn import distribute  # noqa: E402
from keras_segattn import visualization  # noqa: E402
from keras_segattn.data import spa_eng  # noqa: E402
from keras_segattn.data import text as text_lib  # noqa: E402
from keras_segattn.export import translation as translation_export  # noqa: E402,E501
from keras_segattn.losses import TokenCrossentropy  # noqa: E402
from keras_segattn.models.translation import Seq2SeqTranslator  # noqa: E402

from _common import backup_callbacks  # noqa: E402
from _common import best_checkpoint  # noqa: E402
from _common import check_compiled  # noqa: E402
from _common import fit_context  # noqa: E402
from _common import global_batch_size  # noqa: E402
from _common import jit_compile_for  # noqa: E402
from _common import logging_callbacks  # noqa: E402
from _common import save_final_weights  # noqa: E402
from _common import setup_distribution  # noqa: E402

# === Data ===


def load_pairs(args):
    if args.smoke:  # the embedded 400-pair sample of the real data
        args.data_dir = SAMPLE_DIR
    return spa_eng.load_spa_eng_pairs(args.data_dir)


def split_pairs(pairs, validation_size, seed=0):
    return spa_eng.split_translation_pairs(pairs, validation_size, seed)


# === Evaluation ===


def translate_pairs(module, pairs, beam: bool, batch_size: int = 128):
    """Hypotheses and attention for the source side of `pairs`, with a
    progress bar."""
    function = module.translate_beam if beam else module.translate
    hypotheses, attention = [], []
    progress = keras.utils.Progbar(len(pairs), unit_name="sentence")
    for start in range(0, len(pairs), batch_size):
        sources = [source for source, _ in pairs[start : start + batch_size]]
        outputs = function(tf.constant(sources))
        hypotheses += [
            t.decode("utf-8") for t in outputs["translation"].numpy()
        ]
        attention += list(outputs["attention"].numpy())
        progress.add(len(sources))
    return hypotheses, attention


def bleu(hypotheses, references) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def bleu_by_length(pairs, hypotheses) -> dict:
    """BLEU per bucket of source length (words after standardisation)."""
    lengths = [
        len(text_lib.standardize_python(source).split()) for source, _ in pairs
    ]
    table = {}
    for low, high in LENGTH_BUCKETS:
        rows = [i for i, n in enumerate(lengths) if low <= n <= high]
        if rows:
            table[f"{low}-{high if high < 1000 else ''}"] = {
                "pairs": len(rows),
                "bleu": bleu(
                    [hypotheses[i] for i in rows], [pairs[i][1] for i in rows]
                ),
            }
    return table


def save_attention_plots(module, pairs, path: Path, count: int = 4):
    """PNG of the alignment matrices (`visualization.plot_alignment`) of
    the first `count` pairs: output words (and the end token) against the
    source words."""
    pairs = pairs[:count]
    outputs = module.translate(tf.constant([s for s, _ in pairs]))
    vocabulary = module.display_words.numpy()
    matrices, sources, targets = [], [], []
    for (source, _), tokens, weights in zip(
        pairs,
        outputs["tokens"].numpy(),
        outputs["attention"].numpy(),
        strict=True,
    ):
        source_words = text_lib.standardize_python(source).split()
        length = int(np.sum(tokens > 0)) + 1  # words and the end token
        words = [w.decode() for w in vocabulary[tokens[: length - 1]]]
        matrix = weights[:length, : len(source_words)]
        matrices.append(matrix)
        # A translation cut at the maximum length has no end token.
        sources.append(source_words[: matrix.shape[1]])
        targets.append([*words, "<end>"][: matrix.shape[0]])
    figure = visualization.plot_alignment(matrices, sources, targets)
    figure.savefig(path, dpi=100)


# === Commands ===


def train(args) -> int:
    if args.smoke:
        args.epochs = min(args.epochs, 2)
        args.validation_size = 48
        args.batch_size = 16
        args.source_vocabulary_size = args.target_vocabulary_size = 64
        args.embedding_dim = args.encoder_units = 16
        args.decoder_units = args.attention_units = args.readout_units = 16
        args.max_output_length = 12
    strategy = setup_distribution(args)
    global_batch_size(args.batch_size, strategy)
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    pairs = load_pairs(args)
    train_pairs, validation_pairs = split_pairs(
        pairs, args.validation_size, args.seed
    )
    print(
        f"{len(train_pairs)} training and {len(validation_pairs)} validation "
        "pairs (no sentence in both)"
    )
    source_vectorizer = spa_eng.make_text_vectorizer(
        [s for s, _ in train_pairs], args.source_vocabulary_size
    )
    target_vectorizer = spa_eng.make_text_vectorizer(
        [t for _, t in train_pairs],
        args.target_vocabulary_size,
        start_end=True,
    )
    target_vocabulary = [str(w) for w in target_vectorizer.get_vocabulary()]
    vocabularies = {
        "source": [str(w) for w in source_vectorizer.get_vocabulary()],
        "target": target_vocabulary,
        "display": text_lib.build_display_vocabulary(
            [t for _, t in train_pairs], target_vocabulary
        ),
    }
    with open(out / VOCABULARY_FILE, "w", encoding="utf-8") as file:
        json.dump(vocabularies, file, ensure_ascii=False)

    datasets = {}
    for name, split in (("train", train_pairs), ("val", validation_pairs)):
        source_ids, target_ids = spa_eng.vectorize_pairs(
            split, source_vectorizer, target_vectorizer
        )
        datasets[name] = distribute.auto_shard(
            spa_eng.make_translation_dataset(
                source_ids,
                target_ids,
                args.batch_size,
                shuffle=name == "train",
                seed=args.seed,
            )
        )

    jit_compile = jit_compile_for(strategy, not args.no_jit)
    with strategy.scope():
        model = Seq2SeqTranslator(
            len(vocabularies["source"]),
            len(vocabularies["target"]),
            embedding_dim=args.embedding_dim,
            encoder_units=args.encoder_units,
            decoder_units=args.decoder_units,
            attention_units=args.attention_units,
            readout_units=args.readout_units,
            dropout=args.dropout,
            attention=not args.no_attention,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate, clipnorm=5.0),
            # The mean over the global batch's target tokens; Keras's
            # "mean_with_sample_weight" divides per replica.
            loss=TokenCrossentropy(from_logits=True),
            weighted_metrics=[
                keras.metrics.SparseCategoricalAccuracy("accuracy")
            ],
            jit_compile=jit_compile,
        )
    model.summary(print_fn=lambda line, **_: print(line))
    check_compiled(model, jit_compile)
    started = time.time()
    with fit_context(model, strategy, lambda: next(iter(datasets["train"]))):
        history = model.fit(
            datasets["train"],
            validation_data=datasets["val"],
            epochs=args.epochs,
            verbose=2 if args.smoke else 1,
            callbacks=[
                *backup_callbacks(args),
                *logging_callbacks(out),
                best_checkpoint(out / "model.keras", "val_loss"),
                keras.callbacks.ReduceLROnPlateau(
                    monitor="val_loss", factor=0.5, patience=1, verbose=1
                ),
            ],
        )
    train_minutes = (time.time() - started) / 60
    save_final_weights(model, args)
    best_epoch = int(np.argmin(history.history["val_loss"])) + 1
    training = {
        "command": "python examples/translate.py " + " ".join(sys.argv[1:]),
        "data": str(args.data_dir),
        "validation_size": args.validation_size,
        "seed": args.seed,
        "train_pairs": len(train_pairs),
        "validation_pairs": len(validation_pairs),
        "attention": not args.no_attention,
        "parameters": int(model.count_params()),
        "epochs": args.epochs,
        "best_epoch": best_epoch,
        "val_loss": float(min(history.history["val_loss"])),
        "val_accuracy": float(history.history["val_accuracy"][best_epoch - 1]),
        "train_minutes": round(train_minutes, 2),
        "jit_compile": jit_compile,
    }
    (out / TRAINING_FILE).write_text(json.dumps(training, indent=2))
    return finish(args)


def finish(args) -> int:
    """BLEU, plots, SavedModel and metrics.json for a trained model.keras.

    Also a sub-command: re-run it after a code change, or when the
    process that trained the model stopped after training.
    """
    out = args.output_dir
    training = json.loads((out / TRAINING_FILE).read_text())
    vocabularies = json.loads((out / VOCABULARY_FILE).read_text("utf-8"))
    model = keras.saving.load_model(out / "model.keras")
    pairs = spa_eng.load_spa_eng_pairs(Path(training["data"]))
    _, validation_pairs = split_pairs(
        pairs, training["validation_size"], training["seed"]
    )
    serving_args = (
        vocabularies["source"],
        vocabularies["target"],
        vocabularies["display"],
    )
    serving_kwargs = dict(
        max_output_length=args.max_output_length, beam_width=args.beam_width
    )
    module = translation_export.TranslationServingModule(
        model, *serving_args, **serving_kwargs
    )
    references = [t for _, t in validation_pairs]
    scores = {}
    for name, beam in (("greedy", False), ("beam", True)):
        hypotheses, _ = translate_pairs(module, validation_pairs, beam)
        scores[name] = bleu(hypotheses, references)
        print(f"validation BLEU ({name}): {scores[name]:.2f}")
    for (source, reference), hypothesis in list(
        zip(validation_pairs, hypotheses, strict=True)
    )[:5]:
        print(f"  {source} -> {hypothesis}   [{reference}]")
    (out / "plots").mkdir(exist_ok=True)
    save_attention_plots(
        module, validation_pairs, out / "plots" / "attention.png"
    )
    export_path = translation_export.export_translator_for_serving(
        model,
        out,
        *serving_args,
        **serving_kwargs,
        warmup_sentences=[s for s, _ in validation_pairs[:4]],
    )
    metrics = {
        **training,
        "bleu_greedy": round(scores["greedy"], 2),
        f"bleu_beam{args.beam_width}": round(scores["beam"], 2),
        "bleu": "sacrebleu corpus_bleu, 13a, cased, raw references",
        "serving_dir": str(export_path),
    }
    with open(out / "metrics.json", "w") as file:
        json.dump(metrics, file, indent=2)
    print(json.dumps(metrics, indent=2))
    return 0


def evaluate(args) -> int:
    pairs = spa_eng.load_spa_eng_pairs(args.data_dir)
    results = {}
    for model_dir in args.model_dirs:
        metrics = json.loads((model_dir / "metrics.json").read_text())
        _, validation_pairs = split_pairs(pairs, metrics["validation_pairs"])
        # The exported SavedModel: what is committed and what serves.
        loaded = tf.saved_model.load(str(model_dir / str(args.version)))
        signature = loaded.signatures["serving_beam"]
        hypotheses = []
        progress = keras.utils.Progbar(
            len(validation_pairs), unit_name="sentence"
        )
        for start in range(0, len(validation_pairs), 128):
            batch = [s for s, _ in validation_pairs[start : start + 128]]
            translation = signature(text=tf.constant(batch))["translation"]
            hypotheses += [t.decode("utf-8") for t in translation.numpy()]
            progress.add(len(batch))
        results[str(model_dir)] = {
            "validation_pairs": len(validation_pairs),
            "bleu_beam": bleu(hypotheses, [t for _, t in validation_pairs]),
            "by_length": bleu_by_length(validation_pairs, hypotheses),
        }
        (model_dir / "evaluation.json").write_text(
            json.dumps(results[str(model_dir)], indent=2)
        )
    names = list(results)
    print("| source words | pairs | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    first = results[names[0]]["by_length"]
    for bucket, row in first.items():
        cells = [
            f"{results[n]['by_length'][bucket]['bleu']:.1f}" for n in names
        ]
        print(f"| {bucket} | {row['pairs']} | " + " | ".join(cells) + " |")
    cells = [f"{results[n]['bleu_beam']:.1f}" for n in names]
    total = results[names[0]]["validation_pairs"]
    print(f"| all | {total} | " + " | ".join(cells) + " |")
    return 0


def translate(args) -> int:
    loaded = tf.saved_model.load(str(args.saved_model))
    key = "serving_beam" if args.beam else "serving_default"
    outputs = loaded.signatures[key](text=tf.constant(args.sentences))
    for source, target in zip(
        args.sentences, outputs["translation"].numpy(), strict=True
    ):
        print(f"{source} -> {target.decode('utf-8')}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    commands = {
        "train": train,
        "finish": finish,
        "evaluate": evaluate,
        "translate": translate,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
