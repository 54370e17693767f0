"""`FeaturePyramid`: the top-down pathway of Feature Pyramid Networks."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_segattn import validation


def _nearest_indices(source: int, target: int) -> np.ndarray:
    """Rows read by `F.interpolate(size=target, mode="nearest")` from a map
    of `source` rows: floor(i * source / target) (PyTorch's legacy
    "nearest", not "nearest-exact"). Static, so a constant gather."""
    return np.minimum(
        (np.arange(target) * source) // target, source - 1
    ).astype("int32")


def _upsample_nearest(x, size: tuple[int, int]):
    """[B, h, w, C] -> [B, H, W, C] by nearest neighbour, PyTorch indices;
    an exact factor 2 is `repeat`, other static sizes a gather."""
    (h, w), (height, width) = tuple(x.shape[1:3]), size
    if (height, width) == (2 * h, 2 * w):
        return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
    if height != h:
        x = ops.take(x, _nearest_indices(h, height), axis=1)
    if width != w:
        x = ops.take(x, _nearest_indices(w, width), axis=2)
    return x


def _check_levels(features_shape) -> list[tuple]:
    """The static shapes of the levels, finest first, or `ValueError`."""
    if not isinstance(features_shape, (list, tuple)) or not all(
        isinstance(s, (list, tuple)) for s in features_shape
    ):
        raise ValueError(
            "Invalid value for argument `features`. Expected a list of "
            "feature maps [B, H_l, W_l, C_l], finest first. Received: "
            f"features with shape {features_shape}."
        )
    if not features_shape:
        raise ValueError(
            "Invalid value for argument `features`. Expected at least one "
            "feature map. Received: features=[]."
        )
    shapes = []
    for i, shape in enumerate(features_shape):
        shape = validation.check_rank(shape, 4, f"features[{i}]")
        if None in shape[1:]:
            raise ValueError(
                f"Invalid shape for argument `features[{i}]`. Expected a "
                "static height, width and channels (the upsampling sizes "
                f"are constants). Received: features[{i}].shape={shape}."
            )
        if shapes and (shape[1] > shapes[-1][1] or shape[2] > shapes[-1][2]):
            raise ValueError(
                f"Invalid shape for argument `features[{i}]`. Expected "
                "levels ordered finest first (each map no larger than the "
                f"previous one). Received: features[{i - 1}].shape="
                f"{shapes[-1]} and features[{i}].shape={shape}."
            )
        shapes.append(shape)
    return shapes


@keras.saving.register_keras_serializable(package="keras_segattn")
class FeaturePyramid(keras.layers.Layer):
    """Feature Pyramid Network: lateral 1x1 convs, top-down pathway, 3x3
    output convs, optional max-pooled extra level.

    The FPN of Lin et al. (2017) with the numbers of torchvision's
    `FeaturePyramidNetwork` and `LastLevelMaxPool` (pytorch/vision:
    torchvision/ops/feature_pyramid_network.py). For input maps C_2..C_n
    (finest first, any channel counts), with `filters` = d:

    - inner_l = Conv1x1_l(C_l) (to d channels, with bias);
    - top-down: last_n = inner_n, then last_l = inner_l +
      nearest(last_{l+1}, size of C_l) (PyTorch's `F.interpolate(size=...,
      mode="nearest")`: source index floor(i * h / H));
    - P_l = Conv3x3_l(last_l) ("same" padding, with bias, no activation);
    - with `extra_max_pool`, an extra coarsest level P_{n+1} =
      `F.max_pool2d(P_n, 1, 2, 0)`, i.e. every second row and column
      (torchvision's `LastLevelMaxPool`, used by Faster R-CNN's RPN).

    Kernels start as torchvision's (`kaiming_uniform_(a=1)`, which is
    `"lecun_uniform"`), biases at zero. Channels last; the sizes must be
    static (they fix the upsampling).

    Args:
        filters: int > 0, channels of every output level (torchvision's
            `out_channels`, 256 there).
        extra_max_pool: bool. Append P_{n+1} (`LastLevelMaxPool`).
        kernel_initializer, bias_initializer: of every convolution.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        features: list of float tensors [B, H_l, W_l, C_l], finest first,
            each no larger than the previous one.

    Returns:
        List of tensors [B, H_l, W_l, filters] in `compute_dtype`, finest
        first, one per input level, plus [B, ceil(H_n / 2), ceil(W_n / 2),
        filters] with `extra_max_pool`.

    Raises:
        ValueError: in `__init__` for a bad `filters`; when built, for
            inputs that are not a non-empty list of static rank-4 maps,
            finest first.

    Example:

    >>> c2, c3 = keras.Input((16, 16, 8)), keras.Input((8, 8, 32))
    >>> [tuple(p.shape) for p in FeaturePyramid(16)([c2, c3])]
    [(None, 16, 16, 16), (None, 8, 8, 16), (None, 4, 4, 16)]

    Reference:
        - [Lin et al., "Feature Pyramid Networks for Object Detection",
          CVPR 2017](https://arxiv.org/abs/1612.03144)
    """

    def __init__(
        self,
        filters: int,
        extra_max_pool: bool = True,
        kernel_initializer="lecun_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = validation.check_positive_int(filters, "filters")
        self.extra_max_pool = bool(extra_max_pool)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, features_shape):
        shapes = _check_levels(features_shape)
        self.lateral_kernels, self.lateral_biases = [], []
        self.output_kernels, self.output_biases = [], []
        for i, shape in enumerate(shapes):
            self.lateral_kernels.append(
                self.add_weight(
                    name=f"lateral_kernel_{i}",
                    shape=(1, 1, shape[-1], self.filters),
                    initializer=self.kernel_initializer,
                )
            )
            self.lateral_biases.append(
                self.add_weight(
                    name=f"lateral_bias_{i}",
                    shape=(self.filters,),
                    initializer=self.bias_initializer,
                )
            )
            self.output_kernels.append(
                self.add_weight(
                    name=f"output_kernel_{i}",
                    shape=(3, 3, self.filters, self.filters),
                    initializer=self.kernel_initializer,
                )
            )
            self.output_biases.append(
                self.add_weight(
                    name=f"output_bias_{i}",
                    shape=(self.filters,),
                    initializer=self.bias_initializer,
                )
            )

    def _conv(self, x, kernel, bias):
        kernel = ops.cast(kernel, self.compute_dtype)
        bias = ops.cast(bias, self.compute_dtype)
        return ops.conv(x, kernel, strides=1, padding="same") + bias

    def call(self, features):
        features = [ops.cast(f, self.compute_dtype) for f in features]
        shapes = _check_levels([tuple(f.shape) for f in features])
        if len(features) != len(self.lateral_kernels):
            raise ValueError(
                "Invalid value for argument `features`. Expected the "
                f"{len(self.lateral_kernels)} levels the layer was built "
                f"for. Received: {len(features)} feature maps."
            )
        last = self._conv(
            features[-1], self.lateral_kernels[-1], self.lateral_biases[-1]
        )
        results = [
            self._conv(last, self.output_kernels[-1], self.output_biases[-1])
        ]
        for i in range(len(features) - 2, -1, -1):
            lateral = self._conv(
                features[i], self.lateral_kernels[i], self.lateral_biases[i]
            )
            last = lateral + _upsample_nearest(last, tuple(shapes[i][1:3]))
            results.insert(
                0,
                self._conv(last, self.output_kernels[i], self.output_biases[i]),
            )
        if self.extra_max_pool:
            results.append(results[-1][:, ::2, ::2, :])
        return results

    def compute_output_shape(self, features_shape):
        shapes = _check_levels(features_shape)
        outputs = [(s[0], s[1], s[2], self.filters) for s in shapes]
        if self.extra_max_pool:
            batch, height, width, _ = outputs[-1]
            outputs.append(
                (batch, (height + 1) // 2, (width + 1) // 2, self.filters)
            )
        return outputs

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "extra_max_pool": self.extra_max_pool,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "bias_initializer": keras.initializers.serialize(
                self.bias_initializer
            ),
        }
