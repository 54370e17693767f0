"""Tests for `keras_segattn.layers.RoISampler`.

Sampling is random, so the outputs are checked for the properties that
torchvision's `RoIHeads.select_training_samples` (+ `project_masks_on_boxes`)
guarantees, against the NumPy matcher, box encoding and RoIAlign loops of
`tests/ops/detection_references.py` and `tests/ops/test_roi_align.py`.
The layer returns a dict, which the shared harness does not take, so the
phases are run one by one.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import RoISampler
from tests.ops.detection_references import np_box_iou
from tests.ops.detection_references import np_encode
from tests.ops.detection_references import np_match
from tests.ops.test_roi_align import np_roi_align
from tests.testing import check_config_round_trip
from tests.testing import check_keras_round_trip
from tests.testing import check_xla_fit

F32 = np.float32
FG = BG = 0.5
WEIGHTS = (10.0, 10.0, 5.0, 5.0)
IMAGE = 24
MASK_SIZE = (4, 3)
NUM_PROPOSALS = 10
KEYS = ("rois", "labels", "box_targets")
MASK_KEYS = ("mask_rois", "mask_labels", "mask_targets")


def _scene(seed=0):
    """Proposals [2, 10, 4] (jittered copies of the gt, random boxes and a
    padding row), gt [2, 3, 4] with a padding row per image, 0-based
    classes [2, 3] and binary masks [2, 3, 24, 24] inside the boxes."""
    rng = np.random.default_rng(seed)
    gt = np.array(
        [
            [[2, 3, 14, 15], [9, 10, 22, 18], [-1, -1, -1, -1]],
            [[-1, -1, -1, -1], [1, 1, 12, 9], [6, 8, 21, 23]],
        ],
        F32,
    )
    classes = np.array([[2, 0, -1], [-1, 1, 2]], "int32")
    proposals = np.full((2, NUM_PROPOSALS, 4), -1.0, F32)
    for b, rows in ((0, [0, 1]), (1, [1, 2])):
        copies = np.repeat(gt[b, rows], 3, axis=0)  # 6 near the objects
        scale = np.tile([[0.3], [1.5], [4.0]], (2, 1))  # IoU high to low
        proposals[b, :6] = copies + rng.uniform(-1, 1, (6, 4)) * scale
        xy = rng.uniform(0, 18, (3, 2))  # 3 anywhere
        proposals[b, 6:9] = np.concatenate(
            [xy, xy + rng.uniform(2, 6, (3, 2))], 1
        )
    # row 9 stays padding
    masks = np.zeros((2, 3, IMAGE, IMAGE), F32)
    for b in range(2):
        for j in range(3):
            if classes[b, j] < 0:
                continue
            x1, y1, x2, y2 = gt[b, j].astype(int)
            masks[b, j, y1:y2, x1:x2] = (
                rng.uniform(size=(y2 - y1, x2 - x1)) > 0.3
            )
    return {
        "proposals": proposals,
        "gt_boxes": gt,
        "gt_classes": classes,
        "gt_masks": masks,
    }


def _candidates(inputs, b, append_gt_boxes=True):
    candidates = inputs["proposals"][b]
    if append_gt_boxes:
        candidates = np.concatenate([candidates, inputs["gt_boxes"][b]])
    return candidates


def _reference_matches(candidates, gt_boxes):
    """`np_match` at (FG, BG), padding candidates ignored (-2)."""
    matches = np_match(candidates, gt_boxes, FG, BG, False)
    matches[np.all(candidates == -1, axis=1)] = -2
    return matches


def np_mask_target(mask, roi, size):
    """Detectron2's `BitMasks.crop_and_resize`: RoIAlign of one image-sized
    mask (aligned=True, sampling_ratio 2 instead of adaptive)."""
    rows = np.array([[0.0, *roi]], F32)
    crop = np_roi_align(mask[None, :, :, None], rows, size, 1.0, 2, True)
    return crop[0, ..., 0]


def check_roi_samples(
    inputs, samples, num_samples, fraction, append_gt_boxes=True
):
    """The sampler's outputs against the NumPy matcher, image by image;
    returns the number of positives of each image."""
    samples = {k: np.asarray(v) for k, v in samples.items()}
    rois, labels, targets = (samples[k] for k in KEYS)
    batch = len(inputs["gt_boxes"])
    assert rois.shape == targets.shape == (batch, num_samples, 4)
    assert labels.shape == (batch, num_samples)
    assert rois.dtype == targets.dtype == np.float32
    assert labels.dtype == np.int32
    assert np.all(np.isfinite(targets))
    counts = []
    for b in range(batch):
        gt_boxes = inputs["gt_boxes"][b]
        classes = inputs["gt_classes"][b]
        candidates = _candidates(inputs, b, append_gt_boxes)
        matches = _reference_matches(candidates, gt_boxes)
        num_pos = min(int(np.sum(matches >= 0)), int(num_samples * fraction))
        num_neg = min(int(np.sum(matches == -1)), num_samples - num_pos)
        # Positives first (class + 1 > 0), then background 0, then -1.
        assert np.all(labels[b, :num_pos] > 0)
        np.testing.assert_array_equal(labels[b, num_pos : num_pos + num_neg], 0)
        np.testing.assert_array_equal(labels[b, num_pos + num_neg :], -1)
        np.testing.assert_array_equal(rois[b, num_pos + num_neg :], -1.0)
        taken = []
        for s in range(num_pos + num_neg):
            found = np.flatnonzero(np.all(candidates == rois[b, s], axis=1))
            assert len(found) == 1, (b, s, rois[b, s])
            c = int(found[0])
            taken.append(c)
            iou = np_box_iou([rois[b, s]], gt_boxes)[0]
            iou[np.all(gt_boxes == -1, axis=1)] = -1.0
            if labels[b, s] > 0:
                j = matches[c]
                assert j >= 0 and classes[j] >= 0  # padding never matches
                assert iou[j] >= FG and iou[j] == iou.max()
                assert labels[b, s] == classes[j] + 1
                np.testing.assert_allclose(
                    targets[b, s],
                    np_encode(gt_boxes[j], rois[b, s], WEIGHTS),
                    atol=1e-4,
                    rtol=1e-4,
                )
            else:
                assert matches[c] == -1
                assert iou.max() < BG
        assert len(set(taken)) == len(taken)  # no duplicates
        counts.append(num_pos)
    return counts


def check_mask_samples(inputs, samples, num_samples, fraction):
    """Mask RoIs, labels and targets: the first P slots, positives only."""
    count = max(int(num_samples * fraction), 1)
    samples = {k: np.asarray(v) for k, v in samples.items()}
    mask_rois, mask_labels, mask_targets = (samples[k] for k in MASK_KEYS)
    batch = len(inputs["gt_boxes"])
    assert mask_rois.shape == (batch, count, 4)
    assert mask_labels.shape == (batch, count)
    assert mask_targets.shape == (batch, count, *MASK_SIZE)
    assert mask_rois.dtype == mask_targets.dtype == np.float32
    assert mask_labels.dtype == np.int32
    assert np.all(np.isfinite(mask_targets))
    np.testing.assert_array_equal(mask_labels, samples["labels"][:, :count])
    for b in range(batch):
        candidates = _candidates(inputs, b)
        matches = _reference_matches(candidates, inputs["gt_boxes"][b])
        for p in range(count):
            if mask_labels[b, p] <= 0:
                np.testing.assert_array_equal(mask_rois[b, p], -1.0)
                continue
            roi = mask_rois[b, p]
            np.testing.assert_array_equal(roi, samples["rois"][b, p])
            c = int(np.flatnonzero(np.all(candidates == roi, axis=1))[0])
            expected = np_mask_target(
                inputs["gt_masks"][b, matches[c]], roi, MASK_SIZE
            )
            np.testing.assert_allclose(mask_targets[b, p], expected, atol=1e-5)


def _layer(**kwargs):
    kwargs = {
        "batch_size_per_image": 8,
        "positive_fraction": 0.5,
        "mask_target_size": MASK_SIZE,
        "seed": 1,
        **kwargs,
    }
    return RoISampler(**kwargs)


@pytest.mark.parametrize(
    "num_samples, fraction",
    [(8, 0.5), (6, 0.25), (32, 0.5), (4, 0.0), (16, 1.0)],
)
def test_samples_match_numpy_references(num_samples, fraction):
    inputs = _scene()
    layer = _layer(batch_size_per_image=num_samples, positive_fraction=fraction)
    samples = layer(**inputs)
    assert sorted(samples) == sorted(KEYS + MASK_KEYS)
    counts = check_roi_samples(inputs, samples, num_samples, fraction)
    check_mask_samples(inputs, samples, num_samples, fraction)
    assert layer.num_mask_rois == max(int(num_samples * fraction), 1)
    if fraction > 0:
        assert min(counts) > 0


def test_appended_gt_boxes_are_all_sampled_as_positives():
    inputs = _scene(1)
    samples = _layer(batch_size_per_image=32)(**inputs)
    rois, labels = np.asarray(samples["rois"]), np.asarray(samples["labels"])
    for b in range(2):
        for box, cls in zip(
            inputs["gt_boxes"][b], inputs["gt_classes"][b], strict=True
        ):
            if cls < 0:  # padding: in no sampled slot
                sampled = rois[b][labels[b] >= 0]
                assert not np.any(np.all(sampled == box, axis=1))
                continue
            slot = np.flatnonzero(np.all(rois[b] == box, axis=1))
            assert len(slot) == 1
            assert labels[b, slot[0]] == cls + 1
            # A gt RoI's box target is zero.
            np.testing.assert_allclose(
                np.asarray(samples["box_targets"])[b, slot[0]], 0, atol=1e-5
            )


def test_without_appended_gt_boxes_or_masks():
    inputs = _scene(2)
    inputs.pop("gt_masks")
    layer = RoISampler(
        batch_size_per_image=8,
        positive_fraction=0.5,
        append_gt_boxes=False,
        seed=2,
    )
    samples = layer(**inputs)
    assert sorted(samples) == sorted(KEYS)
    check_roi_samples(inputs, samples, 8, 0.5, append_gt_boxes=False)
    # Only proposals: no roi equals a gt box exactly.
    rois = np.asarray(samples["rois"])
    labels = np.asarray(samples["labels"])
    assert np.sum(labels > 0) > 0
    for b in range(2):
        sampled = rois[b][labels[b] >= 0]
        for box in inputs["gt_boxes"][b]:
            assert not np.any(np.all(sampled == box, axis=1))


def test_hand_computed_targets():
    gt = np.array([[[0, 0, 10, 10], [-1, -1, -1, -1]]], F32)
    proposals = np.array([[[0, 0, 10, 8], [20, 20, 30, 30]]], F32)
    masks = np.zeros((1, 2, 16, 16), F32)
    masks[0, 0, :, :5] = 1.0  # left half of the box
    layer = RoISampler(
        batch_size_per_image=4,
        positive_fraction=0.5,
        mask_target_size=2,
        seed=0,
    )
    samples = layer(proposals, gt, np.array([[3, -1]], "int32"), masks)
    samples = {k: np.asarray(v) for k, v in samples.items()}
    # Positives: proposal 0 (IoU 0.8) and the appended gt; background:
    # proposal 1; the padding gt row is not sampled.
    np.testing.assert_array_equal(samples["labels"], [[4, 4, 0, -1]])
    positives = sorted(samples["rois"][0, :2].tolist())
    assert positives == [[0, 0, 10, 8], [0, 0, 10, 10]]
    np.testing.assert_array_equal(samples["rois"][0, 2], [20, 20, 30, 30])
    np.testing.assert_array_equal(samples["rois"][0, 3], -1.0)
    for s in range(2):
        roi = samples["rois"][0, s]
        # centre (5, 4) or (5, 5) vs (5, 5); height 8 or 10 vs 10
        expected = (
            [0, 10 * 1 / 8, 0, 5 * np.log(10 / 8)]
            if roi[3] == 8
            else [0, 0, 0, 0]
        )
        np.testing.assert_allclose(
            samples["box_targets"][0, s], expected, atol=1e-5
        )
        # The left column of a 2x2 crop is inside the mask, the right not.
        np.testing.assert_allclose(
            samples["mask_targets"][0, s], [[1, 0], [1, 0]], atol=1e-6
        )
    np.testing.assert_array_equal(samples["mask_labels"], [[4, 4]])


def test_config_shapes_symbolic_and_mixed_precision():
    layer = _layer(mask_target_size=[4, 3], sampling_ratio=3, seed=5)
    check_config_round_trip(layer)
    check_config_round_trip(RoISampler())
    assert layer.mask_target_size == MASK_SIZE
    shapes = layer.compute_output_shape(
        (2, NUM_PROPOSALS, 4), (2, 3, 4), (2, 3), (2, 3, IMAGE, IMAGE)
    )
    assert shapes == {
        "rois": (2, 8, 4),
        "labels": (2, 8),
        "box_targets": (2, 8, 4),
        "mask_rois": (2, 4, 4),
        "mask_labels": (2, 4),
        "mask_targets": (2, 4, 4, 3),
    }
    assert sorted(
        layer.compute_output_shape((2, NUM_PROPOSALS, 4), (2, 3, 4), (2, 3))
    ) == (sorted(KEYS))
    symbolic = layer(
        keras.Input((NUM_PROPOSALS, 4)),
        keras.Input((3, 4)),
        keras.Input((3,), dtype="int32"),
        keras.Input((3, IMAGE, IMAGE)),
    )
    assert {k: tuple(v.shape) for k, v in symbolic.items()} == {
        k: (None, *s[1:]) for k, s in shapes.items()
    }
    assert {k: v.dtype for k, v in symbolic.items()} == {
        k: "int32" if "labels" in k else "float32" for k in shapes
    }
    inputs = _scene()
    mixed = _layer(dtype="mixed_float16")(**inputs)
    for key, value in mixed.items():
        assert value.dtype == ("int32" if "labels" in key else "float32"), key
    check_roi_samples(inputs, mixed, 8, 0.5)
    check_mask_samples(inputs, mixed, 8, 0.5)


def test_gradients_are_finite():
    inputs = _scene()
    tensors = {k: tf.constant(v) for k, v in inputs.items()}
    watched = [tensors["proposals"], tensors["gt_boxes"], tensors["gt_masks"]]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        samples = _layer()(**tensors)
        loss = 0.0
        for i, key in enumerate(("rois", "box_targets", "mask_targets")):
            o = tf.reshape(samples[key], [-1])
            loss += tf.reduce_sum(
                o * tf.cos(tf.range(tf.size(o), dtype=o.dtype) + i)
            )
    for g in tape.gradient(loss, watched):
        assert g is not None
        assert np.all(np.isfinite(np.asarray(tf.convert_to_tensor(g))))


def test_xla_compiled_call_satisfies_the_same_properties():
    inputs = _scene(3)
    layer = _layer()
    compiled = tf.function(layer, jit_compile=True)
    for _ in range(2):  # fresh draws, the same properties
        samples = compiled(**inputs)
        check_roi_samples(inputs, samples, 8, 0.5)
        check_mask_samples(inputs, samples, 8, 0.5)


def test_xla_fit_and_keras_round_trip(tmp_path):
    inputs = _scene(3)
    sym = {
        "proposals": keras.Input((NUM_PROPOSALS, 4), name="proposals"),
        "gt_boxes": keras.Input((3, 4), name="gt_boxes"),
        "gt_classes": keras.Input((3,), dtype="int32", name="gt_classes"),
        "gt_masks": keras.Input((3, IMAGE, IMAGE), name="gt_masks"),
    }
    # A Dense on the masks, so backprop runs through the RoIAlign crops.
    masks = keras.layers.Dense(IMAGE, name="pre_masks")(sym["gt_masks"])
    samples = _layer(name="sampler")(
        sym["proposals"], sym["gt_boxes"], sym["gt_classes"], masks
    )
    model = keras.Model(sym, samples["mask_targets"])
    check_xla_fit(model, inputs)  # asserts model.jit_compile is True

    samples = _layer(name="sampler")(
        sym["proposals"], sym["gt_boxes"], sym["gt_classes"], sym["gt_masks"]
    )
    model = keras.Model(sym, [samples[k] for k in KEYS + MASK_KEYS])
    check_keras_round_trip(model, inputs, tmp_path)


@pytest.mark.parametrize(
    "shapes, match",
    [
        (
            [(2, 8, 5), (2, 3, 4), (2, 3), None],
            "Received: proposals.shape=(2, 8, 5).",
        ),
        (
            [(2, 8), (2, 3, 4), (2, 3), None],
            "Invalid rank for argument `proposals`",
        ),
        (
            [(2, 8, 4), (2, 3, 5), (2, 3), None],
            "Received: gt_boxes.shape=(2, 3, 5).",
        ),
        (
            [(2, NUM_PROPOSALS, 4), (2, 3, 4), (2, 4), None],
            "Received: gt_classes.shape=(2, 4) and gt_boxes.shape=(2, 3, 4).",
        ),
        (
            [(2, NUM_PROPOSALS, 4), (2, 3, 4), (2, 3, 1), None],
            "Invalid rank for argument `gt_classes`",
        ),
        (
            [(2, NUM_PROPOSALS, 4), (2, 3, 4), (2, 3), (2, 4, IMAGE, IMAGE)],
            "Received: gt_masks.shape=(2, 4, 24, 24) and "
            "gt_boxes.shape=(2, 3, 4).",
        ),
        (
            [(2, NUM_PROPOSALS, 4), (2, 3, 4), (2, 3), (2, 3, None, IMAGE)],
            "Received: gt_masks.shape=(2, 3, None, 24)",
        ),
        (
            [(2, NUM_PROPOSALS, 4), (2, 3, 4), (2, 3), (2, 3, IMAGE)],
            "Invalid rank for argument `gt_masks`",
        ),
    ],
)
def test_bad_input_shapes(shapes, match):
    proposals, gt_boxes, gt_classes, gt_masks = shapes
    with pytest.raises(ValueError, match=re.escape(match)):
        _layer().compute_output_shape(*shapes)
    symbolic = [
        keras.Input(proposals[1:], batch_size=2),
        keras.Input(gt_boxes[1:], batch_size=2),
        keras.Input(gt_classes[1:], batch_size=2, dtype="int32"),
    ]
    if gt_masks is not None:
        symbolic.append(keras.Input(gt_masks[1:], batch_size=2))
    with pytest.raises(ValueError, match=re.escape(match)):
        _layer()(*symbolic)


def test_gt_masks_need_mask_target_size():
    inputs = _scene()
    match = (
        "Invalid value for argument `mask_target_size`. Expected the mask "
        "head's output size when `gt_masks` is given. Received: "
        "mask_target_size=None."
    )
    with pytest.raises(ValueError, match=re.escape(match)):
        RoISampler(batch_size_per_image=8)(**inputs)
    with pytest.raises(ValueError, match=re.escape(match)):
        RoISampler().compute_output_shape(
            (2, NUM_PROPOSALS, 4), (2, 3, 4), (2, 3), (2, 3, IMAGE, IMAGE)
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"fg_iou_threshold": 0.5, "bg_iou_threshold": 0.6},
            "Received: bg_iou_threshold=0.6 and fg_iou_threshold=0.5.",
        ),
        ({"fg_iou_threshold": -0.1}, "Received: fg_iou_threshold=-0.1"),
        ({"positive_fraction": 1.5}, "Received: positive_fraction=1.5"),
        ({"batch_size_per_image": 0}, "Received: batch_size_per_image=0"),
        (
            {"bbox_reg_weights": (10.0, 10.0, 5.0)},
            "Received: bbox_reg_weights=(10.0, 10.0, 5.0)",
        ),
        ({"mask_target_size": 0}, "Received: mask_target_size=0"),
        (
            {"mask_target_size": (4, 4, 4)},
            "Received: mask_target_size=(4, 4, 4)",
        ),
        ({"sampling_ratio": 0}, "Received: sampling_ratio=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        RoISampler(**kwargs)


def test_mask_targets_paste_back_to_the_ground_truth():
    """Crop (the sampler's targets) then `paste_masks` (the detector's
    output) is the identity up to resampling, for thin strokes too: the
    two use the same pixel convention (a half-pixel shift between them
    gave a mean IoU of about 0.7 here)."""
    from keras_segattn.ops import paste_masks

    rng = np.random.default_rng(3)
    size = 64
    masks = np.zeros((1, 4, size, size), F32)
    boxes = np.full((1, 4, 4), -1.0, F32)
    for m in range(4):
        x1, y1 = rng.integers(2, 30, size=2)
        w, h = rng.integers(14, 30, size=2)
        boxes[0, m] = [x1, y1, x1 + w, y1 + h]
        # A 2-pixel-wide diagonal stroke and a 2-pixel bar inside the box.
        for t in range(min(w, h) - 2):
            masks[0, m, y1 + t, x1 + t : x1 + t + 2] = 1.0
        masks[0, m, y1 + h // 2 : y1 + h // 2 + 2, x1 + 1 : x1 + w - 1] = 1.0
    layer = RoISampler(
        batch_size_per_image=8,
        positive_fraction=0.5,
        append_gt_boxes=True,
        mask_target_size=28,
        seed=0,
    )
    # Proposals equal to the boxes: every positive RoI is a ground truth.
    samples = layer(boxes, boxes, np.zeros((1, 4), "int32"), masks)
    rois = np.asarray(samples["mask_rois"])
    targets = np.asarray(samples["mask_targets"])
    pasted = np.asarray(paste_masks(targets, rois, size))
    checked = 0
    for p in range(rois.shape[1]):
        if rois[0, p, 0] < 0:
            continue
        m = int(np.flatnonzero(np.all(boxes[0] == rois[0, p], axis=1))[0])
        predicted, truth = pasted[0, p] >= 0.5, masks[0, m] > 0.5
        iou = (predicted & truth).sum() / (predicted | truth).sum()
        assert iou > 0.97, (p, iou)
        checked += 1
    assert checked >= 4
