"""Tests for `keras_segattn.ops.match_boxes`."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops.anchors import generate_anchors
from keras_segattn.ops.match_boxes import match_boxes
from tests.ops.detection_references import np_match


def _scene(seed=0):
    """Anchors [N, 4] and gt [2, 4, 4] near some anchors (IoUs spread over
    [0, 1]), with padding rows."""
    rng = np.random.default_rng(seed)
    anchors = np.asarray(generate_anchors(64, 8, (16.0, 32.0), (0.5, 1, 2)))
    picks = rng.choice(len(anchors), 6, replace=False)
    jitter = rng.uniform(-6, 6, (6, 4)).astype("float32")
    gt = np.full((2, 4, 4), -1.0, "float32")
    gt[0, :3] = anchors[picks[:3]] + jitter[:3]
    gt[1, 1:4] = anchors[picks[3:]] + jitter[3:]  # padding row first
    return anchors, gt


@pytest.mark.parametrize(
    "high, low, allow_low_quality",
    [(0.7, 0.3, True), (0.7, 0.3, False), (0.5, 0.5, False)],
)
def test_matches_reference(high, low, allow_low_quality):
    anchors, gt = _scene()
    matches = np.asarray(match_boxes(anchors, gt, high, low, allow_low_quality))
    assert matches.dtype == np.int32
    assert matches.shape == (2, len(anchors))
    for b in range(2):
        expected = np_match(anchors, gt[b], high, low, allow_low_quality)
        np.testing.assert_array_equal(matches[b], expected)
    # Padding gt rows (row 0 of image 1) never match.
    assert -1 in set(matches.ravel())
    assert 0 not in set(matches[1])
    if allow_low_quality or low == high:
        assert matches.max() >= 0
    if low == high:
        assert -2 not in set(matches.ravel())


def test_low_quality_matches():
    anchors = np.array(
        [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], "float32"
    )
    # IoU 0.5 with anchor 1 only: between the 0.3 and 0.7 thresholds.
    gt = np.array([[[20, 20, 30, 40]]], "float32")
    without = np.asarray(match_boxes(anchors, gt, 0.7, 0.3, False))
    with_low = np.asarray(match_boxes(anchors, gt, 0.7, 0.3, True))
    np.testing.assert_array_equal(without, [[-1, -2, -1]])
    np.testing.assert_array_equal(with_low, [[-1, 0, -1]])
    # A ground truth overlapping no anchor creates no low-quality match.
    far = np.array([[[100, 100, 110, 110]]], "float32")
    np.testing.assert_array_equal(
        match_boxes(anchors, far, 0.7, 0.3, True), [[-1, -1, -1]]
    )


def test_padding_ignored():
    anchors, gt = _scene(1)
    base = np.asarray(match_boxes(anchors, gt, 0.7, 0.3, True))
    more_padding = np.concatenate([gt, -np.ones((2, 3, 4), "float32")], 1)
    np.testing.assert_array_equal(
        match_boxes(anchors, more_padding, 0.7, 0.3, True), base
    )
    all_padding = -np.ones((2, 2, 4), "float32")
    np.testing.assert_array_equal(
        match_boxes(anchors, all_padding, 0.7, 0.3, True), -1
    )
    # Batched boxes: padding boxes are ignored (-2); the rest unchanged.
    boxes = np.stack([anchors, anchors])
    boxes[:, :5] = -1.0
    batched = np.asarray(match_boxes(boxes, gt, 0.7, 0.3, True))
    np.testing.assert_array_equal(batched[:, :5], -2)
    rest = np.asarray(match_boxes(anchors[5:], gt, 0.7, 0.3, True))
    np.testing.assert_array_equal(batched[:, 5:], rest)


def test_xla_and_unknown_batch():
    anchors, gt = _scene(2)

    @tf.function(
        jit_compile=True,
        input_signature=[tf.TensorSpec([None, 4, 4], tf.float32)],
    )
    def match(gt_boxes):
        return match_boxes(anchors, gt_boxes, 0.7, 0.3, True)

    np.testing.assert_array_equal(
        match(gt), match_boxes(anchors, gt, 0.7, 0.3, True)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"high_threshold": 1.5}, "Received: high_threshold=1.5"),
        (
            {"low_threshold": 0.8},
            "Received: low_threshold=0.8 and high_threshold=0.7",
        ),
        ({"gt_boxes": np.zeros((4, 4))}, "Received: gt_boxes.shape=(4, 4)"),
        ({"boxes": np.zeros((2, 5, 3))}, "Received: boxes.shape=(2, 5, 3)"),
    ],
)
def test_errors(kwargs, match):
    arguments = {
        "boxes": np.zeros((5, 4), "float32"),
        "gt_boxes": np.zeros((2, 3, 4), "float32"),
        "high_threshold": 0.7,
        "low_threshold": 0.3,
        **kwargs,
    }
    with pytest.raises(ValueError, match=re.escape(match)):
        match_boxes(**arguments)
