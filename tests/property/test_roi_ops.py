"""Property-based tests of the RoI ops: roi_align, roi_pool and
multilevel_roi_align (and the RoIAlign / RoIPool layers' dtype checks).

Properties: the documented output shape and dtype, including empty
batches, zero boxes and 1x1 maps; finite outputs and gradients for finite
inputs, huge, negative and degenerate boxes included; padding boxes and
boxes with a NaN/Inf coordinate give exactly 0 and a zero gradient,
whatever the features hold; NaN/Inf features never reach other images;
eager equals XLA; integer features are refused with a TypeError.
"""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_segattn import layers
from keras_segattn import ops
from tests.property import helpers as h

OPS = ("roi_align", "roi_pool", "multilevel_roi_align")


def _run(op, features, boxes, output_size, aligned, sampling_ratio):
    if op == "roi_align":
        return ops.roi_align(
            features, boxes, output_size, 1.0, sampling_ratio, aligned
        )
    if op == "roi_pool":
        return ops.roi_pool(features, boxes, output_size)
    coarse = features[:, ::2, ::2]  # a second level at half the size
    return ops.multilevel_roi_align(
        [features, coarse],
        boxes,
        output_size,
        [1.0, 0.5],
        sampling_ratio,
        aligned,
        canonical_scale=4.0,
    )


@st.composite
def _box(draw, special: bool):
    kind = draw(
        st.sampled_from(
            ["normal", "degenerate", "huge", "padding"]
            + (["non_finite"] if special else [])
        )
    )
    if kind == "padding":
        return [-1.0] * 4
    if kind == "huge":
        return draw(
            st.lists(
                st.sampled_from([-1e30, 1e30, -1e6, 1e6, 0.0]),
                min_size=4,
                max_size=4,
            )
        )
    x1, y1 = draw(h.finite(20.0)), draw(h.finite(20.0))
    low, high = (-6.0, 0.0) if kind == "degenerate" else (0.0, 12.0)
    w = draw(st.floats(low, high, width=32))
    hh = draw(st.floats(low, high, width=32))
    box = [x1, y1, x1 + w, y1 + hh]
    if kind == "non_finite":
        box[draw(st.integers(0, 3))] = draw(h.non_finite())
    return box


@st.composite
def _inputs(draw, special: bool = False):
    batch = draw(st.sampled_from([0, 1, 2]))
    height, width = draw(st.sampled_from([(1, 1), (2, 3), (5, 5)]))
    channels = draw(st.sampled_from([1, 3]))
    num = draw(st.sampled_from([0, 1, 3]))
    dtype = draw(h.float_dtypes)
    features = draw(h.array((batch, height, width, channels), h.finite()))
    boxes = [[draw(_box(special)) for _ in range(num)] for _ in range(batch)]
    boxes = np.asarray(boxes, "float64").reshape(batch, num, 4)
    return dtype, features, boxes, draw(st.sampled_from([1, 2]))


def _dropped(boxes):
    """[B, N] bool: padding or non-finite boxes (exactly zero output)."""
    return np.all(boxes == -1.0, -1) | ~np.all(np.isfinite(boxes), -1)


@pytest.mark.parametrize("op", OPS)
@given(data=_inputs(special=True), aligned=st.booleans())
def test_shape_dtype_finiteness_and_xla(op, data, aligned):
    dtype, features, boxes, output_size = data
    features_t = h.tensor(features, dtype)
    boxes_t = h.tensor(boxes, "float32")

    def fn(f, b):
        return _run(op, f, b, output_size, aligned, 2)

    key = (op, output_size, aligned)
    (out,) = h.assert_eager_equals_xla(fn, (features_t, boxes_t), key, dtype)
    batch, num = boxes.shape[:2]
    channels = features.shape[-1]
    assert out.shape == (batch, num, output_size, output_size, channels)
    assert fn(features_t, boxes_t).dtype == features_t.dtype
    h.assert_all_finite(out)  # finite features: finite for every box
    np.testing.assert_array_equal(out[_dropped(boxes)], 0.0)
    grad_features, grad_boxes = h.gradients(fn, (features_t, boxes_t), (0, 1))
    h.assert_all_finite(grad_features, grad_boxes)
    if grad_boxes is not None:
        np.testing.assert_array_equal(grad_boxes[_dropped(boxes)], 0.0)


@pytest.mark.parametrize("op", OPS)
@given(data=_inputs(special=True), bad=h.non_finite())
def test_non_finite_features_stay_in_their_image(op, data, bad):
    dtype, features, boxes, output_size = data
    if features.shape[0] == 0:
        return
    features = features.copy()
    features[0, -1, 0, 0] = bad  # a NaN/Inf pixel in image 0 only
    out = h.numpy(
        _run(
            op,
            h.tensor(features, dtype),
            h.tensor(boxes, "float32"),
            output_size,
            True,
            2,
        )
    )
    np.testing.assert_array_equal(out[_dropped(boxes)], 0.0)
    h.assert_all_finite(out[1:])  # images without a non-finite value


@pytest.mark.parametrize("op", OPS)
@given(dtype=h.integer_dtypes)
def test_integer_features_are_refused(op, dtype):
    features = np.zeros((1, 2, 2, 1), dtype)
    with pytest.raises(TypeError, match=rf"features.*\.dtype={dtype}"):
        _run(op, features, np.zeros((1, 1, 4), "float32"), 1, True, 2)


@pytest.mark.parametrize("layer_cls", [layers.RoIAlign, layers.RoIPool])
def test_layers_refuse_integer_features(layer_cls):
    # The layers cast features to their compute dtype: check before that.
    layer = layer_cls(output_size=2)
    with pytest.raises(TypeError, match="features.dtype=int32"):
        layer(tf.zeros((1, 4, 4, 1), tf.int32), tf.zeros((1, 1, 4)))


def test_multi_scale_layer_refuses_integer_levels():
    layer = layers.MultiScaleRoIAlign(2, spatial_scales=[1.0, 0.5])
    levels = [tf.zeros((1, 4, 4, 1)), tf.zeros((1, 2, 2, 1), tf.int32)]
    with pytest.raises(TypeError, match=r"features\[1\].dtype=int32"):
        layer(levels, tf.zeros((1, 1, 4)))
