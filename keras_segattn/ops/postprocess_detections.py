"""Final detections from a Fast R-CNN box head, static shapes."""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_segattn import validation
from keras_segattn.ops._boxes import box_is_large_enough
from keras_segattn.ops._boxes import check_boxes
from keras_segattn.ops._boxes import clip_boxes_to_image
from keras_segattn.ops._boxes import is_padding_box
from keras_segattn.ops.batched_nms import batched_nms
from keras_segattn.ops.box_coding import decode_boxes
from keras_segattn.validation import Tensor
from keras_segattn.validation import check_fraction
from keras_segattn.validation import check_non_negative_float


def postprocess_detections(
    class_logits: Tensor,
    box_deltas: Tensor,
    proposals: Tensor,
    image_size: int | Sequence[int],
    weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    max_detections: int = 100,
    min_size: float = 1e-2,
    pre_nms_top_n: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Decodes, filters and suppresses the box head's per-class predictions.

    `torchvision.models.detection.roi_heads.RoIHeads.postprocess_detections`
    batched with static shapes: each proposal's class-specific deltas are
    decoded (`decode_boxes`, weights (10, 10, 5, 5)) and clipped to the
    image, the class probabilities are the softmax of the logits, the
    background column is dropped, every (proposal, class) pair whose score
    is not above `score_threshold` or whose box is smaller than `min_size`
    is removed, NMS runs per class (`batched_nms`, IoU `nms_threshold`)
    and the best `max_detections` are kept, by decreasing score. Padding
    proposals (four -1) yield nothing.

    `pre_nms_top_n` (None: off, torchvision's behaviour) keeps only that
    many best-scoring pairs before NMS, which bounds its cost when there
    are many proposals times classes.

    Args:
        class_logits: float tensor [B, R, K + 1], class 0 the background.
        box_deltas: float tensor [B, R, 4 (K + 1)] or [B, R, K + 1, 4] of
            class-specific (dx, dy, dw, dh).
        proposals: float tensor [B, R, 4] of (x1, y1, x2, y2) pixels, the
            RoIs the head saw; padding rows are four -1.
        image_size: int or (height, width) of the images, pixels.
        weights: the box coder weights (wx, wy, ww, wh).
        score_threshold: float in [0, 1].
        nms_threshold: float in [0, 1].
        max_detections: int > 0. Detections per image (static).
        min_size: float >= 0. Smallest width and height, pixels.
        pre_nms_top_n: None or int > 0.

    Returns:
        Tuple `(boxes, scores, labels, valid)`: float32 [B, D, 4] of
        (x1, y1, x2, y2) pixels, float32 [B, D] scores, int32 [B, D]
        labels in [1, K] (torchvision's, 0 being the background) and bool
        [B, D], with D = `max_detections`; slots past the detections of an
        image are zeros (label 0) and False.

    Raises:
        ValueError: on inconsistent shapes or invalid arguments.
    """
    image_size = validation.standardize_size(image_size, "image_size")
    score_threshold = check_fraction(score_threshold, "score_threshold")
    nms_threshold = check_fraction(nms_threshold, "nms_threshold")
    max_detections = validation.check_positive_int(
        max_detections, "max_detections"
    )
    min_size = check_non_negative_float(min_size, "min_size")
    if pre_nms_top_n is not None:
        pre_nms_top_n = validation.check_positive_int(
            pre_nms_top_n, "pre_nms_top_n"
        )
    shape = check_boxes(proposals, "proposals")
    num_rois = shape[1]
    logits_shape = validation.check_rank(class_logits, 3, "class_logits")
    num_labels = logits_shape[-1]
    if num_labels is None or num_labels < 2 or logits_shape[1] != num_rois:
        raise ValueError(
            "Invalid shape for argument `class_logits`. Expected [B, R, "
            "K + 1] with K >= 1 and R the number of proposals "
            f"({num_rois}). Received: class_logits.shape={logits_shape}."
        )
    deltas_shape = validation.check_rank(box_deltas, (3, 4), "box_deltas")
    expected = (
        (num_rois, 4 * num_labels)
        if len(deltas_shape) == 3
        else (num_rois, num_labels, 4)
    )
    if tuple(deltas_shape[1:]) != expected:
        raise ValueError(
            "Invalid shape for argument `box_deltas`. Expected [B, R, "
            f"4 (K + 1)] or [B, R, K + 1, 4] with R={num_rois}, "
            f"K + 1={num_labels}. Received: box_deltas.shape={deltas_shape}."
        )

    proposals = ops.cast(proposals, "float32")
    deltas = ops.reshape(
        ops.cast(box_deltas, "float32"), (-1, num_rois, num_labels, 4)
    )
    boxes = decode_boxes(deltas[:, :, 1:], proposals[:, :, None, :], weights)
    boxes = clip_boxes_to_image(boxes, image_size)  # [B, R, K, 4]
    scores = ops.softmax(ops.cast(class_logits, "float32"), axis=-1)[..., 1:]
    labels = ops.broadcast_to(
        ops.arange(1, num_labels, dtype="int32")[None, None, :],
        ops.shape(scores),
    )
    valid = ops.logical_and(
        scores > score_threshold, box_is_large_enough(boxes, min_size)
    )
    valid = ops.logical_and(
        valid, ops.logical_not(is_padding_box(proposals))[..., None]
    )
    count = num_rois * (num_labels - 1)
    boxes = ops.reshape(boxes, (-1, count, 4))
    scores = ops.reshape(scores, (-1, count))
    labels = ops.reshape(labels, (-1, count))
    valid = ops.reshape(valid, (-1, count))
    if pre_nms_top_n is not None and pre_nms_top_n < count:
        _, top = ops.top_k(ops.where(valid, scores, -1.0), k=pre_nms_top_n)
        boxes = ops.take_along_axis(boxes, top[..., None], axis=1)
        scores = ops.take_along_axis(scores, top, axis=1)
        labels = ops.take_along_axis(labels, top, axis=1)
        valid = ops.take_along_axis(valid, top, axis=1)

    index, kept = batched_nms(
        boxes, scores, max_detections, nms_threshold, idxs=labels, valid=valid
    )
    boxes = ops.take_along_axis(boxes, index[..., None], axis=1)
    boxes = ops.where(kept[..., None], boxes, 0.0)
    scores = ops.where(kept, ops.take_along_axis(scores, index, axis=1), 0.0)
    labels = ops.where(kept, ops.take_along_axis(labels, index, axis=1), 0)
    return boxes, scores, labels, kept
