"""Tests for `keras_segattn.ops.roi_align`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops import roi_align
from tests.ops.helpers import check_integer_features_raise_type_error
from tests.ops.helpers import check_invalid_inputs
from tests.ops.helpers import check_static_output_shape_with_unknown_batch
from tests.references import np_roi_rows
from tests.testing import check_numeric_gradients

F32 = np.float32


def _dropped(row, num_images):
    coords = row[1:]
    return (
        np.all(coords == -1)
        or not np.all(np.isfinite(coords))
        or not (-1 < row[0] < num_images)
    )


def _samples(start, end, scale, pooled, sampling_ratio, aligned):
    """torchvision's sample coordinates along one axis, float32 ops."""
    offset = F32(0.5 if aligned else 0.0)
    roi_start = F32(F32(start) * F32(scale)) - offset
    roi_end = F32(F32(end) * F32(scale)) - offset
    size = F32(roi_end - roi_start)
    if not aligned:
        size = max(size, F32(1.0))
    bin_size = F32(size / F32(pooled))
    return [
        [
            F32(
                F32(roi_start + F32(p) * bin_size)
                + F32(F32(i + 0.5) * bin_size) / F32(sampling_ratio)
            )
            for i in range(sampling_ratio)
        ]
        for p in range(pooled)
    ]


def _bilinear_corners(y, x, height, width):
    """[(row, col, weight)] of torchvision's bilinear_interpolate."""
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return []
    y, x = max(float(y), 0.0), max(float(x), 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return [
        (y_low, x_low, hy * hx),
        (y_low, x_high, hy * lx),
        (y_high, x_low, ly * hx),
        (y_high, x_high, ly * lx),
    ]


def _contributions(features_shape, boxes, output_size, scale, ratio, aligned):
    """Yields (roi, p, q, image, row, col, weight) of every corner."""
    num_images, height, width, _ = features_shape
    ph, pw = output_size
    for k, row in enumerate(np_roi_rows(boxes, num_images)):
        if _dropped(row, num_images):
            continue
        x1, y1, x2, y2 = row[1:]
        ys = _samples(y1, y2, scale, ph, ratio, aligned)
        xs = _samples(x1, x2, scale, pw, ratio, aligned)
        for p in range(ph):
            for q in range(pw):
                for y in ys[p]:
                    for x in xs[q]:
                        for r, c, w in _bilinear_corners(y, x, height, width):
                            yield k, p, q, int(row[0]), r, c, w / ratio**2


def np_roi_align(
    features, boxes, output_size, scale=1.0, sampling_ratio=2, aligned=True
):
    """Loop reference of torchvision's roi_align CPU kernel (float64 sums)."""
    features = np.asarray(features, "float64")
    boxes = np.asarray(boxes, F32)
    num_rois = len(np_roi_rows(boxes, features.shape[0]))
    out = np.zeros((num_rois, *output_size, features.shape[-1]))
    for k, p, q, b, r, c, w in _contributions(
        features.shape, boxes, output_size, scale, sampling_ratio, aligned
    ):
        out[k, p, q] += w * features[b, r, c]
    if boxes.ndim == 3:
        out = out.reshape(*boxes.shape[:2], *out.shape[1:])
    return out


def np_roi_align_grad(
    features_shape, boxes, output_size, upstream, scale, ratio, aligned
):
    """Loop reference of the features gradient: bilinear weights scattered."""
    upstream = np.asarray(upstream, "float64")
    upstream = upstream.reshape(-1, *upstream.shape[-3:])
    grad = np.zeros(features_shape)
    for k, p, q, b, r, c, w in _contributions(
        features_shape, boxes, output_size, scale, ratio, aligned
    ):
        grad[b, r, c] += w * upstream[k, p, q]
    return grad


def random_boxes(rng, shape, low, high, max_size):
    xy = rng.uniform(low, high, size=(*shape, 2)).astype(F32)
    wh = rng.uniform(0.0, max_size, size=(*shape, 2)).astype(F32)
    return np.concatenate([xy, xy + wh], axis=-1)


@pytest.fixture
def features():
    return np.random.default_rng(0).normal(size=(2, 6, 9, 3)).astype(F32)


def tricky_boxes():
    """Inside, partly and fully outside, zero-size, x2 < x1, padding."""
    return np.array(
        [
            [
                [1.0, 2.0, 40.0, 30.0],
                [-30.0, -10.0, 20.0, 25.0],
                [200.0, 200.0, 260.0, 230.0],
                [17.0, 13.0, 17.0, 13.0],
                [-1.0, -1.0, -1.0, -1.0],
            ],
            [
                [30.0, 20.0, 10.0, 5.0],
                [0.0, 0.0, 72.0, 48.0],
                [60.0, -40.0, 90.0, 100.0],
                [3.3, 4.7, 5.1, 6.9],
                [-8.0, 44.0, 3.0, 52.0],
            ],
        ],
        F32,
    )


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize(
    "output_size, scale, ratio",
    [((7, 7), 1 / 8, 2), ((2, 5), 0.125, 1), ((3, 1), 0.1, 3)],
)
def test_forward_matches_loops(features, aligned, output_size, scale, ratio):
    boxes = tricky_boxes()
    out = roi_align(features, boxes, output_size, scale, ratio, aligned)
    ref = np_roi_align(features, boxes, output_size, scale, ratio, aligned)
    assert out.shape == (2, 5, *output_size, 3)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)


