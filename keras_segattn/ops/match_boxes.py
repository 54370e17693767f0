"""IoU matching of boxes to ground truth (torchvision `Matcher`), batched."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn.ops._boxes import check_boxes
from keras_segattn.ops._boxes import is_padding_box
from keras_segattn.validation import Tensor
from keras_segattn.validation import check_fraction

# Values of a match that is not a ground-truth index (torchvision's
# `Matcher.BELOW_LOW_THRESHOLD` and `Matcher.BETWEEN_THRESHOLDS`).
BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2


def match_boxes(
    boxes: Tensor,
    gt_boxes: Tensor,
    high_threshold: float,
    low_threshold: float,
    allow_low_quality_matches: bool = False,
) -> Tensor:
    """Assigns each box (anchor or proposal) a ground-truth box by IoU.

    The matcher of Faster R-CNN, numbers of `torchvision.models.detection.
    _utils.Matcher` (pytorch/vision: torchvision/models/detection/
    _utils.py), batched with static shapes: for each box, the ground truth
    of highest IoU (the first on ties, `argmax`) is its match when that IoU
    is >= `high_threshold`; below `low_threshold` the box is background
    (-1); in between it is ignored (-2). With `allow_low_quality_matches`
    (the RPN's setting) every box whose IoU with some ground truth equals
    that ground truth's highest IoU keeps its argmax match even below the
    threshold, so each ground truth has at least one positive box.

    Padding follows the package convention (four -1): padding ground-truth
    rows never match (their IoU counts as -1) and padding boxes are
    ignored (-2). Unlike torchvision, a ground truth that overlaps no box
    at all (highest IoU 0) creates no low-quality match, instead of making
    every non-overlapping box its match. IoUs come from
    `keras.utils.bounding_boxes.compute_iou`, which adds 1e-7 to the union
    (torchvision does not), so zero-area boxes have IoU 0, not NaN.

    Args:
        boxes: float tensor [B, N, 4] of (x1, y1, x2, y2), or [N, 4]
            shared by every image (anchors).
        gt_boxes: float tensor [B, M, 4] of (x1, y1, x2, y2), padded with
            rows of four -1.
        high_threshold: float in [0, 1]. Foreground IoU (0.7 for the RPN,
            0.5 for the box head).
        low_threshold: float in [0, high_threshold]. Background below this
            IoU (0.3 for the RPN, 0.5 for the box head).
        allow_low_quality_matches: bool. Keep the best box of each ground
            truth as a match (True for the RPN).

    Returns:
        int32 tensor [B, N]: the matched ground-truth index in [0, M), -1
        for background, -2 for ignored boxes.

    Raises:
        ValueError: on boxes not [B, N, 4] (or [N, 4]), gt_boxes not
            [B, M, 4], thresholds outside [0, 1] or
            `low_threshold > high_threshold`.
    """
    high_threshold = check_fraction(high_threshold, "high_threshold")
    low_threshold = check_fraction(low_threshold, "low_threshold")
    if low_threshold > high_threshold:
        raise ValueError(
            "Invalid value for argument `low_threshold`. Expected "
            "low_threshold <= high_threshold. Received: "
            f"low_threshold={low_threshold} and "
            f"high_threshold={high_threshold}."
        )
    check_boxes(boxes, "boxes", ranks=(2, 3))
    check_boxes(gt_boxes, "gt_boxes")
    boxes = ops.cast(boxes, "float32")
    gt_boxes = ops.cast(gt_boxes, "float32")

    iou = keras.utils.bounding_boxes.compute_iou(
        boxes, gt_boxes, bounding_box_format="xyxy"
    )  # [B, N, M]
    gt_valid = ops.logical_not(is_padding_box(gt_boxes))[:, None, :]
    iou = ops.where(gt_valid, iou, -1.0)
    matched_iou = ops.max(iou, axis=-1)
    matches = ops.cast(ops.argmax(iou, axis=-1), "int32")
    result = ops.where(
        matched_iou < low_threshold,
        BELOW_LOW_THRESHOLD,
        ops.where(matched_iou < high_threshold, BETWEEN_THRESHOLDS, matches),
    )
    if allow_low_quality_matches:
        best_per_gt = ops.max(iou, axis=1, keepdims=True)  # [B, 1, M]
        is_best = ops.logical_and(
            ops.equal(iou, best_per_gt), ops.greater(best_per_gt, 0.0)
        )
        result = ops.where(ops.any(is_best, axis=-1), matches, result)
    if len(boxes.shape) == 3:
        result = ops.where(is_padding_box(boxes), BETWEEN_THRESHOLDS, result)
    return ops.cast(result, "int32")
