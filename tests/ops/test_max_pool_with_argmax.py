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


def np_pool_gradient(x, pool_size, upstream, padding="valid"):
    """Loop reference: d(sum(pooled * upstream)) / dx, argmax element only."""
    kh, kw = pool_size
    _, indices = np_max_pool_with_argmax(x, pool_size, padding)
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


# --- padding="same" (ceil mode) ---------------------------------------------


@pytest.mark.parametrize(
    "pool_size, shape, pooled_hw",
    [
        ((2, 2), (2, 5, 7, 3), (3, 4)),
        ((2, 2), (1, 45, 60, 2), (23, 30)),
        ((3, 2), (2, 7, 5, 2), (3, 3)),
        ((2, 3), (2, 4, 6, 2), (2, 2)),  # divisible: same as "valid"
        ((4, 4), (1, 5, 6, 1), (2, 2)),  # last windows one row / 2 cols
    ],
)
def test_same_padding_matches_ceil_mode_loops(pool_size, shape, pooled_hw):
    x = np.random.default_rng(7).normal(size=shape).astype("float32")
    pooled, indices = max_pool_with_argmax(x, pool_size, padding="same")
    assert tuple(pooled.shape) == (shape[0], *pooled_hw, shape[3])
    assert dtype_of(indices) == "int32"
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, pool_size, "same")
    np.testing.assert_array_equal(np.asarray(pooled), ref_pooled)
    np.testing.assert_array_equal(np.asarray(indices), ref_indices)
    if shape[1] % pool_size[0] == 0 and shape[2] % pool_size[1] == 0:
        valid = max_pool_with_argmax(x, pool_size, padding="valid")
        np.testing.assert_array_equal(np.asarray(valid[1]), ref_indices)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_padding_never_wins_even_below_every_value(dtype):
    # All-negative and -inf inputs: the -inf padding neither wins nor ties
    # before the real top-left element.
    x = -np.abs(np.random.default_rng(8).normal(size=(2, 3, 5, 2))) - 1e3
    x[0] = -np.inf
    x = tf.constant(x.astype("float32"), dtype=dtype)
    pooled, indices = max_pool_with_argmax(x, (2, 2), padding="same")
    ref_pooled, ref_indices = np_max_pool_with_argmax(
        x.numpy().astype("float64"), (2, 2), "same"
    )
    assert dtype_of(pooled) == dtype
    np.testing.assert_array_equal(np.asarray(indices), ref_indices)
    np.testing.assert_array_equal(
        np.asarray(tf.cast(pooled, "float64")), ref_pooled
    )
    # Last row / column of windows: the winner is always inside the input.
    assert np.all(ref_indices[:, -1] < 2)  # one real row (height 3)
    assert np.all(ref_indices[:, :, -1] % 2 == 0)  # one real col (width 5)


def test_same_padding_ties_go_to_the_first_element():
    rng = np.random.default_rng(9)
    x = rng.integers(0, 2, size=(2, 5, 7, 3)).astype("float32")
    pooled, indices = max_pool_with_argmax(x, (2, 2), padding="same")
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, (2, 2), "same")
    np.testing.assert_array_equal(np.asarray(pooled), ref_pooled)
    np.testing.assert_array_equal(np.asarray(indices), ref_indices)


@pytest.mark.parametrize(
    "pool_size, shape", [((2, 2), (2, 5, 7, 2)), ((3, 2), (2, 7, 4, 1))]
)
def test_same_padding_gradients_go_to_the_argmax(pool_size, shape):
    rng = np.random.default_rng(10)
    x = rng.integers(0, 2, size=shape).astype("float64")  # with ties
    pooled_ref, _ = np_max_pool_with_argmax(x, pool_size, "same")
    upstream = rng.normal(size=pooled_ref.shape)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        pooled, _ = max_pool_with_argmax(xt, pool_size, padding="same")
        loss = tf.reduce_sum(pooled * upstream)
    grad = tape.gradient(loss, xt).numpy()
    np.testing.assert_allclose(
        grad, np_pool_gradient(x, pool_size, upstream, "same")
    )
    check_numeric_gradients(
        lambda v: max_pool_with_argmax(v, pool_size, padding="same")[0],
        [distinct_values(shape, seed=11)],
    )


