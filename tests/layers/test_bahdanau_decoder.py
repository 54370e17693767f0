"""Tests for `keras_segattn.layers.BahdanauDecoder`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers import BahdanauDecoder
from tests.layers.test_bahdanau_attention import np_bahdanau
from tests.testing import run_layer_checks


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_gru_step(cell, x, h):
    """Keras `GRUCell` (reset_after=True, the default) in NumPy."""
    kernel = cell.kernel.numpy().astype("float64")
    recurrent = cell.recurrent_kernel.numpy().astype("float64")
    input_bias, recurrent_bias = cell.bias.numpy().astype("float64")
    u = cell.units
    xs = x @ kernel + input_bias
    hs = h @ recurrent + recurrent_bias
    z = _sigmoid(xs[:, :u] + hs[:, :u])
    r = _sigmoid(xs[:, u : 2 * u] + hs[:, u : 2 * u])
    candidate = np.tanh(xs[:, 2 * u :] + r * hs[:, 2 * u :])
    return z * h + (1.0 - z) * candidate


def np_decoder(layer, embeddings, annotations, state, mask=None):
    """The recurrence of Bahdanau et al. (2015) step by step."""
    dense = layer.readout_dense
    kernel = dense.kernel.numpy().astype("float64")
    bias = dense.bias.numpy().astype("float64")
    features, alignments = [], []
    for i in range(embeddings.shape[1]):
        if layer.use_attention:
            context, weights = np_bahdanau(
                layer.attention, state, annotations, mask=mask
            )
        else:
            context = annotations
            weights = np.zeros((state.shape[0], 0))
        state = np_gru_step(
            layer.cell,
            np.concatenate([embeddings[:, i], context], -1),
            state,
        )
        hidden = np.concatenate([state, embeddings[:, i], context], -1)
        hidden = hidden @ kernel + bias
        maxout = hidden.reshape(len(hidden), layer.readout_units, 2).max(-1)
        features.append(maxout)
        alignments.append(weights)
    return np.stack(features, 1), np.stack(alignments, 1)


def _inputs(attention=True, seed=0):
    rng = np.random.default_rng(seed)
    annotations_shape = (2, 5, 6) if attention else (2, 6)
    return {
        "target_embeddings": rng.normal(size=(2, 4, 3)).astype("float32"),
        "annotations": rng.normal(size=annotations_shape).astype("float32"),
        "initial_state": rng.normal(size=(2, 7)).astype("float32"),
    }


KWARGS = {"units": 7, "attention_units": 8, "readout_units": 5}


@pytest.mark.parametrize("attention", [True, False])
def test_layer_checks(tmp_path, attention):
    inputs = _inputs(attention)
    run_layer_checks(
        BahdanauDecoder,
        {**KWARGS, "attention": attention},
        inputs,
        tmp_path=tmp_path,
        expected_output_shape=[(2, 4, 5), (2, 4, 5 if attention else 0)],
        # GRU kernel, recurrent kernel, bias; readout kernel, bias; W1, W2, v
        expected_num_trainable_weights=8 if attention else 5,
        reference_fn=lambda layer, x: list(
            np_decoder(
                layer,
                x["target_embeddings"].astype("float64"),
                x["annotations"].astype("float64"),
                x["initial_state"].astype("float64"),
            )
        ),
        atol=1e-5,
        # The attention weights are float32 under a mixed policy by
        # design; `test_mixed_precision` checks the features.
        run_mixed_precision=False,
        # Without attention the weights output is empty ([2, 4, 0]) and an
        # MSE over it is NaN; tests/models/test_translation.py fits the
        # fixed-context model with XLA instead.
        run_training=attention,
        bad_init_kwargs=[
            (
                {**KWARGS, "units": 0},
                ValueError,
                re.escape("Received: units=0"),
            ),
            (
                {**KWARGS, "readout_units": -1},
                ValueError,
                "`readout_units`",
            ),
        ],
        bad_call_inputs=[
            (
                {
                    "target_embeddings": (2, 3),
                    "annotations": inputs["annotations"].shape,
                    "initial_state": (2, 7),
                },
                ValueError,
                "Invalid rank for argument `target_embeddings`",
            ),
            (
                {
                    "target_embeddings": (2, 4, 3),
                    "annotations": inputs["annotations"].shape,
                    "initial_state": (2, 9),
                },
                ValueError,
                "`initial_state`",
            ),
        ],
    )


def test_source_mask_is_applied():
    inputs = _inputs(True, seed=1)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
    layer = BahdanauDecoder(**KWARGS)
    features, weights = layer(**inputs, annotations_mask=mask)
    ref_features, ref_weights = np_decoder(
        layer,
        *(inputs[k].astype("float64") for k in inputs),
        mask=mask,
    )
    np.testing.assert_allclose(features, ref_features, atol=1e-5)
    np.testing.assert_allclose(weights, ref_weights, atol=1e-6)
    assert np.all(np.asarray(weights)[1, :, 2:] == 0.0)


def test_step_and_readout_equal_call():
    inputs = _inputs(True, seed=2)
    layer = BahdanauDecoder(**KWARGS)
    features, weights = layer(**inputs)
    state = inputs["initial_state"]
    keys = layer.precompute_keys(inputs["annotations"])
    for i in range(4):
        embedding = inputs["target_embeddings"][:, i]
        state, context, alpha = layer.step(
            embedding, state, inputs["annotations"], keys
        )
        np.testing.assert_allclose(
            layer.readout(state, embedding, context),
            np.asarray(features)[:, i],
            atol=1e-6,
        )
        np.testing.assert_allclose(alpha, np.asarray(weights)[:, i], atol=1e-6)


def test_mixed_precision():
    inputs = _inputs(True)
    layer = BahdanauDecoder(**KWARGS, dtype="mixed_float16")
    features, weights = layer(**inputs)
    assert keras.backend.standardize_dtype(features.dtype) == "float16"
    assert keras.backend.standardize_dtype(weights.dtype) == "float32"
    assert all(str(w.dtype) == "float32" for w in layer.weights)
    ref, _ = np_decoder(layer, *(inputs[k].astype("float64") for k in inputs))
    np.testing.assert_allclose(np.asarray(features, "float32"), ref, atol=3e-2)


def test_mismatched_batch_raises():
    inputs = _inputs(True)
    inputs["initial_state"] = inputs["initial_state"][:1]
    with pytest.raises(ValueError, match="Mismatched batch sizes"):
        BahdanauDecoder(**KWARGS)(**inputs)
    bad = _inputs(True)
    bad["annotations"] = bad["annotations"][:, 0]
    with pytest.raises(
        ValueError, match="Invalid rank for argument `annotations`"
    ):
        BahdanauDecoder(**KWARGS)(**bad)
