"""Tests for `keras_segattn.ops.multilevel_roi_align`."""

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops import multilevel_roi_align
from keras_segattn.ops import roi_align
from keras_segattn.ops.multilevel_roi_align import _assign_pyramid_levels
from tests.ops.test_roi_align import np_roi_align
from tests.ops.test_roi_align import np_roi_align_grad

F32 = np.float32
SCALES = [1 / 4, 1 / 8, 1 / 16]


def np_level(box, k_min, k_max, canonical_scale=224.0, canonical_level=4):
    """FPN Eq. (1) with torchvision's LevelMapper clamp, one box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    size = math.sqrt(max((x2 - x1) * (y2 - y1), 0.0))
    k = math.floor(canonical_level + math.log2(size / canonical_scale + 1e-6))
    return min(max(k, k_min), k_max) - k_min


def np_multilevel_roi_align(levels, boxes, output_size, scales, **kwargs):
    """Loop reference: each box through `np_roi_align` on its level."""
    k_min = round(-math.log2(scales[0]))
    k_max = k_min + len(levels) - 1
    boxes = np.asarray(boxes, F32)
    out = np.zeros((*boxes.shape[:2], *output_size, levels[0].shape[-1]))
    for b in range(boxes.shape[0]):
        for n in range(boxes.shape[1]):
            level = np_level(boxes[b, n], k_min, k_max)
            out[b, n] = np_roi_align(
                levels[level][b : b + 1],
                boxes[b : b + 1, n : n + 1],
                output_size,
                scales[level],
                **kwargs,
            )[0, 0]
    return out


def pyramid(rng, batch=2, channels=3):
    return [
        rng.normal(size=(batch, 32 // 2**i, 24 // 2**i, channels)).astype(F32)
        for i in range(3)
    ]


def pyramid_boxes(rng):
    xy = rng.uniform(-20, 90, size=(2, 7, 2)).astype(F32)
    wh = rng.uniform(1, 500, size=(2, 7, 2)).astype(F32)
    boxes = np.concatenate([xy, xy + wh], -1)
    boxes[0, 3] = -1.0  # padding
    boxes[1, 2] = [5.0, 5.0, 5.0, 5.0]  # zero area: finest level
    return boxes


def test_level_assignment():
    # sqrt(area) 224 -> level 4 (k0); 112 -> 3; 111 -> 2; 448 -> 5 ...
    boxes = np.array(
        [
            [0, 0, 224, 224],
            [0, 0, 112, 112],
            [0, 0, 111, 111],
            [0, 0, 448, 448],
            [10, 10, 10, 10],
            [0, 0, 2000, 2000],
            [0, 0, 56, 56],
            [0, 0, 55, 56],
        ],
        F32,
    )
    levels = np.asarray(_assign_pyramid_levels(boxes, 2, 5))
    np.testing.assert_array_equal(levels, [2, 1, 0, 3, 0, 3, 0, 0])
    np.testing.assert_array_equal(levels, [np_level(b, 2, 5) for b in boxes])
    levels = np.asarray(_assign_pyramid_levels(boxes, 2, 5, 112.0, 3))
    np.testing.assert_array_equal(levels, [2, 1, 0, 3, 0, 3, 0, 0])


@pytest.mark.parametrize("aligned", [True, False])
def test_forward_matches_loops(aligned):
    rng = np.random.default_rng(0)
    levels, boxes = pyramid(rng), pyramid_boxes(rng)
    out = multilevel_roi_align(levels, boxes, (3, 2), SCALES, 2, aligned)
    ref = np_multilevel_roi_align(
        levels, boxes, (3, 2), SCALES, sampling_ratio=2, aligned=aligned
    )
    assert out.shape == (2, 7, 3, 2, 3)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out)[0, 3], 0.0)


def test_single_level_is_roi_align():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2, 8, 6, 4)).astype(F32)
    boxes = pyramid_boxes(rng)
    out = multilevel_roi_align([features], boxes, 3, [1 / 16], 1, False)
    np.testing.assert_allclose(
        np.asarray(out),
        np.asarray(roi_align(features, boxes, 3, 1 / 16, 1, False)),
        atol=1e-6,
    )


def test_flat_form_matches_batched():
    rng = np.random.default_rng(2)
    levels, boxes = pyramid(rng), pyramid_boxes(rng)
    index = np.repeat(np.arange(2), 7)[:, None].astype(F32)
    flat = np.concatenate([index, boxes.reshape(-1, 4)], 1)
    out = multilevel_roi_align(levels, flat, 2, SCALES)
    batched = multilevel_roi_align(levels, boxes, 2, SCALES)
    np.testing.assert_allclose(
        np.asarray(out), np.asarray(batched).reshape(14, 2, 2, 3), atol=1e-6
    )


def test_gradients_per_level_and_padding():
    rng = np.random.default_rng(3)
    levels = [tf.constant(f.astype("float64")) for f in pyramid(rng)]
    boxes = pyramid_boxes(rng)
    upstream = rng.normal(size=(2, 7, 2, 2, 3))
    with tf.GradientTape() as tape:
        tape.watch(levels)
        out = multilevel_roi_align(levels, boxes, 2, SCALES)
        loss = tf.reduce_sum(out * upstream)
    grads = tape.gradient(loss, levels)
    k_min = 2
    for level, grad in enumerate(grads):
        mask = np.array(
            [
                [
                    np_level(boxes[b, n], k_min, k_min + 2) == level
                    for n in range(7)
                ]
                for b in range(2)
            ]
        )
        mask[0, 3] = False  # padding
        masked = upstream * mask[:, :, None, None, None]
        ref = np_roi_align_grad(
            levels[level].shape, boxes, (2, 2), masked, SCALES[level], 2, True
        )
        np.testing.assert_allclose(grad.numpy(), ref, atol=1e-7)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_gradients_to_levels_and_boxes_equal_roi_align_per_level(jit_compile):
    """The forward gathers from the maps and the gradient is written by
    hand (the table's): both must be the derivative of the output, boxes
    included, as `roi_align`'s autodiff gives it on each box's level."""
    rng = np.random.default_rng(6)
    levels = [tf.constant(f) for f in pyramid(rng)]
    boxes = tf.constant(pyramid_boxes(rng))
    upstream = tf.constant(rng.normal(size=(2, 7, 2, 3, 3)).astype(F32))
    k_min = 2
    mask = np.array(
        [
            [np_level(boxes[b, n], k_min, k_min + 2) for n in range(7)]
            for b in range(2)
        ]
    )

    @tf.function(jit_compile=jit_compile)
    def gradients(levels, boxes):
        with tf.GradientTape() as tape:
            tape.watch([levels, boxes])
            out = multilevel_roi_align(levels, boxes, (2, 3), SCALES)
            loss = tf.reduce_sum(out * upstream)
        return out, tape.gradient(loss, [levels, boxes])

    @tf.function(jit_compile=jit_compile)
    def reference(levels, boxes):
        with tf.GradientTape() as tape:
            tape.watch([levels, boxes])
            loss = 0.0
            for level, scale in enumerate(SCALES):
                out = roi_align(levels[level], boxes, (2, 3), scale)
                keep = tf.constant((mask == level)[..., None, None, None], F32)
                loss += tf.reduce_sum(out * upstream * keep)
        return tape.gradient(loss, [levels, boxes])

    out, (level_grads, box_grad) = gradients(levels, boxes)
    ref_levels, ref_boxes = reference(levels, boxes)
    ref = np_multilevel_roi_align(
        [f.numpy() for f in levels], boxes.numpy(), (2, 3), SCALES
    )
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    for grad, expected in zip(level_grads, ref_levels, strict=True):
        np.testing.assert_allclose(grad.numpy(), expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(box_grad.numpy(), ref_boxes.numpy(), atol=1e-4)
    assert np.abs(box_grad.numpy()).max() > 0  # a gradient, not zeros


def test_xla_with_unknown_batch():
    rng = np.random.default_rng(4)
    levels, boxes = pyramid(rng), pyramid_boxes(rng)
    specs = [tf.TensorSpec([None, *f.shape[1:]], tf.float32) for f in levels]

    @tf.function(
        jit_compile=True,
        input_signature=[*specs, tf.TensorSpec([None, 7, 4], tf.float32)],
    )
    def pool(p2, p3, p4, boxes):
        return multilevel_roi_align([p2, p3, p4], boxes, (2, 3), SCALES)

    out = pool(*levels, boxes)
    ref = np_multilevel_roi_align(levels, boxes, (2, 3), SCALES)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_float16_levels():
    rng = np.random.default_rng(5)
    levels = [f.astype("float16") for f in pyramid(rng)]
    boxes = pyramid_boxes(rng)
    out = multilevel_roi_align(levels, boxes, 2, SCALES)
    assert out.dtype == tf.float16
    ref = np_multilevel_roi_align(levels, boxes, (2, 2), SCALES)
    np.testing.assert_allclose(np.asarray(out, "float64"), ref, atol=1e-2)


@pytest.mark.parametrize(
    "scales, match",
    [
        ([1 / 4, 1 / 16, 1 / 32], "consecutive pyramid levels"),
        ([1 / 8, 1 / 4, 1 / 2], "finest first"),
        ([0.3, 0.15, 0.075], "powers of"),
        ([], "non-empty list"),
        (0.25, "non-empty list"),
    ],
)
def test_invalid_scales(scales, match):
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=match):
        multilevel_roi_align(pyramid(rng), pyramid_boxes(rng), 2, scales)


def test_invalid_levels():
    rng = np.random.default_rng(7)
    levels, boxes = pyramid(rng), pyramid_boxes(rng)
    with pytest.raises(ValueError, match="one feature map per spatial scale"):
        multilevel_roi_align(levels[:2], boxes, 2, SCALES)
    bad = [levels[0], levels[1][..., :2], levels[2]]
    with pytest.raises(ValueError, match=re.escape("features_by_level[1]")):
        multilevel_roi_align(bad, boxes, 2, SCALES)
    bad = [levels[0], levels[1].astype("float16"), levels[2]]
    with pytest.raises(TypeError, match="Expected the dtype"):
        multilevel_roi_align(bad, boxes, 2, SCALES)
    with pytest.raises(ValueError, match="Mismatched batch sizes"):
        multilevel_roi_align(levels, boxes[:1], 2, SCALES)
    with pytest.raises(ValueError, match="sampling_ratio=0"):
        multilevel_roi_align(levels, boxes, 2, SCALES, sampling_ratio=0)
    with pytest.raises(ValueError, match="canonical_scale"):
        multilevel_roi_align(levels, boxes, 2, SCALES, canonical_scale=0)
    with pytest.raises(ValueError, match="Invalid shape for argument `boxes`"):
        multilevel_roi_align(levels, boxes[..., :3], 2, SCALES)


def test_padding_boxes_are_zero_even_on_nan_features():
    # Regression (issue 21): 0 * NaN made padding boxes NaN.
    features = np.full((1, 4, 4, 2), np.nan, "float32")
    boxes = np.array([[[-1, -1, -1, -1], [0, 0, np.inf, 1]]], "float32")
    pooled = multilevel_roi_align([features], boxes, 2, [1.0])
    np.testing.assert_array_equal(np.asarray(pooled), 0.0)