def test_random_boxes_and_spatial_scale_1_16():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2, 5, 7, 4)).astype(F32)
    boxes = random_boxes(rng, (2, 6), -40, 130, 90)
    out = roi_align(features, boxes, (3, 4), 1 / 16, 2, True)
    ref = np_roi_align(features, boxes, (3, 4), 1 / 16, 2, True)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)


def test_one_by_one_map():
    features = np.array([[[[2.0, -3.0]]]], F32)
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0], [-1.5, -1.5, 0.5, 0.5]]], F32)
    for aligned in (True, False):
        out = roi_align(features, boxes, (2, 3), 1.0, 2, aligned)
        ref = np_roi_align(features, boxes, (2, 3), 1.0, 2, aligned)
        np.testing.assert_allclose(np.asarray(out), ref, atol=1e-6)


def test_known_value():
    features = np.arange(16, dtype=F32).reshape(1, 4, 4, 1)
    boxes = np.array([[[0.0, 0.0, 2.0, 2.0]]], F32)
    out = roi_align(features, boxes, 1, aligned=False)
    # Samples (y, x) at 0.5 and 1.5 of a map 4 * y + x: mean 4 + 1.
    np.testing.assert_allclose(np.asarray(out)[0, 0, 0, 0, 0], 5.0)


def test_flat_form_matches_batched(features):
    boxes = tricky_boxes()
    flat = np_roi_rows(boxes, 2)
    out_flat = roi_align(features, flat, (3, 2), 1 / 8)
    out = roi_align(features, boxes, (3, 2), 1 / 8)
    assert out_flat.shape == (10, 3, 2, 3)
    np.testing.assert_allclose(
        np.asarray(out_flat), np.asarray(out).reshape(10, 3, 2, 3), atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(out_flat),
        np_roi_align(features, flat, (3, 2), 1 / 8),
        atol=1e-5,
    )


def test_flat_form_with_invalid_batch_index_gives_zeros(features):
    flat = np.array(
        [[1.0, 0.0, 0.0, 30.0, 30.0], [2.0, 0.0, 0.0, 9.0, 9.0]], F32
    )
    flat = np.concatenate([flat, [[-1.0, 0.0, 0.0, 9.0, 9.0]]], 0)
    out = np.asarray(roi_align(features, flat, 2, 1 / 4))
    assert np.abs(out[0]).sum() > 0
    np.testing.assert_array_equal(out[1:], 0.0)


def test_float16_features_with_float32_boxes(features):
    boxes = tricky_boxes() * 30.0  # big pixel coordinates, scale 1/256
    out = roi_align(features.astype("float16"), boxes, (3, 3), 1 / 256)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    ref = np_roi_align(features.astype("float16"), boxes, (3, 3), 1 / 256)
    np.testing.assert_allclose(np.asarray(out, "float64"), ref, atol=1e-2)


