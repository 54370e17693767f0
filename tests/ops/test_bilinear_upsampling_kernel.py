"""Tests for `keras_segattn.ops.bilinear_upsampling_kernel`."""

import re

import numpy as np
import pytest

from keras_segattn.ops import bilinear_upsampling_kernel
from tests.references import np_bilinear_kernel


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("channels", [1, 3])
def test_matches_upsample_filt_on_the_channel_diagonal(factor, channels):
    kernel = bilinear_upsampling_kernel(factor, channels)
    size = 2 * factor - factor % 2
    assert kernel.shape == (size, size, channels, channels)
    assert kernel.dtype == np.float32
    np.testing.assert_allclose(
        kernel, np_bilinear_kernel(factor, channels), atol=1e-7
    )


def test_known_values_factor_2():
    taps = np.array([0.25, 0.75, 0.75, 0.25])
    kernel = bilinear_upsampling_kernel(2, 2)
    np.testing.assert_allclose(kernel[:, :, 0, 0], np.outer(taps, taps))
    np.testing.assert_array_equal(kernel[:, :, 0, 1], 0.0)
    np.testing.assert_array_equal(kernel[:, :, 1, 0], 0.0)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_every_stride_phase_sums_to_one(factor):
    # With stride `factor`, each output pixel receives the taps
    # kernel[p::factor, q::factor]; bilinear weights partition unity.
    filt = bilinear_upsampling_kernel(factor, 1)[:, :, 0, 0]
    for p in range(factor):
        for q in range(factor):
            np.testing.assert_allclose(
                filt[p::factor, q::factor].sum(), 1.0, atol=1e-6
            )


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_dtype(dtype):
    kernel = bilinear_upsampling_kernel(3, 2, dtype=dtype)
    assert kernel.dtype == np.dtype(dtype)
    np.testing.assert_allclose(
        kernel, np_bilinear_kernel(3, 2), atol=1e-3 if dtype == "float16" else 0
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"factor": 0, "channels": 1}, "Received: factor=0."),
        ({"factor": -2, "channels": 1}, "Received: factor=-2."),
        ({"factor": 2.5, "channels": 1}, "Received: factor=2.5."),
        ({"factor": True, "channels": 1}, "Received: factor=True."),
        ({"factor": 2, "channels": 0}, "Received: channels=0."),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        bilinear_upsampling_kernel(**kwargs)


def test_error_wording():
    with pytest.raises(ValueError) as info:
        bilinear_upsampling_kernel(0, 3)
    assert str(info.value).startswith(
        "Invalid value for argument `factor`. Expected"
    )


@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool"])
def test_non_floating_dtype_is_refused(dtype):
    # Issue 21: an integer kernel would truncate the fractional taps to 0.
    with pytest.raises(TypeError, match=f"dtype={dtype}"):
        bilinear_upsampling_kernel(2, 1, dtype)
