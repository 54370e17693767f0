"""Tests for `keras_segattn.ops.anchors.generate_anchors`."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops.anchors import generate_anchors
from keras_segattn.ops.anchors import num_anchors_per_location


def np_anchors(image_size, feature_size, sizes, ratios):
    """Loop reference of torchvision's AnchorGenerator for one level:
    ratios outer, sizes inner, rounded half to even (torch.round), cells
    at (x * stride_w, y * stride_h), index (y * W + x) * A + a."""
    (image_h, image_w), (feature_h, feature_w) = image_size, feature_size
    stride_h, stride_w = image_h // feature_h, image_w // feature_w
    cells = []
    for ratio in ratios:
        h_ratio = np.sqrt(np.float32(ratio))
        w_ratio = np.float32(1.0) / h_ratio
        for size in sizes:
            w = np.float32(w_ratio * np.float32(size))
            h = np.float32(h_ratio * np.float32(size))
            cells.append(np.round(np.array([-w, -h, w, h], "float32") / 2))
    anchors = []
    for y in range(feature_h):
        for x in range(feature_w):
            shift = np.array(
                [x * stride_w, y * stride_h, x * stride_w, y * stride_h],
                "float32",
            )
            anchors.extend(shift + cell for cell in cells)
    return np.array(anchors, "float32")


@pytest.mark.parametrize(
    "image_size, feature_size, sizes, ratios",
    [
        ((64, 64), (8, 8), (16.0, 32.0), (0.5, 1.0, 2.0)),
        ((100, 75), (13, 10), (32, 64, 128), (0.5, 1.0, 2.0)),
        ((32, 48), (4, 6), (15.0, 33.3), (0.7, 1.3)),  # half-even rounding
        ((16, 16), (1, 1), (8,), (1.0,)),
    ],
)
def test_matches_reference(image_size, feature_size, sizes, ratios):
    anchors = generate_anchors(image_size, feature_size, sizes, ratios)
    expected = np_anchors(image_size, feature_size, sizes, ratios)
    assert anchors.dtype == "float32"
    assert tuple(anchors.shape) == (
        feature_size[0] * feature_size[1] * len(sizes) * len(ratios),
        4,
    )
    np.testing.assert_array_equal(np.asarray(anchors), expected)


def test_order_and_round_half_even():
    # Size 15, ratio 1: the half-width 7.5 rounds to 8 (half to even).
    anchors = np.asarray(generate_anchors(32, 4, (15.0, 30.0), (1.0,)))
    np.testing.assert_array_equal(anchors[0], [-8, -8, 8, 8])
    np.testing.assert_array_equal(anchors[1], [-15, -15, 15, 15])
    # Location (y=1, x=2) with stride 8, first cell anchor.
    np.testing.assert_array_equal(anchors[(1 * 4 + 2) * 2], [8, 0, 24, 16])
    assert num_anchors_per_location((15.0, 30.0), (1.0,)) == 2


def test_static_inside_tf_function():
    @tf.function(jit_compile=True)
    def fn():
        anchors = generate_anchors((64, 32), (8, 4), (16,), (0.5, 1.0))
        assert anchors.shape.as_list() == [8 * 4 * 2, 4]
        return anchors

    np.testing.assert_array_equal(
        fn(), np_anchors((64, 32), (8, 4), (16,), (0.5, 1.0))
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"feature_size": (9, 8)}, "Received: feature_size=(9, 8)"),
        ({"feature_size": 0}, "Received: feature_size=0"),
        ({"image_size": (8, None)}, "Received: image_size=(8, None)"),
        ({"sizes": ()}, "Received: sizes=()"),
        ({"aspect_ratios": (1.0, -2.0)}, "Received: aspect_ratios=-2.0"),
    ],
)
def test_errors(kwargs, match):
    arguments = {"image_size": (8, 8), "feature_size": (4, 4), **kwargs}
    with pytest.raises(ValueError, match=re.escape(match)):
        generate_anchors(**arguments)
