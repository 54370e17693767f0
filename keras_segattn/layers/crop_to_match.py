"""`CropToMatch`: crops a feature map to the spatial size of another."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation


def _dims(x) -> list:
    """Each dimension of `x` as a static int, or a scalar tensor if unknown."""
    dynamic = ops.shape(x)
    return [
        static if static is not None else dynamic[axis]
        for axis, static in enumerate(x.shape)
    ]


@keras.saving.register_keras_serializable(package="keras_segattn")
class CropToMatch(keras.layers.Layer):
    """Crops `inputs` spatially to the height and width of `reference`.

    The `Crop` layer of Caffe as FCN uses it (Long et al., 2015;
    shelhamer/fcn.berkeleyvision.org: voc-fcn8s/net.py, `crop(n.upscore2,
    n.score_pool4c)`): the output is `inputs[:, oy:oy + H', ox:ox + W', :]`
    where `(H', W')` is the spatial size of `reference` and `(oy, ox)` the
    `offset`. FCN's Caffe nets need offsets (5, 9, 19, 31) because conv1
    pads by 100 pixels; with `padding="same"` pooling and transposed
    convolutions the maps are top-left aligned and the default `(0, 0)` is
    right.

    Works with unknown (None) height and width: the size is then read with
    `keras.ops.shape` at run time (a constant once XLA compiles for a
    concrete shape). Only the shape of `reference` is used, never its values,
    so it gets no gradient and may have any dtype (an integer mask too).

    Args:
        offset: int or (y, x), ints >= 0. Top-left corner of the crop.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor [B, H, W, C].
        reference: tensor [B, H', W'] or [B, H', W', C'] with
            `H' + offset[0] <= H` and `W' + offset[1] <= W`.

    Returns:
        Tensor [B, H', W', C]: `compute_dtype` for floating `inputs`, the
        dtype of `inputs` otherwise.

    Raises:
        ValueError: in `__init__` if `offset` is not a non-negative int or
            pair; when called, if `inputs` is not rank 4, `reference` not
            rank 3 or 4, or known static sizes make the crop window leave
            `inputs`.

    Example:

    >>> upsampled = keras.Input((18, 18, 21))
    >>> skip = keras.Input((17, 17, 21))
    >>> CropToMatch()(upsampled, skip).shape
    (None, 17, 17, 21)

    Reference:
        - [Long et al., "Fully Convolutional Networks for Semantic
          Segmentation", CVPR 2015](https://arxiv.org/abs/1411.4038)
    """

    def __init__(self, offset: int | Sequence[int] = (0, 0), **kwargs):
        super().__init__(**kwargs)
        self.offset = validation.standardize_offset(offset, "offset")

    def call(self, inputs, reference):
        batch, _, _, channels = _dims(inputs)
        _, ref_height, ref_width = _dims(reference)[:3]
        return ops.slice(
            inputs,
            [0, self.offset[0], self.offset[1], 0],
            [batch, ref_height, ref_width, channels],
        )

    def compute_output_shape(self, inputs_shape, reference_shape):
        inputs_shape = validation.check_rank(inputs_shape, 4, "inputs")
        reference_shape = validation.check_rank(
            reference_shape, (3, 4), "reference"
        )
        batch, height, width, channels = inputs_shape
        ref_height, ref_width = reference_shape[1], reference_shape[2]
        for size, ref_size, offset in (
            (height, ref_height, self.offset[0]),
            (width, ref_width, self.offset[1]),
        ):
            if size is not None and ref_size is not None:
                if ref_size + offset > size:
                    raise ValueError(
                        "Invalid shapes for `CropToMatch`. Expected `inputs` "
                        "to be at least as large as `reference` plus "
                        f"`offset`={self.offset} in height and width. "
                        f"Received: inputs.shape={inputs_shape}, "
                        f"reference.shape={reference_shape}."
                    )
        return (batch, ref_height, ref_width, channels)

    def compute_output_spec(self, inputs, reference):
        shape = self.compute_output_shape(inputs.shape, reference.shape)
        dtype = inputs.dtype
        if "float" in str(dtype):
            dtype = self.compute_dtype
        return keras.KerasTensor(shape, dtype=dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "offset": self.offset}
