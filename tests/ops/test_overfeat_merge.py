"""Tests for `keras_segattn.ops.overfeat_merge`."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops import overfeat_merge


def np_overfeat_merge(boxes, scores, classes, threshold, scale, weighting):
    """Independent loop: a list of clusters, pairs scanned explicitly."""
    items = [
        [np.array(b, np.float64), float(s), int(c)]
        for b, s, c in zip(boxes, scores, classes, strict=True)
    ]
    while True:
        best, pair = np.inf, None
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b = items[i], items[j]
                if a[2] != b[2]:
                    continue
                ca = np.array([a[0][0] + a[0][2], a[0][1] + a[0][3]]) / 2
                cb = np.array([b[0][0] + b[0][2], b[0][1] + b[0][3]]) / 2
                iw = max(0.0, min(a[0][2], b[0][2]) - max(a[0][0], b[0][0]))
                ih = max(0.0, min(a[0][3], b[0][3]) - max(a[0][1], b[0][1]))
                inter = iw * ih
                area_a = (a[0][2] - a[0][0]) * (a[0][3] - a[0][1])
                area_b = (b[0][2] - b[0][0]) * (b[0][3] - b[0][1])
                union = area_a + area_b - inter
                iou = inter / union if union > 0 else 0.0
                score = np.hypot(*(ca - cb)) / scale + 1.0 - iou
                if score < best:
                    best, pair = score, (i, j)
        if pair is None or best >= threshold:
            break
        i, j = pair
        a, b = items[i], items[j]
        if weighting == "score":
            box = (a[1] * a[0] + b[1] * b[0]) / (a[1] + b[1])
        else:
            box = (a[0] + b[0]) / 2
        items[i] = [box, a[1] + b[1], a[2]]
        del items[j]
    return items


def _clustered(rng, num_boxes):
    centres = rng.uniform(0, 60, (5, 2))
    pick = rng.integers(0, 5, num_boxes)
    size = rng.uniform(8, 14, (num_boxes, 2))
    centre = centres[pick] + rng.normal(0, 2.5, (num_boxes, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return boxes.astype("float32"), rng.uniform(0.1, 1, num_boxes).astype(
        "float32"
    )


@pytest.mark.parametrize("weighting", ["score", "mean"])
def test_matches_numpy_loop(weighting):
    rng = np.random.default_rng(0)
    batch, n = 3, 24
    data = [_clustered(rng, n) for _ in range(batch)]
    boxes = np.stack([d[0] for d in data])
    scores = np.stack([d[1] for d in data])
    classes = rng.integers(0, 2, (batch, n))
    valid = rng.uniform(size=(batch, n)) > 0.15
    out = overfeat_merge(
        boxes,
        scores,
        classes,
        valid,
        threshold=0.9,
        distance_scale=10.0,
        weighting=weighting,
        max_output_size=n + 2,
    )
    out_boxes, out_scores, out_classes, out_valid = map(np.asarray, out)
    assert out_boxes.shape == (batch, n + 2, 4)
    assert out_valid.dtype == bool and out_classes.dtype == np.int32
    merged_any = False
    for b in range(batch):
        keep = valid[b]
        expected = np_overfeat_merge(
            boxes[b][keep],
            scores[b][keep],
            classes[b][keep],
            0.9,
            10.0,
            weighting,
        )
        expected.sort(key=lambda item: -item[1])
        count = int(out_valid[b].sum())
        assert count == len(expected)
        merged_any |= count < keep.sum()
        assert not out_valid[b, count:].any()
        assert np.all(np.diff(out_scores[b, :count]) <= 1e-6)
        np.testing.assert_allclose(
            out_scores[b, :count], [e[1] for e in expected], rtol=1e-5
        )
        np.testing.assert_allclose(
            out_boxes[b, :count], [e[0] for e in expected], atol=1e-3
        )
        np.testing.assert_array_equal(
            out_classes[b, :count], [e[2] for e in expected]
        )
        np.testing.assert_array_equal(out_boxes[b, count:], 0)
    assert merged_any


def test_threshold_zero_keeps_everything_and_classes_stay_apart():
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]]], "f4")
    scores = np.array([[0.5, 0.3, 0.2]], "float32")
    _, s, _, v = overfeat_merge(boxes, scores, threshold=0.0)
    np.testing.assert_array_equal(np.asarray(v), [[True, True, True]])
    b, s, c, v = overfeat_merge(
        boxes, scores, np.array([[0, 1, 0]]), threshold=0.5
    )
    np.testing.assert_allclose(np.asarray(s), [[0.7, 0.3, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(c), [[0, 1, 0]])
    np.testing.assert_array_equal(np.asarray(v), [[True, True, False]])


def test_compiles_under_xla():
    rng = np.random.default_rng(1)
    boxes, scores = _clustered(rng, 16)
    fn = tf.function(
        lambda b, s: overfeat_merge(b, s, threshold=0.8, distance_scale=10.0),
        jit_compile=True,
    )
    compiled = fn(tf.constant(boxes[None]), tf.constant(scores[None]))
    eager = overfeat_merge(
        boxes[None], scores[None], threshold=0.8, distance_scale=10.0
    )
    for x, y in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(distance_scale=0.0), "Received: distance_scale=0.0"),
        (dict(weighting="max"), "Received: weighting='max'"),
        (dict(max_output_size=0), "Received: max_output_size=0"),
    ],
)
def test_bad_arguments(kwargs, message):
    boxes = np.zeros((1, 3, 4), "float32")
    scores = np.zeros((1, 3), "float32")
    with pytest.raises(ValueError, match=re.escape(message)):
        overfeat_merge(boxes, scores, threshold=1.0, **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="boxes"):
        overfeat_merge(np.zeros((1, 3, 5)), np.zeros((1, 3)), threshold=1.0)
    with pytest.raises(ValueError, match="scores"):
        overfeat_merge(np.zeros((1, 3, 4)), np.zeros((1, 4)), threshold=1.0)
