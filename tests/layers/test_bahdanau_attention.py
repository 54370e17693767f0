"""Tests for `keras_segattn.layers.BahdanauAttention`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import BahdanauAttention
from tests.testing import run_layer_checks


def np_bahdanau(layer, query, value, key=None, mask=None):
    """Loop reference with the layer's own weights: (context, weights)."""
    key = value if key is None else key
    w1 = layer.key_kernel.numpy().astype("float64")
    w2 = layer.query_kernel.numpy().astype("float64")
    v = layer.score_vector.numpy().astype("float64")
    bias = np.zeros(layer.units)
    if layer.normalize:
        v = float(layer.score_scale.numpy()) * v / np.linalg.norm(v)
        bias = layer.score_bias.numpy().astype("float64")
    single = query.ndim == 2
    queries = query[:, None] if single else query
    batch, steps = queries.shape[:2]
    positions = value.shape[1]
    if mask is None:
        mask = np.ones((batch, positions), bool)
    contexts = np.zeros((batch, steps, value.shape[-1]))
    weights = np.zeros((batch, steps, positions))
    for b in range(batch):
        for i in range(steps):
            scores = np.array(
                [
                    v @ np.tanh(key[b, s] @ w1 + queries[b, i] @ w2 + bias)
                    for s in range(positions)
                ]
            )
            keep = mask[b]
            if keep.any():
                e = np.exp(scores[keep] - scores[keep].max())
                weights[b, i, keep] = e / e.sum()
            contexts[b, i] = weights[b, i] @ value[b]
    if single:
        return contexts[:, 0], weights[:, 0]
    return contexts, weights


def _data(query_rank=2, seed=0):
    rng = np.random.default_rng(seed)
    query_shape = (3, 5) if query_rank == 2 else (3, 4, 5)
    return {
        "query": rng.normal(size=query_shape).astype("float32"),
        "value": rng.normal(size=(3, 7, 6)).astype("float32"),
    }


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("query_rank", [2, 3])
def test_layer_checks(tmp_path, normalize, query_rank):
    inputs = _data(query_rank)
    context_shape = (3, 6) if query_rank == 2 else (3, 4, 6)
    run_layer_checks(
        BahdanauAttention,
        {"units": 8, "normalize": normalize},
        inputs,
        tmp_path=tmp_path,
        expected_output_shape=context_shape,
        expected_num_trainable_weights=5 if normalize else 3,
        reference_fn=lambda layer, x: np_bahdanau(
            layer, x["query"], x["value"]
        )[0],
        atol=1e-5,
        bad_init_kwargs=[
            ({"units": 0}, ValueError, re.escape("Received: units=0")),
            ({"units": 4, "normalize": "yes"}, TypeError, "`normalize`"),
        ],
        bad_call_inputs=[
            (
                {"query": (3, 1, 1, 5), "value": (3, 7, 6)},
                ValueError,
                "Invalid rank for argument `query`",
            ),
            (
                {"query": (3, 5), "value": (3, 6)},
                ValueError,
                "Invalid rank for argument `value`",
            ),
        ],
    )


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("query_rank", [2, 3])
def test_masks_keys_and_weights_match_reference(normalize, query_rank):
    data = _data(query_rank, seed=1)
    rng = np.random.default_rng(2)
    key = rng.normal(size=(3, 7, 4)).astype("float32")
    mask = np.array(
        [[1] * 7, [1, 1, 1, 0, 0, 0, 0], [0] * 7], bool
    )  # full, padded, fully masked
    layer = BahdanauAttention(8, normalize=normalize)
    context, weights = layer(
        data["query"],
        data["value"],
        key=key,
        mask=mask,
        return_attention_scores=True,
    )
    ref_context, ref_weights = np_bahdanau(
        layer, data["query"], data["value"], key, mask
    )
    np.testing.assert_allclose(context, ref_context, atol=1e-5)
    np.testing.assert_allclose(weights, ref_weights, atol=1e-6)
    weights = np.asarray(weights)
    np.testing.assert_allclose(weights[:2].sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[1, ..., 3:] == 0.0)
    # A fully masked row: zero weights and context, no NaN.
    assert np.all(weights[2] == 0.0)
    assert np.all(np.asarray(context)[2] == 0.0)


def test_keras_mask_of_value_is_used():
    source = keras.Input((None,), dtype="int32")
    query = keras.Input((4,))
    embedded = keras.layers.Embedding(10, 6, mask_zero=True)(source)
    layer = BahdanauAttention(5)
    context, weights = layer(query, embedded, return_attention_scores=True)
    model = keras.Model([source, query], [context, weights])
    ids = np.array([[3, 4, 0, 0], [0, 0, 0, 0]])
    context, weights = model([ids, np.ones((2, 4), "float32")])
    assert np.all(np.asarray(weights)[0, 2:] == 0.0)
    np.testing.assert_allclose(np.asarray(weights)[0].sum(), 1.0, atol=1e-6)
    assert np.all(np.asarray(weights)[1] == 0.0)
    assert np.all(np.isfinite(np.asarray(context)))


