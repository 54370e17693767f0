"""Tests for `keras_segattn.decoding.greedy_decode`."""

import numpy as np
import pytest
import tensorflow as tf

import keras_segattn
from keras_segattn.decoding import greedy_decode
from tests.decoding.helpers import END
from tests.decoding.helpers import NEVER
from tests.decoding.helpers import START
from tests.decoding.helpers import source_ids
from tests.decoding.helpers import translator


@pytest.mark.parametrize("attention", [True, False])
def test_greedy_decode_agrees_with_teacher_forcing(attention):
    model = translator(attention)
    source = source_ids(1)
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
    model = translator()
    source = source_ids(2)
    weights = greedy_decode(model, source, 4, START, NEVER)["attention"].numpy()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(weights[1, :, 4:] == 0.0)
    assert np.all(weights[2, :, 2:] == 0.0)


class _MarkovChain:
    """A step decoder that is no Keras model: the next word's logits are a
    fixed row of `transitions` [V, V] picked by the previous word, with a
    fixed context (no attention) and a dummy state."""

    def __init__(self, transitions):
        self.transitions = tf.constant(transitions, tf.float32)
        self.target_vocabulary_size = len(transitions)

    def encode(self, source):
        batch = tf.shape(source)[0]
        return {"memory": tf.zeros([batch, 1]), "state": tf.zeros([batch, 1])}

    def decode_step(self, tokens, state, encoded):
        logits = tf.gather(self.transitions, tokens)
        return logits, state + 1.0, tf.zeros([tf.shape(tokens)[0], 0])


def test_any_step_decoder_follows_its_argmax_chain():
    rng = np.random.default_rng(0)
    transitions = rng.normal(size=(6, 6)).astype("float32")
    for previous, word in ((START, 5), (5, 1), (1, 4), (4, END)):
        transitions[previous, word] = 10.0
    decoded = greedy_decode(
        _MarkovChain(transitions), np.zeros((2, 1)), 5, START, END
    )
    expected, word = [], START
    for _ in range(5):
        word = int(np.argmax(transitions[word]))
        if word == END:
            break
        expected.append(word)
    assert expected == [5, 1, 4]
    assert decoded["attention"].shape == (2, 5, 0)
    for row, length in zip(decoded["tokens"], decoded["lengths"], strict=True):
        assert int(length) == len(expected)
        assert list(row.numpy()) == expected + [0] * (5 - len(expected))


def test_models_reexport_the_decoders():
    assert keras_segattn.models.greedy_decode is greedy_decode
    assert (
        keras_segattn.models.beam_search_decode
        is keras_segattn.decoding.beam_search_decode
    )
