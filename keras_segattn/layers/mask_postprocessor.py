"""`MaskPostprocessor`: mask head logits -> image-sized detection masks."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.ops.paste_masks import paste_masks


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaskPostprocessor(keras.layers.Layer):
    """Selects each detection's class mask and pastes it into the image.

    The inference end of Mask R-CNN's mask branch (He et al., 2017;
    torchvision's `maskrcnn_inference` followed by `paste_masks_in_image`):
    for every detection the mask logits of its class are turned into
    probabilities (sigmoid) and resampled from the box onto the image with
    `keras_segattn.ops.paste_masks` (Detectron2's bilinear paste). Slots
    past `num_detections` are zeros. Weightless, float32
    (`autocast=False`).

    Args:
        image_size: int or (height, width) of the model's input images.
        bounding_box_format: absolute format of `detection_boxes`.
        **kwargs: base `Layer` arguments.

    Call arguments:
        mask_logits: float tensor [B, D, h, w, K + 1], class 0 the
            background (as `FasterRCNN`'s mask head produces them).
        detection_boxes: float tensor [B, D, 4] in `bounding_box_format`.
        detection_classes: float tensor [B, D], 0-based class ids.
        num_detections: float tensor [B].

    Returns:
        float32 tensor [B, D, height, width] of mask probabilities
        (`detection_masks` of the TF OD API; threshold at 0.5 for binary
        masks).
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        bounding_box_format: str = "yxyx",
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)
        self.image_size = validation.standardize_size(image_size, "image_size")
        self.bounding_box_format = _roi_common.check_bounding_box_format(
            bounding_box_format
        )

    def call(
        self, mask_logits, detection_boxes, detection_classes, num_detections
    ):
        self.compute_output_shape(
            mask_logits.shape,
            detection_boxes.shape,
            detection_classes.shape,
            num_detections.shape,
        )
        labels = ops.cast(detection_classes, "int32") + 1
        logits = ops.take_along_axis(
            ops.cast(mask_logits, "float32"),
            labels[:, :, None, None, None],
            axis=-1,
        )[..., 0]
        boxes = _roi_common.to_xyxy(detection_boxes, self.bounding_box_format)
        masks = paste_masks(ops.sigmoid(logits), boxes, self.image_size)
        slots = ops.arange(ops.shape(labels)[1], dtype="float32")
        valid = slots[None, :] < ops.cast(num_detections, "float32")[:, None]
        return ops.where(valid[:, :, None, None], masks, 0.0)

    def compute_output_shape(
        self,
        mask_logits_shape,
        detection_boxes_shape,
        detection_classes_shape,
        num_detections_shape,
    ):
        shape = validation.check_rank(mask_logits_shape, 5, "mask_logits")
        validation.check_rank(detection_boxes_shape, 3, "detection_boxes")
        validation.check_static_dims(
            detection_boxes_shape, {1: shape[1], 2: 4}, "detection_boxes"
        )
        validation.check_rank(detection_classes_shape, 2, "detection_classes")
        validation.check_rank(num_detections_shape, 1, "num_detections")
        return (shape[0], shape[1], *self.image_size)

    def compute_output_spec(self, mask_logits, *args):
        shape = self.compute_output_shape(
            mask_logits.shape, *(a.shape for a in args)
        )
        return keras.KerasTensor(shape, dtype="float32")

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "bounding_box_format": self.bounding_box_format,
        }
