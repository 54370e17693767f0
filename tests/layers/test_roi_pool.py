"""Tests for `keras_segattn.layers.RoIPool`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import RoIPool
from tests.layers.helpers import roi_layer_inputs
from tests.ops.test_roi_pool import np_roi_pool
from tests.testing import run_layer_checks

F32 = np.float32


def reference(layer, inputs):
    return np_roi_pool(
        inputs["features"],
        inputs["boxes"],
        layer.output_size,
        layer.spatial_scale,
    )[0]


def test_layer_checks(tmp_path):
    run_layer_checks(
        RoIPool,
        {"output_size": (3, 2), "spatial_scale": 1 / 8},
        roi_layer_inputs(),
        tmp_path=tmp_path,
        expected_output_shape=(2, 3, 3, 2, 3),
        expected_num_trainable_weights=0,
        reference_fn=reference,
        atol=0.0,
        bad_init_kwargs=[
            ({"output_size": 0}, ValueError, "Received: output_size=0"),
            ({"output_size": "7"}, ValueError, "`output_size`"),
            (
                {"output_size": 2, "spatial_scale": -0.5},
                ValueError,
                "spatial_scale=-0.5",
            ),
            (
                {"output_size": 2, "bounding_box_format": "rel_xywh"},
                ValueError,
                "Relative formats",
            ),
        ],
        bad_call_inputs=[
            (
                {"features": (2, 8, 10), "boxes": (2, 3, 4)},
                ValueError,
                "Invalid rank for argument `features`",
            ),
            (
                {"features": (2, 8, 10, 3), "boxes": (2, 3, 5)},
                ValueError,
                re.escape("boxes.shape=(2, 3, 5)"),
            ),
            (
                {"features": (2, 8, 10, 3), "boxes": (1, 3, 4)},
                ValueError,
                "Mismatched batch sizes",
            ),
        ],
    )


def test_list_call_and_format():
    inputs = roi_layer_inputs(1)
    xyxy = inputs["boxes"]
    yxyx = xyxy[..., [1, 0, 3, 2]]
    layer = RoIPool(2, spatial_scale=1 / 8, bounding_box_format="yxyx")
    out = layer([inputs["features"], yxyx])
    np.testing.assert_array_equal(
        np.asarray(out),
        np_roi_pool(inputs["features"], xyxy, (2, 2), 1 / 8)[0],
    )
    np.testing.assert_array_equal(np.asarray(out)[0, 2], 0.0)
    with pytest.raises(ValueError, match="without `boxes`"):
        layer(inputs["features"])


def test_flat_boxes_and_unknown_spatial_size():
    inputs = roi_layer_inputs(2)
    index = np.repeat(np.arange(2), 3)[:, None].astype(F32)
    flat = np.concatenate([index, inputs["boxes"].reshape(-1, 4)], 1)
    features = keras.Input((None, None, 3))
    boxes = keras.Input(batch_shape=(6, 5))
    pooled = RoIPool((2, 3), spatial_scale=1 / 8)(features, boxes)
    assert pooled.shape == (6, 2, 3, 3)
    model = keras.Model([features, boxes], pooled)
    out = model([inputs["features"], flat])
    np.testing.assert_array_equal(
        np.asarray(out),
        np_roi_pool(inputs["features"], flat, (2, 3), 1 / 8)[0],
    )


def test_mixed_precision_keeps_float32_boxes():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(1, 64, 64, 2)).astype(F32)
    # x2 = 1500.7 -> /32 = 46.9 -> 47; in float16 1501 -> 46.9 too, so use
    # a corner whose float16 rounding crosses a pixel: 1487.9 -> 1488.
    boxes = np.array([[[1000.3, 1100.2, 1487.9, 1460.9]]], F32)
    layer = RoIPool(3, spatial_scale=1 / 32, dtype="mixed_float16")
    out = layer(features, boxes)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    ref, _ = np_roi_pool(features.astype("float16"), boxes, (3, 3), 1 / 32)
    np.testing.assert_array_equal(np.asarray(out), ref)


def test_config_from_json_lists():
    layer = RoIPool.from_config({"output_size": [7, 5], "name": "pool"})
    assert layer.output_size == (7, 5)
    assert layer.spatial_scale == 1.0
    assert layer.get_config()["bounding_box_format"] == "xyxy"


def test_training_call_gives_the_same_output_and_gradient():
    # In training the layer asks the op to find the argmax in the forward
    # pass (`roi_pool(..., training=True)`); the numbers must not change.
    # Integer features: ties in every bin.
    inputs = roi_layer_inputs(2)
    rng = np.random.default_rng(4)
    features = tf.constant(
        rng.integers(-2, 3, size=inputs["features"].shape).astype(F32)
    )
    layer = RoIPool((3, 2), spatial_scale=1 / 8)
    results = []
    for training in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = layer(features, inputs["boxes"], training=training)
            loss = tf.reduce_sum(out * tf.range(3.0))
        results.append((out.numpy(), tape.gradient(loss, features).numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    ref = np_roi_pool(features.numpy(), inputs["boxes"], (3, 2), 1 / 8)[0]
    np.testing.assert_array_equal(results[1][0], ref)
