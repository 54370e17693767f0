"""Tests for `keras_segattn.layers.FeaturePyramid`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import FeaturePyramid
from tests.references import np_conv_same
from tests.testing import check_config_round_trip
from tests.testing import check_keras_round_trip
from tests.testing import check_xla_fit

F32 = np.float32
SHAPES = [(2, 8, 12, 3), (2, 4, 6, 5), (2, 2, 3, 4)]


def _levels(shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(F32) for s in shapes]


def np_nearest(x, height, width):
    """PyTorch `F.interpolate(x, size=(height, width), mode="nearest")`."""
    h, w = x.shape[1:3]
    out = np.zeros((x.shape[0], height, width, x.shape[3]))
    for i in range(height):
        for j in range(width):
            source_i = int(np.floor(i * h / height))
            source_j = int(np.floor(j * w / width))
            out[:, i, j] = x[:, source_i, source_j]
    return out


def np_feature_pyramid(layer, levels):
    """torchvision `FeaturePyramidNetwork.forward` + `LastLevelMaxPool`."""
    weights = [np.asarray(w, "float64") for w in layer.get_weights()]
    lateral = [weights[4 * i : 4 * i + 2] for i in range(len(levels))]
    output = [weights[4 * i + 2 : 4 * i + 4] for i in range(len(levels))]
    last = np_conv_same(levels[-1], *lateral[-1])
    results = [np_conv_same(last, *output[-1])]
    for i in range(len(levels) - 2, -1, -1):
        inner = np_conv_same(levels[i], *lateral[i])
        last = inner + np_nearest(last, *levels[i].shape[1:3])
        results.insert(0, np_conv_same(last, *output[i]))
    if layer.extra_max_pool:
        p = results[-1]
        pooled = np.zeros(
            (
                p.shape[0],
                (p.shape[1] + 1) // 2,
                (p.shape[2] + 1) // 2,
                p.shape[3],
            )
        )
        for i in range(pooled.shape[1]):
            for j in range(pooled.shape[2]):
                pooled[:, i, j] = p[:, 2 * i, 2 * j]  # max over a 1x1 window
        results.append(pooled)
    return results


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [rng.normal(0, 0.5, w.shape).astype(F32) for w in layer.get_weights()]
    )


@pytest.mark.parametrize("extra_max_pool", [True, False])
def test_matches_numpy_reference(extra_max_pool):
    levels = _levels()
    layer = FeaturePyramid(4, extra_max_pool=extra_max_pool)
    layer.build([s for s in SHAPES])
    # lateral kernel + bias and output kernel + bias per level
    assert len(layer.trainable_weights) == 4 * len(SHAPES)
    _randomize(layer)  # non-zero biases too
    outputs = layer(levels)
    expected = np_feature_pyramid(layer, levels)
    assert [tuple(o.shape) for o in outputs] == [
        tuple(s) for s in layer.compute_output_shape(SHAPES)
    ]
    assert len(outputs) == len(SHAPES) + extra_max_pool
    for o, e in zip(outputs, expected, strict=True):
        assert o.dtype == "float32"
        np.testing.assert_allclose(np.asarray(o), e, atol=1e-4, rtol=1e-4)


def test_non_factor_two_sizes_odd_extra_level():
    # 7 -> 4 -> 2 rows as "same" pools give; P6 of 2x3 is 1x2.
    shapes = [(1, 7, 5, 2), (1, 4, 3, 2), (1, 2, 3, 3)]
    levels = _levels(shapes, seed=2)
    layer = FeaturePyramid(3)
    layer.build(shapes)
    _randomize(layer, seed=3)
    outputs = layer(levels)
    assert [tuple(o.shape[1:3]) for o in outputs] == [
        (7, 5),
        (4, 3),
        (2, 3),
        (1, 2),
    ]
    for o, e in zip(outputs, np_feature_pyramid(layer, levels), strict=True):
        np.testing.assert_allclose(np.asarray(o), e, atol=1e-4, rtol=1e-4)


def test_symbolic_xla_fit_keras_round_trip_and_config(tmp_path):
    levels = _levels()
    check_config_round_trip(FeaturePyramid(4, extra_max_pool=False, name="fpn"))
    inputs = [keras.Input(s[1:]) for s in SHAPES]
    # A 1x1 conv in front of each level, so backprop runs through it.
    fed = [keras.layers.Conv2D(x.shape[-1], 1)(x) for x in inputs]
    outputs = FeaturePyramid(4, name="fpn")(fed)
    assert [tuple(o.shape) for o in outputs] == [
        (None, 8, 12, 4),
        (None, 4, 6, 4),
        (None, 2, 3, 4),
        (None, 1, 2, 4),
    ]
    model = keras.Model(inputs, outputs)
    check_xla_fit(model, levels)
    check_keras_round_trip(model, levels, tmp_path)

    @tf.function(jit_compile=True)
    def compiled(*x):
        return model(list(x))

    for a, b in zip(compiled(*levels), model(levels), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_mixed_precision():
    layer = FeaturePyramid(4, dtype="mixed_float16")
    outputs = layer(_levels())
    assert all(o.dtype == "float16" for o in outputs)
    assert all(w.dtype == "float32" for w in layer.weights)


@pytest.mark.parametrize(
    "shapes, match",
    [
        ([], "Received: features=[]"),
        (
            [(2, 8, 8, 3), (2, 4, 4)],
            "Invalid rank for argument `features[1]`",
        ),
        (
            [(2, 4, 4, 3), (2, 8, 8, 3)],
            "Received: features[0].shape=(2, 4, 4, 3) and "
            "features[1].shape=(2, 8, 8, 3)",
        ),
        (
            [(2, None, 8, 3)],
            "Received: features[0].shape=(2, None, 8, 3)",
        ),
    ],
)
def test_bad_inputs(shapes, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        FeaturePyramid(4).compute_output_shape(shapes)


def test_bad_filters_and_symbolic_error():
    with pytest.raises(ValueError, match=re.escape("Received: filters=0")):
        FeaturePyramid(0)
    with pytest.raises(ValueError, match="finest first"):
        FeaturePyramid(4)([keras.Input((4, 4, 3)), keras.Input((8, 8, 3))])
