"""Tests for `keras_segattn.ops.draw_filterbank`, `DrawRead`, `DrawWrite`."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import DrawRead
from keras_segattn.layers import DrawWrite
from keras_segattn.ops import draw_filterbank
from tests.testing import run_layer_checks


def np_filterbank(params, height, width, n, eps=1e-8):
    """Gregor et al. (2015) eqs. 19-26, one filter at a time."""
    batch = len(params)
    fx, fy = np.zeros((batch, n, width)), np.zeros((batch, n, height))
    gammas = np.zeros(batch)
    for b in range(batch):
        gx_t, gy_t, log_var, log_delta, log_gamma = params[b]
        gx = (width + 1) / 2 * (gx_t + 1)
        gy = (height + 1) / 2 * (gy_t + 1)
        delta = (max(width, height) - 1) / (n - 1) * np.exp(log_delta)
        var = np.exp(log_var)
        for i in range(1, n + 1):
            mu_x = gx + (i - n / 2 - 0.5) * delta
            mu_y = gy + (i - n / 2 - 0.5) * delta
            for a in range(1, width + 1):  # 1-based pixel coordinates
                fx[b, i - 1, a - 1] = np.exp(-((a - mu_x) ** 2) / (2 * var))
            for y in range(1, height + 1):
                fy[b, i - 1, y - 1] = np.exp(-((y - mu_y) ** 2) / (2 * var))
        fx[b] /= fx[b].sum(-1, keepdims=True) + eps
        fy[b] /= fy[b].sum(-1, keepdims=True) + eps
        gammas[b] = np.exp(log_gamma)
    return fx, fy, gammas


def np_read(images, params, n, error_images=None):
    _, height, width, channels = images.shape
    fx, fy, gamma = np_filterbank(params, height, width, n)
    out = np.stack(
        [
            np.stack([g * fyb @ x[..., c] @ fxb.T for c in range(channels)], -1)
            for fxb, fyb, g, x in zip(fx, fy, gamma, images, strict=True)
        ]
    )
    if error_images is not None:
        out = np.concatenate([out, np_read(error_images, params, n)], -1)
    return out


def np_write(patch, params, height, width):
    n = patch.shape[1]
    fx, fy, gamma = np_filterbank(params, height, width, n)
    return np.stack(
        [
            np.stack(
                [fyb.T @ w[..., c] @ fxb / g for c in range(patch.shape[-1])],
                -1,
            )
            for fxb, fyb, g, w in zip(fx, fy, gamma, patch, strict=True)
        ]
    )


def _params(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            rng.uniform(-1, 1, batch),  # g̃X
            rng.uniform(-1, 1, batch),  # g̃Y
            rng.uniform(-1, 1, batch),  # log σ²
            rng.uniform(-1, 0.5, batch),  # log δ̃
            rng.uniform(-0.5, 0.5, batch),  # log γ
        ],
        -1,
    ).astype("float32")


@pytest.mark.parametrize("n", [2, 5])
def test_filterbank_matches_reference(n):
    params = _params()
    fx, fy, gamma = draw_filterbank(params, (7, 9), n)
    ref = np_filterbank(params.astype("float64"), 7, 9, n)
    for got, want in zip((fx, fy, gamma), ref, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    # Rows sum to 1, except a row whose Gaussian underflows everywhere
    # (a narrow filter far outside the image), which eps keeps at ~0.
    sums = np.sum(fx, -1)
    assert np.all(np.isclose(sums, 1.0, atol=1e-3) | (sums < 1e-3))


def test_centred_grid_is_symmetric():
    # g̃ = 0 puts the grid centre at (A+1)/2, the middle of pixels 1..A;
    # with the 1-based i the filters mirror each other about it.
    params = np.array([[0.0, 0.0, 0.0, 0.0, 0.0]], "float32")
    fx, _, _ = draw_filterbank(params, 8, 4)
    fx = np.asarray(fx)[0]
    np.testing.assert_allclose(fx, fx[::-1, ::-1], atol=1e-6)
    centres = np.sum(fx * np.arange(1, 9), -1)
    np.testing.assert_allclose(np.mean(centres), 4.5, atol=1e-5)


def test_read_layer_checks(tmp_path):
    rng = np.random.default_rng(1)
    inputs = {
        "images": rng.uniform(size=(3, 7, 9, 2)).astype("float32"),
        "params": _params(),
    }
    run_layer_checks(
        DrawRead,
        {"glimpse_size": 4},
        inputs,
        tmp_path=tmp_path,
        expected_output_shape=(3, 4, 4, 2),
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, x: np_read(
            x["images"].astype("float64"), x["params"].astype("float64"), 4
        ),
        atol=1e-5,
        bad_init_kwargs=[
            (
                {"glimpse_size": 1},
                ValueError,
                re.escape("Received: glimpse_size=1"),
            ),
        ],
        bad_call_inputs=[
            (
                {"images": (3, 7, 9), "params": (3, 5)},
                ValueError,
                "Invalid rank for argument `images`",
            ),
            (
                {"images": (3, 7, 9, 2), "params": (3, 4)},
                ValueError,
                "`params`",
            ),
        ],
    )


def test_write_layer_checks(tmp_path):
    rng = np.random.default_rng(2)
    inputs = {
        "patch": rng.normal(size=(3, 4, 4, 2)).astype("float32"),
        "params": _params(seed=3),
    }
    run_layer_checks(
        DrawWrite,
        {"image_size": (7, 9)},
        inputs,
        tmp_path=tmp_path,
        expected_output_shape=(3, 7, 9, 2),
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, x: np_write(
            x["patch"].astype("float64"), x["params"].astype("float64"), 7, 9
        ),
        atol=1e-5,
        bad_init_kwargs=[
            ({"image_size": 0}, ValueError, "`image_size`"),
        ],
        bad_call_inputs=[
            ({"patch": (3, 1, 1, 2), "params": (3, 5)}, ValueError, "N >= 2"),
            ({"patch": (3, 4, 3, 2), "params": (3, 5)}, ValueError, "square"),
        ],
    )


def test_read_with_error_image_and_gradients_match_numeric():
    rng = np.random.default_rng(4)
    images = rng.uniform(size=(2, 6, 5, 1))
    errors = rng.normal(size=(2, 6, 5, 1))
    params = _params(2, seed=5).astype("float64")
    layer = DrawRead(3)
    out = layer(
        images.astype("float32"),
        params.astype("float32"),
        error_images=errors.astype("float32"),
    )
    np.testing.assert_allclose(
        out, np_read(images, params, 3, errors), atol=1e-5
    )
    weights = rng.normal(size=(2, 3, 3, 2))

    def loss(p, x):  # the NumPy reference, differentiated numerically
        return float(np.sum(np_read(x, p, 3, errors) * weights))

    p = tf.Variable(params.astype("float32"))
    x = tf.Variable(images.astype("float32"))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(layer(x, p, error_images=errors) * weights)
    grads = tape.gradient(total, [p, x])
    for grad, value, index in ((grads[0], params, 0), (grads[1], images, 1)):
        numeric = np.zeros_like(value)
        for position in np.ndindex(value.shape):
            args = [params.copy(), images.copy()]
            args[index][position] += 1e-6
            up = loss(*args)
            args[index][position] -= 2e-6
            numeric[position] = (up - loss(*args)) / 2e-6
        np.testing.assert_allclose(grad, numeric, atol=2e-3, rtol=2e-3)


def test_write_is_the_transpose_of_read():
    # <read(x), w> = <x, write(w)> * γ² with the same filterbanks.
    rng = np.random.default_rng(6)
    params = _params(2, seed=7)
    x = rng.normal(size=(2, 7, 9, 1)).astype("float32")
    w = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    read = np.asarray(DrawRead(4)(x, params), "float64")
    write = np.asarray(DrawWrite((7, 9))(w, params), "float64")
    gamma = np.exp(params[:, 4].astype("float64"))
    lhs = np.sum(read * w, axis=(1, 2, 3))
    rhs = np.sum(x * write, axis=(1, 2, 3)) * gamma**2
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4)


def test_filterbank_is_finite_for_extreme_finite_params():
    # Regression (issue 21): log sigma^2 = -100 underflowed the variance
    # to 0 and a filter centred on a pixel gave 0 / 0 = NaN.
    params = np.array(
        [[0, 0, -100.0, 0, 0], [0, 0, 100.0, 100.0, 100.0], [1e30] * 5],
        "float32",
    )
    for out in draw_filterbank(params, (3, 3), 2):
        assert np.isfinite(np.asarray(out)).all()
    fx = np.asarray(draw_filterbank(params[:1], (3, 3), 2)[0])
    np.testing.assert_array_equal(fx[0], [[1, 0, 0], [0, 0, 1]])


def test_filterbank_refuses_integer_params():
    with pytest.raises(TypeError, match="params.dtype=int32"):
        draw_filterbank(np.zeros((1, 5), "int32"), 4, 2)
