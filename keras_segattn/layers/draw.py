"""`DrawRead` and `DrawWrite`: DRAW's differentiable attention windows."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.ops.draw_filterbank import draw_filterbank


def _check_params(params_shape):
    validation.check_rank(params_shape, 2, "params")
    validation.check_static_dims(params_shape, {-1: 5}, "params")


@keras.saving.register_keras_serializable(package="keras_segattn")
class DrawRead(keras.layers.Layer):
    """Reads an N×N glimpse: `γ [F_Y x F_Xᵀ, F_Y x̂ F_Xᵀ]` (DRAW eq. 27).

    Gregor et al., "DRAW: A Recurrent Neural Network For Image
    Generation", ICML 2015, §3.2. The filterbanks come from
    `keras_segattn.ops.draw_filterbank` and the five attention parameters
    `(g̃X, g̃Y, log σ², log δ̃, log γ)`, which the caller computes (in the
    paper a linear map of the previous decoder state), so one `Dense(5)`
    can serve a read and a write or each have its own.

    Args:
        glimpse_size: int N >= 2.
        **kwargs: base `Layer` arguments.

    Call arguments:
        images: [B, H, W, C], the image x (H = the paper's B, W = A).
        params: [B, 5].
        error_images: optional [B, H, W, C], the error image x̂; when
            given its glimpse is concatenated on the channel axis.

    Returns:
        [B, N, N, C] (or [B, N, N, 2C] with `error_images`); entry
        [b, j, i, c] is `γ Σ_{y,x} F_Y[j, y] x[y, x, c] F_X[i, x]`.
    """

    def __init__(self, glimpse_size: int, **kwargs):
        super().__init__(**kwargs)
        self.glimpse_size = validation.check_int(
            glimpse_size, "glimpse_size", 2
        )

    def _check(self, images_shape, params_shape, error_shape=None):
        images_shape = validation.check_rank(images_shape, 4, "images")
        _check_params(params_shape)
        if error_shape is not None:
            validation.check_same_static_shape(
                images_shape, error_shape, "images", "error_images"
            )
        if images_shape[1] is None or images_shape[2] is None:
            raise ValueError(
                "Invalid shape for argument `images`. Expected a static "
                f"height and width. Received: images.shape={images_shape}."
            )
        return images_shape

    def call(self, images, params, error_images=None):
        shape = self._check(
            images.shape,
            params.shape,
            None if error_images is None else error_images.shape,
        )
        filter_x, filter_y, gamma = draw_filterbank(
            params, shape[1:3], self.glimpse_size
        )

        def glimpse(x):
            x = ops.cast(x, "float32")
            out = ops.einsum("bjy,byxc,bix->bjic", filter_y, x, filter_x)
            return out * gamma[:, None, None, None]

        out = glimpse(images)
        if error_images is not None:
            out = ops.concatenate([out, glimpse(error_images)], axis=-1)
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(
        self, images_shape, params_shape, error_images_shape=None
    ):
        shape = self._check(images_shape, params_shape, error_images_shape)
        channels = shape[-1]
        if error_images_shape is not None and channels is not None:
            channels *= 2
        return (shape[0], self.glimpse_size, self.glimpse_size, channels)

    def get_config(self):
        config = super().get_config()
        config["glimpse_size"] = self.glimpse_size
        return config


@keras.saving.register_keras_serializable(package="keras_segattn")
class DrawWrite(keras.layers.Layer):
    """Writes an N×N patch: `(1/γ̂) F̂_Yᵀ w F̂_X` (DRAW eq. 29).

    The transpose of `DrawRead`'s filtering, onto an image of
    `image_size`; the patch `w` (in the paper a linear map of the decoder
    state, eq. 28) and the parameters are computed by the caller.

    Args:
        image_size: int or (height, width) of the canvas.
        **kwargs: base `Layer` arguments.

    Call arguments:
        patch: [B, N, N, C] with N >= 2.
        params: [B, 5], (g̃X, g̃Y, log σ², log δ̃, log γ).

    Returns:
        [B, height, width, C]; entry [b, y, x, c] is
        `(1/γ) Σ_{j,i} F_Y[j, y] w[j, i, c] F_X[i, x]`.
    """

    def __init__(self, image_size, **kwargs):
        super().__init__(**kwargs)
        self.image_size = validation.standardize_size(image_size, "image_size")

    def _check(self, patch_shape, params_shape):
        patch_shape = validation.check_rank(patch_shape, 4, "patch")
        _check_params(params_shape)
        if patch_shape[1] != patch_shape[2] or (
            patch_shape[1] is not None and patch_shape[1] < 2
        ):
            raise ValueError(
                "Invalid shape for argument `patch`. Expected a square "
                "N×N patch with a static N >= 2. Received: "
                f"patch.shape={patch_shape}."
            )
        return patch_shape

    def call(self, patch, params):
        shape = self._check(patch.shape, params.shape)
        filter_x, filter_y, gamma = draw_filterbank(
            params, self.image_size, shape[1]
        )
        out = ops.einsum(
            "bjy,bjic,bix->byxc", filter_y, ops.cast(patch, "float32"), filter_x
        )
        out = out / gamma[:, None, None, None]
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, patch_shape, params_shape):
        shape = self._check(patch_shape, params_shape)
        return (shape[0], *self.image_size, shape[-1])

    def get_config(self):
        config = super().get_config()
        config["image_size"] = self.image_size
        return config
