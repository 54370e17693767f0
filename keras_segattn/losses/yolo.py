"""The YOLO v1 loss (Redmon et al., 2016) with its target assignment."""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_segattn import validation
from keras_segattn.losses.distribution import replica_share_of_mean
from keras_segattn.ops._boxes import check_boxes
from keras_segattn.ops._boxes import is_padding_box
from keras_segattn.ops.decode_yolo_grid import check_yolo_grid
from keras_segattn.ops.decode_yolo_grid import decode_yolo_grid
from keras_segattn.validation import Tensor
from keras_segattn.validation import check_non_negative_float

YOLO_LOSS_NAMES = (
    "loss_xy",
    "loss_wh",
    "loss_object",
    "loss_noobject",
    "loss_class",
)


def _elementwise_iou(boxes, others):
    """IoU of (x1, y1, x2, y2) boxes broadcast against each other."""
    x1 = ops.maximum(boxes[..., 0], others[..., 0])
    y1 = ops.maximum(boxes[..., 1], others[..., 1])
    x2 = ops.minimum(boxes[..., 2], others[..., 2])
    y2 = ops.minimum(boxes[..., 3], others[..., 3])
    inter = ops.maximum(x2 - x1, 0.0) * ops.maximum(y2 - y1, 0.0)

    def area(b):
        return ops.maximum(b[..., 2] - b[..., 0], 0.0) * ops.maximum(
            b[..., 3] - b[..., 1], 0.0
        )

    union = area(boxes) + area(others) - inter
    return ops.divide_no_nan(inter, union)


def assign_yolo_targets(
    gt_boxes: Tensor,
    gt_classes: Tensor,
    image_size: Sequence[int],
    grid_size: Sequence[int],
) -> tuple[Tensor, Tensor, Tensor]:
    """Assigns every ground-truth box to the grid cell holding its centre.

    YOLO v1 predicts one object per cell: where several centres fall in
    the same cell, the last valid row of `gt_boxes` wins.

    Args:
        gt_boxes: float [B, M, 4] (x1, y1, x2, y2) pixels, four -1 padding.
        gt_classes: int [B, M], -1 padding.
        image_size: (H, W) pixels.
        grid_size: (S, S') rows and columns.

    Returns:
        `has_object` float32 [B, S * S'] (1 where a cell owns a box),
        `cell_boxes` float32 [B, S * S', 4] (its box, any value elsewhere)
        and `cell_classes` int32 [B, S * S'].
    """
    height, width = image_size
    rows, columns = grid_size
    boxes = ops.cast(gt_boxes, "float32")
    classes = ops.cast(gt_classes, "int32")
    valid = ops.logical_and(
        classes >= 0, ops.logical_not(is_padding_box(boxes))
    )
    valid = ops.logical_and(valid, boxes[..., 2] > boxes[..., 0])
    valid = ops.logical_and(valid, boxes[..., 3] > boxes[..., 1])
    centre_x = 0.5 * (boxes[..., 0] + boxes[..., 2])
    centre_y = 0.5 * (boxes[..., 1] + boxes[..., 3])
    col = ops.clip(
        ops.cast(ops.floor(centre_x * (columns / width)), "int32"),
        0,
        columns - 1,
    )
    row = ops.clip(
        ops.cast(ops.floor(centre_y * (rows / height)), "int32"), 0, rows - 1
    )
    cell = row * columns + col
    num_rows = boxes.shape[1]
    one_hot = ops.one_hot(cell, rows * columns, dtype="float32")
    one_hot = one_hot * ops.cast(valid, "float32")[..., None]  # [B, M, SS]
    rank = ops.cast(ops.arange(1, num_rows + 1), "float32")[None, :, None]
    owner = ops.argmax(one_hot * rank, axis=1)  # [B, SS], last row wins
    has_object = ops.max(one_hot, axis=1)
    cell_boxes = ops.take_along_axis(boxes, owner[..., None], axis=1)
    cell_classes = ops.take_along_axis(classes, owner, axis=1)
    return has_object, cell_boxes, cell_classes


