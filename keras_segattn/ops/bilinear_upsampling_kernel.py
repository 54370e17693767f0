"""The FCN bilinear upsampling kernel for `Conv2DTranspose`."""

from __future__ import annotations

import numpy as np

from keras_segattn import validation


def bilinear_upsampling_kernel(
    factor: int, channels: int, dtype="float32"
) -> np.ndarray:
    """Builds a bilinear upsampling kernel for a transposed convolution.

    Implements `upsample_filt` of FCN (shelhamer/fcn.berkeleyvision.org:
    surgery.py): a separable tent filter of size `k = 2 * factor -
    factor % 2` centred at `c = factor - 1` (odd `k`) or `factor - 0.5`
    (even `k`), with weights

        w[i, j] = (1 - |i - c| / factor) * (1 - |j - c| / factor).

    The filter is placed on the channel diagonal (channel `i` maps to channel
    `i` only, zero across channels) in the `(kh, kw, out, in)` layout of
    `keras.layers.Conv2DTranspose`'s kernel. With `strides=factor` and
    `padding="same"` the transposed convolution then equals
    `keras.ops.image.resize(..., interpolation="bilinear")` (half-pixel
    centres) everywhere except an outer border of `factor` pixels.

    Args:
        factor: int > 0. Upsampling factor (the `strides` of the transposed
            convolution).
        channels: int > 0. Number of input (= output) channels.
        dtype: NumPy floating dtype of the returned array (fractional
            taps: an integer dtype would truncate them to 0).

    Returns:
        NumPy array [k, k, channels, channels] with `k = 2 * factor -
        factor % 2`.

    Raises:
        ValueError: if `factor` or `channels` is not a strictly positive
            integer.
        TypeError: if `dtype` is not a floating dtype.

    Example:

    >>> kernel = bilinear_upsampling_kernel(2, 1)
    >>> kernel[:, :, 0, 0][0]
    array([0.0625, 0.1875, 0.1875, 0.0625], dtype=float32)

    Reference:
        - [Long et al., "Fully Convolutional Networks for Semantic
          Segmentation", CVPR 2015](https://arxiv.org/abs/1411.4038)
    """
    factor = validation.check_positive_int(factor, "factor")
    channels = validation.check_positive_int(channels, "channels")
    validation.check_floating(np.dtype(dtype).name, "dtype")
    size = 2 * factor - factor % 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1.0 - np.abs(np.arange(size, dtype="float64") - center) / factor
    filt = np.outer(taps, taps)
    kernel = np.zeros((size, size, channels, channels), dtype="float64")
    diagonal = np.arange(channels)
    kernel[:, :, diagonal, diagonal] = filt[:, :, None]
    return kernel.astype(dtype)
