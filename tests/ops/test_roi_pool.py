"""Tests for `keras_segattn.ops.roi_pool`."""

import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops import roi_pool
from keras_segattn.ops.roi_pool import _VALUE_COSTS
from keras_segattn.ops.roi_pool import _choose_method
from keras_segattn.ops.roi_pool import _roi_pool
from keras_segattn.ops.roi_pool import _table_base
from tests.ops.helpers import check_integer_features_raise_type_error
from tests.ops.helpers import check_invalid_inputs
from tests.ops.helpers import check_static_output_shape_with_unknown_batch
from tests.references import np_roi_rows
from tests.testing import check_numeric_gradients

F32 = np.float32
# Every exact method: the scan, and window tables of several bases (base 2
# is the classic sparse table; base 8 on a 6-row map has one level and
# looks up 6 windows, fewer than the base); "-train": `training=True`,
# the argmax found in the forward pass (values decoded from the keys, or
# the scan with positions).
METHODS = [
    pytest.param({"method": "scan"}, id="scan"),
    *(
        pytest.param({"method": "table", "base": base}, id=f"table{base}")
        for base in (2, 3, 5, 8)
    ),
    pytest.param({"method": "scan", "training": True}, id="scan-train"),
    *(
        pytest.param(
            {"method": "table", "base": base, "training": True},
            id=f"table{base}-train",
        )
        for base in (2, 5)
    ),
]


def c_round(value) -> int:
    """C `round`: half away from zero (exact for float32 inputs)."""
    value = float(value)
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def np_roi_pool(features, boxes, output_size, scale=1.0):
    """Loop reference of torchvision's roi_pool CPU kernel.

    Returns `(pooled, argmax)`, argmax the flat index into `features` of
    each output element (-1 for empty bins and dropped boxes).
    """
    features = np.asarray(features)
    num_images, height, width, channels = features.shape
    rows = np_roi_rows(boxes, num_images)
    ph, pw = output_size
    pooled = np.zeros((len(rows), ph, pw, channels), features.dtype)
    argmax = -np.ones((len(rows), ph, pw, channels), "int64")
    for k, row in enumerate(rows):
        coords = row[1:]
        if np.all(coords == -1) or not np.all(np.isfinite(coords)):
            continue
        if not -1 < row[0] < num_images:
            continue
        b = int(row[0])
        start_w, start_h, end_w, end_h = (
            c_round(F32(c) * F32(scale)) for c in coords
        )
        roi_w = max(end_w - start_w + 1, 1)
        roi_h = max(end_h - start_h + 1, 1)
        bin_h, bin_w = F32(roi_h) / F32(ph), F32(roi_w) / F32(pw)
        for p in range(ph):
            h0 = int(np.floor(F32(p) * bin_h)) + start_h
            h1 = int(np.ceil(F32(p + 1) * bin_h)) + start_h
            h0, h1 = min(max(h0, 0), height), min(max(h1, 0), height)
            for q in range(pw):
                w0 = int(np.floor(F32(q) * bin_w)) + start_w
                w1 = int(np.ceil(F32(q + 1) * bin_w)) + start_w
                w0, w1 = min(max(w0, 0), width), min(max(w1, 0), width)
                if h1 <= h0 or w1 <= w0:
                    continue
                for c in range(channels):
                    # torchvision's start: -FLT_MAX (the lowest float).
                    best, best_at = np.finfo(features.dtype).min, -1
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            if features[b, h, w, c] > best:  # first wins
                                best = features[b, h, w, c]
                                best_at = ((b * height + h) * width + w) * (
                                    channels
                                ) + c
                    pooled[k, p, q, c], argmax[k, p, q, c] = best, best_at
    if np.asarray(boxes).ndim == 3:
        shape = np.asarray(boxes).shape[:2]
        pooled = pooled.reshape(*shape, *pooled.shape[1:])
        argmax = argmax.reshape(*shape, *argmax.shape[1:])
    return pooled, argmax


def np_roi_pool_grad(features, boxes, output_size, scale, upstream):
    """Loop reference of the gradient: each bin's to its argmax only."""
    _, argmax = np_roi_pool(features, boxes, output_size, scale)
    grad = np.zeros(np.size(features))
    for index, g in zip(
        argmax.reshape(-1), np.reshape(upstream, -1), strict=True
    ):
        if index >= 0:
            grad[index] += g
    return grad.reshape(np.shape(features))


