"""Tests for `keras_segattn.layers.Dropout` and `ops._random`: the same
numbers as Keras's dropout and `keras.random` on CPU, with the algorithm
named so that XLA compiles them fast (timed in the notes, not here)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import Dropout
from keras_segattn.ops import _random
from tests.testing import run_layer_checks


def test_layer_battery(tmp_path):
    inputs = np.random.default_rng(0).normal(size=(4, 6, 5)).astype("float32")
    run_layer_checks(
        Dropout,
        {"rate": 0.3, "seed": 1},
        inputs,
        tmp_path=tmp_path,
        expected_output_shape=(4, 6, 5),
        expected_num_trainable_weights=0,
        # Inference is the identity (an independent reference needs none).
        reference_fn=lambda layer, x: x,
    )


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("noise_shape", [None, (None, 1, 5)])
def test_same_masks_as_keras_dropout(jit_compile, noise_shape):
    x = tf.constant(
        np.random.default_rng(1).normal(size=(4, 7, 5)).astype("float32")
    )
    theirs = keras.layers.Dropout(0.3, noise_shape=noise_shape, seed=7)
    ours = Dropout(0.3, noise_shape=noise_shape, seed=7)

    @tf.function(jit_compile=jit_compile)
    def both(x):
        return theirs(x, training=True), ours(x, training=True)

    for _ in range(3):  # the generators advance together
        expected, actual = both(x)
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())


def test_rate_scaling_and_non_finite_inputs():
    x = np.ones((200, 50), "float32")
    y = Dropout(0.25, seed=3)(x, training=True).numpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_array_equal(Dropout(0.25)(x, training=False), x)
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True), x)
    np.testing.assert_array_equal(Dropout(1.0)(x, training=True), 0 * x)
    bad = np.full((100, 10), np.nan, "float32")
    y = Dropout(0.5, seed=2)(bad, training=True).numpy()
    dropped = ~np.isnan(y)
    assert dropped.any() and np.all(y[dropped] == 0.0)


@pytest.mark.parametrize("draw", ["uniform", "normal"])
def test_random_draws_equal_keras_random(draw):
    ours = keras.random.SeedGenerator(11)
    theirs = keras.random.SeedGenerator(11)
    fn = getattr(_random, draw)
    reference = getattr(keras.random, draw)
    for _ in range(2):
        np.testing.assert_array_equal(
            fn((3, 4), ours, "float32"), reference((3, 4), seed=theirs)
        )
    # Integer seeds are keras.random's own path.
    np.testing.assert_array_equal(fn((5,), 4), reference((5,), seed=4))