def test_same_padding_eager_equals_xla_with_unknown_dims():
    @tf.function(
        jit_compile=True,
        input_signature=[tf.TensorSpec([None, None, None, 2], tf.float32)],
    )
    def pool(x):
        return max_pool_with_argmax(x, (2, 2), padding="same")

    @tf.function(jit_compile=True)
    def pool_grad(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            pooled, _ = max_pool_with_argmax(x, (2, 2), padding="same")
            loss = tf.reduce_sum(pooled * upstream)
        return tape.gradient(loss, x)

    for shape, seed in [((2, 5, 7, 2), 12), ((1, 8, 6, 2), 13)]:
        x = tf.constant(distinct_values(shape, seed).astype("float32"))
        eager_pooled, eager_indices = max_pool_with_argmax(x, 2, "same")
        pooled, indices = pool(x)
        np.testing.assert_array_equal(pooled.numpy(), eager_pooled)
        np.testing.assert_array_equal(indices.numpy(), eager_indices)
        upstream = tf.ones_like(eager_pooled)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(max_pool_with_argmax(x, 2, "same")[0])
        np.testing.assert_array_equal(
            pool_grad(x, upstream).numpy(), tape.gradient(loss, x).numpy()
        )


def test_same_padding_static_shapes_with_unknown_batch():
    @tf.function(input_signature=[tf.TensorSpec([None, 45, 7, 3], tf.float32)])
    def pool(x):
        pooled, indices = max_pool_with_argmax(x, (2, 2), padding="same")
        assert pooled.shape.as_list() == [None, 23, 4, 3]
        assert indices.shape.as_list() == [None, 23, 4, 3]
        return pooled

    pool.get_concrete_function()


def test_same_padding_matches_tf_nn_max_pool_with_argmax_for_2x2():
    # TF's "SAME" pads the bottom/right by at most one for 2x2: same windows
    # (its indices are flat; only the pooled values are compared here).
    x = np.random.default_rng(14).normal(size=(2, 5, 7, 3)).astype("float32")
    expected, _ = tf.nn.max_pool_with_argmax(x, 2, 2, "SAME")
    pooled, _ = max_pool_with_argmax(x, 2, padding="same")
    np.testing.assert_array_equal(np.asarray(pooled), expected.numpy())


@pytest.mark.parametrize("padding", ["full", "causal", None, 2])
def test_invalid_padding(padding):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Invalid value for argument `padding`. Expected one of "
            f"['valid', 'same']. Received: padding={padding!r}."
        ),
    ):
        max_pool_with_argmax(np.zeros((1, 4, 4, 1), "float32"), 2, padding)


def test_padding_is_case_insensitive_and_valid_still_checks_divisibility():
    x = np.random.default_rng(15).normal(size=(1, 5, 4, 1)).astype("float32")
    pooled, _ = max_pool_with_argmax(x, 2, padding="SAME")
    assert tuple(pooled.shape) == (1, 3, 2, 1)
    with pytest.raises(ValueError, match=re.escape("divisible by pool size")):
        max_pool_with_argmax(x, 2, padding="valid")


def test_same_padding_matches_torch_ceil_mode():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(16)
    for shape in [(2, 5, 7, 3), (1, 45, 60, 2), (2, 4, 6, 1)]:
        x = rng.normal(size=shape)
        pool = torch.nn.MaxPool2d(2, 2, ceil_mode=True, return_indices=True)
        xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        expected, flat = pool(xt)
        upstream = rng.normal(size=expected.shape)
        (expected * torch.tensor(upstream)).sum().backward()
        xtf = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xtf)
            pooled, indices = max_pool_with_argmax(xtf, 2, padding="same")
            loss = tf.reduce_sum(
                pooled * upstream.transpose(0, 2, 3, 1).astype("float64")
            )
        np.testing.assert_array_equal(
            pooled.numpy(), expected.detach().numpy().transpose(0, 2, 3, 1)
        )
        np.testing.assert_array_equal(
            tape.gradient(loss, xtf).numpy(),
            xt.grad.numpy().transpose(0, 2, 3, 1),
        )
        # torch's flat index y * W + x, as local window positions.
        width = shape[2]
        flat = flat.numpy().transpose(0, 2, 3, 1)
        rows, cols = flat // width, flat % width
        out_i = np.arange(flat.shape[1]).reshape(1, -1, 1, 1)
        out_j = np.arange(flat.shape[2]).reshape(1, 1, -1, 1)
        local = (rows - 2 * out_i) * 2 + (cols - 2 * out_j)
        np.testing.assert_array_equal(indices.numpy(), local)


def test_nan_wins_its_window_eagerly_and_under_xla():
    # Regression (issue 21): a NaN window gave the last element eagerly
    # and another one under XLA. Now the first NaN wins (torch: NaN wins).
    x = np.array(
        [
            [
                [[1.0], [np.nan], [-np.inf], [-np.inf]],
                [[np.nan], [2.0], [-np.inf], [-np.inf]],
            ]
        ],
        "float32",
    )  # [1, 2, 4, 1]: windows [1, nan; nan, 2] and all -inf
    jitted = tf.function(max_pool_with_argmax, jit_compile=True)
    for fn in (max_pool_with_argmax, jitted):
        pooled, indices = fn(x, 2)
        pooled, indices = np.asarray(pooled), np.asarray(indices)
        assert np.isnan(pooled[0, 0, 0, 0]) and indices[0, 0, 0, 0] == 1
        assert pooled[0, 0, 1, 0] == -np.inf and indices[0, 0, 1, 0] == 0


def test_empty_batch():
    # Regression (issue 21): keras.ops.max refuses empty tensors eagerly.
    pooled, indices = max_pool_with_argmax(np.zeros((0, 4, 4, 2), "f4"), 2)
    assert pooled.shape == indices.shape == (0, 2, 2, 2)
