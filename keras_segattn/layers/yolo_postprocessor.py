"""`YOLOPostprocessor`: the YOLO v1 grid -> TF OD API detections."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.ops._boxes import box_is_large_enough
from keras_segattn.ops._boxes import clip_boxes_to_image
from keras_segattn.ops.batched_nms import batched_nms
from keras_segattn.ops.decode_yolo_grid import check_yolo_grid
from keras_segattn.ops.decode_yolo_grid import decode_yolo_grid
from keras_segattn.validation import check_fraction
from keras_segattn.validation import check_non_negative_float


@keras.saving.register_keras_serializable(package="keras_segattn")
class YOLOPostprocessor(keras.layers.Layer):
    """Decodes a YOLO v1 grid into TF OD API detections, static shapes.

    As in the paper's test time (Redmon et al., 2016, section 2): every
    predictor's box (`decode_yolo_grid`, clipped to the image) gets the
    class-specific scores `confidence * P(class | object)` of its cell;
    every (box, class) pair scoring above `score_threshold` with a box of
    at least `min_size` pixels is a candidate; `pre_nms_top_n` (None:
    all) keeps the best candidates; class-aware NMS (`batched_nms`, IoU
    `nms_threshold`) keeps the best `max_detections` per image, by
    decreasing score. Outputs are those of `DetectionPostprocessor`, with
    boxes converted to `bounding_box_format` ("yxyx" pixels by default).
    Weightless, float32 throughout (`autocast=False`).

    Args:
        image_size: int or (height, width) of the model's input images.
        boxes_per_cell: int >= 1, predictors per cell.
        score_threshold: float in [0, 1] (0.05).
        nms_threshold: float in [0, 1], per-class NMS IoU (0.5).
        max_detections: int > 0, detections per image (100).
        min_size: float >= 0, smallest box width and height (0.01).
        pre_nms_top_n: None or int > 0, candidates kept before NMS.
        bounding_box_format: absolute format of `detection_boxes`.
        **kwargs: base `Layer` arguments.

    Call arguments:
        predictions: float tensor [B, S, S', boxes_per_cell * 5 + C]
            (`YOLOHead`).

    Returns:
        Dict of float32 tensors, D = max_detections: `detection_boxes`
        [B, D, 4], `detection_scores` [B, D], `detection_classes` [B, D]
        (0-based class ids) and `num_detections` [B]. Slots past
        `num_detections` are zeros.
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        boxes_per_cell: int = 2,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
        min_size: float = 1e-2,
        pre_nms_top_n: int | None = None,
        bounding_box_format: str = "yxyx",
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)
        self.image_size = validation.standardize_size(image_size, "image_size")
        self.boxes_per_cell = validation.check_positive_int(
            boxes_per_cell, "boxes_per_cell"
        )
        self.score_threshold = check_fraction(
            score_threshold, "score_threshold"
        )
        self.nms_threshold = check_fraction(nms_threshold, "nms_threshold")
        self.max_detections = validation.check_positive_int(
            max_detections, "max_detections"
        )
        self.min_size = check_non_negative_float(min_size, "min_size")
        self.pre_nms_top_n = (
            None
            if pre_nms_top_n is None
            else validation.check_positive_int(pre_nms_top_n, "pre_nms_top_n")
        )
        self.bounding_box_format = _roi_common.check_bounding_box_format(
            bounding_box_format
        )

    def call(self, predictions):
        rows, columns, num_classes = check_yolo_grid(
            predictions, self.boxes_per_cell
        )
        boxes, confidences, class_probs = decode_yolo_grid(
            predictions, self.image_size, self.boxes_per_cell
        )
        count = rows * columns * self.boxes_per_cell
        boxes = clip_boxes_to_image(
            ops.reshape(boxes, (-1, count, 4)), self.image_size
        )
        scores = confidences[..., None] * class_probs[..., None, :]
        scores = ops.reshape(scores, (-1, count * num_classes))
        boxes = ops.reshape(
            ops.repeat(boxes[:, :, None, :], num_classes, axis=2),
            (-1, count * num_classes, 4),
        )
        labels = ops.tile(
            ops.arange(num_classes, dtype="int32")[None, :], (1, count)
        )
        labels = ops.zeros_like(scores, dtype="int32") + labels
        valid = ops.logical_and(
            scores > self.score_threshold,
            box_is_large_enough(boxes, self.min_size),
        )
        if self.pre_nms_top_n is not None and self.pre_nms_top_n < (
            count * num_classes
        ):
            _, top = ops.top_k(
                ops.where(valid, scores, -1.0), k=self.pre_nms_top_n
            )
            boxes = ops.take_along_axis(boxes, top[..., None], axis=1)
            scores = ops.take_along_axis(scores, top, axis=1)
            labels = ops.take_along_axis(labels, top, axis=1)
            valid = ops.take_along_axis(valid, top, axis=1)
        index, kept = batched_nms(
            boxes,
            scores,
            self.max_detections,
            self.nms_threshold,
            idxs=labels,
            valid=valid,
        )
        boxes = ops.take_along_axis(boxes, index[..., None], axis=1)
        if self.bounding_box_format != "xyxy":
            boxes = keras.utils.bounding_boxes.convert_format(
                boxes, source="xyxy", target=self.bounding_box_format
            )
        boxes = ops.where(kept[..., None], boxes, 0.0)
        scores = ops.where(
            kept, ops.take_along_axis(scores, index, axis=1), 0.0
        )
        classes = ops.where(
            kept,
            ops.cast(ops.take_along_axis(labels, index, axis=1), "float32"),
            0.0,
        )
        return {
            "detection_boxes": boxes,
            "detection_scores": scores,
            "detection_classes": classes,
            "num_detections": ops.sum(ops.cast(kept, "float32"), axis=1),
        }

    def compute_output_shape(self, predictions_shape):
        batch = predictions_shape[0]
        detections = self.max_detections
        return {
            "detection_boxes": (batch, detections, 4),
            "detection_scores": (batch, detections),
            "detection_classes": (batch, detections),
            "num_detections": (batch,),
        }

    def compute_output_spec(self, predictions):
        check_yolo_grid(predictions, self.boxes_per_cell)
        shapes = self.compute_output_shape(predictions.shape)
        return {
            key: keras.KerasTensor(shape, dtype="float32")
            for key, shape in shapes.items()
        }

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "boxes_per_cell": self.boxes_per_cell,
            "score_threshold": self.score_threshold,
            "nms_threshold": self.nms_threshold,
            "max_detections": self.max_detections,
            "min_size": self.min_size,
            "pre_nms_top_n": self.pre_nms_top_n,
            "bounding_box_format": self.bounding_box_format,
        }
