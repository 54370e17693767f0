"""`DetectionPostprocessor`: box head outputs -> TF OD API detections."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.ops.box_coding import check_box_coder_weights
from keras_segattn.ops.postprocess_detections import postprocess_detections
from keras_segattn.validation import check_fraction
from keras_segattn.validation import check_non_negative_float

DETECTION_KEYS = (
    "detection_boxes",
    "detection_scores",
    "detection_classes",
    "num_detections",
)


@keras.saving.register_keras_serializable(package="keras_segattn")
class DetectionPostprocessor(keras.layers.Layer):
    """Turns a Fast R-CNN box head's outputs into TF OD API detections.

    A thin wrapper over `keras_segattn.ops.postprocess_detections`
    (torchvision's `RoIHeads.postprocess_detections`: class-specific
    decoding, clipping, score threshold, per-class NMS, best
    `max_detections`), returning the output dict of the TensorFlow Object
    Detection API with static shapes. This layer is where boxes leave the
    package's internal (x1, y1, x2, y2) convention: they are converted to
    `bounding_box_format` ("yxyx", the OD API's ymin, xmin, ymax, xmax in
    pixels, by default) with `keras.utils.bounding_boxes.convert_format`.
    Weightless, float32 throughout (`autocast=False`).

    Args:
        image_size: int or (height, width) of the model's input images.
        bbox_reg_weights: the box coder weights, (10, 10, 5, 5).
        score_threshold: float in [0, 1]. Smallest score kept (0.05).
        nms_threshold: float in [0, 1]. Per-class NMS IoU (0.5).
        max_detections: int > 0. Detections per image (100).
        min_size: float >= 0. Smallest box width and height (0.01).
        pre_nms_top_n: None or int > 0, see `postprocess_detections`.
        bounding_box_format: absolute format of `detection_boxes`.
        **kwargs: base `Layer` arguments.

    Call arguments:
        class_logits: float tensor [B, R, K + 1], class 0 the background.
        box_deltas: float tensor [B, R, 4 (K + 1)] (or [B, R, K + 1, 4]).
        proposals: float tensor [B, R, 4] of (x1, y1, x2, y2) pixels.

    Returns:
        Dict of float32 tensors (the OD API's dtypes), D = max_detections:
        `detection_boxes` [B, D, 4] in `bounding_box_format`,
        `detection_scores` [B, D], `detection_classes` [B, D] (the class
        id, 0-based like the training targets; background excluded),
        `num_detections` [B]. Slots past `num_detections` are zeros.
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
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
        self.bbox_reg_weights = check_box_coder_weights(
            bbox_reg_weights, "bbox_reg_weights"
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

    def call(self, class_logits, box_deltas, proposals):
        boxes, scores, labels, kept = postprocess_detections(
            class_logits,
            box_deltas,
            proposals,
            self.image_size,
            weights=self.bbox_reg_weights,
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
            max_detections=self.max_detections,
            min_size=self.min_size,
            pre_nms_top_n=self.pre_nms_top_n,
        )
        if self.bounding_box_format != "xyxy":
            boxes = keras.utils.bounding_boxes.convert_format(
                boxes, source="xyxy", target=self.bounding_box_format
            )
            boxes = ops.where(kept[..., None], boxes, 0.0)
        classes = ops.where(kept, ops.cast(labels - 1, "float32"), 0.0)
        return {
            "detection_boxes": boxes,
            "detection_scores": scores,
            "detection_classes": classes,
            "num_detections": ops.sum(ops.cast(kept, "float32"), axis=1),
        }

    def compute_output_shape(
        self, class_logits_shape, box_deltas_shape, proposals_shape
    ):
        batch = class_logits_shape[0]
        detections = self.max_detections
        return {
            "detection_boxes": (batch, detections, 4),
            "detection_scores": (batch, detections),
            "detection_classes": (batch, detections),
            "num_detections": (batch,),
        }

    def compute_output_spec(self, class_logits, box_deltas, proposals):
        shapes = self.compute_output_shape(
            class_logits.shape, box_deltas.shape, proposals.shape
        )
        return {
            key: keras.KerasTensor(shape, dtype="float32")
            for key, shape in shapes.items()
        }

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "bbox_reg_weights": self.bbox_reg_weights,
            "score_threshold": self.score_threshold,
            "nms_threshold": self.nms_threshold,
            "max_detections": self.max_detections,
            "min_size": self.min_size,
            "pre_nms_top_n": self.pre_nms_top_n,
            "bounding_box_format": self.bounding_box_format,
        }