def tricky_boxes():
    """Inside, partly and fully outside, zero-size, x2 < x1, padding, and
    corners on rounding halves (x * scale = +-2.5, 0.5, 1.5)."""
    return np.array(
        [
            [
                [1.0, 2.0, 40.0, 30.0],
                [-30.0, -10.0, 20.0, 25.0],
                [200.0, 200.0, 260.0, 230.0],
                [17.0, 13.0, 17.0, 13.0],
                [-1.0, -1.0, -1.0, -1.0],
                [-20.0, 4.0, 12.0, 60.0],
            ],
            [
                [30.0, 20.0, 10.0, 5.0],
                [0.0, 0.0, 72.0, 48.0],
                [60.0, -40.0, 90.0, 100.0],
                [3.3, 4.7, 5.1, 6.9],
                [-8.0, 44.0, 3.0, 52.0],
                [4.0, 12.0, 20.0, 36.0],
            ],
        ],
        F32,
    )


@pytest.fixture
def features():
    return np.random.default_rng(0).normal(size=(2, 6, 9, 3)).astype(F32)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "output_size, scale", [((7, 7), 1 / 8), ((2, 5), 0.125), ((3, 1), 0.1)]
)
def test_forward_matches_loops(features, method, output_size, scale):
    boxes = tricky_boxes()
    out = _roi_pool(features, boxes, output_size, scale, **method)
    ref, _ = np_roi_pool(features, boxes, output_size, scale)
    assert out.shape == (2, 6, *output_size, 3)
    np.testing.assert_array_equal(np.asarray(out), ref)


def test_public_op_and_auto_method(features):
    boxes = tricky_boxes()
    out = roi_pool(features, boxes, (2, 2), 1 / 8)
    np.testing.assert_array_equal(
        np.asarray(out), np_roi_pool(features, boxes, (2, 2), 1 / 8)[0]
    )


@pytest.mark.parametrize("method", METHODS)
def test_random_boxes_at_spatial_scale_1_16(method):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2, 7, 5, 4)).astype(F32)
    xy = rng.uniform(-40, 130, size=(2, 8, 2)).astype(F32)
    boxes = np.concatenate([xy, xy + rng.uniform(0, 90, (2, 8, 2))], -1)
    out = _roi_pool(features, boxes.astype(F32), (3, 4), 1 / 16, **method)
    ref, _ = np_roi_pool(features, boxes, (3, 4), 1 / 16)
    np.testing.assert_array_equal(np.asarray(out), ref)


def test_rounding_is_c_round():
    # x * scale on halves: C rounds 2.5 -> 3, -2.5 -> -3, 0.49999997 -> 0.
    features = np.arange(100, dtype=F32).reshape(1, 10, 10, 1)
    boxes = np.array(
        [[[2.5, 2.5, 5.5, 5.5], [-2.5, -2.5, 2.5, 2.5], [0.49999997] * 4]],
        F32,
    )
    for method in METHODS:
        out = _roi_pool(features, boxes, 1, 1.0, **method.values[0])
        np.testing.assert_array_equal(
            np.asarray(out)[0, :, 0, 0, 0], [66.0, 33.0, 0.0]
        )


@pytest.mark.parametrize("method", METHODS)
def test_one_by_one_map(method):
    features = np.array([[[[2.0, -3.0]]]], F32)
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0], [-5.0, -5.0, 0.4, 3.0]]], F32)
    out = _roi_pool(features, boxes, (2, 3), **method)
    ref, _ = np_roi_pool(features, boxes, (2, 3))
    np.testing.assert_array_equal(np.asarray(out), ref)


