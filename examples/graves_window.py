"""Learning to read a sequence in order with Graves' window attention.

A small demonstration of `keras_segattn.layers.GravesWindowAttention`
(Graves 2013, handwriting synthesis): an LSTM must spell out a random
string, one character per step, while a mixture of Gaussians slides over
the string's one-hot characters (`κ_t = κ_{t−1} + exp(κ̂)` can only move
forward). The window `w_{t−1}` is fed to the LSTM with the previous
character, as in the paper's synthesis network, and the output reads
`[h_t; w_t]`. Trained with teacher forcing in `model.fit` (XLA); the plot
of φ(t, u) shows the window advancing along the string one character per
step. Reports per-character accuracy and exact-match rate of greedy
spelling on fresh strings.

Examples:

    python examples/graves_window.py --epochs 8
    python examples/graves_window.py --smoke --output-dir /tmp/graves
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/graves_window"),
        help="where the model, metrics and the window plot go",
    )
    parser.add_argument("--epochs", type=int, default=8, help="training epochs")
    parser.add_argument(
        "--length", type=int, default=12, help="length of the strings"
    )
    parser.add_argument(
        "--num-train",
        type=int,
        default=20000,
        help="number of training strings",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the data and weights"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 epoch on 256 strings of length 6, in seconds",
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="global batch size"
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
from keras_segattn.layers import GravesWindowAttention  # noqa: E402
from keras_segattn.layers._recurrent import scan as _scan  # noqa: E402

from _common import backup_callbacks  # noqa: E402
from _common import check_compiled  # noqa: E402
from _common import fit_context  # noqa: E402
from _common import global_batch_size  # noqa: E402
from _common import jit_compile_for  # noqa: E402
from _common import logging_callbacks  # noqa: E402
from _common import save_final_weights  # noqa: E402
from _common import setup_distribution  # noqa: E402
from _common import trim_to_replicas  # noqa: E402

ALPHABET = 10  # symbols 1..10; 0 is padding / the start symbol


@keras.saving.register_keras_serializable(package="examples")
class WindowSpeller(keras.layers.Layer):
    """LSTM + window attention over a one-hot string, for T steps."""

    def __init__(self, units=64, num_mixtures=1, **kwargs):
        super().__init__(**kwargs)
        self.units, self.num_mixtures = units, num_mixtures
        self.cell = keras.layers.LSTMCell(units)
        self.window = GravesWindowAttention(num_mixtures)
        self.out = keras.layers.Dense(ALPHABET + 1)

    def build(self, previous_shape, string_shape):
        depth = string_shape[-1]
        self.cell.build((None, previous_shape[-1] + depth))
        self.window.build(
            (None, self.units), (None, self.num_mixtures), string_shape
        )
        self.out.build((None, self.units + depth))

    def call(self, previous, string):
        batch = ops.shape(string)[0]
        depth = string.shape[-1]

        def body(carry, inputs):
            h, c, kappa, window, _ = carry
            h, (h, c) = self.cell(ops.concatenate([inputs, window], -1), [h, c])
            window, kappa, phi = self.window(h, kappa, string)
            logits = self.out(ops.concatenate([h, window], -1))
            outputs = (h, c, kappa, window, ops.concatenate([logits, phi], -1))
            return outputs, outputs

        zeros = ops.zeros((batch, self.units))
        initial = (
            zeros,
            zeros,
            ops.zeros((batch, self.num_mixtures)),
            ops.zeros((batch, depth)),
            ops.zeros((batch, ALPHABET + 1 + string.shape[1])),
        )
        *_, stacked = _scan(body, initial, ops.transpose(previous, (1, 0, 2)))
        return ops.transpose(stacked, (1, 0, 2))  # [B, T, V + U]

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, num_mixtures=self.num_mixtures)
        return config


def make_strings(count, length, seed):
    rng = np.random.default_rng(seed)
    strings = rng.integers(1, ALPHABET + 1, size=(count, length))
    one_hot = np.eye(ALPHABET + 1, dtype="float32")[strings]
    previous = np.concatenate(
        [np.zeros((count, 1, ALPHABET + 1), "float32"), one_hot[:, :-1]], 1
    )
    return {"previous": previous, "string": one_hot}, strings


def build_model(length, units, num_mixtures):
    previous = keras.Input((length, ALPHABET + 1), name="previous")
    string = keras.Input((length, ALPHABET + 1), name="string")
    outputs = WindowSpeller(units, num_mixtures, name="speller")(
        previous, string
    )
    return keras.Model({"previous": previous, "string": string}, outputs)


class LogitsLoss(keras.losses.Loss):
    """Cross-entropy on the logits part of [logits; φ]."""

    def call(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred[..., : ALPHABET + 1], from_logits=True
        )


def spell(model, strings_one_hot):
    """Greedy spelling: feed each predicted character back."""
    count, length, depth = strings_one_hot.shape
    previous = np.zeros((count, length, depth), "float32")
    for t in range(length):
        outputs = np.asarray(
            model({"previous": previous, "string": strings_one_hot})
        )
        if t + 1 < length:
            chars = outputs[:, t, : ALPHABET + 1].argmax(-1)
            previous[:, t + 1] = np.eye(depth)[chars]
    return outputs[..., : ALPHABET + 1].argmax(-1), outputs[..., ALPHABET + 1 :]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.epochs, args.num_train, args.length = 1, 256, 6
    strategy = setup_distribution(args)
    global_batch_size(args.batch_size, strategy)
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    x, strings = make_strings(args.num_train, args.length, args.seed)
    # Keras batches in-memory arrays itself (auto-shard policy DATA); cut
    # them so every batch splits evenly over the replicas.
    x, strings = trim_to_replicas((x, strings), strategy)
    jit_compile = jit_compile_for(strategy, True)
    with strategy.scope():
        model = build_model(args.length, 32 if args.smoke else 96, 1)
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=LogitsLoss(),
            jit_compile=jit_compile,
        )
    check_compiled(model, jit_compile)
    with fit_context(
        model,
        strategy,
        lambda: (
            {k: v[: args.batch_size] for k, v in x.items()},
            strings[: args.batch_size],
        ),
    ):
        history = model.fit(
            x,
            strings,
            batch_size=args.batch_size,
            epochs=args.epochs,
            verbose=2 if args.smoke else 1,
            callbacks=[*backup_callbacks(args), *logging_callbacks(out)],
        )
    save_final_weights(model, args)
    test_x, test_strings = make_strings(500, args.length, args.seed + 1)
    predicted, phi = spell(model, test_x["string"])
    metrics = {
        "command": "python examples/graves_window.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "final_loss": float(history.history["loss"][-1]),
        "character_accuracy": float(np.mean(predicted == test_strings)),
        "exact_match": float(np.mean(np.all(predicted == test_strings, -1))),
    }
    figure = visualization.plot_alignment(
        phi[0],
        xlabel="string position u",
        ylabel="output step t",
        title="window φ(t, u)",
        value_range=None,  # φ is not normalised
    )
    figure.savefig(out / "phi.png", dpi=100)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
