"""The `tf.data` pipeline every MNIST-family loader ends in.

`to_dataset` turns `(images, labels)` arrays into shuffled, optionally
shifted, batched and prefetched `(float32 images, int32 labels)` batches;
`mnist`, `cluttered_mnist` and `mnist_addition` share it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_segattn.validation import check_positive_int

_SHUFFLE_BUFFER = 10_000


def to_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int | None,
    drop_remainder: bool,
    name: str,
    max_shift: int = 0,
) -> tf.data.Dataset:
    """(images, labels) arrays -> shuffled, [shifted,] batched, prefetched.

    Images may be uint8 (converted to float32 inside the pipeline, so a big
    array is held once, in its small dtype).
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if drop_remainder and batch_size > len(images):
        raise ValueError(
            f"Invalid value for argument `batch_size`: {batch_size} is more "
            f"than the {len(images)} examples of {name}, so with "
            "`drop_remainder=True` the dataset would be empty. "
            f"Received: batch_size={batch_size}."
        )
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(
            min(len(images), _SHUFFLE_BUFFER),
            seed=seed,
            reshuffle_each_iteration=True,
        )
    if max_shift:
        ds = _random_shifts(ds, max_shift, seed)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def standardize(x, y):
        return tf.cast(x, tf.float32), tf.cast(y, tf.int32)

    ds = ds.map(standardize, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _random_shifts(
    ds: tf.data.Dataset, max_shift: int, seed: int | None
) -> tf.data.Dataset:
    """Translates each image by a random whole number of pixels in
    [-max_shift, max_shift] along each axis (zeros shifted in), with new
    draws every epoch."""
    seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True
    ).batch(2)

    def shift(example, pair):
        image, label = example
        height, width = image.shape[0], image.shape[1]
        padded = tf.pad(
            image, [[max_shift, max_shift], [max_shift, max_shift], [0, 0]]
        )
        cropped = tf.image.stateless_random_crop(
            padded, tf.shape(image), seed=pair
        )
        return tf.ensure_shape(cropped, (height, width, None)), label

    return tf.data.Dataset.zip((ds, seeds)).map(
        shift, num_parallel_calls=tf.data.AUTOTUNE
    )
