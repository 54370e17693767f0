"""A synthetic twin of the segmentation loaders, for tests and `--smoke`.

`make_synthetic_segmentation_arrays` draws a learnable problem (a shape's
class decides its colour) as NumPy arrays, and `make_synthetic_segmentation`
batches it in the output format of `load_segmentation_directory`: images
float32 [B, H, W, 3] in 0..255 and masks int32 [B, H, W] of class ids.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_segattn.data._segmentation_preprocess import standardize_image_size
from keras_segattn.validation import check_positive_int


def _class_colours(num_classes: int) -> np.ndarray:
    """[num_classes, 3] float colours: dark grey background, then hues."""
    colours = [(40.0, 40.0, 40.0)]
    for c in range(1, num_classes):
        hue = (c - 1) / max(1, num_classes - 1)
        # HSV (hue, 0.85, 0.95) -> RGB
        i, f = divmod(hue * 6.0, 1.0)
        v, s = 0.95, 0.85
        p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
        rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v)]
        rgb.append((v, p, q))
        colours.append(tuple(255.0 * x for x in rgb[int(i) % 6]))
    return np.asarray(colours, np.float32)


def make_synthetic_segmentation_arrays(
    num_examples: int,
    image_size: int | tuple[int, int] = 32,
    num_classes: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Makes a learnable segmentation problem as NumPy arrays.

    Each image has a dark grey background (class 0) and one to three
    rectangles or discs; a shape's class (1..num_classes-1) decides its
    colour, so a per-pixel colour classifier can learn the task. Later shapes
    cover earlier ones. Pixel noise (±12) keeps it from being trivial.

    Args:
        num_examples: int > 0.
        image_size: int or (height, width), each > 0.
        num_classes: int > 0, including the background class 0.
        seed: int. Same seed, same arrays.

    Returns:
        `(images, masks)`: images float32 [N, H, W, 3] in 0..255 and masks
        int32 [N, H, W] with values in 0..num_classes-1.

    Raises:
        ValueError: for a non-positive `num_examples`, `image_size` or
            `num_classes`.
    """
    num_examples = check_positive_int(num_examples, "num_examples")
    num_classes = check_positive_int(num_classes, "num_classes")
    height, width = standardize_image_size(image_size, allow_none=False)
    rng = np.random.default_rng(seed)
    colours = _class_colours(num_classes)
    yy, xx = np.mgrid[0:height, 0:width]
    masks = np.zeros((num_examples, height, width), np.int32)
    for n in range(num_examples):
        if num_classes == 1:
            continue
        for _ in range(rng.integers(1, 4)):
            cls = rng.integers(1, num_classes)
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry = rng.uniform(0.15, 0.35) * height
            rx = rng.uniform(0.15, 0.35) * width
            if rng.random() < 0.5:
                inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
            else:
                inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            masks[n][inside] = cls
    noise = rng.uniform(-12.0, 12.0, (num_examples, height, width, 3))
    images = np.clip(colours[masks] + noise, 0.0, 255.0).astype(np.float32)
    return images, masks


def make_synthetic_segmentation(
    num_examples: int,
    image_size: int | tuple[int, int] = 32,
    num_classes: int = 3,
    seed: int = 0,
    batch_size: int = 8,
    *,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Synthetic twin of the segmentation loaders, for tests and `--smoke`.

    The examples of `make_synthetic_segmentation_arrays`, batched in a fixed
    order in the loaders' output format.

    Args:
        num_examples: int > 0.
        image_size: int or (height, width).
        num_classes: int > 0, including the background class 0.
        seed: int.
        batch_size: int > 0; with `drop_remainder`, at most `num_examples`.
        drop_remainder: bool.

    Returns:
        A `tf.data.Dataset` of `(images, masks)`: images float32
        [B, H, W, 3] in 0..255 and masks int32 [B, H, W].

    Raises:
        ValueError: for non-positive arguments, or `batch_size` above
            `num_examples` with `drop_remainder=True` (an empty dataset).
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    images, masks = make_synthetic_segmentation_arrays(
        num_examples, image_size, num_classes, seed
    )
    if drop_remainder and batch_size > len(images):
        raise ValueError(
            f"Invalid value for argument `batch_size`: {batch_size} is more "
            f"than num_examples={len(images)}, so with `drop_remainder=True` "
            f"the dataset would be empty. Received: batch_size={batch_size}"
        )
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