@pytest.mark.parametrize("method", METHODS)
def test_flat_form_matches_batched(features, method):
    boxes = tricky_boxes()
    flat = np_roi_rows(boxes, 2)
    flat = np.concatenate([flat, [[2.0, 0.0, 0.0, 9.0, 9.0]]], 0)  # bad index
    out = _roi_pool(features, flat, (3, 2), 1 / 8, **method)
    ref, _ = np_roi_pool(features, flat, (3, 2), 1 / 8)
    assert out.shape == (13, 3, 2, 3)
    np.testing.assert_array_equal(np.asarray(out), ref)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_dtypes(features, method, dtype):
    features = features.astype(dtype)
    out = _roi_pool(features, tricky_boxes(), (3, 3), 1 / 8, **method)
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    ref, _ = np_roi_pool(features, tricky_boxes(), (3, 3), 1 / 8)
    np.testing.assert_array_equal(np.asarray(out), ref)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_gradient_goes_to_the_first_argmax(method, dtype):
    rng = np.random.default_rng(2)
    # Few distinct values (and -0.0 beside 0.0): many ties in every bin.
    features = rng.integers(-1, 2, size=(2, 6, 9, 3)).astype(dtype)
    features[0, :3] = -0.0
    boxes = tricky_boxes()
    upstream = rng.normal(size=(2, 6, 3, 2, 3)).astype(dtype)
    features_t = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(features_t)
        out = _roi_pool(features_t, boxes, (3, 2), 1 / 8, **method)
        loss = tf.reduce_sum(out * upstream)
    grad = tape.gradient(loss, features_t).numpy()
    ref = np_roi_pool_grad(features, boxes, (3, 2), 1 / 8, upstream)
    atol = 1e-2 if dtype == "float16" else 1e-6
    np.testing.assert_allclose(grad.astype("float64"), ref, atol=atol)
    np.testing.assert_array_equal(
        np.asarray(out), np_roi_pool(features, boxes, (3, 2), 1 / 8)[0]
    )


@pytest.mark.parametrize("method", METHODS)
def test_numeric_gradients(method):
    rng = np.random.default_rng(3)
    features = rng.permutation(2 * 5 * 6 * 2).reshape(2, 5, 6, 2) * 0.1
    boxes = np.array(
        [[[0, 0, 4, 3], [1, 2, 5, 4]], [[2, 1, 5, 4], [0, 0, 1, 1]]]
    )
    boxes = boxes.astype(F32)
    check_numeric_gradients(
        tf.function(lambda f: _roi_pool(f, boxes, (2, 2), 1.0, **method)),
        [features],
    )


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("base", [2, 4])
def test_table_bin_holding_a_nan_sends_its_gradient_past_it(
    base, jit_compile, training
):
    # As in torchvision's kernel, NaN never wins: the bin that holds it
    # sends its gradient to its largest number; the others send theirs to
    # their first argmax, -0.0 and 0.0 tying as in torchvision.
    features = np.zeros((1, 4, 4, 2), F32)
    features[0, :, :, 0] = np.arange(16).reshape(4, 4)
    features[0, 0, 1, 0] = np.nan  # in bin (0, 0) of channel 0
    features[0, 0, 0, 1] = -0.0  # channel 1: all zeros, first one -0.0
    boxes = np.array([[[0.0, 0.0, 3.0, 3.0]]], F32)

    @tf.function(jit_compile=jit_compile)
    def gradient(f):
        with tf.GradientTape() as tape:
            tape.watch(f)
            out = _roi_pool(
                f, boxes, 2, method="table", base=base, training=training
            )
            loss = tf.reduce_sum(out * tf.constant([1.0, 10.0]))
        return tape.gradient(loss, f)

    grad = gradient(tf.constant(features)).numpy()[0]
    expected = np.zeros((4, 4, 2), F32)
    # bins (0, 0) (past the NaN at (0, 1)), (0, 1), (1, 0), (1, 1)
    expected[[1, 1, 3, 3], [1, 3, 1, 3], 0] = 1.0
    expected[[0, 0, 2, 2], [0, 2, 0, 2], 1] = 10.0  # each bin's first pixel
    np.testing.assert_array_equal(grad, expected)


