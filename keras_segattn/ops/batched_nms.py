"""Per-category non-maximum suppression with static shapes, batched."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from keras_segattn import validation
from keras_segattn.validation import Tensor
from keras_segattn.validation import check_fraction


def batched_nms(
    boxes: Tensor,
    scores: Tensor,
    max_output_size: int,
    iou_threshold: float,
    idxs: Tensor | None = None,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Greedy NMS of each image, independently per category, padded output.

    `torchvision.ops.batched_nms` semantics (pytorch/vision:
    torchvision/ops/boxes.py): boxes are visited by decreasing score and
    a box is dropped when its IoU with a kept box of the same category
    exceeds `iou_threshold`. As in torchvision's coordinate trick, the
    categories are separated by offsetting each box by
    `idxs * (extent + 1)`, so one NMS per image does all categories.

    The suppression itself is `tf.image.non_max_suppression_padded`
    (TF-only: keras.ops has no NMS), batched and XLA-compilable, with
    static output shapes. Its padded variant treats a box with no
    coordinate > 0 as absent, so the boxes are first translated to
    positive coordinates (IoU does not change) and boxes that are not
    `valid` are collapsed to the origin, so they are never kept and never
    suppress another box.

    A box is suppressed when its IoU with a kept box is strictly greater
    than `iou_threshold`, as in torchvision (TF's own NMS suppresses at
    equality and keeps identical boxes at 0: the threshold is moved to the
    next float32). Boxes with a NaN or infinite coordinate or score are
    never kept and
    never suppress another box; N = 0 boxes and B = 0 images give no kept
    slots. Boxes with x2 < x1 or y2 < y1 have zero area (IoU 0 with every
    box), so they suppress nothing and are kept by score. The category
    offsets need `(max category + 1) * extent` to stay well inside the
    float32 range (|coordinates| up to about 1e6 with a few hundred
    categories).

    Args:
        boxes: float tensor [B, N, 4] of (x1, y1, x2, y2).
        scores: float tensor [B, N].
        max_output_size: int > 0. Boxes kept per image at most.
        iou_threshold: float in [0, 1].
        idxs: None or int tensor [B, N] of categories (None: one category).
        valid: None or bool tensor [B, N]; False boxes are never kept.

    Returns:
        Tuple `(indices, kept)`: int32 [B, max_output_size] indices into N,
        by decreasing score (0 after the kept ones), and bool
        [B, max_output_size], True for the kept slots.

    Raises:
        ValueError: on boxes not [B, N, 4], scores not [B, N], a
            non-positive `max_output_size` or `iou_threshold` outside
            [0, 1].
        TypeError: if `boxes` or `scores` is not floating.
    """
    max_output_size = validation.check_positive_int(
        max_output_size, "max_output_size"
    )
    iou_threshold = check_fraction(iou_threshold, "iou_threshold")
    shape = validation.check_rank(boxes, 3, "boxes")
    validation.check_static_dims(boxes, {2: 4}, "boxes")
    validation.check_rank(scores, 2, "scores")
    if shape[1] is not None:
        validation.check_static_dims(scores, {1: shape[1]}, "scores")
    boxes = ops.convert_to_tensor(boxes)
    scores = ops.convert_to_tensor(scores)
    validation.check_floating(boxes.dtype, "boxes")
    validation.check_floating(scores.dtype, "scores")
    boxes = ops.cast(boxes, "float32")
    scores = ops.cast(scores, "float32")
    # A NaN or infinite box or score is never kept and suppresses nothing.
    finite = ops.logical_and(
        ops.all(ops.isfinite(boxes), axis=-1), ops.isfinite(scores)
    )
    if valid is not None:
        finite = ops.logical_and(finite, ops.cast(valid, "bool"))
    valid = finite

    # Translate the valid boxes of each image to coordinates >= 1. `tf`
    # reductions: keras.ops refuses empty ones (N = 0 or B = 0).
    big = ops.convert_to_tensor(3.0e38, "float32")
    low = tf.reduce_min(ops.where(valid[..., None], boxes, big), axis=(1, 2))
    high = tf.reduce_max(ops.where(valid[..., None], boxes, -big), axis=(1, 2))
    low = ops.where(ops.any(valid, axis=1), low, 0.0)[:, None, None]
    high = ops.where(ops.any(valid, axis=1), high, 0.0)[:, None, None]
    boxes = boxes - low + 1.0
    if idxs is not None:
        offsets = ops.cast(idxs, "float32") * (high - low + 2.0)[..., 0]
        boxes = boxes + offsets[..., None]
    boxes = ops.where(valid[..., None], boxes, 0.0)
    scores = ops.where(valid, scores, -big)
    # TF's padded NMS fails on N = 0 boxes and on B = 0 images: one absent
    # box is appended where N may be 0, and an empty batch skips it. (Not
    # always: an extra box can add a tile to its loop and an extra image
    # doubles a batch of one.)
    if shape[1] is None or shape[1] == 0:
        boxes = ops.pad(boxes, ((0, 0), (0, 1), (0, 0)))
        scores = ops.pad(scores, ((0, 0), (0, 1)), constant_values=-3.0e38)
    # TF suppresses at IoU >= threshold, torchvision at IoU > threshold:
    # the next float32 up gives exactly that for float32 IoUs. TF keeps
    # everything at 0 (and at denormal thresholds): the smallest normal
    # float32 stands for "IoU > 0".
    iou_threshold = max(
        float(np.nextafter(np.float32(iou_threshold), np.float32(2))),
        float(np.finfo(np.float32).tiny),
    )

    def suppress():  # int32 indices [B, max_output_size] and counts [B]
        return tf.image.non_max_suppression_padded(
            boxes,
            scores,
            max_output_size,
            iou_threshold=iou_threshold,
            pad_to_max_output_size=True,
            canonicalized_coordinates=True,
        )

    def nothing():
        batch = tf.shape(scores)[0]
        return (
            tf.zeros([batch, max_output_size], tf.int32),
            tf.zeros([batch], tf.int32),
        )

    if shape[0] is None:
        indices, num_valid = tf.cond(tf.shape(scores)[0] > 0, suppress, nothing)
    else:
        indices, num_valid = suppress() if shape[0] > 0 else nothing()
    kept = (
        ops.arange(max_output_size, dtype="int32")[None, :]
        < ops.cast(num_valid, "int32")[:, None]
    )
    return ops.where(kept, ops.cast(indices, "int32"), 0), kept
