"""Per-batch joint augmentation of images and masks.

`make_augmenter` returns the function each batch goes through when a
segmentation pipeline augments: Keras preprocessing layers called on
`{"images", "segmentation_masks"}`, so that image and mask get the same
random flip, zoom and translation (masks by nearest neighbour), then
brightness and contrast jitter on the image only. Keras 3 preprocessing
layers run inside `tf.data` whatever the Keras backend.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

Tensor = tf.Tensor

# Augmentation strengths (see `load_segmentation_directory`).
_ZOOM_FACTOR = (-0.25, 0.1)  # Keras convention: negative zooms in
_TRANSLATION_FACTOR = 0.1
_BRIGHTNESS_FACTOR = 0.1
_CONTRAST_FACTOR = 0.2
_NUM_AUGMENTATION_SEEDS = 5


def _derive_seeds(seed: int | None, count: int) -> list[int | None]:
    if seed is None:
        return [None] * count
    state = np.random.SeedSequence(seed).generate_state(count)
    return [int(s) & 0x7FFFFFFF for s in state]


def make_augmenter(
    seed: int | None, void_label: int | None
) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """fn(images [B, H, W, 3], masks [B, H, W]) -> same, jointly augmented."""
    seeds = _derive_seeds(seed, _NUM_AUGMENTATION_SEEDS)
    # Pixels moved in from outside the image: mirrored image and labels when
    # there is no void label; otherwise black image and void labels.
    fill_mode = "reflect" if void_label is None else "constant"
    geometric = (
        keras.layers.RandomFlip("horizontal", seed=seeds[0]),
        keras.layers.RandomZoom(
            _ZOOM_FACTOR, fill_mode=fill_mode, fill_value=0.0, seed=seeds[1]
        ),
        keras.layers.RandomTranslation(
            _TRANSLATION_FACTOR,
            _TRANSLATION_FACTOR,
            fill_mode=fill_mode,
            fill_value=0.0,
            seed=seeds[2],
        ),
    )
    photometric = (
        keras.layers.RandomBrightness(
            _BRIGHTNESS_FACTOR, value_range=(0, 255), seed=seeds[3]
        ),
        keras.layers.RandomContrast(
            _CONTRAST_FACTOR, value_range=(0, 255), seed=seeds[4]
        ),
    )
    # With a void label, masks travel shifted by one so that the constant
    # fill value 0 marks the filled pixels, which become `void_label`.
    shift = 0 if void_label is None else 1

    def augment(images, masks):
        data = {
            "images": images,
            "segmentation_masks": tf.cast(masks[..., None] + shift, tf.float32),
        }
        for layer in geometric:
            data = layer(data, training=True)
        images = data["images"]
        for layer in photometric:
            images = layer(images, training=True)
        # Masks use nearest interpolation, so rounding only undoes float32.
        masks = tf.cast(tf.round(data["segmentation_masks"][..., 0]), tf.int32)
        if void_label is not None:
            masks = tf.where(masks > 0, masks - 1, void_label)
        return tf.cast(images, tf.float32), masks

    return augment
