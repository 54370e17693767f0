"""`MaxUnpooling2D`: unpooling with the DeconvNet/SegNet switches."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_segattn import validation
from keras_segattn.ops.max_unpool import _check_indices_format
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
    recorded positions (`reference` only lends its shape).

    After a `padding="same"` pooling the pre-pool size (H, W) cannot be
    told from the pooled one (45 and 46 both pool to 23), so it is given,
    as `torch.nn.functional.max_unpool2d(..., output_size=...)` takes it:
    statically with `output_size`, or at call time with `reference`, the
    pooling layer's input, whose (possibly dynamic) H and W are used. The
    padded bottom rows and right columns are dropped.

    Args:
        pool_size: int or (kh, kw). The pool size used for pooling.
        output_size: None (H = h * kh, W = w * kw) or (H, W), the size of
            the pooling's input: `(h - 1) * kh < H <= h * kh`.
        indices_format: "local" (window positions, as returned by
            `MaxPoolingWithArgmax2D`) or "flat" (the indices of
            `tf.nn.max_pool_with_argmax`, for ported SegNet-TF code; see
            `keras_segattn.ops.max_unpool`).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor [B, h, w, C].
        indices: integer tensor [B, h, w, C] of local window positions
            (`0 .. kh * kw - 1`, row-major), as returned by
            `MaxPoolingWithArgmax2D`.
        reference: optional tensor [B, H, W, ...] (the pooling's input)
            whose spatial size is the output size; overrides
            `output_size` where its size is known statically and must
            agree with it.

    Returns:
        Tensor [B, H, W, C] in `compute_dtype`.

    Raises:
        ValueError: in `__init__` if `pool_size` is not a strictly positive
            int or pair, `output_size` not None or such a pair, or
            `indices_format` not "local" or "flat"; when called, if an
            argument is not rank 4, their known static shapes differ, or
            a known output size does not pool to (h, w).
        TypeError: when called with non-floating `inputs` or non-integer
            `indices`.

    Example:

    >>> features = keras.Input((16, 16, 4))
    >>> pooled, indices = MaxPoolingWithArgmax2D(2)(features)
    >>> MaxUnpooling2D(2)(pooled, indices).shape
    (None, 16, 16, 4)
    >>> features = keras.Input((45, 60, 4))
    >>> pooled, indices = MaxPoolingWithArgmax2D(2, padding="same")(features)
    >>> pooled.shape
    (None, 23, 30, 4)
    >>> MaxUnpooling2D(2, output_size=(45, 60))(pooled, indices).shape
    (None, 45, 60, 4)

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
        output_size: int | Sequence[int] | None = None,
        indices_format: str = "local",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pool_size = validation.standardize_size(pool_size, "pool_size")
        self.output_size = (
            None
            if output_size is None
            else validation.standardize_size(output_size, "output_size")
        )
        self.indices_format = _check_indices_format(indices_format)

    def _output_size(self, reference_shape):
        """(H, W) from `reference`'s static shape where known, else from
        `output_size`; None entries are unknown."""
        if reference_shape is None:
            return self.output_size
        reference_shape = validation.check_rank(reference_shape, 4, "reference")
        sizes = tuple(reference_shape[1:3])
        if self.output_size is not None:
            for size, fixed in zip(sizes, self.output_size, strict=True):
                if size is not None and size != fixed:
                    raise ValueError(
                        "Invalid shape for argument `reference`. Expected "
                        f"the spatial size output_size={self.output_size}. "
                        f"Received: reference.shape={reference_shape}."
                    )
            sizes = tuple(
                fixed if size is None else size
                for size, fixed in zip(sizes, self.output_size, strict=True)
            )
        return sizes

    def call(self, inputs, indices, reference=None):
        output_size = self.output_size
        if reference is not None:
            static = self._output_size(reference.shape)
            dynamic = keras.ops.shape(reference)
            output_size = tuple(
                dynamic[axis] if size is None else size
                for axis, size in zip((1, 2), static, strict=True)
            )
        return max_unpool(
            inputs, indices, self.pool_size, output_size, self.indices_format
        )

    def compute_output_shape(
        self, inputs_shape, indices_shape, reference_shape=None
    ):
        return _unpooled_shape(
            inputs_shape,
            indices_shape,
            self.pool_size,
            self._output_size(reference_shape),
            self.indices_format,
        )

    def compute_output_spec(self, inputs, indices, reference=None):
        validation.check_floating(inputs.dtype, "inputs")
        validation.check_integer(indices.dtype, "indices")
        shape = self.compute_output_shape(
            inputs.shape,
            indices.shape,
            None if reference is None else reference.shape,
        )
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "output_size": self.output_size,
            "indices_format": self.indices_format,
        }
