"""Tests for `keras_segattn.layers.AnchorLabeler`.

Sampling is random, so the outputs are checked for the properties that
torchvision's `RegionProposalNetwork.assign_targets_to_anchors` +
`BalancedPositiveNegativeSampler` guarantee, against the NumPy matcher and
box encoding of `tests/ops/detection_references.py`.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import AnchorLabeler
from keras_segattn.ops.anchors import generate_anchors
from tests.ops.detection_references import np_box_iou
from tests.ops.detection_references import np_encode
from tests.ops.detection_references import np_match
from tests.testing import check_config_round_trip
from tests.testing import run_layer_checks

F32 = np.float32
FG, BG = 0.7, 0.3


def _scene(seed=0):
    """Anchors [96, 4] of a 32-pixel image and gt [2, 3, 4] near some
    anchors (IoUs spread over [0, 1]), with a padding row in each image
    (last in image 0, first in image 1)."""
    rng = np.random.default_rng(seed)
    anchors = np.asarray(generate_anchors(32, 4, (8.0, 16.0), (0.5, 1.0, 2.0)))
    picks = rng.choice(len(anchors), 4, replace=False)
    jitter = rng.uniform(-1.5, 1.5, (4, 4)).astype(F32)
    gt = np.full((2, 3, 4), -1.0, F32)
    gt[0, :2] = anchors[picks[:2]] + jitter[:2]
    gt[1, 1:] = anchors[picks[2:]] + jitter[2:]
    # A box no anchor covers at IoU >= FG: only low-quality matches.
    gt[1, 2] = [3.0, 5.0, 30.0, 9.0]
    return anchors.astype(F32), gt


def _real_rows(gt):
    return [j for j, g in enumerate(gt) if not np.all(g == -1)]


def check_anchor_samples(
    anchors, gt_boxes, outputs, num_samples, fraction, fg=FG, bg=BG
):
    """The labeler's outputs against the NumPy matcher, image by image."""
    indices, labels, targets = (np.asarray(o) for o in outputs)
    batch = len(gt_boxes)
    assert indices.shape == labels.shape == (batch, num_samples)
    assert targets.shape == (batch, num_samples, 4)
    assert indices.dtype == labels.dtype == np.int32
    assert targets.dtype == np.float32
    assert np.all(np.isfinite(targets))
    counts = []
    for b in range(batch):
        reference = np_match(anchors, gt_boxes[b], fg, bg, True)
        rows = _real_rows(gt_boxes[b])
        iou = (
            np_box_iou(anchors, gt_boxes[b][rows])
            if rows
            else np.zeros((len(anchors), 1))
        )
        best_per_gt = iou.max(axis=0)
        num_pos = min(int(np.sum(reference >= 0)), int(num_samples * fraction))
        num_neg = min(int(np.sum(reference == -1)), num_samples - num_pos)
        # Positives first, then negatives, then empty slots.
        expected = [1] * num_pos + [0] * num_neg
        expected += [-1] * (num_samples - len(expected))
        np.testing.assert_array_equal(labels[b], expected)
        taken = indices[b][labels[b] >= 0]
        assert len(set(taken.tolist())) == len(taken)  # no duplicates
        assert np.all((0 <= taken) & (taken < len(anchors)))
        np.testing.assert_array_equal(indices[b][labels[b] < 0], 0)
        for s in range(num_samples):
            i = indices[b, s]
            if labels[b, s] == 1:
                j = reference[i]
                assert j >= 0 and j in rows  # padding rows never match
                g = rows.index(j)
                # Above the threshold, or the best anchor of some gt.
                assert iou[i].max() >= fg - 1e-6 or np.any(
                    (np.abs(iou[i] - best_per_gt) < 1e-6) & (best_per_gt > 0)
                )
                assert iou[i, g] == iou[i].max()
                np.testing.assert_allclose(
                    targets[b, s],
                    np_encode(gt_boxes[b, j], anchors[i], (1, 1, 1, 1)),
                    atol=1e-4,
                    rtol=1e-4,
                )
            elif labels[b, s] == 0:
                assert reference[i] == -1
                assert iou[i].max() < bg
        counts.append(num_pos)
    return counts


