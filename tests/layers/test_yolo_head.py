"""Tests for `keras_segattn.layers.yolo_head` and `yolo_postprocessor`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers.yolo_head import YOLOHead
from keras_segattn.layers.yolo_postprocessor import YOLOPostprocessor
from tests.testing import check_config_round_trip
from tests.testing import run_layer_checks


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_head_no_convs(layer, features):
    """Average pooling to the grid, a 1x1 conv, sigmoid/softmax (loops)."""
    kernel, bias = (np.asarray(w) for w in layer.output_conv.weights)
    batch, height, width, _ = features.shape
    rows, cols = layer.grid_size
    ph, pw = height // rows, width // cols
    split = 5 * layer.boxes_per_cell
    out = np.zeros((batch, rows, cols, layer.channels), "float32")
    for b in range(batch):
        for i in range(rows):
            for j in range(cols):
                cell = features[b, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw]
                logits = cell.mean(axis=(0, 1)) @ kernel[0, 0] + bias
                classes = np.exp(logits[split:] - logits[split:].max())
                out[b, i, j, :split] = _np_sigmoid(logits[:split])
                out[b, i, j, split:] = classes / classes.sum()
    return out


def test_head_battery_without_convs(tmp_path):
    features = np.random.default_rng(0).normal(size=(2, 4, 6, 3))
    run_layer_checks(
        YOLOHead,
        {
            "grid_size": (2, 3),
            "boxes_per_cell": 2,
            "num_classes": 3,
            "num_convs": 0,
        },
        features.astype("float32"),
        tmp_path=tmp_path,
        expected_output_shape=(2, 2, 3, 13),
        expected_num_trainable_weights=2,
        reference_fn=np_head_no_convs,
        run_mixed_precision=False,  # the grid is float32 by design
        bad_init_kwargs=[
            (
                {"grid_size": 0, "num_classes": 3},
                ValueError,
                re.escape("grid_size=0"),
            ),
            (
                {"grid_size": 2, "boxes_per_cell": 0, "num_classes": 3},
                ValueError,
                re.escape("Received: boxes_per_cell=0"),
            ),
            (
                {"grid_size": 2, "num_classes": 0},
                ValueError,
                re.escape("num_classes=0"),
            ),
        ],
        bad_call_inputs=[
            ((2, 5, 6, 3), ValueError, "Expected it to divide the features"),
        ],
    )


def test_head_with_convs_trains_and_ranges(tmp_path):
    features = np.random.default_rng(1).normal(size=(2, 4, 4, 3))
    layer = run_layer_checks(
        YOLOHead,
        {
            "grid_size": 4,
            "boxes_per_cell": 1,
            "num_classes": 2,
            "filters": 4,
            "num_convs": 1,
        },
        features.astype("float32"),
        tmp_path=tmp_path,
        expected_output_shape=(2, 4, 4, 7),
        expected_num_trainable_weights=5,  # conv, BN gamma/beta, 1x1 conv
        expected_num_non_trainable_weights=2,
        run_mixed_precision=False,
        run_saved_model=False,
    )
    out = np.asarray(layer(features.astype("float32")))
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out[..., 5:].sum(-1), 1.0, atol=1e-6)


def test_head_mixed_precision_keeps_a_float32_grid():
    layer = YOLOHead(2, 2, 3, filters=4, dtype="mixed_float16")
    out = layer(np.zeros((1, 4, 4, 3), "float32"))
    assert out.dtype == "float32"
    assert all(w.dtype == "float32" for w in layer.weights)


def _grid(cells):
    """A 2x2 grid, 1 box per cell, 2 classes, from {(i, j): (x, y, sw, sh,
    conf, p0, p1)}; other cells are all zeros."""
    grid = np.zeros((1, 2, 2, 7), "float32")
    for (i, j), values in cells.items():
        grid[0, i, j] = values
    return grid


def test_postprocessor_decodes_scores_and_nms():
    layer = YOLOPostprocessor(32, boxes_per_cell=1, max_detections=4)
    check_config_round_trip(layer)
    # Cell (0, 0): centre (8, 8), size 16 x 8 (sqrt 0.5 and 0.25 ...).
    sw, sh = np.sqrt(0.5), np.sqrt(0.25)
    grid = _grid(
        {
            (0, 0): (0.5, 0.5, sw, sh, 0.9, 0.8, 0.2),
            # The same box one pixel to the left: its class 0 score (0.03)
            # is below the threshold; its class 1 score (0.3 * 0.9) is
            # kept beside the first box's class 0 (class-aware NMS) and
            # suppresses the first box's class 1 score (0.18, IoU 0.94).
            (0, 1): (0.5 - 17 / 16, 0.5, sw, sh, 0.3, 0.1, 0.9),
            (1, 1): (0.5, 0.5, 0.5, 0.5, 0.04, 0.5, 0.5),  # below 0.05
        }
    )
    out = {k: np.asarray(v) for k, v in layer(grid).items()}
    assert out["num_detections"].tolist() == [2.0]
    np.testing.assert_allclose(
        out["detection_scores"][0], [0.72, 0.27, 0.0, 0.0], atol=1e-6
    )
    np.testing.assert_array_equal(out["detection_classes"][0], [0, 1, 0, 0])
    # yxyx pixels: (y1, x1, y2, x2) = (4, 0, 12, 16), the second box one
    # pixel left, clipped at 0.
    np.testing.assert_allclose(
        out["detection_boxes"][0, 0], [4.0, 0.0, 12.0, 16.0], atol=1e-5
    )
    np.testing.assert_allclose(
        out["detection_boxes"][0, 1], [4.0, 0.0, 12.0, 15.0], atol=1e-5
    )
    np.testing.assert_array_equal(out["detection_boxes"][0, 2:], 0.0)
    shapes = layer.compute_output_shape((None, 2, 2, 7))
    assert shapes["detection_boxes"] == (None, 4, 4)


def test_postprocessor_compiles_with_xla():
    layer = YOLOPostprocessor(
        32, boxes_per_cell=2, max_detections=5, pre_nms_top_n=8
    )
    grid = np.random.default_rng(0).uniform(size=(2, 4, 4, 13))
    import tensorflow as tf

    fn = tf.function(layer, jit_compile=True)
    out = fn(tf.constant(grid, tf.float32))
    eager = layer(grid.astype("float32"))
    for key in out:
        np.testing.assert_allclose(out[key], eager[key], atol=1e-5)


def test_postprocessor_bad_inputs():
    with pytest.raises(ValueError, match=re.escape("boxes_per_cell=0")):
        YOLOPostprocessor(32, boxes_per_cell=0)
    with pytest.raises(ValueError, match="num_classes >= 1"):
        YOLOPostprocessor(32, boxes_per_cell=2)(keras.Input((2, 2, 10)))
    with pytest.raises(ValueError, match=re.escape("nms_threshold=1.5")):
        YOLOPostprocessor(32, nms_threshold=1.5)
