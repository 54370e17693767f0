"""YOLO v1 grid predictions -> boxes, confidences and class probabilities."""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_segattn import validation
from keras_segattn.validation import Tensor


def yolo_grid_channels(boxes_per_cell: int, num_classes: int) -> int:
    """Channels of a YOLO v1 cell: `boxes_per_cell * 5 + num_classes`."""
    return boxes_per_cell * 5 + num_classes


def check_yolo_grid(
    predictions, boxes_per_cell: int, name: str = "predictions"
) -> tuple[int, int, int]:
    """Checks a [B, S, S', B * 5 + C] grid with static S, S' and C >= 1;
    returns (rows, columns, num_classes)."""
    shape = validation.check_rank(predictions, 4, name)
    rows, columns, channels = shape[1:]
    if rows is None or columns is None or channels is None:
        raise ValueError(
            f"Invalid shape for argument `{name}`. Expected a grid "
            "[B, S, S, boxes_per_cell * 5 + num_classes] of static size. "
            f"Received: {name}.shape={shape}."
        )
    num_classes = channels - 5 * boxes_per_cell
    if num_classes < 1:
        raise ValueError(
            f"Invalid shape for argument `{name}`. Expected "
            f"boxes_per_cell * 5 + num_classes = {5 * boxes_per_cell} + "
            "num_classes channels with num_classes >= 1 "
            f"(boxes_per_cell={boxes_per_cell}). Received: "
            f"{name}.shape={shape}."
        )
    return rows, columns, num_classes


def decode_yolo_grid(
    predictions: Tensor,
    image_size: int | Sequence[int],
    boxes_per_cell: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Splits and decodes a YOLO v1 output grid (Redmon et al., 2016).

    Each cell (row i, column j) of an S x S' grid over an H x W image
    holds `boxes_per_cell` predictors `(x, y, sqrt_w, sqrt_h,
    confidence)` followed by C conditional class probabilities, the
    layout of the paper's S x S x (B * 5 + C) tensor. `x, y` are the box
    centre's offsets within the cell (0..1), `sqrt_w, sqrt_h` the square
    roots of the box size relative to the image, so the centre is
    `((j + x) W / S', (i + y) H / S)` and the size `(sqrt_w^2 W,
    sqrt_h^2 H)` pixels.

    Args:
        predictions: float tensor [B, S, S', boxes_per_cell * 5 + C]
            (after `YOLOHead`'s sigmoid/softmax).
        image_size: int or (H, W) of the input images, pixels.
        boxes_per_cell: int >= 1.

    Returns:
        Tuple of float32 tensors: `boxes` [B, S, S', boxes_per_cell, 4] of
        (x1, y1, x2, y2) pixels (not clipped), `confidences`
        [B, S, S', boxes_per_cell] and `class_probs` [B, S, S', C].

    Raises:
        ValueError: for a grid that is not [B, S, S', B * 5 + C], C >= 1.
    """
    boxes_per_cell = validation.check_positive_int(
        boxes_per_cell, "boxes_per_cell"
    )
    height, width = validation.standardize_size(image_size, "image_size")
    rows, columns, _ = check_yolo_grid(predictions, boxes_per_cell)
    predictions = ops.cast(predictions, "float32")
    split = 5 * boxes_per_cell
    cells = ops.reshape(
        predictions[..., :split], (-1, rows, columns, boxes_per_cell, 5)
    )
    class_probs = predictions[..., split:]
    col = ops.cast(ops.arange(columns), "float32")[None, None, :, None]
    row = ops.cast(ops.arange(rows), "float32")[None, :, None, None]
    centre_x = (col + cells[..., 0]) * (width / columns)
    centre_y = (row + cells[..., 1]) * (height / rows)
    half_w = 0.5 * ops.square(cells[..., 2]) * width
    half_h = 0.5 * ops.square(cells[..., 3]) * height
    boxes = ops.stack(
        [
            centre_x - half_w,
            centre_y - half_h,
            centre_x + half_w,
            centre_y + half_h,
        ],
        axis=-1,
    )
    return boxes, cells[..., 4], class_probs
