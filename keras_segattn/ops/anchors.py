"""Anchor boxes over a feature map (Faster R-CNN), torchvision numbers."""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_segattn import validation
from keras_segattn.validation import Tensor


def _check_positive_floats(values, name: str) -> tuple:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, (tuple, list)) or not values:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a non-empty "
            "sequence of finite, strictly positive numbers. Received: "
            f"{name}={values!r}."
        )
    return tuple(validation.check_positive_float(v, name) for v in values)


def num_anchors_per_location(
    sizes: Sequence[float], aspect_ratios: Sequence[float]
) -> int:
    """`len(sizes) * len(aspect_ratios)`, after validating both."""
    sizes = _check_positive_floats(sizes, "sizes")
    aspect_ratios = _check_positive_floats(aspect_ratios, "aspect_ratios")
    return len(sizes) * len(aspect_ratios)


def generate_anchors(
    image_size: int | Sequence[int],
    feature_size: int | Sequence[int],
    sizes: Sequence[float] = (32.0, 64.0, 128.0),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> Tensor:
    """Anchor boxes of every feature-map location, (x1, y1, x2, y2) pixels.

    The anchors of Faster R-CNN (Ren et al., 2015) with the numbers of
    `torchvision.models.detection.anchor_utils.AnchorGenerator` for one
    feature map (pytorch/vision: torchvision/models/detection/
    anchor_utils.py):

    - cell anchors: for each aspect ratio `r = h / w` (outer loop) and
      each size `s` (inner loop), `w = s / sqrt(r)`, `h = s * sqrt(r)`,
      the box `(-w, -h, w, h) / 2` rounded half to even (`torch.round`);
    - strides `image_size // feature_size` (integer division, per axis);
    - the cell anchors are shifted to `(x * stride_w, y * stride_h)`,
      the top-left corner of each cell (not its centre), and listed
      row-major over locations, then cell anchor: index
      `(y * W + x) * A + a`. This is the order of an RPN head's
      channels_last output [B, H, W, A * k] reshaped to [B, H * W * A, k].

    All sizes are static Python numbers, so the anchors are a constant
    [H * W * A, 4] float32 tensor (for several pyramid levels, concatenate
    the anchors of each level, as torchvision does).

    Args:
        image_size: int or (height, width) of the input images, pixels.
        feature_size: int or (height, width) of the feature map.
        sizes: positive numbers, anchor sizes (square roots of areas) in
            pixels.
        aspect_ratios: positive numbers, height / width ratios.

    Returns:
        float32 tensor [H * W * len(sizes) * len(aspect_ratios), 4].

    Raises:
        ValueError: if a size is not a positive int (pair), `sizes` or
            `aspect_ratios` is empty or not positive, or the feature map
            is larger than the image.

    Reference:
        - [Ren et al., "Faster R-CNN: Towards Real-Time Object Detection
          with Region Proposal Networks", NeurIPS 2015](
          https://arxiv.org/abs/1506.01497)
    """
    image_h, image_w = validation.standardize_size(image_size, "image_size")
    feature_h, feature_w = validation.standardize_size(
        feature_size, "feature_size"
    )
    if feature_h > image_h or feature_w > image_w:
        raise ValueError(
            "Invalid value for argument `feature_size`. Expected a feature "
            "map no larger than the image (a stride >= 1). Received: "
            f"feature_size={(feature_h, feature_w)} and "
            f"image_size={(image_h, image_w)}."
        )
    sizes = _check_positive_floats(sizes, "sizes")
    aspect_ratios = _check_positive_floats(aspect_ratios, "aspect_ratios")

    scales = ops.convert_to_tensor(sizes, "float32")
    h_ratios = ops.sqrt(ops.convert_to_tensor(aspect_ratios, "float32"))
    w_ratios = 1.0 / h_ratios
    ws = ops.reshape(w_ratios[:, None] * scales[None, :], (-1,))
    hs = ops.reshape(h_ratios[:, None] * scales[None, :], (-1,))
    cell_anchors = ops.round(ops.stack([-ws, -hs, ws, hs], axis=1) / 2.0)

    stride_h, stride_w = image_h // feature_h, image_w // feature_w
    shifts_x = ops.cast(
        ops.arange(feature_w, dtype="int32") * stride_w, "float32"
    )
    shifts_y = ops.cast(
        ops.arange(feature_h, dtype="int32") * stride_h, "float32"
    )
    shift_y, shift_x = ops.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = ops.reshape(shift_x, (-1,)), ops.reshape(shift_y, (-1,))
    shifts = ops.stack([shift_x, shift_y, shift_x, shift_y], axis=1)
    anchors = shifts[:, None, :] + cell_anchors[None, :, :]
    return ops.reshape(anchors, (-1, 4))
