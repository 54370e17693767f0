"""`BilinearUpsampling`: FCN's bilinear initializer for `Conv2DTranspose`."""

from __future__ import annotations

import keras

from keras_segattn.ops.bilinear_upsampling_kernel import (
    bilinear_upsampling_kernel,
)


@keras.saving.register_keras_serializable(package="keras_segattn")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initializes a `Conv2DTranspose` kernel to bilinear upsampling.

    The kernel is FCN's `upsample_filt` (shelhamer/fcn.berkeleyvision.org:
    surgery.py, `interp`) on the channel diagonal, as built by
    `keras_segattn.ops.bilinear_upsampling_kernel`. The upsampling factor
    `f` is inferred from the kernel size `k = 2 * f - f % 2`, so
    `f = (k + 1) // 2`. With `strides=f` and `padding="same"` the layer
    starts as `keras.ops.image.resize(..., interpolation="bilinear")`
    (exact outside an `f`-pixel border) and can then be trained.

    Call arguments:
        shape: kernel shape [k, k, channels, channels] in `Conv2DTranspose`'s
            `(kh, kw, out, in)` layout; `k` must be `2 * f - f % 2` for some
            integer `f >= 1` (1, 4, 5, 8, 9, 12, ...).
        dtype: floating dtype; defaults to `keras.backend.floatx()`.

    Returns:
        Tensor [k, k, channels, channels] of `dtype`.

    Raises:
        ValueError: if `shape` is not square in space, has different input
            and output channel counts, or a size no factor produces.

    Example:

    >>> f, channels = 2, 3
    >>> upsample = keras.layers.Conv2DTranspose(
    ...     channels, kernel_size=2 * f - f % 2, strides=f, padding="same",
    ...     use_bias=False, kernel_initializer=BilinearUpsampling())

    Reference:
        - [Long et al., "Fully Convolutional Networks for Semantic
          Segmentation", CVPR 2015](https://arxiv.org/abs/1411.4038)
    """

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if (
            len(shape) != 4
            or any(d is None for d in shape)
            or shape[0] != shape[1]
            or shape[2] != shape[3]
        ):
            raise ValueError(
                "Invalid value for argument `shape`. Expected a "
                "Conv2DTranspose kernel shape (k, k, channels, channels): "
                "square in space, with as many output as input channels "
                "(bilinear upsampling does not mix channels). "
                f"Received: shape={shape}."
            )
        size = int(shape[0])
        factor = (size + 1) // 2
        if size < 1 or size != 2 * factor - factor % 2:
            raise ValueError(
                "Invalid value for argument `shape`. Expected a kernel size "
                "k = 2 * f - f % 2 for an upsampling factor f >= 1 (1, 4, 5, "
                "8, 9, 12, ...), e.g. `kernel_size=2 * f - f % 2, "
                f"strides=f`. Received: shape={shape}."
            )
        dtype = keras.backend.standardize_dtype(dtype)
        kernel = bilinear_upsampling_kernel(factor, int(shape[2]))
        return keras.ops.convert_to_tensor(kernel, dtype=dtype)

    def get_config(self) -> dict:
        return {}
