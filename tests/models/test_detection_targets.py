"""Tests for the detectors' shared target handling."""

import numpy as np
import pytest

from keras_segattn.models._detection_common import split_detection_targets


def test_labels_key_is_the_classes_key():
    boxes = np.array([[[1, 2, 5, 7], [-1, -1, -1, -1]]], np.float32)
    classes = np.array([[3, -1]], np.int32)
    expected = split_detection_targets(
        {"boxes": boxes, "classes": classes}, "yxyx"
    )
    received = split_detection_targets(
        {"boxes": boxes, "labels": classes}, "yxyx"
    )
    for a, b in zip(expected, received, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(expected[0][0, 0], [2, 1, 7, 5])
    with pytest.raises(ValueError, match='"classes" \\(or "labels"\\)'):
        split_detection_targets({"boxes": boxes}, "yxyx")