def test_layer_checks(tmp_path):
    anchors, gt = _scene()
    layer = run_layer_checks(
        AnchorLabeler,
        {"batch_size_per_image": 16, "positive_fraction": 0.25, "seed": 1},
        {"anchors": anchors, "gt_boxes": gt},
        tmp_path=tmp_path,
        expected_output_shape=[(2, 16), (2, 16), (2, 16, 4)],
        expected_num_trainable_weights=0,
        # Keras keeps the SeedGenerator's state out of the weights.
        expected_num_non_trainable_weights=0,
        # The inputs have different leading sizes (N anchors, B images), so
        # `fit` cannot batch them: the XLA check is a compiled call below.
        run_training=False,
        run_mixed_precision=False,  # float32 by design, tested below
        run_saved_model=False,  # the detectors' SavedModel tests serve it
        bad_init_kwargs=[
            (
                {"fg_iou_threshold": 0.7, "bg_iou_threshold": 0.8},
                ValueError,
                re.escape(
                    "Invalid value for argument `bg_iou_threshold`. Expected "
                    "bg_iou_threshold <= fg_iou_threshold. Received: "
                    "bg_iou_threshold=0.8 and fg_iou_threshold=0.7."
                ),
            ),
            (
                {"fg_iou_threshold": 1.2},
                ValueError,
                re.escape("Received: fg_iou_threshold=1.2"),
            ),
            (
                {"positive_fraction": 1.5},
                ValueError,
                re.escape("Received: positive_fraction=1.5"),
            ),
            (
                {"batch_size_per_image": 0},
                ValueError,
                re.escape("Received: batch_size_per_image=0"),
            ),
            (
                {"box_coder_weights": (1.0, 1.0, 0.0, 1.0)},
                ValueError,
                re.escape("Received: box_coder_weights=(1.0, 1.0, 0.0, 1.0)"),
            ),
        ],
        bad_call_inputs=[
            (
                {"anchors": (96, 3), "gt_boxes": (2, 3, 4)},
                ValueError,
                re.escape("Received: anchors.shape=(96, 3)."),
            ),
            (
                {"anchors": (2, 96, 4), "gt_boxes": (2, 3, 4)},
                ValueError,
                re.escape("Invalid rank for argument `anchors`"),
            ),
            (
                {"anchors": (96, 4), "gt_boxes": (2, 3, 5)},
                ValueError,
                re.escape("Received: gt_boxes.shape=(2, 3, 5)."),
            ),
            (
                {"anchors": (96, 4), "gt_boxes": (2, 4)},
                ValueError,
                re.escape("Invalid rank for argument `gt_boxes`"),
            ),
        ],
    )
    assert len(layer.weights) == 0
    assert len(layer.variables) == 1  # the SeedGenerator's state


@pytest.mark.parametrize(
    "num_samples, fraction",
    # 2 and 3 positives: (8, 0.125) keeps 1 of them, (8, 0.0) none.
    [(16, 0.25), (128, 0.5), (8, 0.125), (8, 0.0), (12, 1.0)],
)
def test_samples_match_numpy_matcher(num_samples, fraction):
    anchors, gt = _scene()
    layer = AnchorLabeler(
        batch_size_per_image=num_samples, positive_fraction=fraction, seed=2
    )
    counts = check_anchor_samples(
        anchors, gt, layer(anchors, gt), num_samples, fraction
    )
    if fraction > 0:
        assert min(counts) > 0
    if num_samples == 128:  # more slots than anchors: every positive sampled
        for b in range(2):
            reference = np_match(anchors, gt[b], FG, BG, True)
            assert counts[b] == np.sum(reference >= 0)


