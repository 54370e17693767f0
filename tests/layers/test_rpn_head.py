"""Tests for `keras_segattn.layers.RPNHead`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import RPNHead
from tests.references import np_conv_same
from tests.testing import check_config_round_trip
from tests.testing import check_keras_round_trip
from tests.testing import check_xla_fit

F32 = np.float32
SHAPES = [(2, 8, 6, 3), (2, 4, 3, 3)]


def _levels(shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(F32) for s in shapes]


def np_rpn_head(layer, levels):
    """torchvision `RPNHead.forward`: per level, relu(conv3x3) then the
    1x1 objectness and box-delta convolutions."""
    conv_k, conv_b = (np.asarray(w, "float64") for w in layer.conv.weights)
    obj_k, obj_b = (np.asarray(w, "float64") for w in layer.objectness.weights)
    box_k, box_b = (np.asarray(w, "float64") for w in layer.box_deltas.weights)
    objectness, deltas = [], []
    for level in levels:
        hidden = np.maximum(
            np_conv_same(np.asarray(level, "float64"), conv_k, conv_b), 0
        )
        objectness.append(np_conv_same(hidden, obj_k, obj_b))
        deltas.append(np_conv_same(hidden, box_k, box_b))
    return objectness, deltas


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [rng.normal(0, 0.5, w.shape).astype(F32) for w in layer.get_weights()]
    )


@pytest.mark.parametrize("filters", [None, 5])
def test_build_and_matches_numpy_reference(filters):
    levels = _levels()
    layer = RPNHead(3, filters=filters)
    layer.build(SHAPES)
    # conv, objectness and box-delta kernels and biases
    assert len(layer.trainable_weights) == 6
    assert len(layer.non_trainable_weights) == 0
    width = filters or SHAPES[0][-1]
    assert tuple(layer.conv.kernel.shape) == (3, 3, 3, width)
    assert tuple(layer.objectness.kernel.shape) == (1, 1, width, 3)
    assert tuple(layer.box_deltas.kernel.shape) == (1, 1, width, 12)
    _randomize(layer)  # non-zero biases too
    objectness, deltas = layer(levels)
    expected_objectness, expected_deltas = np_rpn_head(layer, levels)
    assert [tuple(o.shape) for o in objectness] == [(2, 8, 6, 3), (2, 4, 3, 3)]
    assert [tuple(d.shape) for d in deltas] == [(2, 8, 6, 12), (2, 4, 3, 12)]
    expected_shapes = layer.compute_output_shape(SHAPES)
    assert [tuple(o.shape) for o in objectness] == expected_shapes[0]
    assert [tuple(d.shape) for d in deltas] == expected_shapes[1]
    for got, want in zip(
        objectness + deltas, expected_objectness + expected_deltas, strict=True
    ):
        assert got.dtype == "float32"
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-4)


def test_initial_weights_as_torchvision():
    layer = RPNHead(2)
    layer.build([(None, 4, 4, 8)])
    for conv in (layer.conv, layer.objectness, layer.box_deltas):
        np.testing.assert_array_equal(np.asarray(conv.bias), 0.0)
        std = float(np.std(np.asarray(conv.kernel)))
        assert 0.003 < std < 0.03, std  # N(0, 0.01)


def _check_finite_gradients(layer, levels):
    """`check_finite_gradients` for a list input: tape gradients w.r.t.
    every level and weight exist and are finite."""
    tensors = [tf.constant(x) for x in levels]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        objectness, deltas = layer(tensors)
        loss = 0.0
        for i, o in enumerate(objectness + deltas):
            w = tf.cos(tf.cast(tf.range(tf.size(o)), o.dtype) + i)
            loss += tf.reduce_sum(tf.reshape(o, [-1]) * w)
    grads = tape.gradient(loss, tensors + list(layer.trainable_variables))
    assert len(grads) == len(levels) + 6
    for g in grads:
        assert g is not None
        assert np.all(np.isfinite(np.asarray(g)))
        assert np.any(np.asarray(g) != 0)


def test_config_symbolic_gradients_xla_fit_and_keras_round_trip(tmp_path):
    levels = _levels()
    check_config_round_trip(RPNHead(3, filters=4, name="rpn"))
    check_config_round_trip(RPNHead(2))
    _check_finite_gradients(RPNHead(3), levels)

    inputs = [keras.Input(s[1:]) for s in SHAPES]
    # A 1x1 conv in front of each level, so backprop runs through the head.
    fed = [keras.layers.Conv2D(x.shape[-1], 1)(x) for x in inputs]
    objectness, deltas = RPNHead(3, name="rpn")(fed)
    assert [tuple(o.shape) for o in objectness] == [
        (None, 8, 6, 3),
        (None, 4, 3, 3),
    ]
    assert [tuple(d.shape) for d in deltas] == [
        (None, 8, 6, 12),
        (None, 4, 3, 12),
    ]
    model = keras.Model(inputs, [*objectness, *deltas])
    check_xla_fit(model, levels)  # asserts model.jit_compile is True
    check_keras_round_trip(model, levels, tmp_path)

    @tf.function(jit_compile=True)
    def compiled(*x):
        return model(list(x))

    for a, b in zip(compiled(*levels), model(levels), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_single_level_list():
    (objectness,), (deltas,) = RPNHead(1)(_levels([(2, 4, 4, 2)]))
    assert tuple(objectness.shape) == (2, 4, 4, 1)
    assert tuple(deltas.shape) == (2, 4, 4, 4)


def test_mixed_precision():
    layer = RPNHead(3, dtype="mixed_float16")
    objectness, deltas = layer(_levels())
    assert all(o.dtype == "float16" for o in objectness + deltas)
    assert all(
        np.all(np.isfinite(np.asarray(o, F32))) for o in objectness + deltas
    )
    assert len(layer.weights) == 6
    assert all(w.dtype == "float32" for w in layer.weights)


@pytest.mark.parametrize(
    "shapes, match",
    [
        ((2, 8, 8, 3), "Received: features with shape (2, 8, 8, 3)."),
        ([], "Received: features with shape []."),
        (
            [(2, 8, 8, 3), (2, 4, 4, 4)],
            "Received: shapes [(2, 8, 8, 3), (2, 4, 4, 4)].",
        ),
        (
            [(2, 8, 8, 3), (2, 4, 4)],
            "Invalid rank for argument `features[1]`",
        ),
        ([(2, 8, 8, None)], "Received: shapes [(2, 8, 8, None)]."),
    ],
)
def test_bad_inputs(shapes, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        RPNHead(3).compute_output_shape(shapes)
    with pytest.raises(ValueError, match=re.escape(match)):
        RPNHead(3).build(shapes)


def test_bad_call_inputs():
    with pytest.raises(ValueError, match=re.escape("Received: features with")):
        RPNHead(3)(np.zeros((2, 8, 8, 3), F32))  # a map, not a list
    with pytest.raises(ValueError, match=re.escape("Received: shapes")):
        RPNHead(3)([keras.Input((8, 8, 3)), keras.Input((4, 4, 2))])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_anchors": 0}, "Received: num_anchors=0"),
        ({"num_anchors": 2.0}, "Received: num_anchors=2.0"),
        ({"num_anchors": 3, "filters": 0}, "Received: filters=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        RPNHead(**kwargs)
