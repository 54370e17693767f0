"""Tests for `keras_segattn.layers.proposal_generator.ProposalGenerator`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers.proposal_generator import ProposalGenerator
from keras_segattn.ops.anchors import generate_anchors
from tests.ops.test_generate_proposals import LEVEL_SHAPES
from tests.ops.test_generate_proposals import LEVEL_SIZES
from tests.ops.test_generate_proposals import assert_proposals_match
from tests.ops.test_generate_proposals import np_multilevel_proposals
from tests.ops.test_generate_proposals import np_proposals
from tests.testing import check_config_round_trip
from tests.testing import run_layer_checks

IMAGE = (48, 64)
KWARGS = {
    "image_size": IMAGE,
    "anchor_sizes": (16.0, 32.0),
    "aspect_ratios": (0.5, 1.0),
    "pre_nms_top_n_train": 60,
    "pre_nms_top_n_test": 40,
    "post_nms_top_n_train": 30,
    "post_nms_top_n_test": 12,
    "nms_threshold": 0.6,
    "min_size": 1.0,
}


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    objectness = rng.normal(0, 2, (2, 6, 8, 4)).astype("float32")
    deltas = rng.normal(0, 0.3, (2, 6, 8, 16)).astype("float32")
    return {"objectness": objectness, "deltas": deltas}


def reference(layer, inputs):
    anchors = np.asarray(
        generate_anchors(IMAGE, (6, 8), layer.anchor_sizes, layer.aspect_ratios)
    )
    proposals = -np.ones((2, 12, 4), "float32")
    scores = np.zeros((2, 12), "float32")
    for b in range(2):
        boxes, probs = np_proposals(
            inputs["objectness"][b].reshape(-1),
            inputs["deltas"][b].reshape(-1, 4),
            anchors,
            40,
            12,
            0.6,
            1.0,
        )
        proposals[b, : len(boxes)] = boxes
        scores[b, : len(probs)] = probs
    return [proposals, scores]


def test_layer_checks(tmp_path):
    # `fit` calls the layer with training=True: equal post-NMS counts keep
    # the harness's targets (shaped like the inference output) valid.
    run_layer_checks(
        ProposalGenerator,
        {**KWARGS, "post_nms_top_n_train": 12},
        _inputs(),
        tmp_path=tmp_path,
        expected_output_shape=[(2, 12, 4), (2, 12)],
        expected_num_trainable_weights=0,
        reference_fn=reference,
        atol=1e-3,
        run_mixed_precision=False,  # float32 by design, tested below
        run_saved_model=False,  # FasterRCNN's SavedModel test serves it
        bad_init_kwargs=[
            (
                {**KWARGS, "post_nms_top_n_test": 0},
                ValueError,
                "Received: post_nms_top_n_test=0",
            ),
            (
                {**KWARGS, "aspect_ratios": ()},
                ValueError,
                re.escape("Received: aspect_ratios=()"),
            ),
            (
                {**KWARGS, "nms_threshold": 1.5},
                ValueError,
                "Received: nms_threshold=1.5",
            ),
        ],
        bad_call_inputs=[
            (
                {"objectness": (2, 6, 8, 3), "deltas": (2, 6, 8, 16)},
                ValueError,
                re.escape("objectness.shape=(2, 6, 8, 3)"),
            ),
            (
                {"objectness": (2, 6, 8, 4), "deltas": (2, 6, 7, 16)},
                ValueError,
                re.escape("deltas.shape=(2, 6, 7, 16)"),
            ),
            (
                {"objectness": (2, 6, 8), "deltas": (2, 6, 8, 16)},
                ValueError,
                "Invalid rank for argument `objectness`",
            ),
        ],
    )


def test_training_counts_and_float32_under_mixed_precision():
    inputs = _inputs(1)
    layer = ProposalGenerator(**KWARGS, dtype="mixed_float16")
    proposals, scores = layer(**inputs, training=True)
    assert tuple(proposals.shape) == (2, 30, 4)
    assert proposals.dtype == scores.dtype == "float32"
    eval_proposals, _ = layer(**inputs)
    assert tuple(eval_proposals.shape) == (2, 12, 4)
    np.testing.assert_array_equal(
        layer.anchors((6, 8)),
        generate_anchors(IMAGE, (6, 8), (16.0, 32.0), (0.5, 1.0)),
    )
    symbolic = layer(
        keras.Input((6, 8, 4), name="objectness"),
        keras.Input((6, 8, 16), name="deltas"),
    )
    assert [tuple(x.shape) for x in symbolic] == [(None, 12, 4), (None, 12)]


PYRAMID_KWARGS = {
    **KWARGS,
    "anchor_sizes": tuple((s,) for s in LEVEL_SIZES),
    "aspect_ratios": (0.5, 1.0),
}


def _pyramid_inputs(seed=0):
    rng = np.random.default_rng(seed)
    objectness = [
        rng.normal(0, 2, (2, h, w, 2)).astype("float32")
        for h, w in LEVEL_SHAPES
    ]
    deltas = [
        rng.normal(0, 0.3, (2, h, w, 8)).astype("float32")
        for h, w in LEVEL_SHAPES
    ]
    return objectness, deltas


def test_pyramid_levels_match_reference_and_compile():
    objectness, deltas = _pyramid_inputs()
    layer = ProposalGenerator(**PYRAMID_KWARGS)
    assert layer.anchor_sizes == ((16.0,), (32.0,), (64.0,))
    assert layer.num_anchors == 2 and layer.num_levels == 3
    check_config_round_trip(layer)
    # JSON turns the nested tuples into lists.
    clone = ProposalGenerator.from_config(
        {**layer.get_config(), "anchor_sizes": [[16.0], [32.0], [64.0]]}
    )
    assert clone.anchor_sizes == layer.anchor_sizes
    counts = [h * w * 2 for h, w in LEVEL_SHAPES]
    flat_objectness = np.concatenate(
        [o.reshape(2, -1) for o in objectness], axis=1
    )
    flat_deltas = np.concatenate([d.reshape(2, -1, 4) for d in deltas], axis=1)
    for training, pre, post in ((False, 40, 12), (True, 60, 30)):
        proposals, scores = layer(objectness, deltas, training=training)
        assert tuple(proposals.shape) == (2, post, 4)
        references = [
            np_multilevel_proposals(
                flat_objectness[b], flat_deltas[b], counts, pre, post, 0.6, 1.0
            )
            for b in range(2)
        ]
        assert_proposals_match(proposals, scores, references)

    compiled = tf.function(layer, jit_compile=True)(objectness, deltas)
    eager = layer(objectness, deltas)
    for a, b in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    symbolic = layer(
        [keras.Input((h, w, 2)) for h, w in LEVEL_SHAPES],
        [keras.Input((h, w, 8)) for h, w in LEVEL_SHAPES],
    )
    assert [tuple(x.shape) for x in symbolic] == [(None, 12, 4), (None, 12)]
    anchors = layer.anchors(LEVEL_SHAPES)
    assert tuple(anchors.shape) == (sum(counts), 4)


@pytest.mark.parametrize(
    "kwargs, objectness, deltas, match",
    [
        (
            {"anchor_sizes": ((16.0,), (32.0, 64.0), (64.0,))},
            None,
            None,
            "Received: anchor_sizes=((16.0,), (32.0, 64.0), (64.0,))",
        ),
        (
            {},
            [(2, 12, 16, 2), (2, 6, 8, 2)],
            [(2, 12, 16, 8), (2, 6, 8, 8)],
            "Expected a list of 3 maps",
        ),
        (
            {},
            [(2, 12, 16, 2), (2, 6, 8, 2), (2, 3, 4, 3)],
            [(2, 12, 16, 8), (2, 6, 8, 8), (2, 3, 4, 8)],
            "objectness[2].shape=(2, 3, 4, 3)",
        ),
        (
            {},
            [(2, 12, 16, 2), (2, 6, 8, 2), (2, 3, 4, 2)],
            [(2, 12, 16, 8), (2, 6, 7, 8), (2, 3, 4, 8)],
            "deltas[1].shape=(2, 6, 7, 8)",
        ),
    ],
)
def test_pyramid_errors(kwargs, objectness, deltas, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        layer = ProposalGenerator(**{**PYRAMID_KWARGS, **kwargs})
        layer(
            [keras.Input(s[1:], batch_size=2) for s in objectness],
            [keras.Input(s[1:], batch_size=2) for s in deltas],
        )