def test_low_quality_matches_and_thresholds():
    anchors, gt = _scene()
    # gt[1, 2] overlaps no anchor at IoU >= FG; its best anchors are
    # positive with low-quality matches, not without.
    iou = np_box_iou(anchors, gt[1, 2:])[:, 0]
    assert iou.max() < FG
    best = set(np.flatnonzero(iou == iou.max()).tolist())
    for allow in (True, False):
        layer = AnchorLabeler(
            batch_size_per_image=128,
            positive_fraction=1.0,
            allow_low_quality_matches=allow,
            seed=0,
        )
        indices, labels, _ = (np.asarray(o) for o in layer(anchors, gt))
        positives = set(indices[1][labels[1] == 1].tolist())
        expected = np_match(anchors, gt[1], FG, BG, allow)
        assert positives == set(np.flatnonzero(expected >= 0).tolist())
        assert (best <= positives) == allow


def test_hand_computed_targets():
    anchors = np.array(
        [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], F32
    )
    # Anchor 1 matches (IoU 0.81); anchor 0 and 2 are background.
    gt = np.array([[[21, 21, 30, 30], [-1, -1, -1, -1]]], F32)
    layer = AnchorLabeler(batch_size_per_image=4, seed=0)
    indices, labels, targets = (np.asarray(o) for o in layer(anchors, gt))
    np.testing.assert_array_equal(labels, [[1, 0, 0, -1]])
    assert indices[0, 0] == 1
    assert sorted(indices[0, 1:3].tolist()) == [0, 2]
    assert indices[0, 3] == 0
    # centre 25.5 vs 25, width 9 vs 10
    np.testing.assert_allclose(
        targets[0, 0],
        [0.05, 0.05, np.log(0.9), np.log(0.9)],
        atol=1e-6,
    )


def test_all_padding_gt_gives_no_positives():
    anchors, gt = _scene()
    gt[0] = -1.0  # image 0 has no object
    layer = AnchorLabeler(batch_size_per_image=16, seed=3)
    indices, labels, targets = layer(anchors, gt)
    counts = check_anchor_samples(
        anchors, gt, (indices, labels, targets), 16, 0.5
    )
    assert counts[0] == 0 and counts[1] > 0
    np.testing.assert_array_equal(np.asarray(labels)[0], 0)  # 16 negatives
    assert np.all(np.isfinite(np.asarray(targets)))


def test_xla_compiled_call_satisfies_the_same_properties():
    anchors, gt = _scene(1)
    layer = AnchorLabeler(batch_size_per_image=16, positive_fraction=0.25)
    compiled = tf.function(layer, jit_compile=True)
    first = compiled(anchors, gt)
    check_anchor_samples(anchors, gt, first, 16, 0.25)
    second = compiled(anchors, gt)
    check_anchor_samples(anchors, gt, second, 16, 0.25)
    # The SeedGenerator draws afresh at every compiled call.
    assert not np.array_equal(np.asarray(first[0]), np.asarray(second[0]))


def test_float32_under_mixed_precision():
    anchors, gt = _scene()
    layer = AnchorLabeler(
        batch_size_per_image=16, seed=4, dtype="mixed_float16"
    )
    outputs = layer(anchors, gt)
    assert outputs[2].dtype == "float32"
    assert outputs[0].dtype == outputs[1].dtype == "int32"
    check_anchor_samples(anchors, gt, outputs, 16, 0.5)
    symbolic = layer(keras.Input((4,), batch_size=96), keras.Input((3, 4)))
    assert [tuple(x.shape) for x in symbolic] == [
        (None, 16),
        (None, 16),
        (None, 16, 4),
    ]
    assert [x.dtype for x in symbolic] == ["int32", "int32", "float32"]


def test_config_round_trip_keeps_arguments():
    layer = AnchorLabeler(
        fg_iou_threshold=0.6,
        bg_iou_threshold=0.2,
        batch_size_per_image=32,
        positive_fraction=0.4,
        allow_low_quality_matches=False,
        box_coder_weights=(2, 2, 1, 1),
        seed=7,
    )
    check_config_round_trip(layer)
    clone = AnchorLabeler.from_config(layer.get_config())
    assert clone.box_coder_weights == (2.0, 2.0, 1.0, 1.0)
    assert clone.allow_low_quality_matches is False
    assert clone.seed == 7