@pytest.mark.parametrize("method", METHODS)
def test_padding_boxes_zero_output_and_gradient(features, method):
    boxes = np.array(
        [
            [[-1.0, -1.0, -1.0, -1.0], [np.nan, 0.0, 10.0, 10.0]],
            [[0.0, 0.0, 40.0, 30.0], [-1.0, -1.0, -1.0, -1.0]],
        ],
        F32,
    )
    features_t, boxes_t = tf.constant(features), tf.constant(boxes)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([features_t, boxes_t])
        # scale 1/16: round(-1/16) = 0, so torchvision would pool pixel 0.
        out = _roi_pool(features_t, boxes_t, 2, 1 / 16, **method)
        dropped = tf.reduce_sum(out[0]) + tf.reduce_sum(out[1, 1])
        total = tf.reduce_sum(out)
    values = out.numpy()
    np.testing.assert_array_equal(values[0], 0.0)
    np.testing.assert_array_equal(values[1, 1], 0.0)
    assert np.all(np.isfinite(values))
    grads = tape.gradient(dropped, [features_t, boxes_t])
    np.testing.assert_array_equal(grads[0].numpy(), 0.0)
    np.testing.assert_array_equal(grads[1].numpy(), 0.0)
    grads = tape.gradient(total, [features_t, boxes_t])
    assert np.abs(grads[0].numpy()).sum() > 0
    np.testing.assert_array_equal(grads[1].numpy(), 0.0)  # zero, not None


@pytest.mark.parametrize("method", METHODS)
def test_xla_with_unknown_batch(method):
    spatial = [None, None] if method["method"] == "scan" else [6, 9]

    @tf.function(
        jit_compile=True,
        input_signature=[
            tf.TensorSpec([None, *spatial, 3], tf.float32),
            tf.TensorSpec([None, 6, 4], tf.float32),
        ],
    )
    def pool(features, boxes):
        return _roi_pool(features, boxes, (2, 3), 1 / 8, **method)

    rng = np.random.default_rng(4)
    for batch in (2, 1):
        features = rng.normal(size=(batch, 6, 9, 3)).astype(F32)
        boxes = tricky_boxes()[:batch]
        np.testing.assert_array_equal(
            pool(features, boxes).numpy(),
            np_roi_pool(features, boxes, (2, 3), 1 / 8)[0],
        )


def test_xla_gradient_step():
    features = tf.Variable(
        np.random.default_rng(5).normal(size=(2, 6, 9, 3)).astype(F32)
    )
    boxes = tf.constant(tricky_boxes())

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(roi_pool(features, boxes, 3, 1 / 8) ** 2)
        return tape.gradient(loss, features)

    pooled, argmax = np_roi_pool(
        features.numpy(), tricky_boxes(), (3, 3), 1 / 8
    )
    ref = np_roi_pool_grad(
        features.numpy(), tricky_boxes(), (3, 3), 1 / 8, 2 * pooled
    )
    np.testing.assert_allclose(step().numpy(), ref, atol=1e-5)


def test_method_choice():
    boxes = tf.TensorSpec([None, 64, 4])
    unknown_size = tf.TensorSpec([None, None, 50, 8])
    assert _choose_method(unknown_size, boxes, (7, 7)) == ("scan", None)
    # The benchmark's shapes: base 7 at 64 boxes (windows 1 and 8), 4 at
    # 256, 3 (fewer gathers per bin) at 1024; for the values, the same.
    features = tf.TensorSpec([2, 50, 50, 8])
    assert _choose_method(features, boxes, (7, 7)) == ("table", 7)
    for count, base in ((256, 4), (1024, 3)):
        many = tf.TensorSpec([2, count, 4])
        assert _choose_method(features, many, (7, 7)) == ("table", base)
    for count, base in ((64, 7), (256, 4)):
        assert _table_base(50, 50, count, (7, 7), _VALUE_COSTS) == base
    # A small map (a 128-pixel image at stride 16) keeps the tables.
    small = tf.TensorSpec([2, 8, 8, 8])
    assert _choose_method(small, tf.TensorSpec([2, 16, 4]), (7, 7))[0] == (
        "table"
    )
    one_box = tf.TensorSpec([2, 1, 4])
    assert _choose_method(tf.TensorSpec([2, 200, 200, 8]), one_box, (7, 7)) == (
        "scan",
        None,
    )
    with pytest.raises(ValueError, match="static H and W"):
        tf.function(
            lambda f: _roi_pool(f, np.zeros((1, 1, 4), F32), 2, method="table")
        ).get_concrete_function(tf.TensorSpec([1, None, 4, 1]))
    with pytest.raises(ValueError, match="base"):
        _roi_pool(
            np.zeros((1, 4, 4, 1), F32), np.zeros((1, 1, 4), F32), 2, base=1
        )


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("base", [2, 3, 4, 5, 6, 7, 8])
def test_every_table_base_on_a_larger_map(base, training):
    # Bins from 1 pixel to the whole map (every table level), boxes far
    # outside it, and integer features for ties: values and gradients.
    rng = np.random.default_rng(6)
    features = rng.integers(-3, 4, size=(2, 21, 26, 2)).astype(F32)
    corners = rng.uniform(-60, 300, size=(2, 24, 2, 2)).astype(F32)
    boxes = np.concatenate([corners.min(2), corners.max(2)], -1)
    boxes[0, 0] = [-400.0, -400.0, 600.0, 600.0]
    boxes[1, 0] = [8.0, 8.0, 9.0, 9.0]
    upstream = rng.normal(size=(2, 24, 3, 4, 2)).astype(F32)
    features_t = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(features_t)
        out = _roi_pool(
            features_t,
            boxes,
            (3, 4),
            1 / 8,
            method="table",
            base=base,
            training=training,
        )
        loss = tf.reduce_sum(out * upstream)
    grad = tape.gradient(loss, features_t).numpy()
    ref, _ = np_roi_pool(features, boxes, (3, 4), 1 / 8)
    np.testing.assert_array_equal(out.numpy(), ref)
    np.testing.assert_allclose(
        grad,
        np_roi_pool_grad(features, boxes, (3, 4), 1 / 8, upstream),
        atol=1e-5,
    )


