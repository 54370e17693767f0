"""Tests for `keras_segattn.ops.max_pool_with_argmax`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops import max_pool_with_argmax
from tests.references import np_max_pool_with_argmax
from tests.testing import check_numeric_gradients


def dtype_of(x):
    return keras.backend.standardize_dtype(x.dtype)


def np_pool_gradient(x, pool_size, upstream):
    """Loop reference: d(sum(pooled * upstream)) / dx, argmax element only."""
    kh, kw = pool_size
    _, indices = np_max_pool_with_argmax(x, pool_size)
    grad = np.zeros(x.shape, "float64")
    batch, out_h, out_w, channels = indices.shape
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                for c in range(channels):
                    di, dj = divmod(int(indices[b, i, j, c]), kw)
                    grad[b, i * kh + di, j * kw + dj, c] = upstream[b, i, j, c]
    return grad


def distinct_values(shape, seed=0):
    """A permutation of well-separated values (no ties, no kinks nearby)."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 - 1.0


@pytest.mark.parametrize(
    "pool_size, shape",
    [
        ((2, 2), (2, 8, 8, 3)),
        ((2, 3), (2, 4, 6, 2)),
        ((3, 2), (2, 6, 4, 2)),
        ((1, 1), (2, 3, 3, 1)),
        ((4, 4), (1, 8, 4, 2)),
    ],
)
def test_forward_matches_loops(pool_size, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    pooled, indices = max_pool_with_argmax(x, pool_size)
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, pool_size)
    assert dtype_of(indices) == "int32"
    assert dtype_of(pooled) == "float32"
    np.testing.assert_array_equal(np.asarray(pooled), ref_pooled)
    np.testing.assert_array_equal(np.asarray(indices), ref_indices)


def test_int_pool_size():
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 2)).astype("float32")
    pooled, indices = max_pool_with_argmax(x, 3)
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, (3, 3))
    np.testing.assert_array_equal(np.asarray(pooled), ref_pooled)
    np.testing.assert_array_equal(np.asarray(indices), ref_indices)


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_dtypes(dtype):
    x = np.random.default_rng(2).normal(size=(2, 4, 6, 3)).astype(dtype)
    pooled, indices = max_pool_with_argmax(x, (2, 3))
    assert dtype_of(pooled) == dtype
    assert dtype_of(indices) == "int32"
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, (2, 3))
    np.testing.assert_array_equal(np.asarray(pooled), ref_pooled)
    np.testing.assert_array_equal(np.asarray(indices), ref_indices)


@pytest.mark.parametrize("pool_size", [(2, 2), (2, 3)])
def test_ties_go_to_the_first_element(pool_size):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(2, 6, 6, 3)).astype("float32")
    pooled, indices = max_pool_with_argmax(x, pool_size)
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, pool_size)
    np.testing.assert_array_equal(np.asarray(pooled), ref_pooled)
    np.testing.assert_array_equal(np.asarray(indices), ref_indices)
    # All-equal windows (and -0.0 == 0.0) pick index 0.
    constant = np.zeros((2, 4, 6, 2), "float32")
    constant[:, ::2] = -0.0
    _, indices = max_pool_with_argmax(constant, pool_size)
    np.testing.assert_array_equal(np.asarray(indices), 0)


def test_known_example():
    x = np.array([[1.0, 5.0, 2.0, 2.0], [5.0, 3.0, 0.0, 1.0]], "float32")
    pooled, indices = max_pool_with_argmax(x.reshape(1, 2, 4, 1), (2, 2))
    np.testing.assert_array_equal(np.asarray(pooled)[0, 0, :, 0], [5.0, 2.0])
    np.testing.assert_array_equal(np.asarray(indices)[0, 0, :, 0], [1, 0])


@pytest.mark.parametrize("pool_size", [(2, 2), (2, 3)])
def test_numeric_gradients(pool_size):
    x = distinct_values((2, 4, 6, 2))
    check_numeric_gradients(
        lambda v: max_pool_with_argmax(v, pool_size)[0], [x]
    )


@pytest.mark.parametrize("pool_size", [(2, 2), (2, 3)])
def test_gradient_only_at_the_argmax_even_with_ties(pool_size):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 2, size=(2, 4, 6, 2)).astype("float64")
    out_shape = (2, 4 // pool_size[0], 6 // pool_size[1], 2)
    upstream = rng.normal(size=out_shape)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        pooled, _ = max_pool_with_argmax(xt, pool_size)
        loss = tf.reduce_sum(pooled * upstream)
    grad = tape.gradient(loss, xt).numpy()
    np.testing.assert_allclose(grad, np_pool_gradient(x, pool_size, upstream))


def test_compiles_under_xla_with_unknown_dims():
    @tf.function(
        jit_compile=True,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
    )
    def pool(x):
        return max_pool_with_argmax(x, (2, 3))

    x = np.random.default_rng(5).normal(size=(2, 4, 6, 3)).astype("float32")
    pooled, indices = pool(tf.constant(x))
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, (2, 3))
    np.testing.assert_array_equal(pooled.numpy(), ref_pooled)
    np.testing.assert_array_equal(indices.numpy(), ref_indices)
    assert indices.dtype == tf.int32
    # The same concrete function serves another batch and size.
    x = np.random.default_rng(6).normal(size=(1, 6, 3, 3)).astype("float32")
    pooled, indices = pool(tf.constant(x))
    np.testing.assert_array_equal(
        indices.numpy(), np_max_pool_with_argmax(x, (2, 3))[1]
    )


def test_static_shapes_are_kept_with_unknown_batch():
    @tf.function(input_signature=[tf.TensorSpec([None, 4, 6, 3], tf.float32)])
    def pool(x):
        pooled, indices = max_pool_with_argmax(x, (2, 3))
        assert pooled.shape.as_list() == [None, 2, 2, 3]
        assert indices.shape.as_list() == [None, 2, 2, 3]
        return pooled

    pool.get_concrete_function()


@pytest.mark.parametrize(
    "shape, pool_size, match",
    [
        ((2, 4, 4), (2, 2), "Invalid rank for argument `inputs`"),
        ((2, 5, 4, 1), (2, 2), "divisible by pool size (2, 2)"),
        ((2, 4, 6, 1), (2, 4), "Received: inputs.shape=(2, 4, 6, 1)"),
        ((2, 4, 4, 1), 0, "Received: pool_size=0."),
        ((2, 4, 4, 1), (2, -1), "Received: pool_size=(2, -1)."),
        ((2, 4, 4, 1), (2, 2, 2), "Invalid value for argument `pool_size`"),
    ],
)
def test_invalid_values(shape, pool_size, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        max_pool_with_argmax(np.zeros(shape, "float32"), pool_size)


def test_non_divisible_static_size_fails_while_tracing():
    spec = tf.TensorSpec([None, 5, 4, 1], tf.float32)
    with pytest.raises(ValueError, match="divisible"):
        tf.function(lambda x: max_pool_with_argmax(x)).get_concrete_function(
            spec
        )


def test_integer_inputs_raise_type_error():
    with pytest.raises(
        TypeError, match=re.escape("Received: inputs.dtype=int32")
    ):
        max_pool_with_argmax(np.zeros((1, 2, 2, 1), "int32"))
