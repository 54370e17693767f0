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


# --- output_size (after padding="same" pooling) -----------------------------


@pytest.mark.parametrize(
    "pool_size, shape",
    [
        ((2, 2), (2, 5, 7, 3)),
        ((2, 2), (1, 45, 60, 2)),
        ((3, 2), (2, 7, 5, 2)),
        ((2, 3), (2, 4, 6, 2)),
    ],
)
def test_output_size_inverts_same_pooling(pool_size, shape):
    rng = np.random.default_rng(20)
    x = rng.integers(0, 3, size=shape).astype("float32")  # with ties
    pooled, indices = max_pool_with_argmax(x, pool_size, padding="same")
    out = max_unpool(pooled, indices, pool_size, output_size=shape[1:3])
    assert tuple(out.shape) == shape
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, pool_size, "same")
    expected = np_max_unpool(ref_pooled, ref_indices, pool_size, shape[1:3])
    np.testing.assert_array_equal(np.asarray(out), expected)
    # Every window maximum is back in place; the rest is zero.
    np.testing.assert_array_equal(
        np.asarray(out)[expected != 0], x[expected != 0]
    )


def test_output_size_drops_only_the_padded_rows_and_columns():
    x, indices = random_case((2, 3, 4, 2), (2, 2), seed=21)
    full = np.asarray(max_unpool(x, indices, 2))
    out = max_unpool(x, indices, 2, output_size=(5, 7))
    np.testing.assert_array_equal(np.asarray(out), full[:, :5, :7])
    np.testing.assert_array_equal(
        np.asarray(out), np_max_unpool(x, indices, (2, 2), (5, 7))
    )
    # The default and the full size agree.
    np.testing.assert_array_equal(
        np.asarray(max_unpool(x, indices, 2, output_size=(6, 8))), full
    )


@pytest.mark.parametrize("pool_size", [(2, 2), (3, 2)])
def test_output_size_gradient_reads_only_kept_positions(pool_size):
    kh, kw = pool_size
    x, indices = random_case((2, 3, 3, 2), pool_size, seed=22)
    size = (3 * kh - 1, 3 * kw - 1)
    upstream = np.random.default_rng(23).normal(size=(2, *size, 2))
    xt = tf.constant(x.astype("float64"))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = max_unpool(xt, indices, pool_size, output_size=size)
        loss = tf.reduce_sum(out * upstream)
    grad = tape.gradient(loss, xt).numpy()
    expected = np.zeros(x.shape)
    for b, i, j, c in np.ndindex(*x.shape):
        di, dj = divmod(int(indices[b, i, j, c]), kw)
        row, col = i * kh + di, j * kw + dj
        if row < size[0] and col < size[1]:
            expected[b, i, j, c] = upstream[b, row, col, c]
    np.testing.assert_allclose(grad, expected)


def test_pool_unpool_round_trip_gradient_at_odd_sizes():
    x = np.random.default_rng(24).permutation(2 * 5 * 7 * 2)
    x = x.reshape(2, 5, 7, 2).astype("float64")
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        pooled, indices = max_pool_with_argmax(xt, 2, padding="same")
        loss = tf.reduce_sum(max_unpool(pooled, indices, 2, output_size=(5, 7)))
    grad = tape.gradient(loss, xt).numpy()
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, (2, 2), "same")
    mask = np_max_unpool(np.ones_like(ref_pooled), ref_indices, (2, 2), (5, 7))
    np.testing.assert_array_equal(grad, mask)
    assert mask.sum() == ref_pooled.size  # one position per window


def test_output_size_eager_equals_xla_static_and_dynamic():
    x, indices = random_case((2, 3, 4, 2), (2, 2), seed=25)
    eager = np.asarray(max_unpool(x, indices, 2, output_size=(5, 7)))

    @tf.function(jit_compile=True)
    def static(x, indices):
        out = max_unpool(x, indices, 2, output_size=(5, 7))
        assert out.shape.as_list() == [2, 5, 7, 2]
        return out

    @tf.function(
        jit_compile=True,
        input_signature=[
            tf.TensorSpec([None, None, None, 2], tf.float32),
            tf.TensorSpec([None, None, None, 2], tf.int32),
            tf.TensorSpec([None, None, None, 2], tf.float32),
        ],
    )
    def dynamic(x, indices, reference):
        size = tf.shape(reference)[1:3]
        return max_unpool(x, indices, 2, output_size=(size[0], size[1]))

    np.testing.assert_array_equal(static(x, indices).numpy(), eager)
    reference = tf.zeros((2, 5, 7, 2))
    np.testing.assert_array_equal(dynamic(x, indices, reference).numpy(), eager)