def test_precomputed_keys_give_the_same_result():
    data = _data(2)
    layer = BahdanauAttention(8)
    expected = layer(data["query"], data["value"], return_attention_scores=True)
    keys = layer.precompute_keys(data["value"])
    assert tuple(keys.shape) == (3, 7, 8)
    got = layer.attend(data["query"], data["value"], keys)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-6)


def test_one_step_equals_a_row_of_all_steps():
    data = _data(3)
    layer = BahdanauAttention(8, normalize=True)
    all_steps = layer(
        data["query"], data["value"], return_attention_scores=True
    )
    step = layer(
        data["query"][:, 2], data["value"], return_attention_scores=True
    )
    for s, a in zip(step, all_steps, strict=True):
        np.testing.assert_allclose(s, np.asarray(a)[:, 2], atol=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
def test_gradients_match_numeric(normalize):
    data = _data(2, seed=3)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 7], bool)
    layer = BahdanauAttention(4, normalize=normalize)
    layer(data["query"], data["value"])
    query = data["query"].astype("float64")
    value = data["value"].astype("float64")

    def loss(q, v):  # the NumPy reference, differentiated numerically
        ctx, _ = np_bahdanau(layer, q, v, mask=mask)
        return float(np.sum(ctx * np.arange(ctx.size).reshape(ctx.shape)))

    q = tf.Variable(data["query"])
    v = tf.Variable(data["value"])
    with tf.GradientTape() as tape:
        ctx = layer(q, v, mask=mask)
        total = tf.reduce_sum(
            ctx * np.arange(np.prod(ctx.shape)).reshape(ctx.shape)
        )
    grad_q, grad_v = tape.gradient(total, [q, v])
    for analytic, x, index in ((grad_q, query, 0), (grad_v, value, 1)):
        numeric = np.zeros_like(x)
        eps = 1e-6
        for position in np.ndindex(x.shape):
            args = [query.copy(), value.copy()]
            args[index][position] += eps
            up = loss(*args)
            args[index][position] -= 2 * eps
            down = loss(*args)
            numeric[position] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, atol=2e-3, rtol=2e-3)
    # Padded positions get no gradient through the weights.
    assert np.all(np.asarray(grad_v)[1, 4:] == 0.0)


def test_mismatched_shapes_raise():
    layer = BahdanauAttention(4)
    query = np.zeros((2, 5), "float32")
    value = np.zeros((2, 7, 6), "float32")
    with pytest.raises(ValueError, match="Mismatched batch size"):
        layer(np.zeros((3, 5), "float32"), value)
    with pytest.raises(ValueError, match="number of value positions Tv"):
        layer(query, value, key=np.zeros((2, 6, 6), "float32"))
    with pytest.raises(ValueError, match="number of value positions Tv"):
        layer(query, value, mask=np.ones((2, 6), bool))
    with pytest.raises(ValueError, match="Invalid rank for argument `mask`"):
        layer(query, value, mask=np.ones((2, 7, 1), bool))
    layer(query, value)
    with pytest.raises(ValueError, match="`query`"):
        layer(np.zeros((2, 4), "float32"), value)


def test_mixed_precision_weights_stay_float32():
    data = _data(3)
    layer = BahdanauAttention(8, dtype="mixed_float16")
    context, weights = layer(
        data["query"], data["value"], return_attention_scores=True
    )
    assert keras.backend.standardize_dtype(context.dtype) == "float16"
    assert keras.backend.standardize_dtype(weights.dtype) == "float32"
    ref = np_bahdanau(layer, data["query"], data["value"])[0]
    np.testing.assert_allclose(np.asarray(context, "float32"), ref, atol=2e-2)


@pytest.mark.parametrize("argument", ["query", "value", "key"])
def test_integer_inputs_are_refused(argument):
    inputs = {
        "query": np.zeros((2, 3), "float32"),
        "value": np.zeros((2, 4, 5), "float32"),
        "key": np.zeros((2, 4, 5), "float32"),
    }
    inputs[argument] = inputs[argument].astype("int32")
    with pytest.raises(TypeError, match=f"{argument}.dtype=int32"):
        BahdanauAttention(units=4)(**inputs)


def test_nan_values_and_keys_at_masked_positions_are_ignored():
    # Regression (issue 21): a zero weight times a NaN padding value made
    # the whole context NaN.
    rng = np.random.default_rng(0)
    query = rng.normal(size=(1, 3)).astype("float32")
    value = rng.normal(size=(1, 4, 5)).astype("float32")
    mask = np.array([[True, True, False, False]])
    layer = BahdanauAttention(units=4)
    clean, clean_weights = layer(
        query, value, mask=mask, return_attention_scores=True
    )
    value[0, 2:] = np.nan
    value[0, 3, 0] = np.inf
    dirty, weights = layer(
        query, value, mask=mask, return_attention_scores=True
    )
    np.testing.assert_array_equal(np.asarray(dirty), np.asarray(clean))
    np.testing.assert_array_equal(np.asarray(weights), clean_weights)


def test_empty_batch():
    # Regression (issue 21): keras.ops.max refuses empty tensors eagerly.
    layer = BahdanauAttention(units=4)
    context, weights = layer(
        np.zeros((0, 3), "float32"),
        np.zeros((0, 4, 5), "float32"),
        return_attention_scores=True,
    )
    assert context.shape == (0, 5) and weights.shape == (0, 4)
