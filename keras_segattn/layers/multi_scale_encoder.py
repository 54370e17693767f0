"""One shared-weight encoder run on an image pyramid (Farabet et al., 2013)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation

INTERPOLATIONS = ("bilinear", "nearest", "bicubic")


def check_pyramid_scales(scales) -> tuple[float, ...]:
    """Returns `scales` as a tuple of floats, or raises `ValueError` unless
    they are a non-empty, strictly decreasing sequence of positive numbers."""
    ok = (
        isinstance(scales, (tuple, list))
        and len(scales) > 0
        and all(
            isinstance(s, (int, float)) and not isinstance(s, bool)
            for s in scales
        )
    )
    if ok:
        values = tuple(float(s) for s in scales)
        ok = all(0.0 < s < float("inf") for s in values) and all(
            b < a for a, b in zip(values, values[1:], strict=False)
        )
    if not ok:
        raise ValueError(
            "Invalid value for argument `scales`. Expected a non-empty "
            "sequence of positive, strictly decreasing pyramid scales (e.g. "
            f"(1.0, 0.5, 0.25)). Received: scales={scales!r}."
        )
    return values


def _scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return (max(1, round(height * scale)), max(1, round(width * scale)))


@keras.saving.register_keras_serializable(package="keras_segattn")
class MultiScaleEncoder(keras.layers.Layer):
    """Runs one encoder on an image pyramid and concatenates its features.

    The multi-scale convolutional network of Farabet et al. (2013): the
    input is resized (`keras.ops.image.resize`, no antialiasing) to each
    of `scales` times its size, the *same* encoder (shared weights) maps
    every pyramid level to features, the features of every level are
    resized to the size of the first level's features and all of them are
    concatenated along channels, so every output pixel sees the image at
    several context sizes. Sizes are static: `round(H * s)` by
    `round(W * s)` (at least 1) for scale `s`.

    The paper's Laplacian pyramid and local contrast normalisation are not
    included: put any preprocessing before the layer or inside `encoder`.

    Args:
        encoder: a `keras.layers.Layer` or `keras.Model` mapping images
            [B, h, w, C] of any size to features [B, h', w', F] (fully
            convolutional), or its serialized config
            (`keras.saving.serialize_keras_object`).
        scales: non-empty, strictly decreasing positive floats; the
            pyramid levels relative to the input (the first is usually
            1.0).
        interpolation: `"bilinear"`, `"nearest"` or `"bicubic"`, for both
            the pyramid and the feature upsampling.

    Call arguments:
        inputs: float tensor [B, H, W, C] with static H and W.
        training: bool or None, passed to the encoder.

    Returns:
        Tensor [B, h1, w1, F * len(scales)] in `compute_dtype`, where
        [h1, w1] is the encoder's output size at the first scale; channels
        are grouped by scale, first scale first.

    Raises:
        ValueError: on bad `scales` or `interpolation`, an input that is
            not rank 4 or has an unknown height or width.
        TypeError: if `encoder` is not a layer.

    Reference:
        - [Farabet, Couprie, Najman and LeCun, "Learning Hierarchical
          Features for Scene Labeling", TPAMI 2013](
          https://doi.org/10.1109/TPAMI.2012.231)
    """

    def __init__(
        self,
        encoder: keras.layers.Layer | dict,
        scales: Sequence[float] = (1.0, 0.5, 0.25),
        interpolation: str = "bilinear",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        if not isinstance(encoder, keras.layers.Layer):
            raise TypeError(
                "Invalid type for argument `encoder`. Expected a "
                "keras.layers.Layer or keras.Model mapping images to "
                f"features. Received: type(encoder)={type(encoder).__name__}."
            )
        self.encoder = encoder
        self.scales = check_pyramid_scales(scales)
        self.interpolation = validation.check_one_of(
            interpolation, INTERPOLATIONS, "interpolation"
        )

    def _pyramid_sizes(self, inputs_shape) -> list[tuple[int, int]]:
        shape = validation.check_rank(inputs_shape, 4, "inputs")
        if shape[1] is None or shape[2] is None:
            raise ValueError(
                "Invalid shape for argument `inputs`. Expected [B, H, W, C] "
                "with static H and W (the pyramid sizes are static). "
                f"Received: inputs.shape={shape}."
            )
        return [_scaled_size(shape[1], shape[2], s) for s in self.scales]

    def build(self, inputs_shape):
        self._pyramid_sizes(inputs_shape)
        if not self.encoder.built:
            self.encoder.build(tuple(inputs_shape))

    def call(self, inputs, training=None):
        sizes = self._pyramid_sizes(inputs.shape)
        full_size = tuple(inputs.shape[1:3])
        target = None
        outputs = []
        for size in sizes:
            x = inputs
            if size != full_size:
                x = ops.image.resize(
                    inputs, size, interpolation=self.interpolation
                )
            features = self.encoder(x, training=training)
            if target is None:
                target = tuple(features.shape[1:3])
            elif tuple(features.shape[1:3]) != target:
                features = ops.image.resize(
                    features, target, interpolation=self.interpolation
                )
            outputs.append(ops.cast(features, self.compute_dtype))
        if len(outputs) == 1:
            return outputs[0]
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, inputs_shape):
        self._pyramid_sizes(inputs_shape)
        features_shape = self.encoder.compute_output_shape(tuple(inputs_shape))
        channels = features_shape[-1]
        return (
            *tuple(features_shape[:-1]),
            None if channels is None else channels * len(self.scales),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "scales": self.scales,
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_config(cls, config: dict) -> MultiScaleEncoder:
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(
            config["encoder"]
        )
        return cls(**config)
