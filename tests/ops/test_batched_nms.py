"""Tests for `keras_segattn.ops.batched_nms`."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops.batched_nms import batched_nms
from tests.ops.detection_references import np_batched_nms
from tests.ops.detection_references import random_boxes


def _clustered(rng, batch, num_boxes):
    """Boxes in a few overlapping clusters, some with negative coordinates,
    and distinct scores."""
    centres = random_boxes(rng, (batch, 4), low=-10.0, high=40.0)
    pick = rng.integers(0, 4, (batch, num_boxes))
    boxes = np.take_along_axis(centres, pick[..., None], axis=1)
    boxes = boxes + rng.uniform(-4, 4, boxes.shape).astype("float32")
    boxes[..., 2:] = np.maximum(boxes[..., 2:], boxes[..., :2] + 1)
    scores = rng.permutation(batch * num_boxes).reshape(batch, num_boxes)
    return boxes, (scores / scores.size).astype("float32")


@pytest.mark.parametrize("with_categories", [False, True])
def test_matches_reference(with_categories):
    rng = np.random.default_rng(0)
    boxes, scores = _clustered(rng, 3, 40)
    idxs = rng.integers(0, 3, (3, 40)) if with_categories else None
    valid = rng.uniform(size=(3, 40)) > 0.2
    index, kept = batched_nms(boxes, scores, 30, 0.5, idxs=idxs, valid=valid)
    index, kept = np.asarray(index), np.asarray(kept)
    assert index.shape == kept.shape == (3, 30)
    for b in range(3):
        members = np.flatnonzero(valid[b])
        categories = idxs[b] if with_categories else np.zeros(40, int)
        expected = np_batched_nms(
            boxes[b][members],
            scores[b][members],
            categories[members],
            0.5,
        )
        expected = members[expected][:30]
        assert kept[b].sum() == len(expected)
        np.testing.assert_array_equal(index[b, : len(expected)], expected)
        np.testing.assert_array_equal(index[b, len(expected) :], 0)
        assert not kept[b, len(expected) :].any()


def test_categories_do_not_suppress_each_other():
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]]], "f4")
    scores = np.array([[0.9, 0.8, 0.7]], "float32")
    index, kept = batched_nms(boxes, scores, 3, 0.5)
    np.testing.assert_array_equal(np.asarray(kept), [[True, False, False]])
    index, kept = batched_nms(boxes, scores, 3, 0.5, idxs=np.array([[0, 1, 1]]))
    np.testing.assert_array_equal(np.asarray(index)[0, :2], [0, 1])
    np.testing.assert_array_equal(np.asarray(kept), [[True, True, False]])


def test_no_valid_box_and_xla():
    boxes = random_boxes(np.random.default_rng(1), (2, 6))
    scores = np.linspace(0, 1, 12, dtype="float32").reshape(2, 6)
    valid = np.array([[False] * 6, [True] * 6])

    @tf.function(jit_compile=True)
    def nms(boxes, scores, valid):
        return batched_nms(boxes, scores, 4, 0.5, valid=valid)

    index, kept = nms(boxes, scores, valid)
    assert not np.asarray(kept)[0].any()
    eager = batched_nms(boxes, scores, 4, 0.5, valid=valid)
    np.testing.assert_array_equal(index, eager[0])
    np.testing.assert_array_equal(kept, eager[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_output_size": 0}, "Received: max_output_size=0"),
        ({"iou_threshold": -0.1}, "Received: iou_threshold=-0.1"),
        ({"boxes": np.zeros((2, 5, 3))}, "Received: boxes.shape=(2, 5, 3)"),
        ({"scores": np.zeros((2, 4))}, "Received: scores.shape=(2, 4)"),
    ],
)
def test_errors(kwargs, match):
    arguments = {
        "boxes": np.zeros((2, 5, 4), "float32"),
        "scores": np.zeros((2, 5), "float32"),
        "max_output_size": 3,
        "iou_threshold": 0.5,
        **kwargs,
    }
    with pytest.raises(ValueError, match=re.escape(match)):
        batched_nms(**arguments)


def test_non_finite_boxes_and_scores_are_never_kept_nor_suppress():
    # Regression (issue 21): one NaN score made every score NaN through
    # a global min, and no box at all was kept.
    nan = np.nan
    boxes = np.array(
        [[[0, 0, 1, 1], [0, 0, 1, 1], [nan, 0, 1, 1], [0, 0, 2, 2]]], "f4"
    )
    scores = np.array([[0.9, 0.8, 0.95, nan]], "float32")
    jitted = tf.function(
        lambda b, s: batched_nms(b, s, 4, 0.5), jit_compile=True
    )
    for fn in (lambda b, s: batched_nms(b, s, 4, 0.5), jitted):
        indices, kept = fn(boxes, scores)
        np.testing.assert_array_equal(np.asarray(kept), [[1, 0, 0, 0]])
        assert int(np.asarray(indices)[0, 0]) == 0


@pytest.mark.parametrize("shape", [(2, 0), (0, 3)])
def test_no_boxes_or_no_images_give_no_kept_slots(shape):
    # Regression (issue 21): N = 0 and B = 0 crashed (empty reductions
    # and TF's padded NMS).
    indices, kept = batched_nms(
        np.zeros((*shape, 4), "float32"), np.zeros(shape, "float32"), 3, 0.5
    )
    assert indices.shape == (shape[0], 3) and kept.shape == (shape[0], 3)
    assert not np.asarray(kept).any()


def test_integer_boxes_are_refused():
    with pytest.raises(TypeError, match="boxes.dtype=int32"):
        batched_nms(np.zeros((1, 2, 4), "int32"), np.zeros((1, 2)), 2, 0.5)


@pytest.mark.parametrize(
    "threshold, expected", [(0.0, [0, 2]), (0.5, [0, 1, 2]), (1.0, [0, 1, 2])]
)
def test_suppression_is_strict_as_in_torchvision(threshold, expected):
    # Regression (issue 21): TF's NMS suppresses at IoU == threshold and
    # kept identical boxes at threshold 0; torchvision suppresses at
    # IoU > threshold only. Boxes 0 and 1 have IoU exactly 0.5.
    boxes = np.array([[[0, 0, 2, 1], [0, 0, 1, 1], [5, 5, 6, 6]]], "float32")
    if threshold != 0.5:
        boxes[0, 1] = boxes[0, 0]  # identical: IoU 1
    scores = np.array([[0.9, 0.8, 0.7]], "float32")
    indices, kept = batched_nms(boxes, scores, 3, threshold)
    kept = np.asarray(kept)[0]
    assert np.asarray(indices)[0][kept].tolist() == expected
