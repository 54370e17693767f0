"""Tests for `keras_segattn.layers.BoxHead`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers import BoxHead
from tests.testing import run_layer_checks

F32 = np.float32
SHAPE = (2, 3, 2, 2, 4)  # [B, R, h, w, C]


def _features(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(F32)


def np_box_head(layer, features):
    """torchvision `TwoMLPHead` + `FastRCNNPredictor`: flatten each RoI,
    relu(fc6), relu(fc7), then the two linear predictors, loops over RoIs."""
    weights = [
        [np.asarray(w, "float64") for w in dense.weights]
        for dense in (
            layer.fc6,
            layer.fc7,
            layer.class_logits,
            layer.box_deltas,
        )
    ]
    (w6, b6), (w7, b7), (wc, bc), (wd, bd) = weights
    batch, rois = features.shape[:2]
    logits = np.zeros((batch, rois, wc.shape[1]))
    deltas = np.zeros((batch, rois, wd.shape[1]))
    for b in range(batch):
        for r in range(rois):
            x = np.asarray(features[b, r], "float64").reshape(-1)  # h, w, C
            x = np.maximum(x @ w6 + b6, 0.0)
            x = np.maximum(x @ w7 + b7, 0.0)
            logits[b, r] = x @ wc + bc
            deltas[b, r] = x @ wd + bd
    return [logits, deltas]


def test_layer_checks(tmp_path):
    run_layer_checks(
        BoxHead,
        {"num_classes": 2, "units": 5},
        _features(),
        tmp_path=tmp_path,
        expected_output_shape=[(2, 3, 3), (2, 3, 12)],
        # fc6, fc7 and the two predictors: kernel and bias each
        expected_num_trainable_weights=8,
        reference_fn=np_box_head,
        atol=1e-5,
        bad_init_kwargs=[
            (
                {"num_classes": 0, "units": 5},
                ValueError,
                re.escape("Received: num_classes=0"),
            ),
            (
                {"num_classes": 2, "units": 0},
                ValueError,
                re.escape("Received: units=0"),
            ),
        ],
        bad_call_inputs=[
            (
                (2, 3, 2, 4),
                ValueError,
                re.escape(
                    "Invalid rank for argument `features`. Expected rank 5. "
                    "Received: features.shape=(2, 3, 2, 4) (rank 4)."
                ),
            ),
            (
                (2, None, 2, 2, 4),
                ValueError,
                re.escape("Received: features.shape=(2, None, 2, 2, 4)."),
            ),
        ],
    )


def test_random_weights_match_reference():
    features = _features((2, 3, 3, 2, 3), seed=1)
    layer = BoxHead(num_classes=3, units=6)
    layer.build(features.shape)
    assert [tuple(w.shape) for w in layer.trainable_weights] == [
        (18, 6),
        (6,),
        (6, 6),
        (6,),
        (6, 4),
        (4,),
        (6, 16),
        (16,),
    ]
    rng = np.random.default_rng(2)
    layer.set_weights(
        [rng.normal(0, 0.5, w.shape).astype(F32) for w in layer.get_weights()]
    )
    logits, deltas = layer(features)
    assert tuple(logits.shape) == (2, 3, 4)
    assert tuple(deltas.shape) == (2, 3, 16)
    for got, want in zip(
        (logits, deltas), np_box_head(layer, features), strict=True
    ):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-4)


def test_initial_weights_as_torchvision():
    layer = BoxHead(num_classes=4, units=64)
    layer.build((None, 2, 7, 7, 8))
    for dense, std in ((layer.class_logits, 0.01), (layer.box_deltas, 0.001)):
        np.testing.assert_array_equal(np.asarray(dense.bias), 0.0)
        assert 0.5 * std < float(np.std(np.asarray(dense.kernel))) < 2 * std


def test_symbolic_unknown_batch_and_mixed_precision_shapes():
    logits, deltas = BoxHead(3, units=4)(keras.Input((5, 2, 2, 3)))
    assert tuple(logits.shape) == (None, 5, 4)
    assert tuple(deltas.shape) == (None, 5, 16)
    layer = BoxHead(1, units=4, dtype="mixed_float16")
    logits, deltas = layer(_features())
    assert logits.dtype == deltas.dtype == "float16"
    assert all(w.dtype == "float32" for w in layer.weights)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "Received: num_classes=0"),
        ({"num_classes": 2.5}, "Received: num_classes=2.5"),
        ({"num_classes": 2, "units": 0}, "Received: units=0"),
        ({"num_classes": 2, "units": -3}, "Received: units=-3"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        BoxHead(**kwargs)


def test_bad_shapes_in_build_and_compute_output_shape():
    match = "Received: features.shape=(2, 3, 4, 4)"
    with pytest.raises(ValueError, match=re.escape(match)):
        BoxHead(2, units=4).build((2, 3, 4, 4))
    with pytest.raises(ValueError, match=re.escape(match)):
        BoxHead(2, units=4).compute_output_shape((2, 3, 4, 4))
    with pytest.raises(ValueError, match=re.escape("features.shape=(2, 3, 4")):
        BoxHead(2, units=4)(np.zeros((2, 3, 4, 4), F32))
