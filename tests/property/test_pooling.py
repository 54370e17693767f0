"""Property-based tests of max_pool_with_argmax, max_unpool (and their
layers' dtype checks) and bilinear_upsampling_kernel.

Properties: pooled and indices are [B, ceil(H/kh), ceil(W/kw), C] (exact
division with "valid"), indices int32 in [0, kh*kw); the pooled value is
the input at its index and the maximum of its window (NaN wins: the first
NaN); max_unpool puts every pooled value back at its index and zeros
elsewhere; finite inputs give finite gradients; eager equals XLA exactly;
integer inputs (and float indices) are refused. The bilinear kernel is
[k, k, C, C] with k = 2f - f % 2, diagonal over channels, its stride-f
phases each sum to 1, in the requested floating dtype.
"""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_segattn import layers
from keras_segattn import ops
from tests.property import helpers as h

VALUES = st.one_of(
    h.finite(), st.sampled_from([0.0, 60000.0, -60000.0, h.INF, -h.INF])
)


def _windows(x, kh, kw):
    """[B, H, W, C] (padded with -inf to whole windows) ->
    [B, h, w, kh * kw, C] in row-major window order."""
    b, height, width, c = x.shape
    ph, pw = -height % kh, -width % kw
    x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=-np.inf)
    oh, ow = x.shape[1] // kh, x.shape[2] // kw
    x = x.reshape(b, oh, kh, ow, kw, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, oh, ow, kh * kw, c)


@st.composite
def _pooling(draw, special: bool = False):
    kh, kw = draw(st.sampled_from([(1, 1), (2, 2), (3, 2)]))
    padding = draw(st.sampled_from(["valid", "same"]))
    batch = draw(st.sampled_from([0, 1, 2]))
    if padding == "valid":
        height = kh * draw(st.sampled_from([1, 2]))
        width = kw * draw(st.sampled_from([1, 2]))
    else:
        height, width = draw(st.sampled_from([(1, 1), (3, 5), (4, 4)]))
    channels = draw(st.sampled_from([1, 2]))
    values = st.one_of(VALUES, st.just(h.NAN)) if special else VALUES
    x = draw(h.array((batch, height, width, channels), values))
    return x, (kh, kw), padding


@given(data=_pooling(special=True), dtype=h.float_dtypes)
def test_pool_and_unpool(data, dtype):
    x, pool_size, padding = data
    if dtype in ("float16", "bfloat16"):
        x = np.where(np.isfinite(x), np.clip(x, -6e4, 6e4), x)
    x_t = h.tensor(x, dtype)

    def fn(inputs):
        pooled, indices = ops.max_pool_with_argmax(inputs, pool_size, padding)
        output_size = None if padding == "valid" else x.shape[1:3]
        unpooled = ops.max_unpool(pooled, indices, pool_size, output_size)
        return pooled, indices, unpooled

    key = ("pool", pool_size, padding, x.shape[1:3])
    pooled, indices, unpooled = h.assert_eager_equals_xla(
        fn,
        (x_t,),
        key,
        "float64",  # exact: selections, no arithmetic
    )
    x = h.numpy(x_t).astype("float64")  # the values after the dtype cast
    windows = _windows(x, *pool_size)
    assert pooled.shape == indices.shape == windows[..., 0, :].shape
    assert fn(x_t)[1].dtype == tf.int32 and fn(x_t)[0].dtype == x_t.dtype
    assert ((indices >= 0) & (indices < pool_size[0] * pool_size[1])).all()
    picked = np.take_along_axis(windows, indices[..., None, :], 3)[..., 0, :]
    np.testing.assert_array_equal(pooled, picked)
    has_nan = np.isnan(windows).any(3)
    first_nan = np.argmax(np.isnan(windows), axis=3)
    np.testing.assert_array_equal(indices[has_nan], first_nan[has_nan])
    numbers = np.where(np.isnan(windows), -np.inf, windows)
    np.testing.assert_array_equal(pooled[~has_nan], numbers.max(3)[~has_nan])
    # Unpooling: each pooled value at its index, zeros elsewhere.
    back = _windows(unpooled, *pool_size)
    assert unpooled.shape == x.shape
    slots = np.arange(pool_size[0] * pool_size[1])[None, None, None, :, None]
    chosen = slots == indices[..., None, :]
    expected = np.where(chosen, pooled[..., None, :], 0.0)
    inside = ~np.isneginf(windows) | chosen  # padded slots are cropped
    np.testing.assert_array_equal(back[inside], expected[inside])
    if np.isfinite(x).all():
        h.assert_all_finite(*h.gradients(lambda t: fn(t)[::2], (x_t,), (0,)))


@given(dtype=h.integer_dtypes)
def test_pool_refuses_integers(dtype):
    with pytest.raises(TypeError, match=f"inputs.dtype={dtype}"):
        ops.max_pool_with_argmax(np.zeros((1, 2, 2, 1), dtype))
    with pytest.raises(TypeError, match="inputs.dtype=int32"):
        layers.MaxPoolingWithArgmax2D()(tf.zeros((1, 2, 2, 1), tf.int32))
    with pytest.raises(TypeError, match=f"inputs.dtype={dtype}"):
        ops.max_unpool(
            np.zeros((1, 1, 1, 1), dtype), np.zeros((1, 1, 1, 1), "int32")
        )
    with pytest.raises(TypeError, match="indices.dtype=float32"):
        layers.MaxUnpooling2D()(
            tf.zeros((1, 1, 1, 1)), tf.zeros((1, 1, 1, 1), tf.float32)
        )


@given(
    factor=st.integers(1, 8),
    channels=st.integers(1, 4),
    dtype=st.sampled_from(["float16", "float32", "float64"]),
)
def test_bilinear_upsampling_kernel(factor, channels, dtype):
    kernel = ops.bilinear_upsampling_kernel(factor, channels, dtype)
    size = 2 * factor - factor % 2
    assert kernel.shape == (size, size, channels, channels)
    assert kernel.dtype == np.dtype(dtype)
    assert np.isfinite(kernel).all() and (kernel >= 0).all()
    off_diagonal = ~np.eye(channels, dtype=bool)
    np.testing.assert_array_equal(kernel[:, :, off_diagonal], 0.0)
    # Each output pixel of a stride-`factor` transposed convolution
    # receives the taps of one phase (r, c): r, r + factor, ... along each
    # axis. They sum to 1, so a constant image stays constant inside.
    filt = kernel[:, :, 0, 0].astype("float64")
    phases = [
        filt[r::factor, c::factor].sum()
        for r in range(factor)
        for c in range(factor)
    ]
    np.testing.assert_allclose(phases, 1.0, rtol=h.TOLERANCE[dtype])


@given(dtype=st.sampled_from(["int32", "uint8", "bool"]))
def test_bilinear_upsampling_kernel_refuses_non_float_dtypes(dtype):
    with pytest.raises(TypeError, match=f"dtype={dtype}"):
        ops.bilinear_upsampling_kernel(2, 1, dtype)
