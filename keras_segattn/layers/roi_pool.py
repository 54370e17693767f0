"""`RoIPool`: RoI max pooling (Fast R-CNN) as a Keras layer."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.ops.roi_pool import roi_pool as roi_pool_op


@keras.saving.register_keras_serializable(package="keras_segattn")
class RoIPool(keras.layers.Layer):
    """Max-pools every box of a feature map to a fixed grid of bins.

    RoI pooling of Fast R-CNN (Girshick, 2015), a thin wrapper over
    `keras_segattn.ops.roi_pool`, which matches the numbers of
    `torchvision.ops.roi_pool`: box corners rounded to the feature grid,
    end-inclusive boxes of at least one pixel, bins
    [floor(i * bin), ceil((i + 1) * bin)) clipped to the map, empty bins 0,
    the gradient of each bin to its argmax only. Vectorised (no loop over
    images, boxes or bins), XLA-compilable, unknown batch size allowed.

    Called as `layer(features, boxes)` or `layer([features, boxes])`. A box
    whose four coordinates are -1 is padding: zero output and zero
    gradient. Boxes are converted from `bounding_box_format` with
    `keras.utils.bounding_boxes.convert_format` (padding boxes stay
    padding). The layer does not autocast (`autocast=False`): under
    `mixed_float16` the features are cast to float16 but the boxes keep
    float32, so large pixel coordinates are not rounded.

    Args:
        output_size: int or (height, width). Number of bins.
        spatial_scale: float > 0. Maps box coordinates to feature pixels
            (1/16 for a stride-16 map).
        bounding_box_format: one of "xyxy" (default), "yxyx", "xywh",
            "center_xywh", "center_yxhw" (absolute pixels).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        features: float tensor [B, H, W, C], or a list of one (the
            single-level form of `MultiScaleRoIAlign`'s levels).
        boxes: float tensor [B, N, 4] in image pixels, or the flat form
            [K, 5] (batch index, then the four coordinates).
        training: bool or None (inference). In training the forward pass
            also finds the argmax positions of the gradient (the op's
            `training`): the same numbers, a faster train step.

    Returns:
        Tensor [B, N, out_h, out_w, C] (or [K, out_h, out_w, C]) in
        `compute_dtype`.

    Raises:
        ValueError: in `__init__` for a non-positive `output_size` or
            `spatial_scale`, or an unknown `bounding_box_format`; when
            called, for features not of rank 4, boxes not [B, N, 4] or
            [K, 5], or different batch sizes.

    Example:

    >>> features = keras.Input((38, 50, 256))
    >>> boxes = keras.Input((64, 4))
    >>> pooled = RoIPool(7, spatial_scale=1 / 16)(features, boxes)
    >>> pooled.shape
    (None, 64, 7, 7, 256)

    Reference:
        - [Girshick, "Fast R-CNN", ICCV 2015](
          https://arxiv.org/abs/1504.08083)
        - `torchvision.ops.RoIPool` (pytorch/vision:
          torchvision/ops/roi_pool.py)
    """

    def __init__(
        self,
        output_size: int | Sequence[int],
        spatial_scale: float = 1.0,
        bounding_box_format: str = "xyxy",
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)  # keep boxes in float32
        self.output_size = validation.standardize_size(
            output_size, "output_size"
        )
        self.spatial_scale = validation.check_positive_float(
            spatial_scale, "spatial_scale"
        )
        self.bounding_box_format = _roi_common.check_bounding_box_format(
            bounding_box_format
        )

    @property
    def num_levels(self) -> int:
        """Feature levels the layer pools from: 1 (a map, or a list of one)."""
        return 1

    def call(self, features, boxes=None, training=None):
        features, boxes = _roi_common.call_inputs(self, features, boxes)
        return roi_pool_op(
            features,
            boxes,
            self.output_size,
            self.spatial_scale,
            training=bool(training),
        )

    def compute_output_shape(self, features_shape, boxes_shape=None):
        return _roi_common.output_shape(
            features_shape, boxes_shape, self.output_size
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "spatial_scale": self.spatial_scale,
            "bounding_box_format": self.bounding_box_format,
        }
