"""Tests for `keras_segattn.layers.Hypercolumn`.

The layer takes a list of feature maps, which `run_layer_checks` cannot
feed, so the same phases run here one by one with the harness's parts.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import Hypercolumn
from tests.layers.pyramid_references import np_resize_bilinear
from tests.layers.pyramid_references import np_sample_locations
from tests.ops.test_roi_align import np_roi_align
from tests.testing import check_config_round_trip
from tests.testing import check_keras_round_trip
from tests.testing import check_saved_model
from tests.testing import check_xla_fit

SHAPES = [(2, 8, 8, 2), (2, 4, 4, 3), (2, 2, 2, 1)]
LOCATIONS = np.array(
    [
        [[0.5, 0.5], [3.3, 6.1], [7.9, 0.2]],
        [[4.0, 4.0], [1.25, 2.75], [8.0, 8.0]],
    ],
    "float32",
)
BOXES = np.array(
    [
        [[0.0, 0.0, 8.0, 8.0], [1.5, 2.0, 5.0, 7.5], [-1, -1, -1, -1]],
        [[2.0, 1.0, 3.0, 6.0], [0.3, 0.7, 7.7, 4.1], [4.0, 4.0, 4.0, 4.0]],
    ],
    "float32",
)
MODES = {
    "dense": ({}, (2, 8, 8, 6)),
    "locations": ({"locations": LOCATIONS}, (2, 3, 6)),
    "boxes": ({"boxes": BOXES}, (2, 3, 2, 3, 6)),
}
KWARGS = {"pool_size": (2, 3), "sampling_ratio": 2}


def _features(shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype("float32") for s in shapes]


def np_hypercolumn(features, grid_size, locations=None, boxes=None, pool=None):
    outputs = []
    for f in features:
        scale_y = f.shape[1] / grid_size[0]
        scale_x = f.shape[2] / grid_size[1]
        if locations is not None:
            outputs.append(np_sample_locations(f, locations, grid_size))
        elif boxes is not None:
            scaled = boxes * np.array([scale_x, scale_y] * 2, "float32")
            scaled = np.where(
                np.all(boxes == -1, -1, keepdims=True), -1, scaled
            )
            outputs.append(np_roi_align(f, scaled, pool, scale=1.0))
        elif f.shape[1:3] == tuple(grid_size):
            outputs.append(f)
        else:
            outputs.append(np_resize_bilinear(f, grid_size))
    return np.concatenate(outputs, axis=-1)


def _model(layer, mode, with_dense):
    inputs = {
        f"level_{i}": keras.Input(s[1:], name=f"level_{i}")
        for i, s in enumerate(SHAPES)
    }
    levels = list(inputs.values())
    if with_dense:
        levels = [keras.layers.Dense(f.shape[-1])(f) for f in levels]
    extra = {}
    for key, value in MODES[mode][0].items():
        inputs[key] = extra[key] = keras.Input(value.shape[1:], name=key)
    return keras.Model(inputs, layer(levels, **extra))


def _model_inputs(mode):
    feed = {f"level_{i}": f for i, f in enumerate(_features())}
    return {**feed, **MODES[mode][0]}


@pytest.mark.parametrize("mode", list(MODES))
def test_layer_phases(mode, tmp_path):
    call_kwargs, expected = MODES[mode]
    features = _features()
    layer = Hypercolumn(**KWARGS)
    # 1. Config round trip.
    check_config_round_trip(layer)
    # 2-3. Static and symbolic shapes with an unknown batch.
    shapes = {f"{k}_shape": v.shape for k, v in call_kwargs.items()}
    assert layer.compute_output_shape(SHAPES, **shapes) == expected
    symbolic = [keras.Input(s[1:]) for s in SHAPES]
    symbolic_kwargs = {
        k: keras.Input(v.shape[1:]) for k, v in call_kwargs.items()
    }
    out = Hypercolumn(**KWARGS)(symbolic, **symbolic_kwargs)
    assert tuple(out.shape) == (None, *expected[1:])
    # 4-5. Eager call against the NumPy loops.
    outputs = layer(features, **call_kwargs)
    assert tuple(outputs.shape) == expected
    assert outputs.dtype == "float32"
    reference = np_hypercolumn(features, (8, 8), pool=(2, 3), **call_kwargs)
    np.testing.assert_allclose(outputs, reference, atol=1e-5)
    # 6. Finite gradients for every float input.
    tensors = [tf.constant(f) for f in features]
    extras = {k: tf.constant(v) for k, v in call_kwargs.items()}
    with tf.GradientTape() as tape:
        tape.watch(tensors + list(extras.values()))
        loss = tf.reduce_sum(tf.sin(layer(tensors, **extras)))
    grads = tape.gradient(loss, tensors + list(extras.values()))
    for g in grads:
        assert g is not None and np.all(np.isfinite(g))
    # 7. XLA training step through the layer.
    check_xla_fit(
        _model(Hypercolumn(**KWARGS), mode, True), _model_inputs(mode)
    )
    # 8. Mixed precision: float16 features out, coordinates float32.
    mixed = Hypercolumn(**KWARGS, dtype="mixed_float16")(
        features, **call_kwargs
    )
    assert keras.backend.standardize_dtype(mixed.dtype) == "float16"
    np.testing.assert_allclose(mixed, reference, atol=2e-2)
    # 9-10. `.keras` and SavedModel.
    model = _model(Hypercolumn(**KWARGS), mode, False)
    check_keras_round_trip(model, _model_inputs(mode), tmp_path)
    check_saved_model(model, _model_inputs(mode), tmp_path)


def test_locations_at_pixel_centres_equal_dense():
    features = _features()
    layer = Hypercolumn(output_size=(6, 10))
    dense = np.asarray(layer(features))
    rows, cols = np.meshgrid(np.arange(6), np.arange(10), indexing="ij")
    centres = np.stack([cols + 0.5, rows + 0.5], -1).reshape(1, -1, 2)
    centres = np.repeat(centres, 2, 0).astype("float32")
    sampled = layer(features, locations=centres)
    np.testing.assert_allclose(
        np.asarray(sampled).reshape(2, 6, 10, -1), dense, atol=1e-5
    )
    np.testing.assert_allclose(
        dense, np_hypercolumn(features, (6, 10)), atol=1e-5
    )


def test_reference_level_and_anisotropic_box_scales():
    features = _features([(1, 4, 8, 2), (1, 4, 4, 1)])
    layer = Hypercolumn(reference_index=-2, pool_size=2)  # grid 4x8
    assert tuple(layer(features).shape) == (1, 4, 8, 3)
    boxes = np.array([[[0.5, 0.5, 7.0, 3.0], [-1, -1, -1, -1]]], "float32")
    pooled = layer(features, boxes=boxes)
    np.testing.assert_allclose(
        pooled,
        np_hypercolumn(features, (4, 8), boxes=boxes, pool=(2, 2)),
        atol=1e-5,
    )
    assert not np.any(np.asarray(pooled)[0, 1])  # padding box -> zeros


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"output_size": 0}, "Received: output_size=0"),
        ({"interpolation": "area"}, "Received: interpolation='area'"),
        ({"sampling_ratio": 0}, "Received: sampling_ratio=0"),
        ({"reference_index": 1.5}, "Received: reference_index=1.5"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        Hypercolumn(**kwargs)


@pytest.mark.parametrize(
    "features, kwargs, match",
    [
        ([(4, 2)], {}, "features[0]"),
        ([(None, 4, 2)], {}, "static H and W"),
        ([(4, 4, 2), (2, 2, 1)], {"locations": (3, 3)}, "locations.shape"),
        ([(4, 4, 2)], {"boxes": (3, 5)}, "boxes.shape"),
        ([(4, 4, 2)], {"boxes": (3, 4), "locations": (3, 2)}, "not both"),
    ],
)
def test_bad_call_inputs(features, kwargs, match):
    inputs = [keras.Input(s) for s in features]
    extra = {k: keras.Input(v) for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=re.escape(match)):
        Hypercolumn()(inputs, **extra)


def test_bad_reference_index_and_single_tensor():
    with pytest.raises(ValueError, match="reference_index=2"):
        Hypercolumn(reference_index=2)([keras.Input((4, 4, 1))] * 2)
    with pytest.raises(ValueError, match="not a single one"):
        Hypercolumn().compute_output_shape((None, 4, 4, 1))