def test_inference_builds_no_position_tables():
    # Positions are only needed by the gradient: the compiled forward must
    # not build them (5 channels so that [rows, 5] integers are tables).
    features = np.random.default_rng(7).normal(size=(2, 12, 12, 5))
    features = tf.constant(features.astype(F32))
    boxes = tf.constant(tricky_boxes())

    def forward(f, b):
        return roi_pool(f, b, 3, 1 / 8)

    def forward_backward(f, b):
        with tf.GradientTape() as tape:
            tape.watch(f)
            loss = tf.reduce_sum(forward(f, b))
        return tape.gradient(loss, f)

    integer_table = re.compile(r"s(16|32|64)\[\d+,5\]")
    for fn, has_positions in ((forward, False), (forward_backward, True)):
        hlo = tf.function(fn, jit_compile=True).experimental_get_compiler_ir(
            features, boxes
        )(stage="optimized_hlo")
        assert bool(integer_table.search(hlo)) == has_positions


@pytest.mark.parametrize("training", [False, True])
def test_training_builds_one_set_of_tables(training):
    # A train step returns the output and the gradient. With `training`
    # the forward reads both from the key tables, and no value tables are
    # built; without it, value tables for the forward, keys for the
    # backward (the sets are concatenated [rows, 5] tables here).
    features = np.random.default_rng(7).normal(size=(2, 12, 12, 5))
    features = tf.constant(features.astype(F32))
    boxes = tf.constant(tricky_boxes())

    def step(f, b):
        with tf.GradientTape() as tape:
            tape.watch(f)
            out = roi_pool(f, b, 3, 1 / 8, training=training)
            loss = tf.reduce_sum(out * out)
        return out, tape.gradient(loss, f)

    hlo = tf.function(step, jit_compile=True).experimental_get_compiler_ir(
        features, boxes
    )(stage="optimized_hlo")
    keys = re.findall(r"= s64\[\d+,5\]\{1,0\} concatenate", hlo)
    values = re.findall(r"= f32\[\d+,5\]\{1,0\} concatenate", hlo)
    assert (len(keys), len(values)) == ((1, 0) if training else (1, 1))
    out, grad = tf.function(step, jit_compile=True)(features, boxes)
    ref, _ = np_roi_pool(features.numpy(), tricky_boxes(), (3, 3), 1 / 8)
    np.testing.assert_array_equal(out.numpy(), ref)
    np.testing.assert_allclose(
        grad.numpy(),
        np_roi_pool_grad(
            features.numpy(), tricky_boxes(), (3, 3), 1 / 8, 2 * ref
        ),
        atol=1e-5,
    )


@pytest.mark.parametrize("training", [1, "yes", None, np.array([True])])
def test_training_must_be_a_bool(training):
    with pytest.raises(TypeError, match="`training`. Expected a bool"):
        roi_pool(
            np.zeros((1, 4, 4, 1), F32),
            np.zeros((1, 1, 4), F32),
            2,
            training=training,
        )


