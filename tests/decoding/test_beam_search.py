"""Tests for `keras_segattn.decoding.beam_search_decode`."""

import itertools
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.decoding import beam_search_decode
from keras_segattn.decoding import greedy_decode
from tests.decoding.helpers import END
from tests.decoding.helpers import START
from tests.decoding.helpers import source_ids
from tests.decoding.helpers import translator


def test_beam_width_one_is_greedy():
    model = translator()
    source = source_ids(3)
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
    model = translator(target_vocabulary_size=5)
    # Favour the end token a little so that finished hypotheses compete.
    bias = model.logits_layer.bias
    bias.assign(bias.numpy() + np.eye(5)[END] * 0.5)
    source = source_ids(4)[:1]
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
    model = translator()

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def decode(source):
        greedy = greedy_decode(model, source, 5, START, END)
        beam = beam_search_decode(model, source, 5, START, END, beam_width=3)
        return greedy["tokens"], beam["tokens"]

    greedy, beam = decode(tf.constant(source_ids(5)))
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
    model = translator()
    args = {"max_length": 4, "beam_width": 2, "length_penalty": 0.6}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        beam_search_decode(
            model, source_ids(), start_id=START, end_id=END, **args
        )
    with pytest.raises(ValueError, match="Invalid rank for argument `source`"):
        greedy_decode(model, np.zeros((3,), "int32"), 4, START, END)
