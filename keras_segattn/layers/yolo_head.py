"""`YOLOHead`: features -> the YOLO v1 S x S x (B * 5 + C) grid."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.ops.decode_yolo_grid import yolo_grid_channels


@keras.saving.register_keras_serializable(package="keras_segattn")
class YOLOHead(keras.layers.Layer):
    """The detection head of YOLO v1 (Redmon et al., 2016) as convolutions.

    Maps a feature map to the S x S' grid of the paper: per cell,
    `boxes_per_cell` predictors `(x, y, sqrt_w, sqrt_h, confidence)` and
    `num_classes` conditional class probabilities (the layout of
    `keras_segattn.ops.decode_yolo_grid`). Features larger than the grid
    (H and W multiples of S and S') are average-pooled to it first; then
    `num_convs` 3x3 Conv-BN-LeakyReLU(0.1) units of `filters` channels
    and a 1x1 convolution give the B * 5 + C channels. Where the paper's
    last layer is linear, this head bounds every quantity to its range
    (sigmoid for the offsets, square-root sizes and confidences, softmax
    for the class probabilities), which trains the same squared-error
    loss stably from scratch. The paper's two fully connected layers are
    replaced by convolutions (every cell sees a neighbourhood instead of
    the whole image), which suits small CPU models.

    Args:
        grid_size: int or (S, S'), the grid's rows and columns.
        boxes_per_cell: int >= 1, predictors per cell (B).
        num_classes: int >= 1 (C).
        filters: int > 0, width of the 3x3 convolutions.
        num_convs: int >= 0, 3x3 units before the output convolution.
        **kwargs: base `Layer` arguments.

    Call arguments:
        features: float tensor [B, H, W, C_in], H = k S and W = k' S'.
        training: bool, batch normalisation mode.

    Returns:
        float32 tensor [B, S, S', boxes_per_cell * 5 + num_classes], values
        in [0, 1] (class probabilities sum to 1).
    """

    def __init__(
        self,
        grid_size: int | Sequence[int],
        boxes_per_cell: int = 2,
        num_classes: int = 20,
        filters: int = 128,
        num_convs: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.grid_size = validation.standardize_size(grid_size, "grid_size")
        self.boxes_per_cell = validation.check_positive_int(
            boxes_per_cell, "boxes_per_cell"
        )
        self.num_classes = validation.check_num_classes(num_classes)
        self.filters = validation.check_positive_int(filters, "filters")
        self.num_convs = validation.check_non_negative_int(
            num_convs, "num_convs"
        )
        self.channels = yolo_grid_channels(
            self.boxes_per_cell, self.num_classes
        )
        self.convs = [
            keras.layers.Conv2D(
                self.filters,
                3,
                padding="same",
                use_bias=False,
                dtype=self.dtype_policy,
                name=f"conv{i + 1}",
            )
            for i in range(self.num_convs)
        ]
        self.norms = [
            keras.layers.BatchNormalization(
                dtype=self.dtype_policy, name=f"bn{i + 1}"
            )
            for i in range(self.num_convs)
        ]
        self.output_conv = keras.layers.Conv2D(
            self.channels, 1, dtype=self.dtype_policy, name="output"
        )

    def _pool_size(self, features_shape) -> tuple[int, int]:
        shape = tuple(features_shape)
        if len(shape) != 4 or shape[1] is None or shape[2] is None:
            raise ValueError(
                "Invalid shape for argument `features`. Expected a static "
                f"[B, H, W, C] map. Received: features.shape={shape}."
            )
        sizes = []
        for size, cells, axis in zip(
            shape[1:3], self.grid_size, ("height", "width"), strict=True
        ):
            if size % cells:
                raise ValueError(
                    "Invalid value for argument `grid_size`. Expected it to "
                    f"divide the features' {axis} ({size}), so that every "
                    "cell covers the same pixels. Received: "
                    f"grid_size={self.grid_size}."
                )
            sizes.append(size // cells)
        return tuple(sizes)

    def build(self, features_shape):
        self._pool_size(features_shape)
        shape = (features_shape[0], *self.grid_size, features_shape[-1])
        for conv, norm in zip(self.convs, self.norms, strict=True):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
        self.output_conv.build(shape)

    def call(self, features, training=None):
        x = features
        pool = self._pool_size(features.shape)
        if pool != (1, 1):
            x = ops.average_pool(x, pool, strides=pool, padding="valid")
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = ops.leaky_relu(norm(conv(x), training=training), 0.1)
        x = ops.cast(self.output_conv(x), "float32")
        split = 5 * self.boxes_per_cell
        return ops.concatenate(
            [ops.sigmoid(x[..., :split]), ops.softmax(x[..., split:], -1)],
            axis=-1,
        )

    def compute_output_shape(self, features_shape):
        self._pool_size(features_shape)
        return (features_shape[0], *self.grid_size, self.channels)

    def compute_output_spec(self, features, training=None):
        return keras.KerasTensor(
            self.compute_output_shape(features.shape), dtype="float32"
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "grid_size": self.grid_size,
            "boxes_per_cell": self.boxes_per_cell,
            "num_classes": self.num_classes,
            "filters": self.filters,
            "num_convs": self.num_convs,
        }
