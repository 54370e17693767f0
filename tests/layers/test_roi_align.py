"""Tests for `keras_segattn.layers.RoIAlign`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import RoIAlign
from tests.layers.helpers import roi_layer_inputs
from tests.ops.test_roi_align import np_roi_align
from tests.testing import run_layer_checks

F32 = np.float32


def reference(layer, inputs):
    return np_roi_align(
        inputs["features"],
        inputs["boxes"],
        layer.output_size,
        layer.spatial_scale,
        layer.sampling_ratio,
        layer.aligned,
    )


def test_layer_checks(tmp_path):
    run_layer_checks(
        RoIAlign,
        {"output_size": (3, 2), "spatial_scale": 1 / 8},
        roi_layer_inputs(),
        tmp_path=tmp_path,
        expected_output_shape=(2, 3, 3, 2, 3),
        expected_num_trainable_weights=0,
        reference_fn=reference,
        atol=1e-5,
        bad_init_kwargs=[
            ({"output_size": 0}, ValueError, "Received: output_size=0"),
            ({"output_size": (2, -1)}, ValueError, "`output_size`"),
            (
                {"output_size": 2, "spatial_scale": 0.0},
                ValueError,
                "spatial_scale=0.0",
            ),
            (
                {"output_size": 2, "sampling_ratio": 0},
                ValueError,
                "adaptive sampling.*sampling_ratio=0",
            ),
            (
                {"output_size": 2, "sampling_ratio": -1},
                ValueError,
                "XLA cannot compile",
            ),
            (
                {"output_size": 2, "bounding_box_format": "rel_xyxy"},
                ValueError,
                "Relative formats need the image size",
            ),
            (
                {"output_size": 2, "bounding_box_format": "xyz"},
                ValueError,
                "bounding_box_format='xyz'",
            ),
        ],
        bad_call_inputs=[
            (
                {"features": (2, 8, 10), "boxes": (2, 3, 4)},
                ValueError,
                "Invalid rank for argument `features`",
            ),
            (
                {"features": (2, 8, 10, 3), "boxes": (2, 3, 3)},
                ValueError,
                re.escape("boxes.shape=(2, 3, 3)"),
            ),
            (
                {"features": (2, 8, 10, 3), "boxes": (6, 4)},
                ValueError,
                "flat form",
            ),
            (
                {"features": (2, 8, 10, 3), "boxes": (3, 3, 4)},
                ValueError,
                "Mismatched batch sizes",
            ),
        ],
    )


def test_list_call_matches_two_arguments():
    inputs = roi_layer_inputs(1)
    layer = RoIAlign(2, spatial_scale=1 / 8)
    out = layer(inputs["features"], inputs["boxes"])
    out_list = layer([inputs["features"], inputs["boxes"]])
    np.testing.assert_array_equal(np.asarray(out), np.asarray(out_list))
    features = keras.Input((8, 10, 3))
    boxes = keras.Input((3, 4))
    pooled = RoIAlign(2, spatial_scale=1 / 8)([features, boxes])
    assert pooled.shape == (None, 3, 2, 2, 3)
    model = keras.Model([features, boxes], pooled)
    np.testing.assert_allclose(
        np.asarray(model([inputs["features"], inputs["boxes"]])),
        np.asarray(out),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="without `boxes`"):
        layer(inputs["features"])


@pytest.mark.parametrize(
    "fmt", ["yxyx", "xywh", "center_xywh", "center_yxhw", "XYWH"]
)
def test_bounding_box_format(fmt):
    inputs = roi_layer_inputs(2)
    xyxy = inputs["boxes"]
    converted = np.array(
        keras.utils.bounding_boxes.convert_format(
            xyxy, source="xyxy", target=fmt.lower()
        )
    )
    converted[xyxy[..., 0] == -1] = -1.0  # padding stays padding
    layer = RoIAlign(2, spatial_scale=1 / 8, bounding_box_format=fmt)
    assert layer.bounding_box_format == fmt.lower()
    out = np.asarray(layer(inputs["features"], converted))
    ref = np_roi_align(inputs["features"], xyxy, (2, 2), 1 / 8)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    np.testing.assert_array_equal(out[0, 2], 0.0)


def test_flat_boxes():
    inputs = roi_layer_inputs(3)
    index = np.repeat(np.arange(2), 3)[:, None].astype(F32)
    flat = np.concatenate([index, inputs["boxes"].reshape(-1, 4)], 1)
    layer = RoIAlign(2, spatial_scale=1 / 8, bounding_box_format="xywh")
    xywh = flat.copy()
    xywh[:, 3:] = flat[:, 3:] - flat[:, 1:3]
    xywh[np.all(flat[:, 1:] == -1, axis=1), 1:] = -1.0
    out = layer(inputs["features"], xywh)
    assert out.shape == (6, 2, 2, 3)
    assert layer.compute_output_shape((2, 8, 10, 3), (6, 5)) == (6, 2, 2, 3)
    np.testing.assert_allclose(
        np.asarray(out),
        np_roi_align(inputs["features"], flat, (2, 2), 1 / 8),
        atol=1e-4,
    )


def test_mixed_precision_keeps_float32_boxes():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(1, 64, 64, 2)).astype(F32)
    # 1500.7 would become 1501 in float16.
    boxes = np.array([[[1000.3, 1100.2, 1500.7, 1460.9]]], F32)
    layer = RoIAlign(3, spatial_scale=1 / 32, dtype="mixed_float16")
    out = layer(features, boxes)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    ref = np_roi_align(features.astype("float16"), boxes, (3, 3), 1 / 32)
    np.testing.assert_allclose(np.asarray(out, "float64"), ref, atol=2e-3)
    sym = layer(keras.Input((64, 64, 2)), keras.Input((1, 4)))
    assert sym.dtype == "float16"


def test_config_with_lists_from_json():
    layer = RoIAlign.from_config(
        {"output_size": [7, 5], "spatial_scale": 0.25, "name": "roi"}
    )
    assert layer.output_size == (7, 5)
    assert layer.get_config()["bounding_box_format"] == "xyxy"


def test_symbolic_call_with_unknown_sizes():
    features = keras.Input((None, None, 4))
    boxes = keras.Input((None, 4))
    pooled = RoIAlign((7, 5), spatial_scale=1 / 16)(features, boxes)
    assert pooled.shape == (None, None, 7, 5, 4)
    model = keras.Model([features, boxes], pooled)
    inputs = roi_layer_inputs(5)
    features_np = np.random.default_rng(5).normal(size=(2, 6, 7, 4))
    out = model([features_np.astype(F32), inputs["boxes"]])
    ref = np_roi_align(features_np, inputs["boxes"], (7, 5), 1 / 16)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)


def test_xla_fit_through_both_call_forms():
    inputs = roi_layer_inputs(6)
    features = keras.Input((8, 10, 3))
    boxes = keras.Input((3, 4))
    x = keras.layers.Conv2D(4, 1)(features)
    pooled = RoIAlign(2, spatial_scale=1 / 8)([x, boxes])
    model = keras.Model([features, boxes], pooled)
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    assert model.jit_compile is True
    history = model.fit(
        [inputs["features"], inputs["boxes"]],
        np.zeros((2, 3, 2, 2, 4), F32),
        epochs=1,
        verbose=0,
    )
    assert np.isfinite(history.history["loss"][0])
    assert tf.reduce_all(tf.math.is_finite(model.layers[1].kernel))
