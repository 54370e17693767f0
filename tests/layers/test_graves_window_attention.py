"""Tests for `keras_segattn.layers.GravesWindowAttention`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers import GravesWindowAttention
from tests.testing import run_layer_checks


def np_window(layer, state, kappa, sequence, mask=None):
    """Graves (2013) eqs. 46-51, one mixture and one position at a time."""
    dense = layer.params
    params = state @ dense.kernel.numpy().astype("float64") + dense.bias.numpy()
    k = layer.num_mixtures
    batch, length, _ = sequence.shape
    if mask is None:
        mask = np.ones((batch, length), bool)
    phi = np.zeros((batch, length))
    new_kappa = np.zeros((batch, k))
    for b in range(batch):
        alpha = np.exp(params[b, :k])
        beta = np.exp(params[b, k : 2 * k])
        new_kappa[b] = kappa[b] + np.exp(params[b, 2 * k :])
        for u in range(1, length + 1):
            if mask[b, u - 1]:
                phi[b, u - 1] = sum(
                    alpha[j] * np.exp(-beta[j] * (new_kappa[b, j] - u) ** 2)
                    for j in range(k)
                )
    window = np.einsum("bu,bud->bd", phi, sequence)
    return window, new_kappa, phi


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "state": rng.normal(size=(2, 6)).astype("float32"),
        "kappa": rng.uniform(0, 3, size=(2, 3)).astype("float32"),
        "sequence": rng.normal(size=(2, 8, 4)).astype("float32"),
    }


def test_layer_checks(tmp_path):
    run_layer_checks(
        GravesWindowAttention,
        {"num_mixtures": 3},
        _inputs(),
        tmp_path=tmp_path,
        expected_output_shape=[(2, 4), (2, 3), (2, 8)],
        expected_num_trainable_weights=2,
        reference_fn=lambda layer, x: list(
            np_window(layer, *(x[k].astype("float64") for k in x))
        ),
        atol=1e-5,
        run_mixed_precision=False,  # κ and φ stay float32 by design
        bad_init_kwargs=[
            (
                {"num_mixtures": 0},
                ValueError,
                re.escape("Received: num_mixtures=0"),
            ),
        ],
        bad_call_inputs=[
            (
                {"state": (2, 6), "kappa": (2, 2), "sequence": (2, 8, 4)},
                ValueError,
                "`kappa`",
            ),
            (
                {"state": (2, 6), "kappa": (2, 3), "sequence": (2, 8)},
                ValueError,
                "Invalid rank for argument `sequence`",
            ),
        ],
    )


def test_mask_and_monotone_kappa():
    inputs = _inputs(1)
    mask = np.array([[1] * 8, [1] * 5 + [0] * 3], bool)
    layer = GravesWindowAttention(3)
    window, kappa, phi = layer(**inputs, mask=mask)
    ref = np_window(
        layer, *(inputs[k].astype("float64") for k in inputs), mask=mask
    )
    for got, want in zip((window, kappa, phi), ref, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.all(np.asarray(phi)[1, 5:] == 0.0)
    assert np.all(np.asarray(kappa) > inputs["kappa"])  # only forward


def test_keras_mask_of_the_sequence():
    ids = keras.Input((None,), dtype="int32")
    state = keras.Input((6,))
    kappa = keras.Input((2,))
    sequence = keras.layers.Embedding(10, 4, mask_zero=True)(ids)
    window, _, phi = GravesWindowAttention(2)(state, kappa, sequence)
    model = keras.Model([ids, state, kappa], [window, phi])
    _, phi = model([np.array([[3, 4, 0]]), np.ones((1, 6)), np.zeros((1, 2))])
    assert np.asarray(phi)[0, 2] == 0.0 and np.asarray(phi)[0, 0] > 0.0


def test_runs_inside_a_scan():
    layer = GravesWindowAttention(2)
    inputs = _inputs(2)
    states = np.stack([inputs["state"]] * 5)  # [T, B, H]

    def body(kappa, state):
        _, kappa, _ = layer(state, kappa, inputs["sequence"])
        return kappa, kappa

    final, kappas = keras.ops.scan(body, np.zeros((2, 2), "float32"), states)
    assert kappas.shape == (5, 2, 2)
    assert np.all(np.diff(np.asarray(kappas), axis=0) > 0)
    with pytest.raises(ValueError, match="Invalid rank for argument `state`"):
        layer(np.zeros((6,), "float32"), np.zeros((2, 2)), inputs["sequence"])


@pytest.mark.parametrize("argument", ["state", "kappa", "sequence"])
def test_integer_inputs_are_refused(argument):
    inputs = {
        "state": np.zeros((2, 3), "float32"),
        "kappa": np.zeros((2, 2), "float32"),
        "sequence": np.zeros((2, 4, 5), "float32"),
    }
    inputs[argument] = inputs[argument].astype("int32")
    with pytest.raises(TypeError, match=f"{argument}.dtype=int32"):
        GravesWindowAttention(2)(**inputs)


def test_huge_states_and_nan_padding_stay_finite():
    # Regression (issue 21): exp of a large projected state overflowed to
    # inf and inf * 0 gave NaN; 0 * NaN padding made the window NaN.
    layer = GravesWindowAttention(2)
    state = np.full((1, 3), 1e4, "float32")
    sequence = np.ones((1, 4, 2), "float32")
    sequence[0, 3] = np.nan
    mask = np.array([[True, True, True, False]])
    outputs = layer(state, np.zeros((1, 2), "float32"), sequence, mask=mask)
    for out in outputs:
        assert np.isfinite(np.asarray(out)).all()
