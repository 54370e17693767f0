"""Hypercolumns (Hariharan et al., 2015): per-pixel stacks of features."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.ops.grid_sample import grid_sample
from keras_segattn.ops.roi_align import roi_align

INTERPOLATIONS = ("bilinear", "nearest")


def _level_shapes(features_shape) -> list[tuple]:
    if not isinstance(features_shape, (list, tuple)) or not features_shape:
        raise ValueError(
            "Invalid value for argument `features`. Expected a non-empty "
            "list of feature maps [B, H_l, W_l, C_l]. Received: "
            f"features={features_shape!r}."
        )
    if not isinstance(features_shape[0], (list, tuple)) and not hasattr(
        features_shape[0], "as_list"
    ):
        if hasattr(features_shape[0], "shape"):  # tensors
            features_shape = [f.shape for f in features_shape]
        else:
            raise ValueError(
                "Invalid value for argument `features`. Expected a list of "
                "feature maps [B, H_l, W_l, C_l], not a single one. "
                f"Received: features shape {tuple(features_shape)}."
            )
    shapes = []
    for index, shape in enumerate(features_shape):
        shape = validation.check_rank(shape, 4, f"features[{index}]")
        if shape[1] is None or shape[2] is None:
            raise ValueError(
                f"Invalid shape for argument `features[{index}]`. Expected "
                "[B, H, W, C] with static H and W (the level scales are "
                f"static). Received: features[{index}].shape={shape}."
            )
        shapes.append(shape)
    return shapes


def _check_points(shape, name: str, last: int, what: str) -> tuple:
    shape = validation.check_rank(shape, 3, name)
    if shape[-1] != last:
        raise ValueError(
            f"Invalid shape for argument `{name}`. Expected [B, N, {last}] "
            f"of {what}. Received: {name}.shape={shape}."
        )
    return shape


@keras.saving.register_keras_serializable(package="keras_segattn")
class Hypercolumn(keras.layers.Layer):
    """Stacks the features of several layers per pixel, location or box.

    The hypercolumn of Hariharan et al. (2015): the vector of activations
    of every chosen layer "above" a pixel. Every feature map is resized to
    a common grid and the maps are concatenated along channels, in the
    order given. The common grid is `output_size`, or the size of
    `features[reference_index]` when `output_size` is None.

    Three modes, by call argument:

    - dense (neither `locations` nor `boxes`): every level resized with
      `keras.ops.image.resize` (half-pixel centres, no antialiasing) ->
      [B, H, W, C_total];
    - `locations` [B, N, 2] of (x, y) in pixels of the common grid, where
      pixel (i, j) covers [j, j + 1] x [i, i + 1] (its centre is
      (j + 0.5, i + 0.5)): each level is sampled bilinearly at
      (x * W_l / W - 0.5, y * H_l / H - 0.5), coordinates clamped to the
      map (`grid_sample`, `padding_mode="border"`), which is the value the
      dense mode gives at a pixel centre -> [B, N, C_total]. This is the
      paper's sparse computation of hypercolumns at sampled points;
    - `boxes` [B, N, 4] of (x1, y1, x2, y2) in pixels of the common grid:
      each level is pooled with RoIAlign (`roi_align`, boxes scaled by
      (W_l / W, H_l / H)) to `pool_size` -> [B, N, ph, pw, C_total], the
      paper's per-detection hypercolumns. A box of four -1 is padding
      (zeros).

    Coordinates and interpolation weights are float32 whatever the
    features' dtype (`autocast=False`).

    Args:
        output_size: int, (height, width) or None. The common grid; None
            for the size of `features[reference_index]`.
        reference_index: int. The level whose size is the grid when
            `output_size` is None (negative counts from the end).
        interpolation: `"bilinear"` or `"nearest"` (dense and location
            modes).
        pool_size: int or (height, width). RoIAlign grid of the box mode.
        sampling_ratio: int > 0. RoIAlign samples per bin and axis.
        aligned: bool. RoIAlign's half-pixel shift.

    Call arguments:
        features: list of float tensors [B, H_l, W_l, C_l], static H_l and
            W_l.
        locations: optional float tensor [B, N, 2].
        boxes: optional float tensor [B, N, 4] (not with `locations`).

    Returns:
        [B, H, W, C_total], [B, N, C_total] or [B, N, ph, pw, C_total] in
        `compute_dtype`, with `C_total = sum(C_l)`.

    Raises:
        ValueError: on bad arguments, feature maps that are not rank 4 or
            have dynamic sizes, an out-of-range `reference_index`, malformed
            `locations` or `boxes`, or both given.

    Reference:
        - [Hariharan, Arbeláez, Girshick and Malik, "Hypercolumns for Object
          Segmentation and Fine-grained Localization", CVPR 2015](
          https://arxiv.org/abs/1411.5752)
    """

    def __init__(
        self,
        output_size: int | Sequence[int] | None = None,
        reference_index: int = 0,
        interpolation: str = "bilinear",
        pool_size: int | Sequence[int] = 7,
        sampling_ratio: int = 2,
        aligned: bool = True,
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)
        self.output_size = (
            None
            if output_size is None
            else validation.standardize_size(output_size, "output_size")
        )
        self.reference_index = validation.check_int(
            reference_index, "reference_index"
        )
        self.interpolation = validation.check_one_of(
            interpolation, INTERPOLATIONS, "interpolation"
        )
        self.pool_size = validation.standardize_size(pool_size, "pool_size")
        self.sampling_ratio = validation.check_sampling_ratio(sampling_ratio)
        self.aligned = bool(aligned)

    def _grid_size(self, shapes) -> tuple[int, int]:
        if self.output_size is not None:
            return self.output_size
        if not -len(shapes) <= self.reference_index < len(shapes):
            raise ValueError(
                "Invalid value for argument `reference_index`. Expected an "
                f"index into the {len(shapes)} feature maps. Received: "
                f"reference_index={self.reference_index}."
            )
        return tuple(shapes[self.reference_index][1:3])

    def _check_call_shapes(self, features_shape, locations_shape, boxes_shape):
        shapes = _level_shapes(features_shape)
        size = self._grid_size(shapes)
        if locations_shape is not None and boxes_shape is not None:
            raise ValueError(
                "Invalid call arguments: pass `locations` or `boxes`, not "
                f"both. Received: locations.shape={tuple(locations_shape)}, "
                f"boxes.shape={tuple(boxes_shape)}."
            )
        if locations_shape is not None:
            _check_points(locations_shape, "locations", 2, "(x, y) points")
        if boxes_shape is not None:
            _check_points(boxes_shape, "boxes", 4, "(x1, y1, x2, y2) boxes")
        return shapes, size

    def call(self, features, locations=None, boxes=None):
        features = [ops.cast(f, self.compute_dtype) for f in features]
        shapes, (height, width) = self._check_call_shapes(
            [f.shape for f in features],
            None if locations is None else locations.shape,
            None if boxes is None else boxes.shape,
        )
        outputs = []
        if locations is not None:
            locations = ops.cast(locations, "float32")
            scale = ops.convert_to_tensor([2.0 / width, 2.0 / height])
            grid = ops.expand_dims(locations * scale - 1.0, axis=2)
            for f in features:
                sampled = grid_sample(
                    f,
                    grid,
                    interpolation=self.interpolation,
                    padding_mode="border",
                    align_corners=False,
                )
                outputs.append(ops.squeeze(sampled, axis=2))
        elif boxes is not None:
            boxes = ops.cast(boxes, "float32")
            padding = ops.all(ops.equal(boxes, -1.0), axis=-1, keepdims=True)
            for f, shape in zip(features, shapes, strict=True):
                scale_y, scale_x = shape[1] / height, shape[2] / width
                if scale_x == scale_y:
                    level_boxes, spatial_scale = boxes, scale_x
                else:
                    factors = ops.convert_to_tensor(
                        [scale_x, scale_y, scale_x, scale_y], "float32"
                    )
                    level_boxes = ops.where(padding, -1.0, boxes * factors)
                    spatial_scale = 1.0
                outputs.append(
                    roi_align(
                        f,
                        level_boxes,
                        self.pool_size,
                        spatial_scale=spatial_scale,
                        sampling_ratio=self.sampling_ratio,
                        aligned=self.aligned,
                    )
                )
        else:
            for f, shape in zip(features, shapes, strict=True):
                if tuple(shape[1:3]) != (height, width):
                    f = ops.image.resize(
                        f, (height, width), interpolation=self.interpolation
                    )
                outputs.append(f)
        if len(outputs) == 1:
            return outputs[0]
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(
        self, features_shape, locations_shape=None, boxes_shape=None
    ):
        shapes, size = self._check_call_shapes(
            features_shape, locations_shape, boxes_shape
        )
        channels = [s[-1] for s in shapes]
        total = None if None in channels else sum(channels)
        batch = shapes[0][0]
        if locations_shape is not None:
            return (batch, locations_shape[1], total)
        if boxes_shape is not None:
            return (batch, boxes_shape[1], *self.pool_size, total)
        return (batch, *size, total)

    def get_config(self):
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "reference_index": self.reference_index,
            "interpolation": self.interpolation,
            "pool_size": self.pool_size,
            "sampling_ratio": self.sampling_ratio,
            "aligned": self.aligned,
        }
