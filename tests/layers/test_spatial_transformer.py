"""Tests for `keras_segattn.layers.SpatialTransformer`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import SpatialTransformer
from keras_segattn.layers import build_localization_head
from keras_segattn.layers import identity_transform
from tests.ops.test_affine_grid import np_affine_grid
from tests.ops.test_affine_grid import np_projective_grid
from tests.ops.test_grid_sample import np_grid_sample
from tests.testing import run_layer_checks


def _localization_config(transform="affine", stddev=0.05):
    """A tiny localisation net (random, non-identity), as a config dict so
    that every layer the harness builds gets its own copy."""
    net = keras.Sequential(
        [
            keras.layers.Flatten(),
            keras.layers.Dense(
                len(identity_transform(transform)),
                kernel_initializer=keras.initializers.RandomNormal(
                    stddev=stddev, seed=1
                ),
                bias_initializer=keras.initializers.Constant(
                    identity_transform(transform)
                ),
            ),
        ],
        name="localization",
    )
    return keras.saving.serialize_keras_object(net)


def _reference(layer, images, padding_mode="zeros", align_corners=False):
    """NumPy loop affine_grid + grid_sample of the net's own theta."""
    theta = np.asarray(layer.localization_network(images))
    grid = np_affine_grid(theta, layer.output_size, align_corners)
    out, _, _ = np_grid_sample(
        images, grid, padding_mode=padding_mode, align_corners=align_corners
    )
    return out


def test_layer_harness(tmp_path):
    images = np.random.default_rng(0).uniform(size=(2, 8, 8, 2))
    images = images.astype("float32")
    run_layer_checks(
        SpatialTransformer,
        dict(localization_network=_localization_config(), output_size=(6, 5)),
        images,
        tmp_path=tmp_path,
        expected_output_shape=(2, 6, 5, 2),
        expected_num_trainable_weights=2,
        reference_fn=_reference,
        bad_init_kwargs=[
            (
                dict(localization_network="dense", output_size=4),
                TypeError,
                re.escape("Received: localization_network='dense'"),
            ),
            (
                dict(
                    localization_network=_localization_config(), output_size=0
                ),
                ValueError,
                re.escape("Received: output_size=0"),
            ),
            (
                dict(
                    localization_network=_localization_config(),
                    output_size=4,
                    padding_mode="wrap",
                ),
                ValueError,
                re.escape("Received: padding_mode='wrap'"),
            ),
            (
                dict(
                    localization_network=_localization_config(),
                    output_size=4,
                    interpolation="area",
                ),
                ValueError,
                re.escape("Received: interpolation='area'"),
            ),
            (
                dict(
                    localization_network=_localization_config(),
                    output_size=4,
                    transform="tps",
                ),
                ValueError,
                re.escape("Received: transform='tps'"),
            ),
        ],
        bad_call_inputs=[
            ((2, 8, 8), ValueError, re.escape("images.shape=(2, 8, 8)")),
            (
                ((2, 8, 8, 2), "uint8"),
                TypeError,
                re.escape("Received: images.dtype=uint8"),
            ),
        ],
    )


@pytest.mark.parametrize(
    "transform", ["affine", "attention", "projective", "thin_plate_spline"]
)
def test_identity_head_returns_input_exactly(transform):
    images = np.random.default_rng(1).normal(size=(3, 7, 9, 2))
    images = images.astype("float32")
    localization = keras.Sequential(
        [
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="relu"),
            build_localization_head(transform),
        ]
    )
    layer = SpatialTransformer(
        localization, (7, 9), transform=transform, return_theta=True
    )
    out, theta = layer(images)
    np.testing.assert_array_equal(np.asarray(out), images)
    np.testing.assert_array_equal(
        np.asarray(theta), np.tile(identity_transform(transform), (3, 1))
    )


def test_projective_and_reflection_match_reference():
    images = np.random.default_rng(2).normal(size=(2, 6, 6, 1))
    images = images.astype("float32")
    layer = SpatialTransformer(
        _localization_config("projective", stddev=0.3),
        (4, 5),
        transform="projective",
        padding_mode="reflection",
        align_corners=True,
    )
    out = np.asarray(layer(images))
    params = np.asarray(layer.localization_network(images))
    grid = np_projective_grid(params, (4, 5), align_corners=True)
    ref, _, _ = np_grid_sample(
        images, grid, padding_mode="reflection", align_corners=True
    )
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_return_theta_mixed_precision_and_gradient_to_localization():
    images = np.random.default_rng(3).uniform(size=(2, 8, 8, 1))
    images = images.astype("float32")
    layer = SpatialTransformer(
        _localization_config("attention"),
        4,
        transform="attention",
        return_theta=True,
        dtype="mixed_float16",
    )
    symbolic = layer(keras.Input((8, 8, 1)))
    assert [str(t.dtype) for t in symbolic] == ["float16", "float32"]
    assert [tuple(t.shape) for t in symbolic] == [(None, 4, 4, 1), (None, 3)]
    with tf.GradientTape() as tape:
        out, theta = layer(images)
        loss = tf.reduce_sum(tf.cast(out, "float32") ** 2)
    assert out.dtype == tf.float16 and theta.dtype == tf.float32
    grads = tape.gradient(loss, layer.trainable_variables)
    assert all(g is not None and np.any(np.asarray(g) != 0) for g in grads)


def test_wrong_localization_output_is_reported():
    localization = keras.Sequential(
        [keras.layers.Flatten(), keras.layers.Dense(5)]
    )
    layer = SpatialTransformer(localization, 4)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Expected [B, 6] or [B, 2, 3] parameters of the 'affine' "
            "transform (end it with build_localization_head('affine')). "
            "Received: an output of shape (None, 5)."
        ),
    ):
        layer(keras.Input((8, 8, 1)))


def test_head_initializer_round_trips():
    head = build_localization_head("projective")
    clone = keras.layers.Dense.from_config(head.get_config())
    clone.build((None, 3))
    np.testing.assert_array_equal(
        np.asarray(clone.bias), identity_transform("projective")
    )
    np.testing.assert_array_equal(np.asarray(clone.kernel), 0.0)
    assert clone.dtype_policy.name == "float32"
