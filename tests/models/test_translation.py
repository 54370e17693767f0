"""Tests for `keras_segattn.models.Seq2SeqTranslator` and its decoders."""

import itertools
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.models import Seq2SeqTranslator
from keras_segattn.models import beam_search_decode
from keras_segattn.models import greedy_decode

START, END = 2, 3
NEVER = 99  # an end id no model here can emit: decode to max_length
SMALL = dict(
    embedding_dim=6,
    encoder_units=5,
    decoder_units=7,
    attention_units=4,
    readout_units=3,
)


def _model(attention=True, target_vocabulary_size=9, **kwargs):
    return Seq2SeqTranslator(
        11, target_vocabulary_size, attention=attention, **SMALL, **kwargs
    )


def _source(seed=0):
    rng = np.random.default_rng(seed)
    source = rng.integers(1, 11, size=(3, 6)).astype("int32")
    source[1, 4:] = 0  # padding
    source[2, 2:] = 0
    return source


def _batch(seed=0, steps=5):
    rng = np.random.default_rng(seed)
    target = rng.integers(4, 9, size=(3, steps)).astype("int32")
    target[:, 0] = START
    return {"source": _source(seed), "target_in": target}


@pytest.mark.parametrize("attention", [True, False])
def test_fit_with_xla_and_keras_round_trip(tmp_path, attention):
    model = _model(attention)
    batch = _batch()
    logits = model(batch)
    assert tuple(logits.shape) == (3, 5, 9)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
        jit_compile=True,
    )
    assert model.jit_compile is True, "XLA was silently disabled"
    target_out = np.roll(batch["target_in"], -1, axis=1)
    weights = np.ones(target_out.shape, "float32")
    weights[:, -1] = 0.0
    history = model.fit(
        batch, target_out, sample_weight=weights, epochs=3, verbose=0
    )
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    model.save(tmp_path / "nmt.keras")
    reloaded = keras.saving.load_model(tmp_path / "nmt.keras")
    assert isinstance(reloaded, Seq2SeqTranslator)
    assert reloaded.get_config() == model.get_config()
    np.testing.assert_allclose(reloaded(batch), model(batch), atol=1e-6)


def test_mixed_precision_logits_are_float32():
    model = _model(dtype="mixed_float16")
    logits = model(_batch())
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert all(str(w.dtype) == "float32" for w in model.weights)


def test_source_padding_does_not_change_the_output():
    model = _model()
    batch = _batch()
    padded = dict(batch)
    padded["source"] = np.pad(batch["source"], ((0, 0), (0, 3)))
    np.testing.assert_allclose(model(padded), model(batch), atol=1e-5)


@pytest.mark.parametrize("attention", [True, False])
def test_greedy_decode_agrees_with_teacher_forcing(attention):
    model = _model(attention)
    source = _source(1)
    decoded = greedy_decode(model, source, 6, START, END)
    tokens = decoded["tokens"].numpy()
    lengths = decoded["lengths"].numpy()
    assert tokens.shape == (3, 6)
    assert decoded["attention"].shape == (3, 6, 6 if attention else 0)
    # Re-run the produced words with teacher forcing: argmax must agree.
    raw = greedy_decode(model, source, 6, START, NEVER)["tokens"].numpy()
    target_in = np.concatenate([np.full((3, 1), START), raw[:, :-1]], 1)
    logits = model({"source": source, "target_in": target_in})
    np.testing.assert_array_equal(np.argmax(logits, -1), raw)
    for row, length in zip(tokens, lengths, strict=True):
        assert np.all(row[length:] == 0)
        assert END not in row


def test_attention_rows_sum_to_one_over_real_words():
    model = _model()
    source = _source(2)
    weights = greedy_decode(model, source, 4, START, NEVER)["attention"].numpy()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(weights[1, :, 4:] == 0.0)
    assert np.all(weights[2, :, 2:] == 0.0)


def test_beam_width_one_is_greedy():
    model = _model()
    source = _source(3)
    greedy = greedy_decode(model, source, 7, START, END)
    beam = beam_search_decode(model, source, 7, START, END, beam_width=1)
    np.testing.assert_array_equal(beam["tokens"], greedy["tokens"])
    np.testing.assert_array_equal(beam["lengths"], greedy["lengths"])
    np.testing.assert_allclose(beam["attention"], greedy["attention"])


def _exhaustive_best(model, source, max_length, alpha):
    """Best length-normalised hypothesis by enumerating every sequence."""
    vocabulary = model.target_vocabulary_size
    candidates = [
        words
        for length in range(1, max_length + 1)
        for words in itertools.product(range(vocabulary), repeat=length)
        # Finished (one end token, last) or cut at max_length.
        if END not in words[:-1] and (words[-1] == END or length == max_length)
    ]
    # One teacher-forced batch; the decoder is causal, so the padding after
    # a short candidate does not change the log probabilities it uses.
    target_in = np.array(
        [[START, *w[:-1]] + [0] * (max_length - len(w)) for w in candidates],
        "int32",
    )
    logits = model(
        {
            "source": np.repeat(source, len(candidates), 0),
            "target_in": target_in,
        }
    )
    log_probs = tf.nn.log_softmax(logits).numpy().astype("float64")
    scores = [
        sum(log_probs[row, i, w] for i, w in enumerate(words))
        / ((5.0 + len(words)) / 6.0) ** alpha
        for row, words in enumerate(candidates)
    ]
    best = int(np.argmax(scores))
    return scores[best], candidates[best]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_exhaustive_optimum(alpha):
    model = _model(target_vocabulary_size=5)
    # Favour the end token a little so that finished hypotheses compete.
    bias = model.logits_layer.bias
    bias.assign(bias.numpy() + np.eye(5)[END] * 0.5)
    source = _source(4)[:1]
    max_length = 3
    score, words = _exhaustive_best(model, source, max_length, alpha)
    beam = beam_search_decode(
        model,
        source,
        max_length,
        START,
        END,
        beam_width=5**max_length,
        length_penalty=alpha,
    )
    np.testing.assert_allclose(beam["scores"][0], score, rtol=1e-5)
    expected = [w for w in words if w != END]
    assert list(beam["tokens"][0, : len(expected)].numpy()) == expected


def test_decoders_trace_in_tf_function_with_unknown_shapes():
    model = _model()

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def decode(source):
        greedy = greedy_decode(model, source, 5, START, END)
        beam = beam_search_decode(model, source, 5, START, END, beam_width=3)
        return greedy["tokens"], beam["tokens"]

    greedy, beam = decode(tf.constant(_source(5)))
    assert greedy.shape == beam.shape == (3, 5)
    empty = decode(tf.zeros([0, 4], tf.int32))
    assert empty[0].shape == empty[1].shape == (0, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_length": 0}, re.escape("max_length")),
        ({"beam_width": 0}, re.escape("beam_width")),
        ({"length_penalty": -1.0}, re.escape("length_penalty=-1.0")),
    ],
)
def test_bad_decoding_arguments(kwargs, match):
    model = _model()
    args = {"max_length": 4, "beam_width": 2, "length_penalty": 0.6}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        beam_search_decode(model, _source(), start_id=START, end_id=END, **args)
    with pytest.raises(ValueError, match="Invalid rank for argument `source`"):
        greedy_decode(model, np.zeros((3,), "int32"), 4, START, END)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"source_vocabulary_size": 1}, "source_vocabulary_size"),
        ({"decoder_units": 0}, "decoder_units"),
        ({"dropout": 1.0}, re.escape("Received: dropout=1.0")),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    args = dict(source_vocabulary_size=10, target_vocabulary_size=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Seq2SeqTranslator(**args)
