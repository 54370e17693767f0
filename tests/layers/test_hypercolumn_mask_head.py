"""Tests for `keras_segattn.layers.HypercolumnMaskHead`."""

import re

import numpy as np
import pytest

from keras_segattn.layers import HypercolumnMaskHead
from keras_segattn.layers.hypercolumn_mask_head import (
    grid_interpolation_weights,
)
from tests.references import np_conv_same
from tests.testing import run_layer_checks

F32 = np.float32
SHAPE = (2, 3, 6, 6, 3)  # [B, N, h, w, C]


def _features(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(F32)


def np_grid_blend(scores, grid_size):
    """The paper's coarse grid of classifiers, pixel by pixel: classifier
    (a, b) sits at the centre of cell (a, b) of the box; a pixel's logit
    interpolates the (up to four) classifiers around its centre, with the
    outer classifiers used beyond the outer centres."""
    height, width, _ = scores.shape
    out = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            # Pixel centre in units of grid cells, relative to cell centres.
            v = min(max((i + 0.5) / height * grid_size - 0.5, 0), grid_size - 1)
            u = min(max((j + 0.5) / width * grid_size - 0.5, 0), grid_size - 1)
            a0, b0 = int(np.floor(v)), int(np.floor(u))
            a1, b1 = min(a0 + 1, grid_size - 1), min(b0 + 1, grid_size - 1)
            fv, fu = v - a0, u - b0
            # At the clamped border a1 == a0 and fv == 0: no double count.
            for a, wa in ((a0, 1 - fv), (a1, fv)):
                for b, wb in ((b0, 1 - fu), (b1, fu)):
                    out[i, j] += wa * wb * scores[i, j, a * grid_size + b]
    return out


def np_resize_bilinear(x, size):
    """Half-pixel-centre bilinear resize of one map [h, w] (upsampling)."""
    height, width = x.shape
    out = np.zeros(size)
    for i in range(size[0]):
        for j in range(size[1]):
            y = min(max((i + 0.5) * height / size[0] - 0.5, 0), height - 1)
            z = min(max((j + 0.5) * width / size[1] - 0.5, 0), width - 1)
            y0, z0 = int(np.floor(y)), int(np.floor(z))
            y1, z1 = min(y0 + 1, height - 1), min(z0 + 1, width - 1)
            fy, fz = y - y0, z - z0
            out[i, j] = (
                (1 - fy) * (1 - fz) * x[y0, z0]
                + (1 - fy) * fz * x[y0, z1]
                + fy * (1 - fz) * x[y1, z0]
                + fy * fz * x[y1, z1]
            )
    return out


def np_mask_head(layer, features, boxes=None):
    def weights(sublayer):
        return [np.asarray(w, "float64") for w in sublayer.weights]

    batch, num_boxes = features.shape[:2]
    size = layer.mask_size or features.shape[2:4]
    out = np.zeros((batch, num_boxes, *size))
    for b in range(batch):
        for n in range(num_boxes):
            if boxes is not None and np.all(boxes[b, n] == -1):
                out[b, n] = -1e4
                continue
            x = np.asarray(features[b, n : n + 1], "float64")
            x = np.maximum(np_conv_same(x, *weights(layer.hidden)), 0.0)
            for conv in layer.convs:
                x = np.maximum(np_conv_same(x, *weights(conv)), 0.0)
            scores = np_conv_same(x, *weights(layer.classifiers))[0]
            logits = np_grid_blend(scores, layer.grid_size)
            if tuple(size) != logits.shape:
                logits = np_resize_bilinear(logits, size)
            out[b, n] = logits
    return out


def test_layer_checks(tmp_path):
    run_layer_checks(
        HypercolumnMaskHead,
        {"filters": 4, "num_convs": 1, "grid_size": 2, "mask_size": 9},
        _features(),
        tmp_path=tmp_path,
        expected_output_shape=(2, 3, 9, 9),
        expected_num_trainable_weights=6,
        reference_fn=lambda layer, x: np_mask_head(layer, x),
        atol=1e-4,
        bad_init_kwargs=[
            ({"filters": 0}, ValueError, re.escape("Received: filters=0")),
            ({"num_convs": -1}, ValueError, re.escape("num_convs=-1")),
            ({"grid_size": 0}, ValueError, re.escape("grid_size=0")),
            ({"mask_size": (4, 0)}, ValueError, "mask_size"),
        ],
        bad_call_inputs=[
            ((2, 6, 6, 3), ValueError, "Invalid rank for argument `features`"),
            (
                (2, 3, None, 6, 3),
                ValueError,
                re.escape("with static h, w and C"),
            ),
        ],
    )


@pytest.mark.parametrize("grid_size", [1, 3])
def test_grid_sizes_and_padding_boxes_against_numpy(grid_size):
    layer = HypercolumnMaskHead(filters=3, num_convs=0, grid_size=grid_size)
    features = _features((2, 2, 5, 7, 2), seed=1)
    boxes = np.array(
        [[[1, 1, 4, 4], [-1, -1, -1, -1]], [[0, 2, 3, 5], [2, 2, 6, 7]]], F32
    )
    out = np.asarray(layer(features, boxes=boxes))
    assert out.shape == (2, 2, 5, 7)
    np.testing.assert_allclose(
        out, np_mask_head(layer, features, boxes), atol=1e-4
    )
    assert np.all(out[0, 1] == -1e4)  # padding: probability 0


def test_grid_weights_are_a_partition_of_unity():
    weights = grid_interpolation_weights((7, 5), 3)
    assert weights.shape == (7, 5, 9)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    # The centre pixel of the middle cell uses the middle classifier only.
    centre = grid_interpolation_weights((9, 9), 3)[4, 4]
    np.testing.assert_array_equal(centre, np.eye(9)[4])
    np.testing.assert_array_equal(grid_interpolation_weights(4, 1), 1.0)


def test_bad_grid_and_boxes():
    with pytest.raises(ValueError, match=re.escape("grid_size=7")):
        HypercolumnMaskHead(filters=2, grid_size=7)(_features())
    with pytest.raises(ValueError, match=re.escape("argument `boxes`")):
        HypercolumnMaskHead(filters=2)(_features(), boxes=np.zeros((2, 3, 5)))
