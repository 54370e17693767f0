"""Argument and target handling shared by the detectors (`TwoStageDetector`,
`FasterRCNN`, `YOLO`)."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.ops._boxes import is_padding_box


def check_backbone_argument(backbone):
    """A backbone name or `keras.Model` (a serialized one from `get_config`
    is deserialized), or `TypeError` naming `backbone`."""
    if isinstance(backbone, dict):  # from `get_config`
        backbone = keras.saving.deserialize_keras_object(backbone)
    if not isinstance(backbone, (str, keras.Model)):
        raise TypeError(
            "Invalid type for argument `backbone`. Expected a string or "
            "a keras.Model. Received: "
            f"type(backbone)={type(backbone).__name__}."
        )
    return backbone


def split_detection_targets(y, bounding_box_format: str) -> tuple:
    """Validates the `y` of a detector's `fit`/`evaluate`: a dict with
    "boxes" [B, M, 4] in `bounding_box_format` and "classes" (or, as in
    Keras and keras-hub, "labels") [B, M], rows padded with -1 (class -1
    or four -1 coordinates).

    Returns:
        Tuple `(boxes, classes)`: float32 [B, M, 4] (x1, y1, x2, y2), every
        padding row four -1, and int32 [B, M] with -1 for padding.

    Raises:
        TypeError: if `y` is not a dict.
        ValueError: for missing keys or shapes other than the above.
    """
    if not isinstance(y, dict):
        raise TypeError(
            "Invalid type for argument `y`. Expected a dict with "
            '"boxes" [B, M, 4] and "classes" [B, M], padded with -1. '
            f"Received: type(y)={type(y).__name__}."
        )
    # "labels" is the Keras / keras-hub name of the classes.
    class_key = "classes" if "classes" in y else "labels"
    if "boxes" not in y or class_key not in y:
        raise ValueError(
            "Invalid value for argument `y`. Expected the keys "
            f'"boxes" and "classes" (or "labels"). Received: keys '
            f"{sorted(y)}."
        )
    boxes, classes = y["boxes"], y[class_key]
    shape = validation.check_rank(boxes, 3, 'y["boxes"]')
    if shape[-1] != 4 or shape[1] is None:
        raise ValueError(
            'Invalid shape for argument `y["boxes"]`. Expected [B, M, 4] '
            f'with a static M. Received: y["boxes"].shape={shape}.'
        )
    class_shape = validation.check_rank(classes, 2, 'y["classes"]')
    if class_shape[1] != shape[1]:
        raise ValueError(
            'Invalid shape for argument `y["classes"]`. Expected [B, M] '
            'with the M of y["boxes"]. Received: '
            f'y["classes"].shape={class_shape} and '
            f'y["boxes"].shape={shape}.'
        )
    boxes = _roi_common.to_xyxy(boxes, bounding_box_format)
    classes = ops.cast(classes, "int32")
    padding = ops.logical_or(is_padding_box(boxes), classes < 0)
    boxes = ops.where(padding[..., None], -1.0, boxes)
    classes = ops.where(padding, -1, classes)
    return boxes, classes


def non_finite_target_loss(y) -> object:
    """0.0, or NaN when a ground-truth box that is not padding has a NaN
    or infinite coordinate (float32 scalar).

    Box matching compares IoUs, and every comparison with NaN is False: a
    NaN box would be matched to nothing and training would go on as if it
    were not there. Added to the losses (`track_detection_losses`), this
    makes such a batch show a NaN loss instead, which
    `keras.callbacks.TerminateOnNaN` stops on. Added, not multiplied, so
    the gradients (and weights) stay finite.
    """
    class_key = "classes" if "classes" in y else "labels"
    boxes = ops.cast(y["boxes"], "float32")
    padding = ops.logical_or(
        is_padding_box(boxes), ops.cast(y[class_key], "int32") < 0
    )
    finite = ops.all(ops.isfinite(boxes), axis=-1)
    bad = ops.any(ops.logical_and(ops.logical_not(padding), ~finite))
    return ops.where(bad, float("nan"), 0.0)