def test_padding_and_non_finite_boxes_give_zero_output_and_gradient(features):
    boxes = np.array(
        [
            [[-1.0, -1.0, -1.0, -1.0], [np.nan, 0.0, 10.0, 10.0]],
            [[0.0, np.inf, 10.0, 10.0], [0.0, 0.0, 40.0, 30.0]],
        ],
        F32,
    )
    features_t = tf.constant(features)
    boxes_t = tf.constant(boxes)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([features_t, boxes_t])
        out = roi_align(features_t, boxes_t, 2, 1 / 4)
        dropped = tf.reduce_sum(out[0]) + tf.reduce_sum(out[1, 0])
        total = tf.reduce_sum(out)
    values = out.numpy()
    np.testing.assert_array_equal(values[0], 0.0)
    np.testing.assert_array_equal(values[1, 0], 0.0)
    assert np.abs(values[1, 1]).sum() > 0
    grad_features, grad_boxes = tape.gradient(dropped, [features_t, boxes_t])
    np.testing.assert_array_equal(grad_features.numpy(), 0.0)
    np.testing.assert_array_equal(grad_boxes.numpy(), 0.0)
    total = tape.gradient(total, [features_t, boxes_t])
    for g in total:
        assert np.all(np.isfinite(g.numpy()))
    np.testing.assert_array_equal(total[1].numpy()[0], 0.0)


@pytest.mark.parametrize("aligned", [True, False])
def test_gradient_matches_loops(features, aligned):
    boxes = tricky_boxes()
    rng = np.random.default_rng(2)
    upstream = rng.normal(size=(2, 5, 3, 2, 3))
    features_t = tf.constant(features.astype("float64"))
    with tf.GradientTape() as tape:
        tape.watch(features_t)
        out = roi_align(features_t, boxes, (3, 2), 1 / 8, 2, aligned)
        loss = tf.reduce_sum(out * upstream)
    grad = tape.gradient(loss, features_t).numpy()
    ref = np_roi_align_grad(
        features.shape, boxes, (3, 2), upstream, 1 / 8, 2, aligned
    )
    # Weights are float32 (cast to the features' dtype), hence 1e-7.
    np.testing.assert_allclose(grad, ref, atol=1e-7)


def test_numeric_gradients():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(2, 4, 5, 2))
    # Sample coordinates away from integers and from the map edges.
    boxes = np.array([[[0.3, 0.7, 3.1, 2.6]], [[1.2, 0.45, 4.35, 3.3]]], F32)
    check_numeric_gradients(
        tf.function(lambda f: roi_align(f, boxes, (2, 3), 1.0, 2, True)),
        [features],
    )


def test_box_gradient_is_the_derivative_of_the_weights():
    features = np.random.default_rng(4).normal(size=(1, 5, 6, 2))
    boxes = tf.constant([[[0.3, 0.7, 4.1, 3.6]]], "float32")
    features_t = tf.constant(features, "float32")
    with tf.GradientTape() as tape:
        tape.watch(boxes)
        loss = tf.reduce_sum(roi_align(features_t, boxes, 2, 1.0, 2))
    grad = tape.gradient(loss, boxes).numpy()
    eps = 1e-2
    for i in range(4):
        delta = np.zeros((1, 1, 4), F32)
        delta[..., i] = eps
        plus = roi_align(features_t, boxes + delta, 2, 1.0, 2)
        minus = roi_align(features_t, boxes - delta, 2, 1.0, 2)
        numeric = (np.sum(plus) - np.sum(minus)) / (2 * eps)
        np.testing.assert_allclose(grad[0, 0, i], numeric, atol=2e-3)


def test_xla_with_unknown_batch_and_spatial_size():
    @tf.function(
        jit_compile=True,
        input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32),
            tf.TensorSpec([None, 5, 4], tf.float32),
        ],
    )
    def pool(features, boxes):
        return roi_align(features, boxes, (2, 3), 1 / 8, 2, True)

    rng = np.random.default_rng(5)
    features = rng.normal(size=(2, 6, 9, 3)).astype(F32)
    boxes = tricky_boxes()
    out = pool(features, boxes)
    ref = np_roi_align(features, boxes, (2, 3), 1 / 8, 2, True)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    features = rng.normal(size=(1, 4, 3, 3)).astype(F32)
    out = pool(features, boxes[:1])
    ref = np_roi_align(features, boxes[:1], (2, 3), 1 / 8, 2, True)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_static_output_shape_with_unknown_batch():
    check_static_output_shape_with_unknown_batch(roi_align)


