"""`RoIAlign`: bilinear RoI pooling (Mask R-CNN) as a Keras layer."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.layers._roi_common import BOUNDING_BOX_FORMATS  # noqa: F401
from keras_segattn.ops.roi_align import roi_align as roi_align_op


@keras.saving.register_keras_serializable(package="keras_segattn")
class RoIAlign(keras.layers.Layer):
    """Pools every box of a feature map to a fixed grid by bilinear sampling.

    RoIAlign of Mask R-CNN (He et al., 2017), a thin wrapper over
    `keras_segattn.ops.roi_align`, which matches the numbers of
    `torchvision.ops.roi_align`: each bin averages `sampling_ratio ** 2`
    bilinear samples, samples outside [-1, H] contribute 0, `aligned=True`
    shifts boxes by -0.5 pixel. Vectorised (no loop over images, boxes or
    bins), XLA-compilable, unknown batch size allowed.

    Called as `layer(features, boxes)` or `layer([features, boxes])`. A box
    whose four coordinates are -1 is padding: zero output and zero
    gradient. Boxes are converted from `bounding_box_format` with
    `keras.utils.bounding_boxes.convert_format` (padding boxes stay
    padding). The layer does not autocast (`autocast=False`): under
    `mixed_float16` the features are cast to float16 but the boxes keep
    float32, so large pixel coordinates are not rounded.

    Args:
        output_size: int or (height, width). Size of the pooled grid.
        spatial_scale: float > 0. Maps box coordinates to feature pixels
            (1/16 for a stride-16 map).
        sampling_ratio: int > 0. Sample points per bin along each axis
            (adaptive sampling, torchvision's `<= 0`, cannot compile under
            XLA and is rejected).
        aligned: bool. Shift boxes by -0.5 pixel (Detectron2's ROIAlignV2).
        bounding_box_format: one of "xyxy" (default), "yxyx", "xywh",
            "center_xywh", "center_yxhw" (absolute pixels).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        features: float tensor [B, H, W, C], or a list of one (the
            single-level form of `MultiScaleRoIAlign`'s levels).
        boxes: float tensor [B, N, 4] in image pixels, or the flat form
            [K, 5] (batch index, then the four coordinates).

    Returns:
        Tensor [B, N, out_h, out_w, C] (or [K, out_h, out_w, C]) in
        `compute_dtype`.

    Raises:
        ValueError: in `__init__` for a non-positive `output_size`,
            `spatial_scale` or `sampling_ratio`, or an unknown
            `bounding_box_format`; when called, for features not of rank 4,
            boxes not [B, N, 4] or [K, 5], or different batch sizes.

    Example:

    >>> features = keras.Input((32, 32, 16))
    >>> boxes = keras.Input((10, 4))
    >>> pooled = RoIAlign(7, spatial_scale=1 / 8)(features, boxes)
    >>> pooled.shape
    (None, 10, 7, 7, 16)

    Reference:
        - [He et al., "Mask R-CNN", ICCV 2017](
          https://arxiv.org/abs/1703.06870)
        - `torchvision.ops.RoIAlign` (pytorch/vision:
          torchvision/ops/roi_align.py)
    """

    def __init__(
        self,
        output_size: int | Sequence[int],
        spatial_scale: float = 1.0,
        sampling_ratio: int = 2,
        aligned: bool = True,
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
        self.sampling_ratio = validation.check_sampling_ratio(sampling_ratio)
        self.aligned = bool(aligned)
        self.bounding_box_format = _roi_common.check_bounding_box_format(
            bounding_box_format
        )

    @property
    def num_levels(self) -> int:
        """Feature levels the layer pools from: 1 (a map, or a list of one)."""
        return 1

    def call(self, features, boxes=None):
        features, boxes = _roi_common.call_inputs(self, features, boxes)
        return roi_align_op(
            features,
            boxes,
            self.output_size,
            self.spatial_scale,
            self.sampling_ratio,
            self.aligned,
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
            "sampling_ratio": self.sampling_ratio,
            "aligned": self.aligned,
            "bounding_box_format": self.bounding_box_format,
        }