def yolo_v1_loss(
    predictions: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
    image_size: int | Sequence[int],
    boxes_per_cell: int = 2,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
) -> dict[str, Tensor]:
    """The sum-squared error of YOLO v1, term by term.

    Target assignment as in the paper: each ground-truth box belongs to
    the cell containing its centre (`assign_yolo_targets`), and of that
    cell's `boxes_per_cell` predictors the one whose decoded box has the
    highest IoU with it is *responsible* (1_ij^obj; ties go to the first).
    With (x, y) the centre's offsets in the cell and (sqrt_w, sqrt_h) the
    square roots of the size relative to the image, the terms are:

    - `loss_xy`: lambda_coord * sum 1_ij^obj [(x - x^)^2 + (y - y^)^2];
    - `loss_wh`: lambda_coord * sum 1_ij^obj [(sqrt_w - sqrt_w^)^2 +
      (sqrt_h - sqrt_h^)^2];
    - `loss_object`: sum 1_ij^obj (C - C^)^2 with the target C the IoU of
      the predicted box with the ground truth (not differentiated);
    - `loss_noobject`: lambda_noobj * sum 1_ij^noobj C^2 over every other
      predictor (1_ij^noobj = 1 - 1_ij^obj);
    - `loss_class`: sum 1_i^obj sum_c (p(c) - p^(c))^2, class probability
      error only in cells that hold an object.

    Each term is summed over the cells of an image and averaged over the
    images of the *global* batch: in a `tf.distribute` replica context the
    value is this replica's share (`replica_share_of_mean`), so the
    replicas' shares add up to the one-device loss.

    Args:
        predictions: float [B, S, S', boxes_per_cell * 5 + C], the
            activated grid (`YOLOHead`, layout of `decode_yolo_grid`).
        gt_boxes: float [B, M, 4] (x1, y1, x2, y2) pixels; four -1 pad.
        gt_classes: int [B, M] in 0..C - 1; -1 pads.
        image_size: int or (H, W) pixels.
        boxes_per_cell: int >= 1.
        lambda_coord: float >= 0 (5 in the paper).
        lambda_noobj: float >= 0 (0.5 in the paper).

    Returns:
        Dict of float32 scalars named `YOLO_LOSS_NAMES`.

    Raises:
        ValueError: for bad shapes or negative lambdas.

    Reference:
        - [Redmon et al., "You Only Look Once: Unified, Real-Time Object
          Detection", CVPR 2016](https://arxiv.org/abs/1506.02640), eq. 3.
    """
    lambda_coord = check_non_negative_float(lambda_coord, "lambda_coord")
    lambda_noobj = check_non_negative_float(lambda_noobj, "lambda_noobj")
    boxes_per_cell = validation.check_positive_int(
        boxes_per_cell, "boxes_per_cell"
    )
    height, width = validation.standardize_size(image_size, "image_size")
    rows, columns, num_classes = check_yolo_grid(predictions, boxes_per_cell)
    check_boxes(gt_boxes, "gt_boxes")
    validation.check_rank(gt_classes, 2, "gt_classes")
    cells = rows * columns
    predictions = ops.cast(predictions, "float32")

    has_object, cell_boxes, cell_classes = assign_yolo_targets(
        gt_boxes, gt_classes, (height, width), (rows, columns)
    )
    pred_boxes, confidences, class_probs = decode_yolo_grid(
        predictions, (height, width), boxes_per_cell
    )
    pred_boxes = ops.reshape(pred_boxes, (-1, cells, boxes_per_cell, 4))
    confidences = ops.reshape(confidences, (-1, cells, boxes_per_cell))
    class_probs = ops.reshape(class_probs, (-1, cells, num_classes))
    raw = ops.reshape(
        predictions[..., : 5 * boxes_per_cell],
        (-1, cells, boxes_per_cell, 5),
    )

    iou = ops.stop_gradient(
        _elementwise_iou(pred_boxes, cell_boxes[:, :, None, :])
    )  # [B, SS, nb]
    responsible = ops.one_hot(
        ops.argmax(iou, axis=-1), boxes_per_cell, dtype="float32"
    )
    responsible = responsible * has_object[..., None]

    # Targets in the parametrisation of the grid.
    index = ops.arange(cells)
    col = ops.cast(index % columns, "float32")[None, :]
    row = ops.cast(index // columns, "float32")[None, :]
    target_x = (
        0.5 * (cell_boxes[..., 0] + cell_boxes[..., 2]) * (columns / width)
        - col
    )
    target_y = (
        0.5 * (cell_boxes[..., 1] + cell_boxes[..., 3]) * (rows / height) - row
    )
    target_w = ops.sqrt(
        ops.maximum(cell_boxes[..., 2] - cell_boxes[..., 0], 0.0) / width
    )
    target_h = ops.sqrt(
        ops.maximum(cell_boxes[..., 3] - cell_boxes[..., 1], 0.0) / height
    )
    # Cells without an object hold arbitrary boxes: zero their targets so
    # that nothing (not even a NaN) reaches the masked terms.
    target_x, target_y, target_w, target_h = (
        ops.where(has_object > 0, t, 0.0)
        for t in (target_x, target_y, target_w, target_h)
    )

    def per_image(values):
        return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), 1)

    xy = ops.square(raw[..., 0] - target_x[..., None]) + ops.square(
        raw[..., 1] - target_y[..., None]
    )
    wh = ops.square(raw[..., 2] - target_w[..., None]) + ops.square(
        raw[..., 3] - target_h[..., None]
    )
    class_targets = ops.one_hot(
        ops.maximum(cell_classes, 0), num_classes, dtype="float32"
    )
    class_error = ops.sum(ops.square(class_probs - class_targets), axis=-1)
    terms = {
        "loss_xy": lambda_coord * per_image(responsible * xy),
        "loss_wh": lambda_coord * per_image(responsible * wh),
        "loss_object": per_image(responsible * ops.square(confidences - iou)),
        "loss_noobject": lambda_noobj
        * per_image((1.0 - responsible) * ops.square(confidences)),
        "loss_class": per_image(has_object * class_error),
    }
    return {
        name: replica_share_of_mean(terms[name]) for name in YOLO_LOSS_NAMES
    }
