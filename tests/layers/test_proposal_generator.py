"""Tests for `keras_segattn.layers.proposal_generator.ProposalGenerator`."""

import re

import keras
import numpy as np

from keras_segattn.layers.proposal_generator import ProposalGenerator
from keras_segattn.ops.anchors import generate_anchors
from tests.ops.test_generate_proposals import np_proposals
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
