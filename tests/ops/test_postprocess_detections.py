"""Tests for `keras_segattn.ops.postprocess_detections`."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops.postprocess_detections import postprocess_detections
from tests.ops.detection_references import np_batched_nms
from tests.ops.detection_references import np_clip
from tests.ops.detection_references import np_decode
from tests.ops.detection_references import random_boxes

IMAGE = (40, 56)
WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def np_postprocess(logits, deltas, proposals, score_threshold, nms, limit):
    """torchvision `RoIHeads.postprocess_detections` for one image."""
    num_labels = logits.shape[-1]
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    probs = exp / exp.sum(-1, keepdims=True)
    boxes, scores, labels = [], [], []
    for r, proposal in enumerate(proposals):
        if np.all(proposal == -1):
            continue
        for k in range(1, num_labels):
            box = np_decode(deltas[r, 4 * k : 4 * k + 4], proposal, WEIGHTS)
            box = np_clip(box, *IMAGE)
            if probs[r, k] <= score_threshold:
                continue
            if box[2] - box[0] < 1e-2 or box[3] - box[1] < 1e-2:
                continue
            boxes.append(box)
            scores.append(probs[r, k])
            labels.append(k)
    keep = np_batched_nms(boxes, scores, labels, nms)[:limit]
    return (
        np.array([boxes[i] for i in keep]).reshape(-1, 4),
        np.array([scores[i] for i in keep]),
        np.array([labels[i] for i in keep]),
    )


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    proposals = random_boxes(rng, (2, 12), high=40)
    proposals[1, 8:] = -1.0  # padding
    logits = rng.normal(0, 2, (2, 12, 4)).astype("float32")
    deltas = rng.normal(0, 1, (2, 12, 16)).astype("float32")
    return logits, deltas, proposals


@pytest.mark.parametrize("limit", [5, 40])
def test_matches_reference(limit):
    logits, deltas, proposals = _inputs()
    boxes, scores, labels, kept = postprocess_detections(
        logits, deltas, proposals, IMAGE, max_detections=limit
    )
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    labels, kept = np.asarray(labels), np.asarray(kept)
    assert boxes.shape == (2, limit, 4) and labels.dtype == np.int32
    for b in range(2):
        ref_boxes, ref_scores, ref_labels = np_postprocess(
            logits[b], deltas[b], proposals[b], 0.05, 0.5, limit
        )
        n = len(ref_scores)
        assert kept[b].sum() == n and kept[b, :n].all()
        np.testing.assert_allclose(boxes[b, :n], ref_boxes, atol=1e-3)
        np.testing.assert_allclose(scores[b, :n], ref_scores, atol=1e-6)
        np.testing.assert_array_equal(labels[b, :n], ref_labels)
        np.testing.assert_array_equal(boxes[b, n:], 0.0)
        np.testing.assert_array_equal(labels[b, n:], 0)


def test_padding_proposals_give_nothing_and_xla():
    logits, deltas, proposals = _inputs(1)
    logits[..., 1] = 10.0  # confident class 1 everywhere
    proposals[0] = -1.0

    @tf.function(jit_compile=True)
    def detect(logits, deltas, proposals):
        return postprocess_detections(logits, deltas, proposals, IMAGE)

    outputs = detect(logits, deltas, proposals)
    eager = postprocess_detections(logits, deltas, proposals, IMAGE)
    for a, b in zip(outputs, eager, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert not np.asarray(outputs[3])[0].any()
    assert np.asarray(outputs[3])[1].any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_detections": 0}, "Received: max_detections=0"),
        ({"score_threshold": 1.5}, "Received: score_threshold=1.5"),
        (
            {"class_logits": np.zeros((1, 3, 1))},
            "Received: class_logits.shape=(1, 3, 1)",
        ),
        (
            {"box_deltas": np.zeros((1, 3, 12))},
            "Received: box_deltas.shape=(1, 3, 12)",
        ),
        (
            {"proposals": np.zeros((1, 3, 5))},
            "Received: proposals.shape=(1, 3, 5)",
        ),
    ],
)
def test_errors(kwargs, match):
    arguments = {
        "class_logits": np.zeros((1, 3, 4), "float32"),
        "box_deltas": np.zeros((1, 3, 16), "float32"),
        "proposals": np.zeros((1, 3, 4), "float32"),
        "image_size": IMAGE,
        **kwargs,
    }
    with pytest.raises(ValueError, match=re.escape(match)):
        postprocess_detections(**arguments)
