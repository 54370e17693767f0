"""`MaskPooling`: per-box features averaged under a soft mask (MNC)."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation

# Keeps the division finite for an all-zero mask (the features then pool
# to 0).
EPSILON = 1e-6


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaskPooling(keras.layers.Layer):
    """Averages each box's pooled features under its predicted mask.

    The mask-pooled features of Multi-task Network Cascades (Dai, He and
    Sun, 2016, section 3.3): the box's RoI features [h, w, C] are
    multiplied by its predicted soft mask and pooled, so that the third
    stage classifies the instance's figure rather than its whole box. MNC
    feeds the masked map to fully connected layers; here the masked map
    is averaged with the mask's mass as the weight,
    `sum(features * mask) / (sum(mask) + 1e-6)` over the grid, a
    [B, N, C] vector per box (with `masks=None`, the plain mean over the
    grid: the box-pooled features of MNC's other branch). Masks of another
    size are first resized bilinearly to the features' grid
    (`keras.ops.image.resize`, half-pixel centres). Gradients flow into
    both the features and the mask, as in MNC's differentiable cascade.
    Weightless.

    Call arguments:
        features: float tensor [B, N, h, w, C], static h, w.
        masks: optional float tensor [B, N, h', w'] of mask probabilities
            (static h', w').

    Returns:
        float tensor [B, N, C] in the `compute_dtype`.

    Raises:
        ValueError: if `features` is not [B, N, h, w, C] with static h and
            w, or `masks` not [B, N, h', w'] with static h' and w'.

    Reference:
        - [Dai, He and Sun, "Instance-aware Semantic Segmentation via
          Multi-task Network Cascades", CVPR 2016](
          https://arxiv.org/abs/1512.04412)
    """

    def _check_shapes(self, features_shape, masks_shape) -> tuple:
        shape = validation.check_rank(features_shape, 5, "features")
        if None in shape[2:4]:
            raise ValueError(
                "Invalid shape for argument `features`. Expected [B, N, h, "
                "w, C] with static h and w. Received: "
                f"features.shape={shape}."
            )
        if masks_shape is not None:
            masks_shape = validation.check_rank(masks_shape, 4, "masks")
            if None in masks_shape[2:]:
                raise ValueError(
                    "Invalid shape for argument `masks`. Expected [B, N, h, "
                    "w] with static h and w. Received: "
                    f"masks.shape={masks_shape}."
                )
        return shape

    def call(self, features, masks=None):
        shape = self._check_shapes(
            features.shape, None if masks is None else masks.shape
        )
        features = ops.cast(features, self.compute_dtype)
        if masks is None:
            return ops.mean(features, axis=(2, 3))
        masks = ops.cast(masks, self.compute_dtype)
        if tuple(masks.shape[2:]) != tuple(shape[2:4]):
            leading = validation.shape_list(masks)[:2]
            flat = ops.reshape(masks, (-1, *masks.shape[2:], 1))
            flat = ops.image.resize(flat, shape[2:4], interpolation="bilinear")
            masks = ops.reshape(flat, (leading[0], leading[1], *shape[2:4]))
        masks = masks[..., None]
        total = ops.sum(features * masks, axis=(2, 3))
        return total / (ops.sum(masks, axis=(2, 3)) + EPSILON)

    def compute_output_shape(self, features_shape, masks_shape=None):
        shape = self._check_shapes(features_shape, masks_shape)
        return (shape[0], shape[1], shape[4])
