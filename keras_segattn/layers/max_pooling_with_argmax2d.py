"""`MaxPoolingWithArgmax2D`: max pooling that also returns its switches."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_segattn import validation
from keras_segattn.ops.max_pool_with_argmax import _check_padding
from keras_segattn.ops.max_pool_with_argmax import _pooled_shape
from keras_segattn.ops.max_pool_with_argmax import max_pool_with_argmax


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """Non-overlapping 2D max pooling that also returns the argmax switches.

    The encoder pooling of DeconvNet (Noh et al., 2015) and SegNet
    (Badrinarayanan et al., 2017): besides the pooled features it returns,
    for each output element, the position of the maximum inside its window,
    which `MaxUnpooling2D` uses to place values back. A thin wrapper over
    `keras_segattn.ops.max_pool_with_argmax`; compiles under XLA (unlike
    `tf.nn.max_pool_with_argmax`).

    Indices are local to each window (`0 .. kh * kw - 1`, row-major, i.e.
    `row * kw + column`), int32; ties go to the first element in row-major
    order, which also receives the whole gradient.

    `padding="same"` accepts any size (ceil mode, the windows of
    `torch.nn.MaxPool2d(k, k, ceil_mode=True)`): the bottom and right are
    padded with -inf, which never wins. Give the decoder's
    `MaxUnpooling2D` the input size (`output_size`, or the input tensor
    as `reference`) to undo it, e.g. 45 -> 23 -> 45.

    Args:
        pool_size: int or (kh, kw). Window size and stride.
        padding: "valid" (H and W divisible by the pool size) or "same"
            (ceil mode).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor [B, H, W, C]; with "valid" padding H and W
            divisible by the pool size.

    Returns:
        Tuple `(pooled, indices)`: `pooled` [B, H / kh, W / kw, C] in
        `compute_dtype` and `indices` int32 of the same shape (sizes
        rounded up with "same" padding).

    Raises:
        ValueError: in `__init__` if `pool_size` is not a strictly positive
            int or pair or `padding` is not "valid" or "same"; when called,
            if the input is not rank 4 or, with "valid" padding, a known H
            or W is not divisible by the pool size.
        TypeError: when called on a non-floating input.

    Example:

    >>> images = keras.Input((32, 32, 3))
    >>> features = keras.layers.Conv2D(8, 3, padding="same")(images)
    >>> pooled, indices = MaxPoolingWithArgmax2D(2)(features)
    >>> restored = MaxUnpooling2D(2)(pooled, indices)

    Reference:
        - [Noh et al., "Learning Deconvolution Network for Semantic
          Segmentation", ICCV 2015](https://arxiv.org/abs/1505.04366)
        - [Badrinarayanan et al., "SegNet: A Deep Convolutional
          Encoder-Decoder Architecture for Image Segmentation", TPAMI 2017](
          https://arxiv.org/abs/1511.00561)
    """

    def __init__(
        self,
        pool_size: int | Sequence[int] = (2, 2),
        padding: str = "valid",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pool_size = validation.standardize_size(pool_size, "pool_size")
        self.padding = _check_padding(padding)

    def call(self, inputs):
        return max_pool_with_argmax(inputs, self.pool_size, self.padding)

    def compute_output_shape(self, input_shape):
        shape = _pooled_shape(input_shape, self.pool_size, self.padding)
        return shape, shape

    def compute_output_spec(self, inputs):
        validation.check_floating(inputs.dtype, "inputs")
        pooled_shape, indices_shape = self.compute_output_shape(inputs.shape)
        return (
            keras.KerasTensor(pooled_shape, dtype=self.compute_dtype),
            keras.KerasTensor(indices_shape, dtype="int32"),
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "padding": self.padding,
        }
