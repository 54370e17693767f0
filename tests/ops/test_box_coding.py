"""Tests for `keras_segattn.ops.box_coding` (encode_boxes, decode_boxes)."""

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops.box_coding import decode_boxes
from keras_segattn.ops.box_coding import encode_boxes
from tests.ops.detection_references import np_decode
from tests.ops.detection_references import np_encode
from tests.ops.detection_references import random_boxes

RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


@pytest.mark.parametrize("weights", [RPN_WEIGHTS, HEAD_WEIGHTS])
def test_encode_matches_reference(weights):
    rng = np.random.default_rng(0)
    boxes, anchors = random_boxes(rng, (40,)), random_boxes(rng, (40,))
    np.testing.assert_allclose(
        encode_boxes(boxes, anchors, weights),
        np_encode(boxes, anchors, weights),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("weights", [RPN_WEIGHTS, HEAD_WEIGHTS])
def test_decode_matches_reference_with_clamp(weights):
    rng = np.random.default_rng(1)
    anchors = random_boxes(rng, (2, 30))
    deltas = rng.normal(0.0, 2.0, (2, 30, 4)).astype("float32")
    deltas[0, :5, 2:] = 50.0  # beyond the clamp, even / 10 or / 5
    decoded = np.asarray(decode_boxes(deltas, anchors, weights))
    expected = np_decode(deltas, anchors, weights)
    np.testing.assert_allclose(decoded, expected, rtol=1e-5, atol=1e-3)
    # The clamp bounds growth at 1000 / 16 = 62.5 times the anchor.
    widths = decoded[0, :5, 2] - decoded[0, :5, 0]
    anchor_widths = anchors[0, :5, 2] - anchors[0, :5, 0]
    np.testing.assert_allclose(widths / anchor_widths, 62.5, rtol=1e-5)


@pytest.mark.parametrize("weights", [RPN_WEIGHTS, HEAD_WEIGHTS])
def test_round_trip_and_broadcast_anchors(weights):
    rng = np.random.default_rng(2)
    anchors = random_boxes(rng, (25,))  # shared [N, 4]
    boxes = random_boxes(rng, (3, 25))  # batched [B, N, 4]
    deltas = encode_boxes(boxes, anchors, weights)
    assert tuple(deltas.shape) == (3, 25, 4)
    assert deltas.dtype == "float32"
    np.testing.assert_allclose(
        decode_boxes(deltas, anchors, weights), boxes, atol=1e-4
    )
    identity = decode_boxes(np.zeros((25, 4), "float32"), anchors, weights)
    np.testing.assert_allclose(identity, anchors, atol=1e-5)


def test_padding_boxes_encode_finite():
    anchors = np.array([[0.0, 0.0, 8.0, 8.0]], "float32")
    padding = -np.ones((1, 4), "float32")
    assert np.all(np.isfinite(encode_boxes(padding, anchors)))


def test_xla_matches_eager():
    rng = np.random.default_rng(3)
    anchors = random_boxes(rng, (2, 10))
    boxes = random_boxes(rng, (2, 10))

    @tf.function(jit_compile=True)
    def round_trip(boxes, anchors):
        deltas = encode_boxes(boxes, anchors, HEAD_WEIGHTS)
        return deltas, decode_boxes(deltas, anchors, HEAD_WEIGHTS)

    deltas, decoded = round_trip(boxes, anchors)
    np.testing.assert_allclose(
        deltas, encode_boxes(boxes, anchors, HEAD_WEIGHTS), atol=1e-5
    )
    np.testing.assert_allclose(decoded, boxes, atol=1e-4)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda b: encode_boxes(b, b, (1.0, 1.0, 1.0)),
            "Received: weights=(1.0, 1.0, 1.0)",
        ),
        (
            lambda b: decode_boxes(b, b, (10, 10, 0, 5)),
            "Received: weights=(10, 10, 0, 5)",
        ),
        (
            lambda b: encode_boxes(b[:, :3], b),
            "Received: boxes.shape=(2, 3)",
        ),
        (
            lambda b: decode_boxes(b, b[:, :2]),
            "Received: anchors.shape=(2, 2)",
        ),
        (
            lambda b: decode_boxes(b, b, bbox_xform_clip=0.0),
            "Received: bbox_xform_clip=0.0",
        ),
    ],
)
def test_errors(call, match):
    boxes = np.zeros((2, 4), "float32")
    with pytest.raises(ValueError, match=re.escape(match)):
        call(boxes)


def test_clamp_constant_is_torchvision():
    from keras_segattn.ops.box_coding import BBOX_XFORM_CLIP

    assert BBOX_XFORM_CLIP == math.log(1000.0 / 16)


def test_integer_boxes_are_refused():
    # Issue 21: integers are refused by name (deltas are fractional).
    with pytest.raises(TypeError, match="boxes.dtype=int32"):
        encode_boxes(np.zeros((1, 4), "int32"), np.ones((1, 4), "float32"))
    with pytest.raises(TypeError, match="anchors.dtype=int64"):
        decode_boxes(np.zeros((1, 4), "float32"), np.ones((1, 4), "int64"))
