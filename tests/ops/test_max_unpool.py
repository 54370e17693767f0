"""Tests for `keras_segattn.ops.max_unpool`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops import max_pool_with_argmax
from keras_segattn.ops import max_unpool
from tests.references import np_max_pool_with_argmax
from tests.references import np_max_unpool
from tests.testing import check_numeric_gradients


def random_case(shape, pool_size, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype("float32")
    indices = rng.integers(0, pool_size[0] * pool_size[1], size=shape)
    return x, indices.astype("int32")


@pytest.mark.parametrize(
    "pool_size, shape",
    [
        ((2, 2), (2, 4, 4, 3)),
        ((2, 3), (2, 2, 3, 2)),
        ((3, 2), (2, 3, 2, 2)),
        ((1, 1), (2, 3, 3, 1)),
    ],
)
def test_forward_matches_loops(pool_size, shape):
    x, indices = random_case(shape, pool_size)
    out = max_unpool(x, indices, pool_size)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_array_equal(
        np.asarray(out), np_max_unpool(x, indices, pool_size)
    )


def test_int_pool_size_and_int64_indices():
    x, indices = random_case((2, 2, 2, 2), (3, 3), seed=1)
    out = max_unpool(x, indices.astype("int64"), 3)
    assert tuple(out.shape) == (2, 6, 6, 2)
    np.testing.assert_array_equal(
        np.asarray(out), np_max_unpool(x, indices, (3, 3))
    )


def test_known_example():
    x = np.array([[[[5.0]]]], "float32")
    out = np.asarray(max_unpool(x, np.array([[[[2]]]], "int32"), (2, 2)))
    np.testing.assert_array_equal(out[0, :, :, 0], [[0.0, 0.0], [5.0, 0.0]])


def test_out_of_range_indices_leave_their_window_zero():
    x = np.ones((1, 1, 2, 1), "float32")
    indices = np.array([[[[4], [-1]]]], "int32")
    np.testing.assert_array_equal(np.asarray(max_unpool(x, indices)), 0.0)


@pytest.mark.parametrize("pool_size", [(2, 2), (2, 3)])
def test_inverts_pooling_at_the_maxima(pool_size):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, size=(2, 4, 6, 2)).astype("float32")  # with ties
    pooled, indices = max_pool_with_argmax(x, pool_size)
    out = np.asarray(max_unpool(pooled, indices, pool_size))
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, pool_size)
    np.testing.assert_array_equal(
        out, np_max_unpool(ref_pooled, ref_indices, pool_size)
    )


@pytest.mark.parametrize("pool_size", [(2, 2), (2, 3)])
def test_numeric_gradients(pool_size):
    _, indices = random_case((2, 2, 2, 2), pool_size, seed=3)
    x = np.random.default_rng(4).normal(size=(2, 2, 2, 2))
    check_numeric_gradients(lambda v: max_unpool(v, indices, pool_size), [x])


@pytest.mark.parametrize("pool_size", [(2, 2), (2, 3)])
def test_gradient_reads_only_the_recorded_positions(pool_size):
    kh, kw = pool_size
    x, indices = random_case((2, 2, 2, 3), pool_size, seed=5)
    upstream = np.random.default_rng(6).normal(size=(2, 2 * kh, 2 * kw, 3))
    xt = tf.constant(x.astype("float64"))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(max_unpool(xt, indices, pool_size) * upstream)
    grad = tape.gradient(loss, xt).numpy()
    expected = np.zeros(x.shape)
    for b, i, j, c in np.ndindex(*x.shape):
        di, dj = divmod(int(indices[b, i, j, c]), kw)
        expected[b, i, j, c] = upstream[b, i * kh + di, j * kw + dj, c]
    np.testing.assert_allclose(grad, expected)


def test_pool_unpool_gradient_goes_to_the_first_tied_element():
    x = np.ones((2, 4, 4, 2), "float64")  # every window is a 4-way tie
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        pooled, indices = max_pool_with_argmax(xt, (2, 2))
        loss = tf.reduce_sum(max_unpool(pooled, indices, (2, 2)))
    grad = tape.gradient(loss, xt).numpy()
    expected = np.zeros(x.shape)
    expected[:, ::2, ::2] = 1.0
    np.testing.assert_array_equal(grad, expected)


def test_compiles_under_xla_with_unknown_dims():
    @tf.function(
        jit_compile=True,
        input_signature=[
            tf.TensorSpec([None, None, None, 2], tf.float32),
            tf.TensorSpec([None, None, None, 2], tf.int32),
        ],
    )
    def unpool(x, indices):
        return max_unpool(x, indices, (2, 3))

    for shape, seed in [((2, 2, 2, 2), 7), ((1, 3, 1, 2), 8)]:
        x, indices = random_case(shape, (2, 3), seed=seed)
        out = unpool(tf.constant(x), tf.constant(indices))
        np.testing.assert_array_equal(
            out.numpy(), np_max_unpool(x, indices, (2, 3))
        )


def test_static_shapes_are_kept_with_unknown_batch():
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 2, 3, 4], tf.float32),
            tf.TensorSpec([None, 2, 3, 4], tf.int32),
        ]
    )
    def unpool(x, indices):
        out = max_unpool(x, indices, (2, 3))
        assert out.shape.as_list() == [None, 4, 9, 4]
        return out

    unpool.get_concrete_function()


@pytest.mark.parametrize(
    "x_shape, indices_shape, pool_size, match",
    [
        ((2, 2, 2), (2, 2, 2), (2, 2), "Invalid rank for argument `inputs`"),
        (
            (2, 2, 2, 1),
            (2, 2, 2),
            (2, 2),
            "Invalid rank for argument `indices`",
        ),
        (
            (2, 2, 2, 1),
            (2, 2, 3, 1),
            (2, 2),
            "inputs.shape=(2, 2, 2, 1) and indices.shape=(2, 2, 3, 1)",
        ),
        ((2, 2, 2, 1), (2, 2, 2, 1), (0, 2), "Received: pool_size=(0, 2)."),
    ],
)
def test_invalid_values(x_shape, indices_shape, pool_size, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        max_unpool(
            np.zeros(x_shape, "float32"),
            np.zeros(indices_shape, "int32"),
            pool_size,
        )


def test_mismatched_static_shapes_fail_while_tracing():
    fn = tf.function(lambda x, i: max_unpool(x, i))
    with pytest.raises(ValueError, match="Expected the same shape"):
        fn.get_concrete_function(
            tf.TensorSpec([None, 2, 2, 3], tf.float32),
            tf.TensorSpec([None, 2, 2, 4], tf.int32),
        )


def test_float_indices_raise_type_error():
    with pytest.raises(
        TypeError, match=re.escape("Received: indices.dtype=float32")
    ):
        max_unpool(
            np.zeros((1, 2, 2, 1), "float32"),
            np.zeros((1, 2, 2, 1), "float32"),
        )


def test_integer_inputs_raise_type_error():
    with pytest.raises(TypeError, match=re.escape("inputs.dtype=int32")):
        max_unpool(
            np.zeros((1, 2, 2, 1), "int32"), np.zeros((1, 2, 2, 1), "int32")
        )
