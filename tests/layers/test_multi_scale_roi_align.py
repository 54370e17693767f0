"""Tests for `keras_segattn.layers.MultiScaleRoIAlign`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import MultiScaleRoIAlign
from tests.ops.test_multilevel_roi_align import np_multilevel_roi_align
from tests.ops.test_roi_align import np_roi_align
from tests.testing import check_config_round_trip
from tests.testing import check_keras_round_trip
from tests.testing import check_saved_model
from tests.testing import check_xla_fit
from tests.testing import run_layer_checks

F32 = np.float32
SCALES = [1 / 4, 1 / 8, 1 / 16]


def pyramid_inputs(seed=0):
    rng = np.random.default_rng(seed)
    levels = {
        f"p{i + 2}": rng.normal(size=(2, 16 // 2**i, 12 // 2**i, 3)).astype(F32)
        for i in range(3)
    }
    boxes = np.array(
        [
            [[2.0, 3.0, 30.0, 40.0], [0, 0, 64, 48], [-1, -1, -1, -1]],
            [[5.0, 5.0, 300.0, 240.0], [10.0, 8.0, 11.0, 9.0], [4, 8, 60, 9]],
        ],
        F32,
    )
    return levels, boxes


def test_layer_checks_on_a_single_level(tmp_path):
    levels, boxes = pyramid_inputs()
    inputs = {"features": levels["p3"], "boxes": boxes}
    run_layer_checks(
        MultiScaleRoIAlign,
        {"output_size": (3, 2), "spatial_scales": [1 / 8]},
        inputs,
        tmp_path=tmp_path,
        expected_output_shape=(2, 3, 3, 2, 3),
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, x: np_roi_align(
            x["features"], x["boxes"], (3, 2), 1 / 8
        ),
        bad_init_kwargs=[
            (
                {"output_size": 2, "spatial_scales": [1 / 4, 1 / 16]},
                ValueError,
                "consecutive pyramid levels",
            ),
            (
                {"output_size": 2, "spatial_scales": [0.3]},
                ValueError,
                "powers of two",
            ),
            (
                {
                    "output_size": 2,
                    "spatial_scales": [0.25],
                    "sampling_ratio": 0,
                },
                ValueError,
                "sampling_ratio=0",
            ),
            (
                {
                    "output_size": 2,
                    "spatial_scales": [0.25],
                    "canonical_level": 4.5,
                },
                ValueError,
                "canonical_level=4.5",
            ),
        ],
        bad_call_inputs=[
            (
                {"features": (2, 8, 6), "boxes": (2, 3, 4)},
                ValueError,
                "Invalid rank",
            ),
            (
                {"features": (2, 8, 6, 3), "boxes": (2, 3, 2)},
                ValueError,
                "Invalid shape for argument `boxes`",
            ),
        ],
    )


def build_model(layer):
    levels, _ = pyramid_inputs()
    inputs = {
        name: keras.Input(v.shape[1:], name=name) for name, v in levels.items()
    }
    boxes = keras.Input((3, 4), name="boxes")
    convs = [keras.layers.Conv2D(3, 1)(inputs[n]) for n in ("p2", "p3", "p4")]
    pooled = layer(convs, boxes)
    model = keras.Model({**inputs, "boxes": boxes}, pooled)
    return model, keras.Model(inputs, convs)


def test_three_levels_in_a_model(tmp_path):
    levels, boxes = pyramid_inputs(1)
    layer = MultiScaleRoIAlign((3, 2), spatial_scales=SCALES)
    check_config_round_trip(layer)
    model, backbone = build_model(layer)
    assert model.output.shape == (None, 3, 3, 2, 3)
    inputs = {**levels, "boxes": boxes}
    check_xla_fit(model, inputs)
    check_keras_round_trip(model, inputs, tmp_path)
    check_saved_model(model, inputs, tmp_path, atol=1e-5)
    # The layer on the conv outputs, against the loop reference.
    features = [np.asarray(f) for f in backbone(levels)]
    ref = np_multilevel_roi_align(features, boxes, (3, 2), SCALES)
    np.testing.assert_allclose(np.asarray(model(inputs)), ref, atol=1e-5)


def test_call_forms_gradients_and_mixed_precision():
    levels, boxes = pyramid_inputs(2)
    maps = list(levels.values())
    layer = MultiScaleRoIAlign(2, spatial_scales=SCALES, aligned=False)
    out = layer(maps, boxes)
    np.testing.assert_array_equal(
        np.asarray(out), np.asarray(layer([maps, boxes]))
    )
    ref = np_multilevel_roi_align(maps, boxes, (2, 2), SCALES, aligned=False)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out)[0, 2], 0.0)
    watched = [tf.constant(m) for m in maps] + [tf.constant(boxes)]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        loss = tf.reduce_sum(layer(watched[:3], watched[3]) ** 2)
    for grad in tape.gradient(loss, watched):
        assert grad is not None and np.all(np.isfinite(grad.numpy()))
    mixed = MultiScaleRoIAlign(2, spatial_scales=SCALES, dtype="mixed_float16")
    assert keras.backend.standardize_dtype(mixed(maps, boxes).dtype) == (
        "float16"
    )
    sym = layer([keras.Input(m.shape[1:]) for m in maps], keras.Input((3, 4)))
    assert sym.shape == (None, 3, 2, 2, 3)
    with pytest.raises(ValueError, match="one feature map per spatial scale"):
        layer.compute_output_shape([m.shape for m in maps[:2]], (2, 3, 4))
    with pytest.raises(ValueError, match="without `boxes`"):
        layer.compute_output_shape((2, 8, 6, 3))


def test_bounding_box_format_keeps_padding():
    levels, boxes = pyramid_inputs(3)
    maps = list(levels.values())
    xywh = boxes.copy()
    xywh[..., 2:] = boxes[..., 2:] - boxes[..., :2]
    xywh[0, 2] = -1.0
    layer = MultiScaleRoIAlign(2, SCALES, bounding_box_format="xywh")
    np.testing.assert_allclose(
        np.asarray(layer(maps, xywh)),
        np_multilevel_roi_align(maps, boxes, (2, 2), SCALES),
        atol=1e-4,
    )
