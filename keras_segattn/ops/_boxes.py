"""Box helpers and box-shape checks shared by the detection ops.

The detection counterpart of `keras_segattn.validation` (torchvision's
`ops/boxes.py` helpers `clip_boxes_to_image` and `remove_small_boxes`,
as static-shape masks). Boxes are (x1, y1, x2, y2) absolute pixels; a box
whose four coordinates are -1 is padding.
"""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_segattn import validation
from keras_segattn.validation import Tensor


def is_padding_box(boxes: Tensor) -> Tensor:
    """bool [...]: True where all four coordinates are -1 (a padding box)."""
    return ops.all(ops.equal(ops.cast(boxes, "float32"), -1.0), axis=-1)


def clip_boxes_to_image(boxes: Tensor, image_size: Sequence[int]) -> Tensor:
    """Clamps (x1, y1, x2, y2) boxes to [0, W] x [0, H] (torchvision's
    `clip_boxes_to_image`: x2 may reach W, not only W - 1)."""
    height, width = image_size
    limit = ops.convert_to_tensor(
        [float(width), float(height), float(width), float(height)], "float32"
    )
    return ops.clip(ops.cast(boxes, "float32"), 0.0, limit)


def box_is_large_enough(boxes: Tensor, min_size: float) -> Tensor:
    """bool [...]: width and height >= `min_size` (the keep condition of
    torchvision's `remove_small_boxes`)."""
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return ops.logical_and(widths >= min_size, heights >= min_size)


def check_boxes(boxes, name: str, ranks=(3,)) -> tuple:
    """Checks a [B, N, 4] (or, with `ranks=(2, 3)`, [N, 4]) box tensor with a
    static N; returns its shape."""
    shape = validation.check_rank(boxes, ranks, name)
    if shape is None or shape[-1] != 4 or shape[-2] is None:
        layout = " or ".join(
            "[N, 4]" if rank == 2 else "[B, N, 4]" for rank in ranks
        )
        raise ValueError(
            f"Invalid shape for argument `{name}`. Expected boxes {layout} "
            "of (x1, y1, x2, y2) with a static N. Received: "
            f"{name}.shape={shape}."
        )
    return shape
