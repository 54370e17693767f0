"""Tests for `keras_segattn.layers.MaskPooling`."""

import re

import numpy as np

from keras_segattn.layers import MaskPooling
from tests.layers.test_hypercolumn_mask_head import np_resize_bilinear
from tests.testing import check_numeric_gradients
from tests.testing import run_layer_checks

F32 = np.float32


def _inputs(mask_size=(4, 4), seed=0):
    rng = np.random.default_rng(seed)
    return {
        "features": rng.normal(size=(2, 3, 4, 4, 5)).astype(F32),
        "masks": rng.uniform(size=(2, 3, *mask_size)).astype(F32),
    }


def np_mask_pooling(features, masks=None):
    """Box by box: the mask-weighted mean of the feature vectors."""
    batch, num_boxes, height, width, channels = features.shape
    out = np.zeros((batch, num_boxes, channels))
    for b in range(batch):
        for n in range(num_boxes):
            if masks is None:
                weight = np.ones((height, width))
            else:
                weight = np.asarray(masks[b, n], "float64")
                if weight.shape != (height, width):
                    weight = np_resize_bilinear(weight, (height, width))
            total = np.zeros(channels)
            for i in range(height):
                for j in range(width):
                    total += weight[i, j] * features[b, n, i, j]
            if masks is None:
                out[b, n] = total / weight.sum()
            else:
                out[b, n] = total / (weight.sum() + 1e-6)
    return out


def test_layer_checks(tmp_path):
    run_layer_checks(
        MaskPooling,
        {},
        _inputs(mask_size=(8, 8)),
        tmp_path=tmp_path,
        expected_output_shape=(2, 3, 5),
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, x: np_mask_pooling(**x),
        atol=1e-5,
        bad_call_inputs=[
            (
                {"features": (2, 3, 4, 4), "masks": (2, 3, 4, 4)},
                ValueError,
                "Invalid rank for argument `features`",
            ),
            (
                {"features": (2, 3, 4, 4, 5), "masks": (2, 3, 4)},
                ValueError,
                "Invalid rank for argument `masks`",
            ),
            (
                {"features": (2, 3, 4, 4, 5), "masks": (2, 3, None, 4)},
                ValueError,
                re.escape("Expected [B, N, h, w] with static h and w"),
            ),
        ],
    )


def test_box_mean_and_zero_mask():
    inputs = _inputs()
    layer = MaskPooling()
    np.testing.assert_allclose(
        layer(inputs["features"]),
        np_mask_pooling(inputs["features"]),
        atol=1e-5,
    )
    zero = layer(inputs["features"], np.zeros((2, 3, 4, 4), F32))
    np.testing.assert_array_equal(np.asarray(zero), 0.0)


def test_numeric_gradients():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(1, 1, 3, 3, 2))
    masks = rng.uniform(0.1, 0.9, size=(1, 1, 2, 2))  # resized to 3x3
    layer = MaskPooling(dtype="float64")
    check_numeric_gradients(lambda f, m: layer(f, m), [features, masks])
