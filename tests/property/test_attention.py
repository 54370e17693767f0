"""Property-based tests of the attention ops and layers: draw_filterbank
(DRAW), BahdanauAttention and GravesWindowAttention.

Properties: documented shapes (empty batches included); finite outputs
for every finite input, huge ones included, and finite gradients for
moderate ones; DRAW filter rows are non-negative and sum to at most 1;
attention weights are a distribution over the unmasked positions, all
zero (with a zero context) for an all-masked sequence; NaN/Inf at masked
positions are ignored; eager equals XLA; integer inputs are refused.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_segattn import layers
from keras_segattn import ops
from tests.property import helpers as h

HUGE = st.sampled_from([1e30, -1e30, 1e4, -1e4, 100.0, -100.0])


@given(
    batch=st.sampled_from([0, 1, 3]),
    image_size=st.sampled_from([(1, 1), (4, 6)]),
    glimpse=st.sampled_from([2, 3]),
    dtype=h.float_dtypes,
    huge=st.booleans(),
    data=st.data(),
)
def test_draw_filterbank(batch, image_size, glimpse, dtype, huge, data):
    elements = st.one_of(h.finite(10.0), HUGE) if huge else h.finite(10.0)
    params = data.draw(h.array((batch, 5), elements))
    if dtype in ("float16", "bfloat16"):
        params = np.clip(params, -6e4, 6e4)
    params_t = h.tensor(params, dtype)

    def fn(p):
        return ops.draw_filterbank(p, image_size, glimpse)

    key = ("draw", image_size, glimpse)
    fx, fy, gamma = h.assert_eager_equals_xla(fn, (params_t,), key, "float32")
    height, width = image_size
    assert fx.shape == (batch, glimpse, width)
    assert fy.shape == (batch, glimpse, height) and gamma.shape == (batch,)
    h.assert_all_finite(fx, fy, gamma)
    for bank in (fx, fy):
        assert (bank >= 0).all() and (bank.sum(-1) <= 1.0 + 1e-5).all()
    if not huge:  # gradients are promised for moderate parameters only
        h.assert_all_finite(*h.gradients(fn, (params_t,), (0,)))


def test_draw_filterbank_nan_stays_in_its_batch_element():
    params = np.zeros((2, 5), "float32")
    params[0, 0] = np.nan
    fx, fy, gamma = (np.asarray(t) for t in ops.draw_filterbank(params, 4, 2))
    assert np.isnan(fx[0]).all() and np.isfinite(fx[1]).all()
    assert np.isfinite(fy).all() and np.isfinite(gamma).all()


@st.composite
def _sequence(draw, dims):
    batch = draw(st.sampled_from([0, 1, 2]))
    length = draw(st.sampled_from([1, 3]))
    huge = draw(st.booleans())
    elements = st.one_of(h.finite(5.0), HUGE) if huge else h.finite(5.0)
    arrays = [draw(h.array((batch, *d(length)), elements)) for d in dims]
    # Masks with all-masked rows, all-unmasked rows and a mix.
    mask = draw(h.array((batch, length), st.booleans())).astype(bool)
    if batch:
        mask[0] = draw(st.sampled_from([False, True]))
    return arrays, mask, huge


def _weighted(arrays, mask, bad):
    """Copies of `arrays` (the value-like ones) with NaN/Inf written at the
    masked positions."""
    out = []
    for a in arrays:
        a = a.copy()
        a[~mask] = bad
        out.append(a)
    return out


@pytest.mark.parametrize("normalize", [False, True])
@given(
    data=_sequence([lambda t: (3,), lambda t: (t, 4)]),
    single_step=st.booleans(),
    dtype=st.sampled_from(["float32", "float64", "mixed_float16"]),
    bad=h.non_finite(),
)
def test_bahdanau_attention(normalize, data, single_step, dtype, bad):
    (query, value), mask, huge = data
    if not single_step:
        query = np.repeat(query[:, None], 2, axis=1)  # [B, Tq = 2, Dq]
    if dtype == "mixed_float16":
        query, value = np.clip(query, -6e4, 6e4), np.clip(value, -6e4, 6e4)
    layer = layers.BahdanauAttention(4, normalize=normalize, dtype=dtype)
    variable = "float64" if dtype == "float64" else "float32"
    query_t, value_t = h.tensor(query, variable), h.tensor(value, variable)

    def fn(q, v, m):
        return layer(q, v, mask=m, return_attention_scores=True)

    key = ("bahdanau", normalize, single_step, dtype, id(layer))
    tolerance = "float16" if dtype == "mixed_float16" else "float32"
    context, weights = h.assert_eager_equals_xla(
        fn, (query_t, value_t, mask), key, tolerance, scale=10.0
    )
    batch, length = mask.shape
    steps = () if single_step else (2,)
    assert context.shape == (batch, *steps, 4)
    assert weights.shape == (batch, *steps, length)
    h.assert_all_finite(weights)
    if not huge or dtype != "mixed_float16":  # float16 overflows at 65504
        h.assert_all_finite(context)
    masked_rows = ~mask.any(-1)
    weights = weights if single_step else weights[:, 0]
    np.testing.assert_array_equal(weights[~mask], 0.0)
    np.testing.assert_array_equal(weights[masked_rows], 0.0)
    np.testing.assert_allclose(weights[~masked_rows].sum(-1), 1.0, rtol=1e-3)
    context_rows = context if single_step else context[:, 0]
    np.testing.assert_array_equal(context_rows[masked_rows], 0.0)
    # NaN/Inf values at masked positions change nothing.
    (dirty,) = _weighted([value], mask, bad)
    dirty_context, _ = fn(query_t, h.tensor(dirty, variable), mask)
    np.testing.assert_array_equal(h.numpy(dirty_context), context)
    if not huge:
        h.assert_all_finite(
            *h.gradients(
                lambda q, v: fn(q, v, mask), (query_t, value_t), (0, 1)
            )
        )


@given(
    data=_sequence([lambda t: (3,), lambda t: (2,), lambda t: (t, 4)]),
    bad=h.non_finite(),
)
def test_graves_window_attention(data, bad):
    (state, kappa, sequence), mask, huge = data
    layer = layers.GravesWindowAttention(2)
    args = [h.tensor(a, "float32") for a in (state, kappa, sequence)]

    def fn(s, k, c, m):
        return layer(s, k, c, mask=m)

    key = ("graves", id(layer))
    window, new_kappa, phi = h.assert_eager_equals_xla(
        fn, (*args, mask), key, "float32", scale=1e3
    )
    batch, length = mask.shape
    assert window.shape == (batch, 4) and new_kappa.shape == (batch, 2)
    assert phi.shape == (batch, length)
    np.testing.assert_array_equal(phi[~mask], 0.0)
    np.testing.assert_array_equal(window[~mask.any(-1)], 0.0)
    assert (phi >= 0).all()
    assert (new_kappa >= np.asarray(args[1]) - 1e-6 * np.abs(kappa)).all()
    h.assert_all_finite(new_kappa, phi)  # clamped exponentials
    if not huge:  # a window of 1e30 features times phi may overflow
        h.assert_all_finite(window)
        grads = h.gradients(lambda s, k, c: fn(s, k, c, mask), args, (0, 1, 2))
        h.assert_all_finite(*grads)
    (dirty,) = _weighted([sequence], mask, bad)
    dirty_window, _, _ = fn(args[0], args[1], h.tensor(dirty, "float32"), mask)
    np.testing.assert_array_equal(h.numpy(dirty_window), window)


@given(dtype=h.integer_dtypes)
def test_attention_layers_refuse_integers(dtype):
    ids = keras.ops.zeros((1, 3, 4), dtype)
    with pytest.raises(TypeError, match=f"value.dtype={dtype}"):
        layers.BahdanauAttention(4)(tf.zeros((1, 2)), ids)
    with pytest.raises(TypeError, match=f"sequence.dtype={dtype}"):
        layers.GravesWindowAttention(2)(tf.zeros((1, 2)), tf.zeros((1, 2)), ids)
    with pytest.raises(TypeError, match=f"params.dtype={dtype}"):
        ops.draw_filterbank(np.zeros((1, 5), dtype), 4, 2)
