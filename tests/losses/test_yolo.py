"""Tests for `keras_segattn.losses.yolo` (the YOLO v1 loss)."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.losses.yolo import YOLO_LOSS_NAMES
from keras_segattn.losses.yolo import yolo_v1_loss


def _np_iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (union - inter) if union - inter > 0 else 0.0


def np_yolo_v1_loss(pred, boxes, classes, image, nb, l_coord, l_noobj):
    """Eq. 3 of Redmon et al. (2016), loops over images, cells, boxes."""
    batch, rows, cols, _ = pred.shape
    height, width = image
    num_classes = pred.shape[-1] - 5 * nb
    totals = dict.fromkeys(YOLO_LOSS_NAMES, 0.0)
    for b in range(batch):
        owner = {}
        for m in range(boxes.shape[1]):
            if classes[b, m] < 0:
                continue
            x1, y1, x2, y2 = boxes[b, m]
            i = min(int((y1 + y2) / 2 / (height / rows)), rows - 1)
            j = min(int((x1 + x2) / 2 / (width / cols)), cols - 1)
            owner[(i, j)] = m  # the last one wins
        for i in range(rows):
            for j in range(cols):
                cell = pred[b, i, j]
                m = owner.get((i, j))
                best = -1
                if m is not None:
                    gt = boxes[b, m]
                    ious = []
                    for k in range(nb):
                        x, y, sw, sh = cell[5 * k : 5 * k + 4]
                        cx, cy = (j + x) * width / cols, (i + y) * height / rows
                        w, h = sw**2 * width, sh**2 * height
                        ious.append(
                            _np_iou(
                                (
                                    cx - w / 2,
                                    cy - h / 2,
                                    cx + w / 2,
                                    cy + h / 2,
                                ),
                                gt,
                            )
                        )
                    best = int(np.argmax(ious))
                    tx = (gt[0] + gt[2]) / 2 / (width / cols) - j
                    ty = (gt[1] + gt[3]) / 2 / (height / rows) - i
                    tw = np.sqrt((gt[2] - gt[0]) / width)
                    th = np.sqrt((gt[3] - gt[1]) / height)
                    x, y, sw, sh, conf = cell[5 * best : 5 * best + 5]
                    totals["loss_xy"] += l_coord * (
                        (x - tx) ** 2 + (y - ty) ** 2
                    )
                    totals["loss_wh"] += l_coord * (
                        (sw - tw) ** 2 + (sh - th) ** 2
                    )
                    totals["loss_object"] += (conf - ious[best]) ** 2
                    target = np.eye(num_classes)[classes[b, m]]
                    totals["loss_class"] += np.sum(
                        (cell[5 * nb :] - target) ** 2
                    )
                for k in range(nb):
                    if k != best:
                        totals["loss_noobject"] += (
                            l_noobj * cell[5 * k + 4] ** 2
                        )
    return {k: v / batch for k, v in totals.items()}


def _case(seed=0):
    """2 images, 2x2 grid over 32x32 pixels, 2 boxes per cell, 3 classes.
    Image 0: two objects in different cells; image 1: two centres in the
    same cell (the last row wins) and a padding row."""
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0.05, 0.95, size=(2, 2, 2, 2 * 5 + 3))
    probs = rng.uniform(size=(2, 2, 2, 3))
    pred[..., 10:] = probs / probs.sum(-1, keepdims=True)
    boxes = np.array(
        [
            [[2, 3, 12, 14], [18, 17, 30, 31], [-1, -1, -1, -1]],
            [[1, 1, 9, 11], [3, 2, 13, 12], [-1, -1, -1, -1]],
        ],
        "float32",
    )
    classes = np.array([[0, 2, -1], [1, 2, -1]], "int32")
    return pred.astype("float32"), boxes, classes


def test_matches_numpy_reference():
    pred, boxes, classes = _case()
    losses = yolo_v1_loss(pred, boxes, classes, 32, 2, 5.0, 0.5)
    assert sorted(losses) == sorted(YOLO_LOSS_NAMES)
    ref = np_yolo_v1_loss(pred, boxes, classes, (32, 32), 2, 5.0, 0.5)
    for name in YOLO_LOSS_NAMES:
        np.testing.assert_allclose(
            float(losses[name]), ref[name], rtol=1e-5, err_msg=name
        )


def test_non_square_image_and_lambdas():
    pred, boxes, classes = _case(1)
    pred = np.concatenate([pred, pred[:, :, :1]], axis=2)  # 2 x 3 grid
    boxes = boxes * np.array([1.5, 1, 1.5, 1], "float32")
    boxes[boxes < 0] = -1
    losses = yolo_v1_loss(pred, boxes, classes, (32, 48), 2, 2.0, 0.0)
    ref = np_yolo_v1_loss(pred, boxes, classes, (32, 48), 2, 2.0, 0.0)
    for name in YOLO_LOSS_NAMES:
        np.testing.assert_allclose(float(losses[name]), ref[name], rtol=1e-5)
    assert float(losses["loss_noobject"]) == 0.0


def test_perfect_prediction_has_zero_coordinate_and_class_loss():
    # One object of 16 x 8 pixels centred at (8, 8) in a 32 x 32 image.
    pred = np.zeros((1, 2, 2, 5 + 2), "float32")
    pred[0, 0, 0] = (0.5, 0.5, np.sqrt(0.5), np.sqrt(0.25), 1.0, 0.0, 1.0)
    boxes = np.array([[[0, 4, 16, 12]]], "float32")
    losses = yolo_v1_loss(pred, boxes, np.array([[1]]), 32, 1)
    for name in YOLO_LOSS_NAMES:
        assert float(losses[name]) == pytest.approx(0.0, abs=1e-10), name


def test_gradients_are_finite_and_match_finite_differences():
    pred, boxes, classes = _case()
    x = tf.constant(pred)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = sum(yolo_v1_loss(x, boxes, classes, 32, 2).values())
    grad = tape.gradient(total, x).numpy()
    assert np.all(np.isfinite(grad))
    # Finite differences on the confidences and class probabilities (the
    # coordinates also move the IoU target, which is not differentiated,
    # and the responsible-box choice is locally constant).
    rng = np.random.default_rng(3)
    for channel in (4, 9, 10, 12):
        index = (*(int(rng.integers(0, s)) for s in pred.shape[:3]), channel)
        step = np.zeros_like(pred)
        step[index] = 1e-3
        plus = sum(yolo_v1_loss(pred + step, boxes, classes, 32, 2).values())
        minus = sum(yolo_v1_loss(pred - step, boxes, classes, 32, 2).values())
        numeric = (float(plus) - float(minus)) / 2e-3
        np.testing.assert_allclose(grad[index], numeric, atol=2e-3)


def test_all_padding_gives_only_no_object_loss():
    pred, _, _ = _case()
    boxes = -np.ones((2, 3, 4), "float32")
    losses = yolo_v1_loss(pred, boxes, -np.ones((2, 3), "int32"), 32, 2)
    expected = 0.5 * np.sum(pred[..., [4, 9]] ** 2) / 2
    np.testing.assert_allclose(float(losses["loss_noobject"]), expected, 1e-5)
    for name in ("loss_xy", "loss_wh", "loss_object", "loss_class"):
        assert float(losses[name]) == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lambda_coord": -1.0}, "Received: lambda_coord=-1.0"),
        ({"lambda_noobj": -0.5}, "Received: lambda_noobj=-0.5"),
        ({"boxes_per_cell": 0}, "Received: boxes_per_cell=0"),
        ({"boxes_per_cell": 3}, "num_classes >= 1"),
    ],
)
def test_bad_arguments(kwargs, match):
    pred, boxes, classes = _case()
    with pytest.raises(ValueError, match=re.escape(match)):
        yolo_v1_loss(pred, boxes, classes, 32, **kwargs)
