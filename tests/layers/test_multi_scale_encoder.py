"""Tests for `keras_segattn.layers.MultiScaleEncoder`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers import MultiScaleEncoder
from tests.layers.pyramid_references import np_resize_bilinear
from tests.testing import run_layer_checks


def _encoder_config():
    """A 1x1 stride-2 convolution 2 -> 3 channels, as a serialized config
    (each layer instance then owns its encoder)."""
    encoder = keras.Sequential(
        [keras.layers.Conv2D(3, 1, strides=2, bias_initializer="ones")],
        name="encoder",
    )
    return keras.saving.serialize_keras_object(encoder)


def np_multi_scale(layer, inputs):
    kernel, bias = (np.asarray(w, "float64") for w in layer.encoder.weights)
    inputs = np.asarray(inputs, "float64")
    height, width = inputs.shape[1:3]
    outputs, target = [], None
    for scale in layer.scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        x = (
            inputs
            if size == (height, width)
            else np_resize_bilinear(inputs, size)
        )
        features = np.einsum("bhwc,cf->bhwf", x[:, ::2, ::2], kernel[0, 0])
        features = features + bias
        if target is None:
            target = features.shape[1:3]
        elif features.shape[1:3] != target:
            features = np_resize_bilinear(features, target)
        outputs.append(features)
    return np.concatenate(outputs, axis=-1)


def test_layer_checks(tmp_path):
    inputs = np.random.default_rng(0).normal(size=(2, 16, 16, 2))
    run_layer_checks(
        MultiScaleEncoder,
        {"encoder": _encoder_config(), "scales": (1.0, 0.5, 0.25)},
        inputs.astype("float32"),
        tmp_path=tmp_path,
        expected_output_shape=(2, 8, 8, 9),
        expected_num_trainable_weights=2,  # one shared encoder
        reference_fn=np_multi_scale,
        atol=1e-5,
        bad_init_kwargs=[
            (
                {"encoder": _encoder_config(), "scales": (1.0, 1.0)},
                ValueError,
                re.escape("Received: scales=(1.0, 1.0)"),
            ),
            (
                {"encoder": _encoder_config(), "scales": (1.0, 0.0)},
                ValueError,
                re.escape("Received: scales=(1.0, 0.0)"),
            ),
            (
                {"encoder": _encoder_config(), "scales": (-1.0,)},
                ValueError,
                "positive, strictly decreasing",
            ),
            (
                {"encoder": _encoder_config(), "scales": (0.5, 1.0)},
                ValueError,
                re.escape("Received: scales=(0.5, 1.0)"),
            ),
            (
                {"encoder": _encoder_config(), "scales": ()},
                ValueError,
                re.escape("Received: scales=()"),
            ),
            (
                {"encoder": _encoder_config(), "interpolation": "area"},
                ValueError,
                re.escape("Received: interpolation='area'"),
            ),
            ({"encoder": "conv"}, TypeError, re.escape("type(encoder)=str")),
        ],
        bad_call_inputs=[
            ((2, None, None, 2), ValueError, "static H and W"),
            ((2, 16, 2), ValueError, "inputs"),
        ],
    )


def test_odd_sizes_and_other_scales():
    layer = MultiScaleEncoder(_encoder_config(), scales=(1.0, 0.6))
    inputs = np.random.default_rng(1).normal(size=(1, 15, 10, 2))
    outputs = layer(inputs.astype("float32"))
    # 15x10 -> features 8x5; 9x6 -> 5x3, resized to 8x5.
    assert tuple(outputs.shape) == (1, 8, 5, 6)
    assert layer.compute_output_shape((None, 15, 10, 2)) == (None, 8, 5, 6)
    np.testing.assert_allclose(
        outputs, np_multi_scale(layer, inputs), atol=1e-5
    )


def test_single_scale_is_the_encoder():
    layer = MultiScaleEncoder(_encoder_config(), scales=[1.0])
    inputs = np.random.default_rng(2).normal(size=(2, 8, 8, 2))
    inputs = inputs.astype("float32")
    np.testing.assert_array_equal(layer(inputs), layer.encoder(inputs))


def test_functional_encoder_with_batch_norm_shares_weights():
    images = keras.Input((None, None, 2))
    x = keras.layers.Conv2D(4, 3, padding="same")(images)
    x = keras.layers.BatchNormalization()(x)
    encoder = keras.Model(images, keras.layers.MaxPooling2D()(x))
    layer = MultiScaleEncoder(encoder, scales=(1.0, 0.5))
    outputs = layer(np.ones((1, 8, 8, 2), "float32"), training=False)
    assert tuple(outputs.shape) == (1, 4, 4, 8)
    assert len(layer.trainable_weights) == 4
    assert len(layer.non_trainable_weights) == 2
    with pytest.raises(ValueError, match="static H and W"):
        layer.compute_output_shape((None, None, 8, 2))
