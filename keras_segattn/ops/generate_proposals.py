"""Region proposals from RPN outputs (Faster R-CNN), static shapes."""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_segattn import validation
from keras_segattn.ops._boxes import box_is_large_enough
from keras_segattn.ops._boxes import clip_boxes_to_image
from keras_segattn.ops.batched_nms import batched_nms
from keras_segattn.ops.box_coding import decode_boxes
from keras_segattn.validation import Tensor
from keras_segattn.validation import check_fraction
from keras_segattn.validation import check_non_negative_float


def _flatten_head_output(x, name: str, depth: int):
    """[B, H, W, A * depth] -> [B, H * W * A, depth] (or [B, N] for depth 1);
    flat inputs are returned as they are."""
    shape = validation.check_rank(x, (2, 3, 4), name)
    if len(shape) == 4:
        if shape[1] is None or shape[2] is None or shape[3] is None:
            raise ValueError(
                f"Invalid shape for argument `{name}`. Expected a static "
                f"feature-map size [B, H, W, A * {depth}]. Received: "
                f"{name}.shape={shape}."
            )
        count = shape[1] * shape[2] * shape[3] // depth
        return ops.reshape(x, (-1, count) if depth == 1 else (-1, count, depth))
    return x


def _check_num_anchors_per_level(values, num_anchors: int):
    if values is None:
        return None
    if (
        not isinstance(values, (list, tuple))
        or not values
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0
            for v in values
        )
        or sum(values) != num_anchors
    ):
        raise ValueError(
            "Invalid value for argument `num_anchors_per_level`. Expected "
            "None or positive ints, one per level, summing to the number "
            f"of anchors ({num_anchors}). Received: "
            f"num_anchors_per_level={values!r}."
        )
    return tuple(values)


def _top_k_per_level(objectness, levels: Sequence[int], pre_nms_top_n: int):
    """torchvision's `_get_top_n_idx`: the best `min(pre_nms_top_n, n_l)`
    logits of each level (a static Python loop over the levels), their
    indices into N and int32 level ids, concatenated over the levels."""
    logits, indices, level_ids = [], [], []
    start = 0
    for level, count in enumerate(levels):
        k = min(pre_nms_top_n, count)
        values, index = ops.top_k(objectness[:, start : start + count], k=k)
        logits.append(values)
        indices.append(index + start)
        level_ids.append(ops.full((k,), level, dtype="int32"))
        start += count
    top_logits = ops.concatenate(logits, axis=1)
    level_ids = ops.concatenate(level_ids, axis=0)[None, :]
    level_ids = ops.broadcast_to(level_ids, ops.shape(top_logits))
    return top_logits, ops.concatenate(indices, axis=1), level_ids