@pytest.mark.parametrize(
    "boxes, match",
    [
        ([[[5.0, 0.0, 2.0, 4.0]]], "Expected x1 <= x2 and y1 <= y2"),
        ([[[0.0, 5.0, 2.0, 4.0]]], re.escape("boxes[0, 0]=[0.0, 5.0")),
        ([[[0.0, np.nan, 2.0, 4.0]]], "Expected finite coordinates"),
        ([[3.0, 0.0, 0.0, 2.0, 4.0]], "batch index"),
        ([[0.5, 0.0, 0.0, 2.0, 4.0]], "batch index"),
    ],
)
def test_validate_rejects_bad_box_values(boxes, match):
    features = np.zeros((1, 4, 4, 1), F32)
    with pytest.raises(ValueError, match=match):
        roi_align(features, np.asarray(boxes, F32), 2, validate=True)
    roi_align(features, np.asarray(boxes, F32), 2)  # default: no check


def test_validate_accepts_padding_and_needs_concrete_boxes():
    features = np.zeros((1, 4, 4, 1), F32)
    boxes = np.array([[[-1.0, -1.0, -1.0, -1.0], [0, 0, 1, 1]]], F32)
    roi_align(features, boxes, 2, validate=True)
    spec = tf.TensorSpec([1, 2, 4], tf.float32)
    with pytest.raises(ValueError, match="concrete boxes"):
        tf.function(
            lambda b: roi_align(features, b, 2, validate=True)
        ).get_concrete_function(spec)


@pytest.mark.parametrize(
    "features_shape, boxes_shape, kwargs, match",
    [
        ((2, 4, 4), (2, 3, 4), {}, "Invalid rank for argument `features`"),
        ((2, 4, 4, 1), (2, 3, 3), {}, "Invalid shape for argument `boxes`"),
        ((2, 4, 4, 1), (3, 4), {}, re.escape("Received: boxes.shape=(3, 4)")),
        ((2, 4, 4, 1), (2, 3, 5), {}, "flat form [K, 5]".replace("[", "\\[")),
        ((2, 4, 4, 1), (3, 3, 4), {}, "Mismatched batch sizes"),
        ((2, 4, 4, 1), (2, 3, 4), {"output_size": 0}, "output_size=0"),
        ((2, 4, 4, 1), (2, 3, 4), {"output_size": (2, -1)}, "output_size"),
        ((2, 4, 4, 1), (2, 3, 4), {"spatial_scale": 0.0}, "spatial_scale"),
        (
            (2, 4, 4, 1),
            (2, 3, 4),
            {"sampling_ratio": 0},
            "adaptive sampling.*Received: sampling_ratio=0",
        ),
        ((2, 4, 4, 1), (2, 3, 4), {"sampling_ratio": -1}, "XLA cannot"),
    ],
)
def test_invalid_inputs(features_shape, boxes_shape, kwargs, match):
    check_invalid_inputs(roi_align, features_shape, boxes_shape, kwargs, match)


def test_integer_features_raise_type_error():
    check_integer_features_raise_type_error(roi_align)


def test_dropped_boxes_are_zero_even_on_nan_features():
    # Regression (issue 21): dropped boxes read pixel (0, 0) with zero
    # weights, and 0 * NaN gave NaN where the docstring promises 0.
    features = np.ones((2, 5, 5, 1), "float32")
    features[0, 0, 0, 0] = np.nan
    features[1, 0, 1, 0] = np.inf
    boxes = np.array(
        [[[-1, -1, -1, -1], [np.nan, 0, 1, 1], [2, 2, 4, 4]]] * 2, "float32"
    )
    for fn in (roi_align, tf.function(roi_align, jit_compile=True)):
        pooled = np.asarray(fn(features, boxes, 2))
        np.testing.assert_array_equal(pooled[:, :2], 0.0)
        np.testing.assert_array_equal(pooled[:, 2], 1.0)


def test_empty_batch_without_boxes_keeps_batch_size_zero():
    # Regression (issue 21): the [K, ...] -> [B, N, ...] reshape used -1
    # for B, which is ambiguous with N = 0: B = 0 came back as 1.
    out = roi_align(np.zeros((0, 3, 3, 1), "f4"), np.zeros((0, 0, 4), "f4"), 2)
    assert out.shape == (0, 0, 2, 2, 1)
