"""Tests for `keras_segattn.ops._tables.neighbourhood_table`, the bilinear
corner table of RoIAlign: its values and its gradient (the
shifted copies' adjoint, a custom gradient) against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops._tables import neighbourhood_table

OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _np_table(padded):
    """Row (b, y, x): pixels (y, x), (y, x + 1), (y + 1, x), (y + 1, x + 1)."""
    batch, height, width, channels = padded.shape
    rows = []
    for b in range(batch):
        for y in range(height - 1):
            for x in range(width - 1):
                rows.append(
                    np.concatenate(
                        [padded[b, y + dy, x + dx] for dy, dx in OFFSETS]
                    )
                )
    return np.stack(rows).reshape(-1, 4 * channels)


def _np_adjoint(upstream, shape):
    """The gradient of sum(table * upstream) with respect to `padded`."""
    batch, height, width, channels = shape
    grad = np.zeros(shape, upstream.dtype)
    parts = upstream.reshape(batch, height - 1, width - 1, 4, channels)
    for k, (dy, dx) in enumerate(OFFSETS):
        grad[:, dy : dy + height - 1, dx : dx + width - 1] += parts[:, :, :, k]
    return grad


@pytest.mark.parametrize("jit_compile", [False, True])
def test_values_and_gradient_match_numpy(jit_compile):
    rng = np.random.default_rng(0)
    padded = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    upstream = rng.normal(size=(2 * 3 * 4, 12)).astype("float32")

    @tf.function(jit_compile=jit_compile)
    def table_and_gradient(x, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            table = neighbourhood_table(x)
            loss = tf.reduce_sum(table * w)
        return table, tape.gradient(loss, x)

    table, grad = table_and_gradient(tf.constant(padded), tf.constant(upstream))
    np.testing.assert_array_equal(table.numpy(), _np_table(padded))
    np.testing.assert_allclose(
        grad.numpy(), _np_adjoint(upstream, padded.shape), rtol=1e-6, atol=1e-6
    )


def test_unknown_batch_and_size_under_xla():
    rng = np.random.default_rng(1)
    padded = rng.normal(size=(3, 6, 4, 2)).astype("float32")
    spec = tf.TensorSpec((None, None, None, 2), tf.float32)

    @tf.function(jit_compile=True, input_signature=[spec])
    def table_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            table = neighbourhood_table(x)
            loss = tf.reduce_sum(table * table)
        return table, tape.gradient(loss, x)

    table, grad = table_and_gradient(tf.constant(padded))
    expected = _np_table(padded)
    np.testing.assert_array_equal(table.numpy(), expected)
    np.testing.assert_allclose(
        grad.numpy(), _np_adjoint(2 * expected, padded.shape), rtol=1e-6
    )


def test_float16_and_non_finite_values_are_copied():
    padded = np.array(
        [[[[1.0], [np.nan]], [[np.inf], [-0.0]], [[2.0], [3.0]]]], "float16"
    )
    table = neighbourhood_table(tf.constant(padded)).numpy()
    assert table.dtype == np.float16
    np.testing.assert_array_equal(table, _np_table(padded))
