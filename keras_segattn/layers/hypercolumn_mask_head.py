"""`HypercolumnMaskHead`: per-box figure-ground logits from hypercolumns."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_segattn import validation

# The logit given to every pixel of a padding box: sigmoid(-1e4) is 0 in
# float32 and float16 (whose largest finite value is 65504).
PADDING_LOGIT = -1.0e4


def grid_interpolation_weights(size, grid_size: int) -> np.ndarray:
    """The weights that blend a `grid_size` x `grid_size` grid of
    classifiers at each pixel of a `size` box grid (float32 [h, w, G * G]).

    Hariharan et al. (2015), section 3.2: classifier (a, b) of the coarse
    grid sits at the centre of cell (a, b) of the box; a pixel's score is
    the bilinear interpolation of the scores of the (up to four) nearest
    classifiers. Along each axis the pixel centre `(i + 0.5) / h` is
    mapped to grid units, `u = (i + 0.5) G / h - 0.5`, clamped to
    [0, G - 1] (pixels beyond the outer centres use the outer
    classifiers), and classifier `a` gets the tent weight
    `max(0, 1 - |u - a|)`. Every pixel's weights sum to 1; `grid_size` 1
    gives one classifier everywhere.
    """
    height, width = validation.standardize_size(size, "size")
    grid_size = validation.check_positive_int(grid_size, "grid_size")

    def axis_weights(n: int) -> np.ndarray:  # [n, G]
        u = (np.arange(n, dtype=np.float64) + 0.5) * grid_size / n - 0.5
        u = np.clip(u, 0.0, grid_size - 1)
        cells = np.arange(grid_size, dtype=np.float64)
        return np.maximum(0.0, 1.0 - np.abs(u[:, None] - cells[None, :]))

    rows, cols = axis_weights(height), axis_weights(width)
    weights = rows[:, None, :, None] * cols[None, :, None, :]  # [h, w, G, G]
    return weights.reshape(height, width, grid_size * grid_size).astype(
        np.float32
    )


@keras.saving.register_keras_serializable(package="keras_segattn")
class HypercolumnMaskHead(keras.layers.Layer):
    """Figure-ground logits for every box from its pooled hypercolumns.

    The mask predictor of SDS refinement (Hariharan et al., 2014) as the
    hypercolumn paper builds it (Hariharan et al., 2015, section 3.2):
    each box's hypercolumns ([h, w, C] on a grid over the box, e.g.
    `Hypercolumn(pool_size=...)(features, boxes=boxes)`) go through a 1x1
    convolution with ReLU (`mask_hidden`, `filters` wide: the paper's
    per-pixel hidden layer over the concatenated levels, which also makes
    the next convolutions cheap), then `num_convs` 3x3 convolutions with
    ReLU (`filters` wide; 0 gives the paper's per-pixel classifier), then
    a 1x1 convolution scores `grid_size**2` location-specific classifiers
    per pixel, and the
    pixel's logit is their bilinear blend (`grid_interpolation_weights`:
    the paper's coarse K x K grid of classifiers, one classifier for
    `grid_size` 1). The [h, w] logits are then resized bilinearly
    (`keras.ops.image.resize`, half-pixel centres) to `mask_size` when it
    differs. The boxes are folded into the batch, so the convolutions see
    one box at a time. The logits are box-relative, like Mask R-CNN's:
    paste them with `keras_segattn.ops.paste_masks` (after a sigmoid).

    Args:
        filters: int > 0. Width of the hidden layer and 3x3 convolutions.
        num_convs: int >= 0. Number of 3x3 convolutions.
        grid_size: int > 0. Classifiers per side of the coarse grid.
        mask_size: None, int or (height, width). Size of the output
            logits; None keeps the pooled grid's size.
        **kwargs: base `Layer` arguments.

    Call arguments:
        features: float tensor [B, N, h, w, C] (static h, w and C).
        boxes: optional float tensor [B, N, 4]; the rows of padding boxes
            (four -1) get the logit -1e4 everywhere (probability 0).

    Returns:
        float tensor [B, N, mask_height, mask_width] of figure-ground
        logits in the `compute_dtype`.

    Raises:
        ValueError: for invalid arguments, features that are not
            [B, N, h, w, C] with static h, w and C, a grid larger than the
            pooled grid, or boxes that are not [B, N, 4].

    Example:

    >>> head = HypercolumnMaskHead(filters=8, num_convs=1, grid_size=2)
    >>> tuple(head(keras.Input((None, 14, 14, 5))).shape)
    (None, None, 14, 14)

    Reference:
        - [Hariharan, Arbeláez, Girshick and Malik, "Simultaneous Detection
          and Segmentation", ECCV 2014](https://arxiv.org/abs/1407.1808)
        - [Hariharan, Arbeláez, Girshick and Malik, "Hypercolumns for
          Object Segmentation and Fine-grained Localization", CVPR 2015](
          https://arxiv.org/abs/1411.5752)
    """

    def __init__(
        self,
        filters: int = 32,
        num_convs: int = 2,
        grid_size: int = 1,
        mask_size: int | tuple[int, int] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = validation.check_positive_int(filters, "filters")
        self.num_convs = validation.check_non_negative_int(
            num_convs, "num_convs"
        )
        self.grid_size = validation.check_positive_int(grid_size, "grid_size")
        self.mask_size = (
            None
            if mask_size is None
            else validation.standardize_size(mask_size, "mask_size")
        )

    def _check_features(self, features_shape) -> tuple:
        shape = validation.check_rank(features_shape, 5, "features")
        if None in shape[2:]:
            raise ValueError(
                "Invalid shape for argument `features`. Expected pooled "
                "hypercolumns [B, N, h, w, C] with static h, w and C. "
                f"Received: features.shape={shape}."
            )
        if self.grid_size > min(shape[2:4]):
            raise ValueError(
                "Invalid value for argument `grid_size`. Expected at most "
                f"the pooled grid's smaller side ({min(shape[2:4])}). "
                f"Received: grid_size={self.grid_size}."
            )
        return shape

    def _check_boxes(self, boxes_shape) -> None:
        if boxes_shape is not None:
            validation.check_rank(boxes_shape, 3, "boxes")
            validation.check_static_dims(boxes_shape, {2: 4}, "boxes")

    def build(self, features_shape, boxes_shape=None):
        shape = self._check_features(features_shape)
        common = {"kernel_initializer": "he_normal", "dtype": self.dtype_policy}
        self.hidden = keras.layers.Conv2D(
            self.filters, 1, activation="relu", name="mask_hidden", **common
        )
        self.convs = [
            keras.layers.Conv2D(
                self.filters,
                3,
                padding="same",
                activation="relu",
                name=f"mask_conv{i + 1}",
                **common,
            )
            for i in range(self.num_convs)
        ]
        self.classifiers = keras.layers.Conv2D(
            self.grid_size**2, 1, name="mask_classifiers", **common
        )
        self.hidden.build((None, *shape[2:]))
        for conv in self.convs:
            conv.build((None, *shape[2:4], self.filters))
        self.classifiers.build((None, *shape[2:4], self.filters))
        self.blend = grid_interpolation_weights(shape[2:4], self.grid_size)

    def call(self, features, boxes=None):
        shape = self._check_features(tuple(features.shape))
        self._check_boxes(None if boxes is None else boxes.shape)
        leading = validation.shape_list(features)[:2]
        x = ops.reshape(features, (-1, *shape[2:]))  # boxes into the batch
        x = self.hidden(x)
        for conv in self.convs:
            x = conv(x)
        scores = self.classifiers(x)  # [B N, h, w, G * G]
        blend = ops.convert_to_tensor(self.blend, dtype=scores.dtype)
        logits = ops.sum(scores * blend, axis=-1, keepdims=True)
        if self.mask_size is not None and self.mask_size != tuple(shape[2:4]):
            logits = ops.image.resize(
                logits, self.mask_size, interpolation="bilinear"
            )
        size = self.mask_size or tuple(shape[2:4])
        logits = ops.reshape(logits, (leading[0], leading[1], *size))
        if boxes is not None:
            padding = ops.all(ops.equal(ops.cast(boxes, "float32"), -1.0), -1)
            logits = ops.where(
                padding[:, :, None, None],
                ops.cast(PADDING_LOGIT, logits.dtype),
                logits,
            )
        return logits

    def compute_output_shape(self, features_shape, boxes_shape=None):
        shape = self._check_features(features_shape)
        self._check_boxes(boxes_shape)
        return (*shape[:2], *(self.mask_size or shape[2:4]))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "num_convs": self.num_convs,
            "grid_size": self.grid_size,
            "mask_size": self.mask_size,
        }
