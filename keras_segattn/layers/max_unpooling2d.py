"""`MaxUnpooling2D`: unpooling with the DeconvNet/SegNet switches."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_segattn import validation
from keras_segattn.ops.max_unpool import _unpooled_shape
from keras_segattn.ops.max_unpool import max_unpool


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaxUnpooling2D(keras.layers.Layer):
    """Places each value at the position its max pooling recorded.

    The decoder unpooling of DeconvNet (Noh et al., 2015) and SegNet
    (Badrinarayanan et al., 2017): every value of `inputs` goes to the
    position given by `indices` inside its `pool_size` window; all other
    positions are zero. Pair it with `MaxPoolingWithArgmax2D` of the same
    `pool_size`. A thin wrapper over `keras_segattn.ops.max_unpool`;
    compiles under XLA. Gradients flow to `inputs` only, through the
    recorded positions.

    Args:
        pool_size: int or (kh, kw). The pool size used for pooling.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor [B, h, w, C].
        indices: integer tensor [B, h, w, C] of local window positions
            (`0 .. kh * kw - 1`, row-major), as returned by
            `MaxPoolingWithArgmax2D`.

    Returns:
        Tensor [B, h * kh, w * kw, C] in `compute_dtype`.

    Raises:
        ValueError: in `__init__` if `pool_size` is not a strictly positive
            int or pair; when called, if an argument is not rank 4 or their
            known static shapes differ.
        TypeError: when called with non-floating `inputs` or non-integer
            `indices`.

    Example:

    >>> features = keras.Input((16, 16, 4))
    >>> pooled, indices = MaxPoolingWithArgmax2D(2)(features)
    >>> MaxUnpooling2D(2)(pooled, indices).shape
    (None, 16, 16, 4)

    Reference:
        - [Noh et al., "Learning Deconvolution Network for Semantic
          Segmentation", ICCV 2015](https://arxiv.org/abs/1505.04366)
        - [Badrinarayanan et al., "SegNet: A Deep Convolutional
          Encoder-Decoder Architecture for Image Segmentation", TPAMI 2017](
          https://arxiv.org/abs/1511.00561)
    """

    def __init__(self, pool_size: int | Sequence[int] = (2, 2), **kwargs):
        super().__init__(**kwargs)
        self.pool_size = validation.standardize_size(pool_size, "pool_size")

    def call(self, inputs, indices):
        return max_unpool(inputs, indices, self.pool_size)

    def compute_output_shape(self, inputs_shape, indices_shape):
        return _unpooled_shape(inputs_shape, indices_shape, self.pool_size)

    def compute_output_spec(self, inputs, indices):
        validation.check_floating(inputs.dtype, "inputs")
        validation.check_integer(indices.dtype, "indices")
        shape = self.compute_output_shape(inputs.shape, indices.shape)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "pool_size": self.pool_size}
