"""Box regression deltas (R-CNN box coding), torchvision `BoxCoder` numbers.

`encode_boxes` and `decode_boxes` are the two halves of one coder, so they
share this file. Both delegate the arithmetic to
`keras.utils.bounding_boxes.encode_box_to_deltas` and
`decode_deltas_to_boxes` (in their "center_xywh" encoding), whose formulas
are torchvision's once the weights are passed as `variance = 1 / weights`
and the width and height deltas are clamped before decoding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.validation import Tensor

# torchvision's `BoxCoder(bbox_xform_clip=math.log(1000.0 / 16))`: the
# largest width/height delta, so a box grows at most 62.5 times.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def check_box_coder_weights(weights, name: str = "weights") -> tuple:
    """Returns `weights` as 4 positive floats or raises `ValueError`."""
    if (
        not isinstance(weights, (tuple, list))
        or len(weights) != 4
        or not all(
            isinstance(w, (int, float))
            and not isinstance(w, bool)
            and 0 < w < float("inf")
            for w in weights
        )
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected 4 finite, "
            "strictly positive numbers (wx, wy, ww, wh). "
            f"Received: {name}={weights!r}."
        )
    return tuple(float(w) for w in weights)


def _check_boxes_last_dim(x, name: str) -> None:
    """Checks a floating [..., 4] tensor (integer pixel boxes must be
    cast by the caller: the deltas are fractional)."""
    validation.check_floating(ops.convert_to_tensor(x).dtype, name)
    shape = validation.static_shape(x)
    if shape is None or len(shape) < 1 or shape[-1] != 4:
        raise ValueError(
            f"Invalid shape for argument `{name}`. Expected a last "
            f"dimension of 4. Received: {name}.shape={shape}."
        )


def encode_boxes(
    boxes: Tensor,
    anchors: Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> Tensor:
    """Encodes boxes as regression deltas relative to anchors (or RoIs).

    The parameterisation of R-CNN (Girshick et al., 2014, appendix C) used
    by Fast/Faster R-CNN, matching `torchvision.models.detection._utils.
    BoxCoder.encode` (pytorch/vision: torchvision/models/detection/
    _utils.py, `encode_boxes`): with widths `w = x2 - x1`, heights
    `h = y2 - y1` and centres `x1 + w / 2`,

        dx = wx (cx - cx_a) / w_a      dw = ww log(w / w_a)
        dy = wy (cy - cy_a) / h_a      dh = wh log(h / h_a)

    computed by `keras.utils.bounding_boxes.encode_box_to_deltas`
    ("center_xywh", `variance = 1 / weights`). Unlike torchvision, widths
    and heights are clamped at `keras.config.epsilon()` before the log, so
    a degenerate box (such as a padding box of four -1) gives a large
    negative but finite delta instead of -inf. A NaN or infinite
    coordinate makes the deltas of that box (only) NaN or infinite.

    Args:
        boxes: float tensor [..., 4] of (x1, y1, x2, y2), the targets.
        anchors: float tensor [..., 4] of (x1, y1, x2, y2), broadcastable
            to `boxes` (e.g. [N, 4] anchors for [B, N, 4] boxes).
        weights: 4 positive floats (wx, wy, ww, wh): (1, 1, 1, 1) for the
            RPN, (10, 10, 5, 5) for the Fast R-CNN box head.

    Returns:
        float32 tensor [..., 4] of (dx, dy, dw, dh).

    Raises:
        ValueError: if a last dimension is not 4 or `weights` is not 4
            positive numbers.
        TypeError: if `boxes` or `anchors` is not floating.

    Reference:
        - [Girshick et al., "Rich feature hierarchies for accurate object
          detection and semantic segmentation", CVPR 2014](
          https://arxiv.org/abs/1311.2524)
    """
    weights = check_box_coder_weights(weights)
    _check_boxes_last_dim(boxes, "boxes")
    _check_boxes_last_dim(anchors, "anchors")
    return keras.utils.bounding_boxes.encode_box_to_deltas(
        ops.cast(anchors, "float32"),
        ops.cast(boxes, "float32"),
        anchor_format="xyxy",
        box_format="xyxy",
        encoding_format="center_xywh",
        variance=[1.0 / w for w in weights],
    )


def decode_boxes(
    deltas: Tensor,
    anchors: Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    bbox_xform_clip: float = BBOX_XFORM_CLIP,
) -> Tensor:
    """Applies regression deltas to anchors (or RoIs): boxes (x1, y1, x2, y2).

    The inverse of `encode_boxes`, matching `torchvision.models.detection.
    _utils.BoxCoder.decode_single`: `dw / ww` and `dh / wh` are clamped at
    `bbox_xform_clip` (log(1000 / 16) by default) before the exponential,
    then

        cx = dx / wx * w_a + cx_a      w = exp(dw / ww) * w_a
        x1 = cx - w / 2                x2 = cx + w / 2

    computed by `keras.utils.bounding_boxes.decode_deltas_to_boxes`
    ("center_xywh", `variance = 1 / weights`) after the clamp (applied as
    `dw <= bbox_xform_clip * ww`, the same condition). The clamp keeps
    boxes finite for any finite `dw`, `dh` (a very negative one gives a
    zero-size box) as long as the centre `dx / wx * w_a + cx_a` and
    62.5 times the anchor size fit in float32; a NaN delta or anchor
    coordinate makes that box (only) NaN.

    Args:
        deltas: float tensor [..., 4] of (dx, dy, dw, dh).
        anchors: float tensor [..., 4] of (x1, y1, x2, y2), broadcastable
            to `deltas`.
        weights: 4 positive floats (wx, wy, ww, wh), those of the encoding.
        bbox_xform_clip: float > 0. Largest `dw / ww` and `dh / wh`.

    Returns:
        float32 tensor [..., 4] of (x1, y1, x2, y2).

    Raises:
        ValueError: if a last dimension is not 4, `weights` is not 4
            positive numbers or `bbox_xform_clip` is not positive.
        TypeError: if `deltas` or `anchors` is not floating.
    """
    weights = check_box_coder_weights(weights)
    bbox_xform_clip = validation.check_positive_float(
        bbox_xform_clip, "bbox_xform_clip"
    )
    _check_boxes_last_dim(deltas, "deltas")
    _check_boxes_last_dim(anchors, "anchors")
    deltas = ops.cast(deltas, "float32")
    limit = ops.convert_to_tensor(
        [float("inf"), float("inf")]
        + [bbox_xform_clip * weights[2], bbox_xform_clip * weights[3]],
        "float32",
    )
    return keras.utils.bounding_boxes.decode_deltas_to_boxes(
        ops.cast(anchors, "float32"),
        ops.minimum(deltas, limit),
        anchor_format="xyxy",
        box_format="xyxy",
        encoded_format="center_xywh",
        variance=[1.0 / w for w in weights],
    )
