"""Tests for `keras_segattn.ops.generate_proposals`."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops.anchors import generate_anchors
from keras_segattn.ops.generate_proposals import generate_proposals
from tests.ops.detection_references import np_box_iou
from tests.ops.detection_references import np_clip
from tests.ops.detection_references import np_decode
from tests.ops.detection_references import np_nms

IMAGE = (48, 64)


def assert_proposals_match(proposals, scores, references):
    """Each image's proposals and scores equal its reference `(boxes,
    probabilities)`, then padding: four -1 and score 0."""
    proposals, scores = np.asarray(proposals), np.asarray(scores)
    for b, (boxes, probs) in enumerate(references):
        n = len(boxes)
        assert n > 0
        np.testing.assert_allclose(proposals[b, :n], boxes, atol=1e-3)
        np.testing.assert_allclose(scores[b, :n], probs, atol=1e-6)
        np.testing.assert_array_equal(proposals[b, n:], -1.0)
        np.testing.assert_array_equal(scores[b, n:], 0.0)


def np_proposals(objectness, deltas, anchors, pre, post, nms, min_size):
    """torchvision `filter_proposals` for one image and one level."""
    order = np.argsort(-objectness, kind="stable")[:pre]
    boxes = np_decode(deltas[order], anchors[order], (1, 1, 1, 1))
    boxes = np_clip(boxes, *IMAGE)
    scores = 1 / (1 + np.exp(-objectness[order].astype("float64")))
    keep = [
        i
        for i in range(len(boxes))
        if boxes[i, 2] - boxes[i, 0] >= min_size
        and boxes[i, 3] - boxes[i, 1] >= min_size
    ]
    kept = np_nms(boxes[keep], scores[keep], nms)[:post]
    return boxes[keep][kept], scores[keep][kept]


def _inputs(seed=0, batch=2):
    rng = np.random.default_rng(seed)
    anchors = np.asarray(generate_anchors(IMAGE, (6, 8), (16, 32), (0.5, 1)))
    num = len(anchors)
    objectness = rng.permutation(batch * num).reshape(batch, num)
    objectness = (objectness / (batch * num) * 8 - 4).astype("float32")
    deltas = rng.normal(0, 0.3, (batch, num, 4)).astype("float32")
    deltas[0, :20, 2:] = -8.0  # tiny boxes, removed
    return objectness, deltas, anchors


@pytest.mark.parametrize("pre, post", [(100, 40), (60, 80), (1000, 20)])
def test_matches_reference(pre, post):
    objectness, deltas, anchors = _inputs()
    proposals, scores = generate_proposals(
        objectness, deltas, anchors, IMAGE, pre, post, 0.7, min_size=1.0
    )
    proposals, scores = np.asarray(proposals), np.asarray(scores)
    assert proposals.shape == (2, post, 4) and scores.shape == (2, post)
    assert proposals.dtype == scores.dtype == np.float32
    references = [
        np_proposals(objectness[b], deltas[b], anchors, pre, post, 0.7, 1.0)
        for b in range(2)
    ]
    assert_proposals_match(proposals, scores, references)


def test_nms_effect_and_clipping():
    objectness, deltas, anchors = _inputs(1)
    proposals, scores = generate_proposals(
        objectness, deltas, anchors, IMAGE, 200, 100, 0.5
    )
    for boxes, probs in zip(
        np.asarray(proposals), np.asarray(scores), strict=True
    ):
        boxes = boxes[probs > 0]
        assert 0 < len(boxes) < 100
        iou = np_box_iou(boxes, boxes) - np.eye(len(boxes))
        assert iou.max() <= 0.5 + 1e-6
        assert boxes.min() >= 0
        assert boxes[:, [0, 2]].max() <= IMAGE[1]
        assert boxes[:, [1, 3]].max() <= IMAGE[0]
        assert np.all(np.diff(probs[probs > 0]) <= 0)  # by decreasing score


def test_duplicate_anchors_give_one_proposal():
    anchors = np.array([[8, 8, 24, 24]] * 5 + [[30, 30, 40, 40]], "float32")
    objectness = np.array([[5, 4, 3, 2, 1, 0]], "float32")
    deltas = np.zeros((1, 6, 4), "float32")
    proposals, scores = generate_proposals(
        objectness, deltas, anchors, IMAGE, 6, 4, 0.7
    )
    np.testing.assert_allclose(
        np.asarray(proposals)[0],
        [[8, 8, 24, 24], [30, 30, 40, 40], [-1] * 4, [-1] * 4],
    )
    assert np.asarray(scores)[0, 2:].tolist() == [0.0, 0.0]


def test_head_layout_and_xla():
    objectness, deltas, anchors = _inputs(2)
    # [B, H, W, A] and [B, H, W, 4 A], the RPN head's layout.
    head_objectness = objectness.reshape(2, 6, 8, 4)
    head_deltas = deltas.reshape(2, 6, 8, 16)

    @tf.function(jit_compile=True)
    def propose(objectness, deltas):
        return generate_proposals(objectness, deltas, anchors, IMAGE, 50, 20)

    compiled = propose(head_objectness, head_deltas)
    eager = generate_proposals(objectness, deltas, anchors, IMAGE, 50, 20)
    for a, b in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pre_nms_top_n": 0}, "Received: pre_nms_top_n=0"),
        ({"nms_threshold": 2.0}, "Received: nms_threshold=2.0"),
        ({"min_size": -1.0}, "Received: min_size=-1.0"),
        ({"deltas": np.zeros((2, 9, 4))}, "Received: deltas.shape=(2, 9, 4)"),
        ({"anchors": np.zeros((10, 4))}, "Received: anchors.shape=(10, 4)"),
    ],
)
def test_errors(kwargs, match):
    arguments = {
        "objectness": np.zeros((2, 12), "float32"),
        "deltas": np.zeros((2, 12, 4), "float32"),
        "anchors": np.zeros((12, 4), "float32"),
        "image_size": IMAGE,
        "pre_nms_top_n": 10,
        "post_nms_top_n": 5,
        **kwargs,
    }
    with pytest.raises(ValueError, match=re.escape(match)):
        generate_proposals(**arguments)


LEVEL_SHAPES = ((12, 16), (6, 8), (3, 4))  # strides 4, 8, 16
LEVEL_SIZES = (16.0, 32.0, 64.0)  # one anchor size per level


def np_multilevel_proposals(objectness, deltas, counts, pre, post, nms, size):
    """torchvision `filter_proposals` for one image over pyramid levels:
    top `pre` per level, decode, clip, remove small, NMS inside each level
    (a loop over levels with the plain greedy `np_nms`), then the best
    `post` of all levels by score."""
    anchors = np.concatenate(
        [
            np.asarray(generate_anchors(IMAGE, shape, (s,), (0.5, 1.0)))
            for shape, s in zip(LEVEL_SHAPES, LEVEL_SIZES, strict=True)
        ]
    )
    candidates = []  # (score, box)
    start = 0
    for count in counts:
        logits = objectness[start : start + count]
        order = start + np.argsort(-logits, kind="stable")[:pre]
        boxes = np_clip(
            np_decode(deltas[order], anchors[order], (1, 1, 1, 1)), *IMAGE
        )
        scores = 1 / (1 + np.exp(-objectness[order].astype("float64")))
        large = (boxes[:, 2] - boxes[:, 0] >= size) & (
            boxes[:, 3] - boxes[:, 1] >= size
        )
        boxes, scores = boxes[large], scores[large]
        for k in np_nms(boxes, scores, nms):
            candidates.append((scores[k], boxes[k]))
        start += count
    candidates.sort(key=lambda c: -c[0])
    candidates = candidates[:post]
    return (
        np.array([c[1] for c in candidates]).reshape(-1, 4),
        np.array([c[0] for c in candidates]),
    )


def _multilevel_inputs(seed=0, batch=2):
    rng = np.random.default_rng(seed)
    anchors = np.concatenate(
        [
            np.asarray(generate_anchors(IMAGE, shape, (s,), (0.5, 1.0)))
            for shape, s in zip(LEVEL_SHAPES, LEVEL_SIZES, strict=True)
        ]
    )
    counts = [h * w * 2 for h, w in LEVEL_SHAPES]  # 384, 96, 24
    num = len(anchors)
    objectness = rng.permutation(batch * num).reshape(batch, num)
    objectness = (objectness / (batch * num) * 8 - 4).astype("float32")
    deltas = rng.normal(0, 0.3, (batch, num, 4)).astype("float32")
    deltas[0, :30, 2:] = -8.0  # tiny boxes, removed
    return objectness, deltas, anchors, counts


@pytest.mark.parametrize("pre, post", [(50, 40), (30, 100), (1000, 60)])
def test_multilevel_matches_reference(pre, post):
    objectness, deltas, anchors, counts = _multilevel_inputs()
    proposals, scores = generate_proposals(
        objectness,
        deltas,
        anchors,
        IMAGE,
        pre,
        post,
        0.6,
        min_size=1.0,
        num_anchors_per_level=counts,
    )
    proposals, scores = np.asarray(proposals), np.asarray(scores)
    assert proposals.shape == (2, post, 4) and scores.shape == (2, post)
    references = [
        np_multilevel_proposals(
            objectness[b], deltas[b], counts, pre, post, 0.6, 1.0
        )
        for b in range(2)
    ]
    assert_proposals_match(proposals, scores, references)


def test_levels_do_not_suppress_each_other():
    # The same box twice on each of two levels: one survivor per level.
    box = [8, 8, 24, 24]
    anchors = np.array([box, box, box, box, [30, 30, 40, 40]], "float32")
    objectness = np.array([[5, 4, 3, 2, 1]], "float32")
    deltas = np.zeros((1, 5, 4), "float32")
    args = (objectness, deltas, anchors, IMAGE, 5, 4, 0.7)
    proposals, _ = generate_proposals(*args, num_anchors_per_level=[2, 3])
    np.testing.assert_allclose(
        np.asarray(proposals)[0], [box, box, [30, 30, 40, 40], [-1] * 4]
    )
    single, _ = generate_proposals(*args)  # one level: one survivor
    np.testing.assert_allclose(
        np.asarray(single)[0], [box, [30, 30, 40, 40], [-1] * 4, [-1] * 4]
    )
    # pre_nms_top_n applies per level: the best 1 of each level.
    top1, _ = generate_proposals(
        objectness,
        deltas,
        anchors,
        IMAGE,
        1,
        4,
        0.7,
        num_anchors_per_level=[2, 3],
    )
    np.testing.assert_allclose(
        np.asarray(top1)[0], [box, box, [-1] * 4, [-1] * 4]
    )


def test_multilevel_xla():
    objectness, deltas, anchors, counts = _multilevel_inputs(3)

    @tf.function(jit_compile=True)
    def propose(objectness, deltas):
        return generate_proposals(
            objectness,
            deltas,
            anchors,
            IMAGE,
            40,
            30,
            num_anchors_per_level=counts,
        )

    compiled = propose(objectness, deltas)
    eager = generate_proposals(
        objectness, deltas, anchors, IMAGE, 40, 30, num_anchors_per_level=counts
    )
    for a, b in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("levels", [[5, 6], [0, 12], (12.0,), []])
def test_bad_num_anchors_per_level(levels):
    with pytest.raises(
        ValueError,
        match=re.escape(f"Received: num_anchors_per_level={levels!r}"),
    ):
        generate_proposals(
            np.zeros((2, 12), "float32"),
            np.zeros((2, 12, 4), "float32"),
            np.zeros((12, 4), "float32"),
            IMAGE,
            10,
            5,
            num_anchors_per_level=levels,
        )
