"""`MultiScaleRoIAlign`: RoIAlign over a feature pyramid (FPN)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.ops.multilevel_roi_align import _pyramid_levels
from keras_segattn.ops.multilevel_roi_align import multilevel_roi_align


def _split_levels(features, boxes):
    """Accepts `layer(levels, boxes)` and `layer([levels, boxes])`, where
    `levels` is a list of maps or a single map."""
    features, boxes = _roi_common.split_inputs(
        features, boxes, ", `features` being a list of pyramid levels"
    )
    if not isinstance(features, (list, tuple)):
        features = [features]
    return list(features), boxes


def _is_shape(value) -> bool:
    return isinstance(value, (list, tuple)) and all(
        d is None or isinstance(d, int) for d in value
    )


@keras.saving.register_keras_serializable(package="keras_segattn")
class MultiScaleRoIAlign(keras.layers.Layer):
    """RoIAlign of each box on the feature-pyramid level suiting its size.

    The multi-scale RoI pooling of Feature Pyramid Networks (Lin et al.,
    2017), as `torchvision.ops.MultiScaleRoIAlign`: a box of area A goes to
    level k = floor(k0 + log2(sqrt(A) / s0 + 1e-6)) (k0 =
    `canonical_level`, s0 = `canonical_scale`), clamped to the levels
    given, and is pooled there by RoIAlign. A thin wrapper over
    `keras_segattn.ops.multilevel_roi_align`: one vectorised pass for all
    levels, XLA-compilable, unknown batch size allowed. torchvision's
    module uses `aligned=False`; pass it to match its numbers.

    Called as `layer(levels, boxes)` or `layer([levels, boxes])`, `levels`
    being the list of maps (finest first) or a single map. Padding boxes
    (four -1) give zero output and zero gradient. The layer does not
    autocast (`autocast=False`): features are cast to `compute_dtype`,
    boxes stay float32.

    Args:
        output_size: int or (height, width). Size of the pooled grid.
        spatial_scales: list of floats, one per level, powers of two for
            consecutive levels, finest first (e.g. [1/4, 1/8, 1/16, 1/32]).
        sampling_ratio: int > 0. Sample points per bin along each axis.
        aligned: bool. Shift boxes by -0.5 pixel (Detectron2's ROIAlignV2).
        canonical_scale: float > 0. Box size (pixels) of `canonical_level`.
        canonical_level: int. Level assigned to a `canonical_scale` box.
        bounding_box_format: one of "xyxy" (default), "yxyx", "xywh",
            "center_xywh", "center_yxhw" (absolute pixels).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        features: list of float tensors [B, H_l, W_l, C], one per scale.
        boxes: float tensor [B, N, 4] in image pixels, or the flat form
            [K, 5] (batch index, then the four coordinates).

    Returns:
        Tensor [B, N, out_h, out_w, C] (or [K, out_h, out_w, C]) in
        `compute_dtype`.

    Raises:
        ValueError: in `__init__` for invalid sizes, scales or formats;
            when called, for levels that disagree with `spatial_scales` or
            each other, or boxes not [B, N, 4] or [K, 5].

    Example:

    >>> p2, p3 = keras.Input((64, 64, 8)), keras.Input((32, 32, 8))
    >>> boxes = keras.Input((20, 4))
    >>> layer = MultiScaleRoIAlign(7, spatial_scales=[1 / 4, 1 / 8])
    >>> layer([p2, p3], boxes).shape
    (None, 20, 7, 7, 8)

    Reference:
        - [Lin et al., "Feature Pyramid Networks for Object Detection",
          CVPR 2017](https://arxiv.org/abs/1612.03144)
        - [He et al., "Mask R-CNN", ICCV 2017](
          https://arxiv.org/abs/1703.06870)
        - `torchvision.ops.MultiScaleRoIAlign` (pytorch/vision:
          torchvision/ops/poolers.py)
    """

    def __init__(
        self,
        output_size: int | Sequence[int],
        spatial_scales: Sequence[float],
        sampling_ratio: int = 2,
        aligned: bool = True,
        canonical_scale: float = 224.0,
        canonical_level: int = 4,
        bounding_box_format: str = "xyxy",
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)  # keep boxes in float32
        self.output_size = validation.standardize_size(
            output_size, "output_size"
        )
        _pyramid_levels(spatial_scales)  # powers of 2, consecutive levels
        self.spatial_scales = [float(s) for s in spatial_scales]
        self.sampling_ratio = validation.check_sampling_ratio(sampling_ratio)
        self.aligned = bool(aligned)
        self.canonical_scale = validation.check_positive_float(
            canonical_scale, "canonical_scale"
        )
        self.canonical_level = validation.check_int(
            canonical_level, "canonical_level"
        )
        self.bounding_box_format = _roi_common.check_bounding_box_format(
            bounding_box_format
        )

    @property
    def num_levels(self) -> int:
        """Feature levels the layer pools from, finest first."""
        return len(self.spatial_scales)

    def call(self, features, boxes=None):
        levels, boxes = _split_levels(features, boxes)
        for i, level in enumerate(levels):  # before the cast hides ints
            validation.check_floating(level.dtype, f"features[{i}]")
        return multilevel_roi_align(
            [ops.cast(f, self.compute_dtype) for f in levels],
            _roi_common.to_xyxy(boxes, self.bounding_box_format),
            self.output_size,
            self.spatial_scales,
            self.sampling_ratio,
            self.aligned,
            self.canonical_scale,
            self.canonical_level,
        )

    def compute_output_shape(self, features_shape, boxes_shape=None):
        if boxes_shape is None:
            if _is_shape(features_shape) or len(features_shape) != 2:
                raise ValueError(
                    "Expected the layer to be called on `(features, boxes)` "
                    "or `[features, boxes]`. Received a single input "
                    f"without `boxes`: {features_shape}."
                )
            features_shape, boxes_shape = features_shape
        levels = (
            [features_shape]
            if _is_shape(features_shape)
            else list(features_shape)
        )
        if len(levels) != len(self.spatial_scales):
            raise ValueError(
                "Invalid value for argument `features`. Expected one "
                f"feature map per spatial scale ({len(self.spatial_scales)})"
                f". Received {len(levels)} feature maps."
            )
        channels = None
        for i, shape in enumerate(levels):
            shape = validation.check_rank(shape, 4, f"features[{i}]")
            channels = shape[-1] if channels is None else channels
        return _roi_common.pooled_shape(
            levels[0], boxes_shape, self.output_size, channels
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "spatial_scales": self.spatial_scales,
            "sampling_ratio": self.sampling_ratio,
            "aligned": self.aligned,
            "canonical_scale": self.canonical_scale,
            "canonical_level": self.canonical_level,
            "bounding_box_format": self.bounding_box_format,
        }