def generate_proposals(
    objectness: Tensor,
    deltas: Tensor,
    anchors: Tensor,
    image_size: int | Sequence[int],
    pre_nms_top_n: int,
    post_nms_top_n: int,
    nms_threshold: float = 0.7,
    min_size: float = 1e-3,
    score_threshold: float = 0.0,
    num_anchors_per_level: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Turns RPN scores and deltas at the anchors into a fixed number of boxes.

    `torchvision.models.detection.rpn.RegionProposalNetwork.
    filter_proposals`, batched with static shapes, for one feature level
    or (with `num_anchors_per_level`) a feature pyramid:

    1. keep the `pre_nms_top_n` anchors of highest objectness logit
       (`top_k`; torchvision decodes every anchor first, which gives the
       same boxes); with several levels, the best `min(pre_nms_top_n,
       anchors of the level)` of each level;
    2. decode their deltas (`decode_boxes`, weights (1, 1, 1, 1), dw and dh
       clamped at log(1000 / 16)) and clip the boxes to the image;
    3. drop boxes narrower or lower than `min_size` and those whose
       probability `sigmoid(objectness)` is below `score_threshold`;
    4. NMS at `nms_threshold` (`batched_nms`) and keep the best
       `post_nms_top_n`; with several levels, NMS runs per level (the
       level is the category of `batched_nms`, so boxes of different
       levels never suppress each other) and the best `post_nms_top_n`
       of all levels are kept, by score.

    Where an image has fewer than `post_nms_top_n` proposals left, the
    remaining rows are padding boxes (four -1, the package convention) of
    score 0, so they pool to zero in `roi_align` and are ignored by
    `match_boxes`. The op has no gradient path worth following: callers
    stop gradients at the proposals, as torchvision detaches them.

    Args:
        objectness: float tensor [B, N] of logits (N anchors), or [B, H, W,
            A] straight from an RPN head (flattened row-major, the order of
            `generate_anchors`).
        deltas: float tensor [B, N, 4] of (dx, dy, dw, dh), or
            [B, H, W, 4 A].
        anchors: float tensor [N, 4] of (x1, y1, x2, y2), or [B, N, 4].
        image_size: int or (height, width) of the images, pixels.
        pre_nms_top_n: int > 0. Boxes entering NMS (capped at N).
        post_nms_top_n: int > 0. Boxes returned per image.
        nms_threshold: float in [0, 1]. IoU above which NMS drops a box.
        min_size: float >= 0. Smallest width and height kept, pixels.
        score_threshold: float in [0, 1]. Smallest probability kept.
        num_anchors_per_level: None (one level) or the number of anchors
            of each pyramid level, in the order the N anchors (and scores
            and deltas) are concatenated, summing to N (torchvision's
            `num_anchors_per_level`).

    Returns:
        Tuple `(proposals, scores)`: float32 [B, post_nms_top_n, 4] of
        (x1, y1, x2, y2) pixels by decreasing score, padded with -1, and
        float32 [B, post_nms_top_n] probabilities (0 for padding).

    Raises:
        ValueError: on inconsistent shapes (N of `objectness`, `deltas` and
            `anchors`), non-positive counts or sizes, thresholds outside
            [0, 1], or `num_anchors_per_level` not summing to N.
    """
    image_size = validation.standardize_size(image_size, "image_size")
    pre_nms_top_n = validation.check_positive_int(
        pre_nms_top_n, "pre_nms_top_n"
    )
    post_nms_top_n = validation.check_positive_int(
        post_nms_top_n, "post_nms_top_n"
    )
    nms_threshold = check_fraction(nms_threshold, "nms_threshold")
    score_threshold = check_fraction(score_threshold, "score_threshold")
    min_size = check_non_negative_float(min_size, "min_size")

    objectness = _flatten_head_output(objectness, "objectness", 1)
    deltas = _flatten_head_output(deltas, "deltas", 4)
    validation.check_rank(objectness, 2, "objectness")
    validation.check_rank(deltas, 3, "deltas")
    validation.check_static_dims(deltas, {2: 4}, "deltas")
    validation.check_rank(anchors, (2, 3), "anchors")
    validation.check_static_dims(anchors, {-1: 4}, "anchors")
    num_anchors = objectness.shape[1]
    for tensor, name in ((deltas, "deltas"), (anchors, "anchors")):
        size = tensor.shape[-2]
        if num_anchors is None or size != num_anchors:
            raise ValueError(
                f"Invalid shape for argument `{name}`. Expected "
                f"{num_anchors} boxes, one per objectness score (a static "
                f"number). Received: {name}.shape={tuple(tensor.shape)} "
                f"and objectness.shape={tuple(objectness.shape)}."
            )

    levels = _check_num_anchors_per_level(num_anchors_per_level, num_anchors)

    objectness = ops.cast(objectness, "float32")
    if levels is None:
        top_logits, top_index = ops.top_k(
            objectness, k=min(pre_nms_top_n, num_anchors)
        )
        level_ids = None
    else:
        top_logits, top_index, level_ids = _top_k_per_level(
            objectness, levels, pre_nms_top_n
        )
    top_deltas = ops.take_along_axis(
        ops.cast(deltas, "float32"), top_index[..., None], axis=1
    )
    anchors = ops.cast(anchors, "float32")
    if len(anchors.shape) == 2:
        top_anchors = ops.take(anchors, top_index, axis=0)
    else:
        top_anchors = ops.take_along_axis(anchors, top_index[..., None], axis=1)
    boxes = decode_boxes(top_deltas, top_anchors, (1.0, 1.0, 1.0, 1.0))
    boxes = clip_boxes_to_image(boxes, image_size)
    scores = ops.sigmoid(top_logits)
    keep = ops.logical_and(
        box_is_large_enough(boxes, min_size), scores >= score_threshold
    )
    keep = ops.logical_and(keep, ops.all(ops.isfinite(boxes), axis=-1))

    index, kept = batched_nms(
        boxes,
        scores,
        post_nms_top_n,
        nms_threshold,
        idxs=level_ids,
        valid=keep,
    )
    proposals = ops.take_along_axis(boxes, index[..., None], axis=1)
    proposals = ops.where(kept[..., None], proposals, -1.0)
    scores = ops.where(kept, ops.take_along_axis(scores, index, axis=1), 0.0)
    return proposals, scores