def test_static_output_shape_with_unknown_batch():
    check_static_output_shape_with_unknown_batch(roi_pool)


def test_validate():
    features = np.zeros((1, 4, 4, 1), F32)
    with pytest.raises(ValueError, match="Expected x1 <= x2"):
        roi_pool(features, np.array([[[3.0, 0, 1, 2]]], F32), 2, validate=True)
    with pytest.raises(ValueError, match="finite"):
        roi_pool(
            features, np.array([[[0, np.nan, 1, 2]]], F32), 2, validate=True
        )
    roi_pool(features, np.array([[[-1.0, -1, -1, -1]]], F32), 2, validate=True)


@pytest.mark.parametrize(
    "features_shape, boxes_shape, kwargs, match",
    [
        ((2, 4, 4), (2, 3, 4), {}, "Invalid rank for argument `features`"),
        ((2, 4, 4, 1, 1), (2, 3, 4), {}, "Invalid rank"),
        ((2, 4, 4, 1), (2, 3, 3), {}, re.escape("boxes.shape=(2, 3, 3)")),
        ((2, 4, 4, 1), (3, 4), {}, "Invalid shape for argument `boxes`"),
        ((2, 4, 4, 1), (2, 3, 4, 1), {}, "Invalid rank for argument `boxes`"),
        ((2, 4, 4, 1), (1, 3, 4), {}, "Mismatched batch sizes"),
        ((2, 4, 4, 1), (2, 3, 4), {"output_size": 0}, "output_size=0"),
        ((2, 4, 4, 1), (2, 3, 4), {"output_size": (1, 2, 3)}, "output_size"),
        ((2, 4, 4, 1), (2, 3, 4), {"spatial_scale": -1.0}, "spatial_scale"),
    ],
)
def test_invalid_inputs(features_shape, boxes_shape, kwargs, match):
    check_invalid_inputs(roi_pool, features_shape, boxes_shape, kwargs, match)


def test_integer_features_raise_type_error():
    check_integer_features_raise_type_error(roi_pool)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("method", ["table", "scan"])
def test_nan_and_minus_inf_never_win_as_in_torchvision(method, training):
    # Issue 21: NaN features gave NaN eagerly but were skipped under XLA.
    # torchvision's kernel keeps a value only if it beats the running
    # maximum (from -FLT_MAX): NaN and -inf never do.
    features = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
    features[0, 1, 1, 0] = np.nan
    features[0, 0, 0, 0] = -np.inf
    boxes = np.array([[[0, 0, 4, 4], [0, 0, 1, 1]]], "float32")
    lowest = np.finfo(np.float32).min
    expected = [[[12, 14], [22, 24]], [[lowest, 1], [5, lowest]]]

    def pool(f, b):
        return _roi_pool(f, b, 2, method=method, training=training)

    for fn in (pool, tf.function(pool, jit_compile=True)):
        out = np.asarray(fn(features, boxes))[0, ..., 0]
        np.testing.assert_array_equal(out, np.float32(expected))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("method", ["table", "scan"])
def test_bins_at_the_lowest_value_pass_no_gradient(method, training):
    # torchvision's argmax is -1 (no gradient) in a bin whose maximum does
    # not beat -FLT_MAX: only NaN, -inf or -FLT_MAX itself.
    lowest = np.finfo(np.float32).min
    features = np.full((1, 3, 3, 2), lowest, "float32")
    features[0, 0, 0, 0] = -np.inf
    features[0, 1, 1, 0] = np.nan
    features[0, 2, 2, 1] = 7.0
    boxes = np.array([[[0, 0, 2, 2], [0, 0, 1, 1]]], "float32")

    def grads(f, b):
        with tf.GradientTape() as tape:
            tape.watch(f)
            out = _roi_pool(f, b, 1, method=method, training=training)
        return out, tape.gradient(out, f)

    expected = np.zeros_like(features)
    expected[0, 2, 2, 1] = 1.0  # the one bin with a maximum above lowest
    for fn in (grads, tf.function(grads, jit_compile=True)):
        out, grad = (np.asarray(t) for t in fn(tf.constant(features), boxes))
        np.testing.assert_array_equal(
            out[0, :, 0, 0], [[lowest, 7.0], [lowest, lowest]]
        )
        np.testing.assert_array_equal(grad, expected)
