"""Overfeat's greedy merge of sliding-window boxes, static shapes."""

from __future__ import annotations

from keras import ops

from keras_segattn import validation
from keras_segattn.validation import Tensor

MERGE_WEIGHTINGS = ("score", "mean")


def _pair_match_scores(boxes, classes, alive, distance_scale):
    """match_score [B, N, N]; +inf where the pair may not merge."""
    x1, y1, x2, y2 = (boxes[..., k] for k in range(4))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    distance = ops.sqrt(
        ops.square(cx[:, :, None] - cx[:, None, :])
        + ops.square(cy[:, :, None] - cy[:, None, :])
    )
    width = ops.maximum(
        ops.minimum(x2[:, :, None], x2[:, None, :])
        - ops.maximum(x1[:, :, None], x1[:, None, :]),
        0.0,
    )
    height = ops.maximum(
        ops.minimum(y2[:, :, None], y2[:, None, :])
        - ops.maximum(y1[:, :, None], y1[:, None, :]),
        0.0,
    )
    intersection = width * height
    area = ops.maximum(x2 - x1, 0.0) * ops.maximum(y2 - y1, 0.0)
    union = area[:, :, None] + area[:, None, :] - intersection
    iou = ops.where(union > 0, intersection / ops.maximum(union, 1e-12), 0.0)
    match = distance / distance_scale + (1.0 - iou)
    n = boxes.shape[1]
    upper = ops.triu(ops.ones((n, n), "bool"), k=1)[None]
    allowed = (
        upper
        & alive[:, :, None]
        & alive[:, None, :]
        & (classes[:, :, None] == classes[:, None, :])
    )
    return ops.where(allowed, match, float("inf"))


