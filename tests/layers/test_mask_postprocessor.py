"""Tests for `keras_segattn.layers.mask_postprocessor.MaskPostprocessor`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers.mask_postprocessor import MaskPostprocessor
from tests.ops.test_paste_masks import np_paste
from tests.testing import check_config_round_trip


def test_selects_class_pastes_and_zeros_padding():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 4, 3)).astype("float32")
    boxes_yxyx = np.array(
        [[[1, 2, 9, 11], [0, 0, 12, 16], [0, 0, 0, 0]]] * 2, "float32"
    )
    classes = np.array([[1, 0, 0], [0, 1, 0]], "float32")
    num = np.array([2, 1], "float32")
    layer = MaskPostprocessor((12, 16))
    check_config_round_trip(layer)
    masks = np.asarray(layer(logits, boxes_yxyx, classes, num))
    assert masks.shape == (2, 3, 12, 16) and masks.dtype == np.float32
    for b in range(2):
        for d in range(3):
            if d >= num[b]:
                np.testing.assert_array_equal(masks[b, d], 0.0)
                continue
            probs = 1 / (
                1 + np.exp(-logits[b, d, :, :, int(classes[b, d]) + 1])
            )
            box = boxes_yxyx[b, d][[1, 0, 3, 2]]
            np.testing.assert_allclose(
                masks[b, d], np_paste(probs, box, 12, 16), atol=1e-5
            )
    symbolic = layer(
        keras.Input((3, 4, 4, 3)),
        keras.Input((3, 4)),
        keras.Input((3,)),
        keras.Input(()),
    )
    assert tuple(symbolic.shape) == (None, 3, 12, 16)


def test_errors():
    with pytest.raises(ValueError, match="bounding_box_format='abc'"):
        MaskPostprocessor(8, bounding_box_format="abc")
    with pytest.raises(ValueError, match=re.escape("detection_boxes.shape")):
        MaskPostprocessor(8)(
            keras.Input((3, 4, 4, 3)),
            keras.Input((2, 4)),
            keras.Input((3,)),
            keras.Input(()),
        )
