"""Decoder step time of the Bahdanau translator, and fit step time.

Two measurements on the model size that examples/translate.py trains
(embedding 128, encoder 2x256, decoder 256, attention 256, vocabularies
10,000 / 7,000):

1. One greedy decoding step (`BahdanauDecoder.step` + readout + logits)
   for a batch of source sentences, with the attention keys `W1 h`
   computed once per sentence (`precompute_keys`, what `greedy_decode`
   and `beam_search_decode` do) against recomputing them at every step
   (what calling the layer as `attention(query, value)` per step does).
2. One teacher-forcing training step (`train_on_batch`) compiled with XLA
   (`jit_compile=True`) against plain `tf.function` graphs.

Prints the median of `--steps` calls after a warm-up and the ratios,
measured in the same run.

Usage:
    python benchmarks/bench_translation.py [--steps 20] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _timing import set_process_defaults

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn.models import Seq2SeqTranslator  # noqa: E402

SIZES = dict(
    embedding_dim=128,
    encoder_units=256,
    decoder_units=256,
    attention_units=256,
    readout_units=192,
)


def _median_ms(fn, steps, warmup=3):
    first_start = time.perf_counter()
    np.asarray(fn())
    first = time.perf_counter() - first_start
    for _ in range(warmup):
        np.asarray(fn())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        np.asarray(fn())
        times.append(time.perf_counter() - start)
    return first, statistics.median(times) * 1e3


def bench_decoder_step(model, batch, source_length, steps):
    rng = np.random.default_rng(0)
    source = tf.constant(
        rng.integers(2, 10000, (batch, source_length)), tf.int32
    )
    encoded = model.encode(source)
    tokens = tf.fill([batch], 2)
    decoder = model.decoder

    @tf.function
    def cached():
        logits, _, _ = model.decode_step(tokens, encoded["state"], encoded)
        return logits

    @tf.function
    def recomputed():
        keys = decoder.precompute_keys(encoded["memory"])
        logits, _, _ = model.decode_step(
            tokens, encoded["state"], {**encoded, "keys": keys}
        )
        return logits

    return {
        "precomputed keys": _median_ms(cached, steps)[1],
        "keys every step": _median_ms(recomputed, steps)[1],
    }


def bench_fit_step(batch, length, steps, jit_compile):
    model = Seq2SeqTranslator(10000, 7000, **SIZES)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    assert model.jit_compile is jit_compile
    rng = np.random.default_rng(1)
    x = {
        "source": rng.integers(1, 10000, (batch, length)).astype("int32"),
        "target_in": rng.integers(1, 7000, (batch, length)).astype("int32"),
    }
    y = rng.integers(1, 7000, (batch, length)).astype("int32")
    return _median_ms(lambda: model.train_on_batch(x, y), steps)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--quick", action="store_true", help="fewer steps, for a smoke run"
    )
    args = parser.parse_args(argv)
    steps = 3 if args.quick else args.steps
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}")

    model = Seq2SeqTranslator(10000, 7000, **SIZES)
    model({"source": np.ones((1, 3), "int32"), "target_in": np.ones((1, 2))})
    print("\n## Greedy decoding step (ms, median)")
    print(
        "| batch | source words | precomputed keys | keys every step "
        "| speed-up |"
    )
    print("|---|---|---|---|---|")
    for batch, length in ((1, 12), (64, 12), (64, 40)):
        times = bench_decoder_step(model, batch, length, steps)
        cached = times["precomputed keys"]
        every = times["keys every step"]
        print(
            f"| {batch} | {length} | {cached:.2f} | {every:.2f} | "
            f"{every / cached:.2f}x |"
        )

    print("\n## Training step, batch 128 x 10 tokens (ms, median)")
    print("| compile | first call (s) | step | ratio to XLA |")
    print("|---|---|---|---|")
    results = {
        name: bench_fit_step(128, 10, steps, jit)
        for name, jit in (("XLA", True), ("tf.function", False))
    }
    for name, (first, median) in results.items():
        ratio = median / results["XLA"][1]
        print(f"| {name} | {first:.1f} | {median:.1f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
