"""Pastes box-relative instance masks into image coordinates."""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_segattn import validation
from keras_segattn.ops._boxes import check_boxes
from keras_segattn.ops.grid_sample import grid_sample
from keras_segattn.validation import Tensor


def paste_masks(
    masks: Tensor, boxes: Tensor, image_size: int | Sequence[int]
) -> Tensor:
    """Resamples each box's mask onto the full image (Mask R-CNN paste-back).

    Detectron2's `paste_masks_in_image` (facebookresearch/detectron2:
    detectron2/layers/mask_ops.py, `_do_paste_mask`) without its
    thresholding: image pixel centres `(x + 0.5, y + 0.5)` are mapped into
    the box, `u = (x + 0.5 - x1) / (x2 - x1) * 2 - 1` (and likewise for
    y), and the mask is sampled there bilinearly with `grid_sample`
    (`align_corners=False`, zeros outside), so the mask's outer edges lie
    on the box's edges and pixels outside the box get 0. Vectorised over
    images and boxes (one `grid_sample` over B * D masks), XLA-compilable.
    Box widths and heights are clamped at 1e-6 pixels, so degenerate boxes
    paste nothing instead of NaN.

    Args:
        masks: float tensor [B, D, h, w], per-box masks (probabilities).
        boxes: float tensor [B, D, 4] of (x1, y1, x2, y2) image pixels.
        image_size: int or (height, width) of the image.

    Returns:
        float32 tensor [B, D, height, width].

    Raises:
        ValueError: if `masks` is not [B, D, h, w] with static sizes, or
            `boxes` not [B, D, 4].
    """
    height, width = validation.standardize_size(image_size, "image_size")
    shape = validation.check_rank(masks, 4, "masks")
    if None in shape[1:]:
        raise ValueError(
            "Invalid shape for argument `masks`. Expected [B, D, h, w] with "
            f"static D, h and w. Received: masks.shape={shape}."
        )
    box_shape = check_boxes(boxes, "boxes")
    if box_shape[1] != shape[1]:
        raise ValueError(
            "Invalid shape for argument `boxes`. Expected one box per mask, "
            f"[B, {shape[1]}, 4]. Received: boxes.shape={box_shape} and "
            f"masks.shape={shape}."
        )
    num_masks, mask_h, mask_w = shape[1:]
    boxes = ops.cast(boxes, "float32")
    x1, y1, x2, y2 = (boxes[..., i : i + 1] for i in range(4))  # [B, D, 1]
    xs = ops.arange(width, dtype="float32") + 0.5
    ys = ops.arange(height, dtype="float32") + 0.5
    grid_x = (xs - x1) / ops.maximum(x2 - x1, 1e-6) * 2.0 - 1.0  # [B, D, W]
    grid_y = (ys - y1) / ops.maximum(y2 - y1, 1e-6) * 2.0 - 1.0  # [B, D, H]
    grid = ops.stack(
        [
            ops.broadcast_to(
                grid_x[:, :, None, :], (*ops.shape(grid_y), width)
            ),
            ops.broadcast_to(
                grid_y[:, :, :, None], (*ops.shape(grid_y), width)
            ),
        ],
        axis=-1,
    )  # [B, D, H, W, 2]
    pasted = grid_sample(
        ops.reshape(ops.cast(masks, "float32"), (-1, mask_h, mask_w, 1)),
        ops.reshape(grid, (-1, height, width, 2)),
        interpolation="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    return ops.reshape(pasted, (-1, num_masks, height, width))
