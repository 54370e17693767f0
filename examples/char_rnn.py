"""Character-level LSTM language model (the lectures' RNN recap).

Trains an `Embedding -> LSTM -> Dense` next-character model with
`model.fit` (XLA) on the English side of the spa-eng pairs (sentences
joined by newlines, cut into windows), reports bits per character on the
held-out sentences (the same split as examples/translate.py: no sentence
shared with training), and samples text at several temperatures
(`softmax(logits / T)`: T < 1 is conservative, T > 1 adventurous).

Then looks for interpretable cells (Karpathy, Johnson & Fei-Fei, 2015):
reads an analysis text (held-out sentences plus the corpus's sentences
with quotation marks, which the held-out ones alone have too few of) with
the LSTM, carrying its state, finds the cells whose tanh(c_t) correlates
most with being inside quotes, the position in the line and the position
in the word (`keras_segattn.metrics.most_correlated_cells`), writes their
correlations to metrics.json and plots their activations over a passage
(`plots/interpretable_cells.png`, colour per character, blue +1, red -1
as in the paper's figures).

Examples:

    python examples/char_rnn.py --epochs 5
    python examples/char_rnn.py --smoke --output-dir /tmp/char_rnn
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data" / "spa_eng"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data/spa_eng"),
        help="folder of the Spanish-English pairs (spa.txt)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/char_rnn"),
        help="where the model, samples and metrics go",
    )
    parser.add_argument("--epochs", type=int, default=5, help="training epochs")
    parser.add_argument(
        "--window",
        type=int,
        default=100,
        help="characters of context per training example",
    )
    parser.add_argument("--units", type=int, default=256, help="LSTM units")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="global batch size"
    )
    parser.add_argument(
        "--validation-size",
        type=int,
        default=3000,
        help="sentence pairs held out for validation",
    )
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[0.5, 1.0],
        help="sampling temperatures of the generated text",
    )
    parser.add_argument(
        "--cells-sentences",
        type=int,
        default=1000,
        help="held-out sentences in the interpretable-cells analysis text",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data, weights and sampling",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="embedded sample, seconds"
    )
    add_distribution_arguments(parser)
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_segattn import visualization  # noqa: E402
from keras_segattn.data import spa_eng  # noqa: E402
from keras_segattn.metrics import most_correlated_cells  # noqa: E402
from keras_segattn.metrics import text_features  # noqa: E402

from _common import backup_callbacks  # noqa: E402
from _common import check_compiled  # noqa: E402
from _common import fit_context  # noqa: E402
from _common import global_batch_size  # noqa: E402
from _common import jit_compile_for  # noqa: E402
from _common import logging_callbacks  # noqa: E402
from _common import save_final_weights  # noqa: E402
from _common import setup_distribution  # noqa: E402
from _common import trim_to_replicas  # noqa: E402


def windows(text: str, alphabet: dict, window: int):
    """(inputs, targets) int32 [N, window]: targets shifted by one."""
    ids = np.array([alphabet.get(c, 0) for c in text], np.int32)
    count = (len(ids) - 1) // window
    x = ids[: count * window].reshape(count, window)
    y = ids[1 : count * window + 1].reshape(count, window)
    return x, y


def build_model(vocabulary: int, units: int) -> keras.Model:
    chars = keras.Input((None,), dtype="int32", name="chars")
    x = keras.layers.Embedding(vocabulary, 64, name="embedding")(chars)
    x = keras.layers.LSTM(units, return_sequences=True, name="lstm")(x)
    logits = keras.layers.Dense(vocabulary, name="logits")(x)
    return keras.Model(chars, logits, name="char_rnn")


def sample(
    model, alphabet, prompt: str, length: int, temperature: float, seed: int
) -> str:
    """Temperature sampling, one character at a time through the LSTM cell
    (the trained layer's weights), carrying its state."""
    rng = np.random.default_rng(seed)
    chars = {i: c for c, i in alphabet.items()}
    embedding = model.get_layer("embedding")
    cell = model.get_layer("lstm").cell
    dense = model.get_layer("logits")
    state = [np.zeros((1, cell.units), "float32")] * 2
    text = prompt
    for char in prompt:  # read the prompt
        output, state = cell(
            embedding(np.array([alphabet.get(char, 0)])), state
        )
    for _ in range(length):
        logits = np.asarray(dense(output), "float64")[0] / max(
            temperature, 1e-6
        )
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        nxt = int(rng.choice(len(probs), p=probs))
        text += chars.get(nxt, "?")
        output, state = cell(embedding(np.array([nxt])), state)
    return text


class _CellStateReadout(keras.layers.Layer):
    """Wraps a trained LSTM cell so that `keras.layers.RNN` returns its
    cell state c_t at every step instead of h_t."""

    def __init__(self, cell, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.state_size = cell.state_size
        self.output_size = cell.units

    def call(self, inputs, states, training=False):
        _, states = self.cell(inputs, states, training=training)
        return states[1], states


def cell_activations(model, alphabet, text: str) -> np.ndarray:
    """tanh(c_t) [len(text), units] of the trained LSTM reading `text` in
    one pass from a zero state (the quantity Karpathy et al. colour)."""
    ids = np.array([[alphabet.get(c, 0) for c in text]], np.int32)
    readout = keras.layers.RNN(
        _CellStateReadout(model.get_layer("lstm").cell), return_sequences=True
    )
    states = readout(model.get_layer("embedding")(ids))
    return np.tanh(np.asarray(ops.convert_to_numpy(states))[0])


def analysis_text(pairs, validation_pairs, sentences: int, seed: int) -> str:
    """Held-out sentences (the first `sentences`) and every sentence of the
    corpus with a quotation mark, shuffled, one per line."""
    held_out = [english for _, english in validation_pairs][:sentences]
    quoted = sorted({english for _, english in pairs if '"' in english})
    lines = sorted(set(held_out) | set(quoted))
    np.random.default_rng(seed).shuffle(lines)
    return "\n".join(lines) + "\n"


def passage_with_quotes(text: str, lines: int = 12) -> str:
    """`lines` consecutive lines of `text`, starting two lines before its
    first quotation mark."""
    all_lines = text.split("\n")
    first = next((i for i, line in enumerate(all_lines) if '"' in line), 0)
    start = max(first - 2, 0)
    return "\n".join(all_lines[start : start + lines]) + "\n"


def interpretable_cells(model, alphabet, text: str, plot_path: Path) -> dict:
    """The cells most correlated with each `text_features` feature over
    `text` (top 3 each, Pearson r) and the plot of the best ones over a
    passage with quotes."""
    activations = cell_activations(model, alphabet, text)
    top = most_correlated_cells(activations, text_features(text), top_k=3)
    passage = passage_with_quotes(text)
    passage_activations = cell_activations(model, alphabet, passage)
    best = [(name, *cells[0]) for name, cells in top.items()]
    figure = visualization.plot_text_activations(
        passage,
        passage_activations[:, [cell for _, cell, _ in best]].T,
        labels=[
            f"cell {cell}: {name.replace('_', ' ')} (r = {r:+.2f} over the "
            "analysis text)"
            for name, cell, r in best
        ],
        line_width=max(len(line) for line in passage.split("\n")) + 1,
        cmap="coolwarm_r",
        title="tanh(c) of the LSTM cells most correlated with each feature "
        "(blue +1, red -1, as in Karpathy et al.)",
    )
    figure.savefig(plot_path, dpi=110)
    return {
        "analysis_characters": len(text),
        "analysis_quote_characters": text.count('"'),
        "top_cells": {
            name: [{"cell": cell, "r": round(r, 3)} for cell, r in cells]
            for name, cells in top.items()
        },
    }


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.data_dir, args.epochs, args.units = SAMPLE_DIR, 1, 32
        args.validation_size, args.window = 60, 40
        args.cells_sentences = 60
    strategy = setup_distribution(args)
    global_batch_size(args.batch_size, strategy)
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    (out / "plots").mkdir(parents=True, exist_ok=True)
    pairs = spa_eng.load_spa_eng_pairs(args.data_dir)
    train_pairs, val_pairs = spa_eng.split_translation_pairs(
        pairs, args.validation_size, args.seed
    )
    train_text = "\n".join(english for _, english in train_pairs) + "\n"
    val_text = "\n".join(english for _, english in val_pairs) + "\n"
    # id 0: characters never seen in training.
    alphabet = {c: i + 1 for i, c in enumerate(sorted(set(train_text)))}
    x, y = windows(train_text, alphabet, args.window)
    vx, vy = windows(val_text, alphabet, args.window)
    # Keras batches in-memory arrays itself (auto-shard policy DATA); cut
    # them so every batch splits evenly over the replicas.
    x, y = trim_to_replicas((x, y), strategy)
    vx, vy = trim_to_replicas((vx, vy), strategy)
    jit_compile = jit_compile_for(strategy, True)
    with strategy.scope():
        model = build_model(len(alphabet) + 1, args.units)
        model.compile(
            optimizer=keras.optimizers.Adam(2e-3, clipnorm=5.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
        )
    check_compiled(model, jit_compile)
    started = time.time()
    with fit_context(
        model, strategy, lambda: (x[: args.batch_size], y[: args.batch_size])
    ):
        history = model.fit(
            x,
            y,
            validation_data=(vx, vy),
            batch_size=args.batch_size,
            epochs=args.epochs,
            verbose=2 if args.smoke else 1,
            callbacks=[*backup_callbacks(args), *logging_callbacks(out)],
        )
    save_final_weights(model, args)
    minutes = (time.time() - started) / 60
    bits = [loss / math.log(2) for loss in history.history["val_loss"]]
    samples = {
        str(t): sample(
            model, alphabet, "I ", 120 if not args.smoke else 20, t, args.seed
        )
        for t in args.temperatures
    }
    (out / "samples.txt").write_text(
        "\n\n".join(f"T={t}:\n{s}" for t, s in samples.items()), "utf-8"
    )
    cells = interpretable_cells(
        model,
        alphabet,
        analysis_text(pairs, val_pairs, args.cells_sentences, args.seed),
        out / "plots" / "interpretable_cells.png",
    )
    metrics = {
        "command": "python examples/char_rnn.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "train_characters": len(train_text),
        "validation_characters": len(val_text),
        "alphabet": len(alphabet),
        "epochs": args.epochs,
        "validation_bits_per_character": round(bits[-1], 3),
        "bits_per_character_by_epoch": [round(b, 3) for b in bits],
        "train_minutes": round(minutes, 2),
        "samples": samples,
        "interpretable_cells": cells,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
