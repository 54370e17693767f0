"""Call handling shared by the RoI pooling layers.

`RoIAlign`, `RoIPool` and `MultiScaleRoIAlign` are called as
`layer(features, boxes)` or `layer([features, boxes])`, take boxes in any
absolute `bounding_box_format` (four -1 mark a padding box) and pool each
box to `output_size`. The helpers here unpack those calls, convert the boxes
to the (x1, y1, x2, y2) of the ops and compute the output shapes.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation

# The bounding-box format check lives in `validation` (the data pipelines
# share it); kept importable from here.
BOUNDING_BOX_FORMATS = validation.BOUNDING_BOX_FORMATS
check_bounding_box_format = validation.check_bounding_box_format


def split_inputs(features, boxes, features_note: str = ""):
    """Accepts `layer(features, boxes)` and `layer([features, boxes])`.

    `features_note` completes the error message's description of
    `features` (e.g. that it is a list of pyramid levels).
    """
    if boxes is None:
        if not isinstance(features, (list, tuple)) or len(features) != 2:
            raise ValueError(
                "Expected the layer to be called on `(features, boxes)` or "
                f"`[features, boxes]`{features_note}. Received a single "
                "input without `boxes`."
            )
        features, boxes = features
    return features, boxes


def to_xyxy(boxes, bounding_box_format: str):
    """float32 boxes in `bounding_box_format` -> (x1, y1, x2, y2).

    Converts with `keras.utils.bounding_boxes.convert_format`, keeping the
    flat form's batch-index column and the padding convention: a box
    whose four coordinates are -1 in the source format stays four -1.
    """
    boxes = ops.cast(boxes, "float32")
    if bounding_box_format == "xyxy":
        return boxes
    flat = len(boxes.shape) == 2
    coords = boxes[:, 1:] if flat else boxes
    padding = ops.all(ops.equal(coords, -1.0), axis=-1, keepdims=True)
    converted = keras.utils.bounding_boxes.convert_format(
        coords, source=bounding_box_format, target="xyxy", dtype="float32"
    )
    converted = ops.where(padding, -ops.ones_like(converted), converted)
    if flat:
        return ops.concatenate([boxes[:, :1], converted], axis=-1)
    return converted


def single_level(features, is_shape: bool = False):
    """The map of a single-map RoI layer: `features` itself, or the one
    entry of a list of levels (the form `MultiScaleRoIAlign` takes, so a
    detector passes its levels to any RoI layer)."""
    if not isinstance(features, (list, tuple)) or (
        is_shape and not any(isinstance(s, (list, tuple)) for s in features)
    ):
        return features
    if len(features) != 1:
        raise ValueError(
            "Invalid value for argument `features`. Expected one feature "
            "map [B, H, W, C] or a list of one (use MultiScaleRoIAlign for "
            f"several levels). Received: a list of {len(features)} maps."
        )
    return features[0]


def call_inputs(layer: keras.layers.Layer, features, boxes) -> tuple:
    """The `(features, boxes)` of a single-map RoI layer's call, for its op:
    features in the layer's `compute_dtype`, boxes float32 (x1, y1, x2, y2).
    """
    features, boxes = split_inputs(features, boxes)
    features = single_level(features)
    # Before the cast to the compute dtype, which would hide integers.
    validation.check_floating(features.dtype, "features")
    return (
        ops.cast(features, layer.compute_dtype),
        to_xyxy(boxes, layer.bounding_box_format),
    )


def pooled_shape(features_shape, boxes_shape, output_size, channels) -> tuple:
    """Checks the boxes' static shape and batch size against `features_shape`;
    returns [B, N, out_h, out_w, channels] (or [K, out_h, out_w, channels]).
    """
    flat = validation.check_roi_boxes(boxes_shape, "boxes")
    validation.check_roi_batch_sizes(features_shape, boxes_shape)
    leading = (boxes_shape[0],) if flat else tuple(boxes_shape[:2])
    return (*leading, *output_size, channels)


def output_shape(features_shape, boxes_shape, output_size) -> tuple:
    """`compute_output_shape` of a single-map RoI layer (either call form)."""
    features_shape, boxes_shape = split_inputs(features_shape, boxes_shape)
    features_shape = single_level(features_shape, is_shape=True)
    features_shape = validation.check_rank(features_shape, 4, "features")
    return pooled_shape(
        features_shape, boxes_shape, output_size, features_shape[-1]
    )


def check_pooled_shape(features_shape) -> tuple:
    """The static [B, R, h, w, C] shape of pooled RoI features (a head's
    input), or `ValueError` naming `features`."""
    shape = validation.check_rank(features_shape, 5, "features")
    if None in shape[1:]:
        raise ValueError(
            "Invalid shape for argument `features`. Expected pooled RoI "
            "features [B, R, h, w, C] with static R, h, w and C. Received: "
            f"features.shape={shape}."
        )
    return shape
