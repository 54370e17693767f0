"""Tests for `keras_segattn.initializers.BilinearUpsampling`."""

import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_segattn.initializers import BilinearUpsampling
from tests.references import np_upsample_filt


def make_upsampler(factor, channels):
    return keras.layers.Conv2DTranspose(
        channels,
        kernel_size=2 * factor - factor % 2,
        strides=factor,
        padding="same",
        use_bias=False,
        kernel_initializer=BilinearUpsampling(),
    )


def smooth_ramp(batch, size, channels):
    """A different linear ramp (plus a gentle curve) in every channel."""
    x = np.zeros((batch, size, size, channels), "float32")
    for b in range(batch):
        for i in range(size):
            for j in range(size):
                for c in range(channels):
                    x[b, i, j, c] = (
                        (c + 1) * 0.3 * i
                        - 0.2 * (c - 1) * j
                        + 0.5 * b
                        + 0.1 * np.sin(0.4 * i + 0.3 * j + c)
                    )
    return x


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_kernel_is_upsample_filt_on_the_diagonal(factor):
    size = 2 * factor - factor % 2
    kernel = np.asarray(BilinearUpsampling()((size, size, 3, 3)))
    assert kernel.shape == (size, size, 3, 3)
    assert kernel.dtype == np.float32
    filt = np_upsample_filt(size)
    for out_c in range(3):
        for in_c in range(3):
            expected = filt if out_c == in_c else np.zeros_like(filt)
            np.testing.assert_allclose(
                kernel[:, :, out_c, in_c], expected, atol=1e-7
            )


def test_dtype():
    kernel = BilinearUpsampling()((4, 4, 2, 2), dtype="float64")
    assert keras.backend.standardize_dtype(kernel.dtype) == "float64"
    np.testing.assert_allclose(
        np.asarray(kernel)[:, :, 1, 1], np_upsample_filt(4), atol=0
    )


@pytest.mark.parametrize("factor", [2, 4])
def test_conv_transpose_equals_bilinear_resize_away_from_border(factor):
    channels, size = 3, 8
    x = smooth_ramp(2, size, channels)
    upsample = make_upsampler(factor, channels)
    y = np.asarray(upsample(x))
    assert y.shape == (2, size * factor, size * factor, channels)
    resized = np.asarray(
        ops.image.resize(
            x, (size * factor, size * factor), interpolation="bilinear"
        )
    )
    f = factor
    np.testing.assert_allclose(
        y[:, f:-f, f:-f], resized[:, f:-f, f:-f], atol=1e-5
    )
    # The border is where they differ (zero padding vs edge clamping).
    assert np.abs(y - resized).max() > 1e-2


def test_conv_transpose_equals_bilinear_resize_on_random_input():
    factor, channels, size = 2, 4, 6
    x = np.random.default_rng(0).normal(size=(2, size, size, channels))
    x = x.astype("float32")
    y = np.asarray(make_upsampler(factor, channels)(x))
    resized = np.asarray(
        ops.image.resize(x, (12, 12), interpolation="bilinear")
    )
    np.testing.assert_allclose(
        y[:, 2:-2, 2:-2], resized[:, 2:-2, 2:-2], atol=1e-5
    )


@pytest.mark.parametrize("factor", [2, 4])
def test_no_cross_channel_leakage(factor):
    channels = 3
    x = np.zeros((2, 6, 6, channels), "float32")
    x[..., 1] = smooth_ramp(2, 6, 1)[..., 0] + 1.0
    y = np.asarray(make_upsampler(factor, channels)(x))
    np.testing.assert_array_equal(y[..., 0], 0.0)
    np.testing.assert_array_equal(y[..., 2], 0.0)
    assert np.abs(y[..., 1]).min() > 0.0


def test_config_and_serialization():
    initializer = BilinearUpsampling()
    assert initializer.get_config() == {}
    revived = keras.initializers.deserialize(
        keras.initializers.serialize(initializer)
    )
    assert isinstance(revived, BilinearUpsampling)
    layer = make_upsampler(2, 2)
    clone = keras.layers.Conv2DTranspose.from_config(layer.get_config())
    assert isinstance(clone.kernel_initializer, BilinearUpsampling)


def test_keras_round_trip(tmp_path):
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, make_upsampler(2, 2)(inputs))
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    init = restored.layers[-1].kernel_initializer
    assert isinstance(init, BilinearUpsampling)
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 2)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(restored(x)))


@pytest.mark.parametrize(
    "shape",
    [
        (4, 4, 3),  # not a Conv2D kernel
        (4, 4, 3, 3, 1),
        (4, 5, 3, 3),  # not square
        (4, 4, 2, 3),  # out != in
        (2, 2, 1, 1),  # no factor gives k = 2
        (6, 6, 1, 1),  # no factor gives k = 6
        (0, 0, 1, 1),
        (None, None, 1, 1),
    ],
)
def test_bad_shapes(shape):
    with pytest.raises(
        ValueError,
        match=re.escape("Invalid value for argument `shape`.")
        + ".*"
        + re.escape(f"Received: shape={shape}."),
    ):
        BilinearUpsampling()(shape)


def test_bad_layer_configuration_fails_at_build():
    layer = keras.layers.Conv2DTranspose(
        4, 4, strides=2, padding="same", kernel_initializer=BilinearUpsampling()
    )
    with pytest.raises(ValueError, match="as many output as input channels"):
        layer.build((None, 8, 8, 3))