def overfeat_merge(
    boxes: Tensor,
    scores: Tensor,
    classes: Tensor | None = None,
    valid: Tensor | None = None,
    *,
    threshold: float,
    distance_scale: float = 1.0,
    weighting: str = "score",
    max_output_size: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Greedy merge of the boxes of each image, per class (Overfeat).

    Sermanet et al., "OverFeat" (ICLR 2014), sec. 4.6: the pair of boxes
    with the lowest `match_score` is replaced by its merge, until no pair
    scores below `threshold`. Here, as the paper's text describes but with
    the overlap term oriented so that overlapping boxes match better,

        match_score(a, b) = |centre(a) - centre(b)| / distance_scale
                            + (1 - IoU(a, b)),

    and only boxes of the same class are merged. The merged box averages
    the coordinates: `weighting="mean"` is the paper's `box_merge` (the
    plain mean of the two boxes), `"score"` the score-weighted mean of all
    the boxes merged so far (each box is a cluster weighted by its summed
    score). The merged score is the sum of the scores (the paper's
    "cumulatively adding the detection class outputs"). Ties go to the
    pair (i, j), i < j, first in row-major order; the merge takes slot i
    and frees slot j.

    A static-shape `keras.ops` implementation (`ops.while_loop`, one merge
    per iteration over a dense [B, N, N] match matrix, at most N - 1
    iterations), so it compiles under XLA; cost O(N^3) per image, fine for
    the few hundred candidates a sliding-window detector keeps after a
    score threshold and top-k.

    Args:
        boxes: float tensor [B, N, 4] of (x1, y1, x2, y2).
        scores: float tensor [B, N], >= 0.
        classes: None or int tensor [B, N] (None: one class).
        valid: None or bool tensor [B, N]; False boxes are ignored.
        threshold: float. Pairs merge while their match score is below it.
        distance_scale: float > 0. Unit of the centre distance (e.g. the
            window size, to make `threshold` scale-free).
        weighting: "score" or "mean" (see above).
        max_output_size: None or int > 0: keep the top boxes by merged
            score (default N).

    Returns:
        Tuple `(boxes, scores, classes, valid)`: [B, K, 4] float32,
        [B, K] float32, [B, K] int32 and [B, K] bool, K = max_output_size,
        by decreasing merged score (invalid slots last, zero boxes).

    Raises:
        ValueError: for boxes not [B, N, 4], scores not [B, N], a
            non-positive `distance_scale` or `max_output_size`, or an
            unknown `weighting`.
    """
    shape = validation.check_rank(boxes, 3, "boxes")
    validation.check_static_dims(boxes, {2: 4}, "boxes")
    validation.check_rank(scores, 2, "scores")
    num_boxes = shape[1]
    if num_boxes is None:
        raise ValueError(
            "Invalid shape for argument `boxes`. Expected a static number "
            f"of boxes. Received: boxes.shape={shape}."
        )
    validation.check_static_dims(scores, {1: num_boxes}, "scores")
    threshold = float(threshold)
    distance_scale = validation.check_positive_float(
        distance_scale, "distance_scale"
    )
    weighting = validation.check_one_of(
        weighting, MERGE_WEIGHTINGS, "weighting"
    )
    if max_output_size is None:
        max_output_size = num_boxes
    max_output_size = validation.check_positive_int(
        max_output_size, "max_output_size"
    )
    boxes = ops.cast(boxes, "float32")
    scores = ops.cast(scores, "float32")
    if classes is None:
        classes = ops.zeros_like(scores, dtype="int32")
    classes = ops.cast(classes, "int32")
    if valid is None:
        valid = ops.ones_like(scores, dtype="bool")
    alive = ops.cast(valid, "bool")
    n = num_boxes
    positions = ops.arange(n, dtype="int32")

    def cond(boxes, weights, alive, done, step):
        return ops.logical_and(step < n - 1, ops.logical_not(ops.all(done)))

    def body(boxes, weights, alive, done, step):
        match = _pair_match_scores(boxes, classes, alive, distance_scale)
        flat = ops.reshape(match, (-1, n * n))
        best = ops.cast(ops.argmin(flat, axis=1), "int32")
        best_score = ops.min(flat, axis=1)
        merge = ops.logical_and(best_score < threshold, ~done)
        i, j = best // n, best % n
        at_i = ops.expand_dims(positions, 0) == i[:, None]  # [B, N]
        at_j = ops.expand_dims(positions, 0) == j[:, None]
        pick = lambda values, at: ops.sum(  # noqa: E731
            ops.where(at[..., None], values, 0.0), axis=1
        )
        box_i, box_j = pick(boxes, at_i), pick(boxes, at_j)
        w_i = ops.sum(ops.where(at_i, weights, 0.0), axis=1)[:, None]
        w_j = ops.sum(ops.where(at_j, weights, 0.0), axis=1)[:, None]
        if weighting == "score":
            total = w_i + w_j
            merged = ops.where(
                total > 0,
                (w_i * box_i + w_j * box_j) / ops.maximum(total, 1e-30),
                (box_i + box_j) / 2.0,
            )
        else:
            merged = (box_i + box_j) / 2.0
        update_i = ops.logical_and(at_i, merge[:, None])
        update_j = ops.logical_and(at_j, merge[:, None])
        boxes = ops.where(update_i[..., None], merged[:, None, :], boxes)
        weights = ops.where(update_i, w_i + w_j, weights)
        weights = ops.where(update_j, 0.0, weights)
        alive = ops.logical_and(alive, ops.logical_not(update_j))
        done = ops.logical_or(done, ops.logical_not(merge))
        return boxes, weights, alive, done, step + 1

    batch_done = ops.zeros_like(scores[:, 0], dtype="bool")
    boxes, weights, alive, _, _ = ops.while_loop(
        cond,
        body,
        (boxes, scores, alive, batch_done, ops.convert_to_tensor(0, "int32")),
    )
    # Sort by merged score, dead slots last.
    key = ops.where(alive, weights, -float("inf"))
    k = min(max_output_size, n)
    order = ops.argsort(-key, axis=1)[:, :k]
    out_boxes = ops.take_along_axis(boxes, order[..., None], axis=1)
    out_scores = ops.take_along_axis(weights, order, axis=1)
    out_classes = ops.take_along_axis(classes, order, axis=1)
    out_valid = ops.take_along_axis(alive, order, axis=1)
    out_boxes = ops.where(out_valid[..., None], out_boxes, 0.0)
    out_scores = ops.where(out_valid, out_scores, 0.0)
    out_classes = ops.where(out_valid, out_classes, 0)
    if k < max_output_size:
        pad = max_output_size - k
        out_boxes = ops.pad(out_boxes, ((0, 0), (0, pad), (0, 0)))
        out_scores = ops.pad(out_scores, ((0, 0), (0, pad)))
        out_classes = ops.pad(out_classes, ((0, 0), (0, pad)))
        out_valid = ops.pad(out_valid, ((0, 0), (0, pad)))
    return out_boxes, out_scores, out_classes, out_valid
