"""Tests for `keras_segattn.ops.paste_masks`."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops.paste_masks import paste_masks


def np_paste(mask, box, height, width):
    """Detectron2's `_do_paste_mask` on the whole image, unthresholded:
    pixel centres mapped into the box, bilinear `grid_sample` with
    `align_corners=False` and zeros outside the mask."""
    mask_h, mask_w = mask.shape
    x1, y1, x2, y2 = (float(c) for c in box)
    out = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            u = ((x + 0.5 - x1) / max(x2 - x1, 1e-6) * 2 - 1 + 1) * mask_w
            v = ((y + 0.5 - y1) / max(y2 - y1, 1e-6) * 2 - 1 + 1) * mask_h
            u, v = (u - 1) / 2, (v - 1) / 2  # pixel coordinates
            x0, y0 = int(np.floor(u)), int(np.floor(v))
            total = 0.0
            for yy, wy in ((y0, 1 - (v - y0)), (y0 + 1, v - y0)):
                for xx, wx in ((x0, 1 - (u - x0)), (x0 + 1, u - x0)):
                    if 0 <= yy < mask_h and 0 <= xx < mask_w:
                        total += wy * wx * mask[yy, xx]
            out[y, x] = total
    return out


def test_matches_reference():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(2, 3, 5, 4)).astype("float32")
    boxes = np.array(
        [
            [[2, 3, 12, 9], [0, 0, 16, 12], [5.5, 1.2, 7.3, 11]],
            [[-4, -4, 6, 6], [3, 3, 3, 3], [1, 1, 14, 10]],  # degenerate
        ],
        "float32",
    )
    pasted = np.asarray(paste_masks(masks, boxes, (12, 16)))
    assert pasted.shape == (2, 3, 12, 16) and pasted.dtype == np.float32
    for b in range(2):
        for d in range(3):
            np.testing.assert_allclose(
                pasted[b, d],
                np_paste(masks[b, d], boxes[b, d], 12, 16),
                atol=1e-5,
            )
    np.testing.assert_array_equal(pasted[1, 1], 0.0)


def test_full_image_box_is_a_resize_and_xla():
    masks = np.ones((1, 1, 7, 7), "float32")
    boxes = np.array([[[0, 0, 14, 14]]], "float32")

    @tf.function(jit_compile=True)
    def paste(masks, boxes):
        return paste_masks(masks, boxes, 14)

    pasted = np.asarray(paste(masks, boxes))
    # Interior pixels are 1; the outer ring blends with the zero padding.
    np.testing.assert_allclose(pasted[0, 0, 1:-1, 1:-1], 1.0, atol=1e-6)
    np.testing.assert_allclose(pasted[0, 0, 0, 1:-1], 0.75, atol=1e-6)


@pytest.mark.parametrize(
    "masks_shape, boxes_shape, match",
    [
        ((2, 3, 5), (2, 3, 4), "Invalid rank for argument `masks`"),
        ((2, 3, 5, 5), (2, 2, 4), "Received: boxes.shape=(2, 2, 4)"),
        ((2, 3, 5, 5), (2, 3, 5), "Received: boxes.shape=(2, 3, 5)"),
    ],
)
def test_errors(masks_shape, boxes_shape, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        paste_masks(np.zeros(masks_shape), np.zeros(boxes_shape), 8)