@pytest.mark.parametrize(
    "output_size, match",
    [
        ((4, 8), "height in [5, 6] and width in [7, 8]"),  # drops a window
        ((5, 9), "Received: output_size=(5, 9)"),  # beyond the windows
        ((7, 8), "larger would add rows or columns"),
        (0, "Received: output_size=0."),
        ((5, -1), "Received: output_size=(5, -1)."),
        ((5, 7, 1), "Invalid value for argument `output_size`"),
    ],
)
def test_invalid_output_size(output_size, match):
    x, indices = random_case((2, 3, 4, 2), (2, 2), seed=26)
    with pytest.raises(ValueError, match=re.escape(match)):
        max_unpool(x, indices, 2, output_size=output_size)


def test_invalid_output_size_fails_while_tracing():
    fn = tf.function(lambda x, i: max_unpool(x, i, 2, output_size=(3, 4)))
    with pytest.raises(ValueError, match="`output_size`"):
        fn.get_concrete_function(
            tf.TensorSpec([None, 3, 2, 1], tf.float32),
            tf.TensorSpec([None, 3, 2, 1], tf.int32),
        )


# --- indices_format="flat" (tf.nn.max_pool_with_argmax) ---------------------


@pytest.mark.parametrize("include_batch_in_index", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (2, 4, 6, 2)])
def test_flat_tf_indices_equal_local_ones(shape, include_batch_in_index):
    x = np.random.default_rng(27).normal(size=shape).astype("float32")
    padding = "SAME" if shape[1] % 2 else "VALID"
    tf_pooled, tf_indices = tf.nn.max_pool_with_argmax(
        x, 2, 2, padding, include_batch_in_index=include_batch_in_index
    )
    pooled, indices = max_pool_with_argmax(x, 2, padding=padding)
    np.testing.assert_array_equal(tf_pooled.numpy(), np.asarray(pooled))
    expected = max_unpool(pooled, indices, 2, output_size=shape[1:3])
    out = max_unpool(
        tf_pooled, tf_indices, 2, output_size=shape[1:3], indices_format="flat"
    )
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    if padding == "VALID":  # no output_size needed without padding
        out = max_unpool(tf_pooled, tf_indices, 2, indices_format="flat")
        np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


def test_flat_indices_outside_their_window_leave_it_zero():
    x = np.ones((1, 1, 2, 1), "float32")
    # Output 2x4x1: window 0 covers flat 0, 1, 4, 5; 6 belongs to window 1.
    out = max_unpool(x, np.array([[[[6], [6]]]]), 2, indices_format="flat")
    np.testing.assert_array_equal(
        np.asarray(out)[0, :, :, 0], [[0, 0, 0, 0], [0, 0, 1, 0]]
    )


def test_invalid_indices_format_and_flat_windows():
    x, indices = random_case((1, 3, 3, 1), (3, 3), seed=28)
    with pytest.raises(
        ValueError, match=re.escape("Received: indices_format='tf'")
    ):
        max_unpool(x, indices, 3, indices_format="tf")
    # TF's "SAME" pads 7 -> 9 with one row on top: other windows.
    with pytest.raises(ValueError, match=re.escape("output_size=(7, 9)")):
        max_unpool(x, indices, 3, output_size=(7, 9), indices_format="flat")


def test_output_size_matches_torch_max_unpool2d():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(29)
    for shape in [(2, 5, 7, 3), (1, 45, 60, 2)]:
        x = rng.normal(size=shape)
        xt = torch.tensor(x.transpose(0, 3, 1, 2))
        pool = torch.nn.MaxPool2d(2, 2, ceil_mode=True, return_indices=True)
        pooled_t, flat = pool(xt)
        pooled_t = pooled_t.detach().requires_grad_(True)
        expected = torch.nn.functional.max_unpool2d(
            pooled_t, flat, 2, 2, output_size=shape[1:3]
        )
        upstream = rng.normal(size=expected.shape)
        (expected * torch.tensor(upstream)).sum().backward()
        pooled, indices = max_pool_with_argmax(tf.constant(x), 2, "same")
        with tf.GradientTape() as tape:
            tape.watch(pooled)
            out = max_unpool(pooled, indices, 2, output_size=shape[1:3])
            loss = tf.reduce_sum(out * upstream.transpose(0, 2, 3, 1))
        np.testing.assert_array_equal(
            out.numpy(), expected.detach().numpy().transpose(0, 2, 3, 1)
        )
        np.testing.assert_array_equal(
            tape.gradient(loss, pooled).numpy(),
            pooled_t.grad.numpy().transpose(0, 2, 3, 1),
        )
