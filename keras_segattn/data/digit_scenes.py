"""Instance-segmentation scenes of MNIST digits: a measurable detection task.

Each scene is a black canvas (128x128 by default) holding 2-5 MNIST digits
at random scales and places. Every digit is one instance: its class is the
digit, its mask the digit's ink (pixels above `ink_threshold` after
resizing) and its box the tight box of that mask, in absolute pixels
(ymin, xmin, ymax, xmax), exclusive ends, the TF Object Detection API's
format. Digits are pasted in order; where a later digit's ink covers an
earlier one, those pixels belong to the later digit only, so masks never
overlap. `max_overlap` bounds the IoU between any two boxes of a scene:
0 (the default) keeps boxes disjoint.

Train scenes are built from MNIST training digits (rows < 50,000 of
`mnist_train.npz`), test scenes from the held-out test pool (rows 50,000+),
as `keras_segattn.data.mnist.load_mnist_arrays` splits them;
`make_synthetic_digit_scenes` builds the same task from seven-segment
digits for tests and `--smoke`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_segattn.validation import check_int
from keras_segattn.validation import check_rate

SCENE_KEYS = ("images", "boxes", "classes", "masks")
DIGIT_SIZE = 28
_MAX_PLACEMENT_TRIES = 50


def _box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one (y1, x1, y2, x2) box with each row of `others`."""
    top_left = np.maximum(box[:2], others[:, :2])
    bottom_right = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    return inter / (area + areas - inter)


def _scaled_digit(digit: np.ndarray, size: int) -> np.ndarray:
    if size == digit.shape[0]:
        return digit
    image = Image.fromarray(digit).resize((size, size), Image.BILINEAR)
    return np.asarray(image)


def make_digit_scene_arrays(
    digit_images: np.ndarray,
    digit_labels: np.ndarray,
    num_examples: int,
    *,
    image_size: int = 128,
    min_digits: int = 2,
    max_digits: int = 5,
    scale_range: Sequence[float] = (0.8, 1.6),
    max_overlap: float = 0.0,
    ink_threshold: int = 96,
    channels: int = 3,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Scenes, boxes, classes and masks from a pool of 28x28 digits.

    Args:
        digit_images: [N, 28, 28] (or [N, 28, 28, 1]) digits, 0..255.
        digit_labels: int [N], their classes 0..9.
        num_examples: int > 0, scenes to make.
        image_size: int >= 32, canvas side in pixels.
        min_digits, max_digits: instances per scene, 1 <= min <= max.
        scale_range: (low, high) factors applied to the 28-pixel digits,
            0 < low <= high, and 28 * high <= image_size.
        max_overlap: float in [0, 1), the largest box IoU allowed between
            two instances of a scene (0: disjoint boxes). A digit that
            finds no place in 50 tries is left out, so a crowded scene can
            hold fewer than `min_digits` instances.
        ink_threshold: int in 1..254, pixel value from which a pixel belongs
            to the digit's mask.
        channels: 1 or 3 (grey replicated, the detectors' RGB input).
        seed: NumPy seed.

    Returns:
        dict of NumPy arrays with M = `max_digits`, padding rows -1 (boxes,
        classes) or 0 (masks):
        `images` uint8 [num_examples, S, S, channels], `boxes` float32
        [num_examples, M, 4] (ymin, xmin, ymax, xmax) pixels, `classes`
        int32 [num_examples, M], `masks` uint8 [num_examples, M, S, S] of
        0/1.

    Raises:
        ValueError: for a bad argument (named in the message).
    """
    digit_images = np.asarray(digit_images)
    if digit_images.ndim == 4 and digit_images.shape[-1] == 1:
        digit_images = digit_images[..., 0]
    if digit_images.ndim != 3 or digit_images.shape[1:] != (
        DIGIT_SIZE,
        DIGIT_SIZE,
    ):
        raise ValueError(
            "Invalid shape for argument `digit_images`. Expected "
            f"[N, {DIGIT_SIZE}, {DIGIT_SIZE}]. Received: "
            f"digit_images.shape={digit_images.shape}."
        )
    digit_images = np.clip(np.round(digit_images), 0, 255).astype(np.uint8)
    digit_labels = np.asarray(digit_labels).reshape(-1)
    if len(digit_labels) != len(digit_images) or len(digit_images) == 0:
        raise ValueError(
            "Invalid value for argument `digit_labels`. Expected one label "
            "per digit image, and at least one digit. Received: "
            f"{len(digit_labels)} labels for {len(digit_images)} images."
        )
    num_examples = check_int(num_examples, "num_examples", minimum=1)
    image_size = check_int(image_size, "image_size", minimum=32)
    min_digits = check_int(min_digits, "min_digits", minimum=1)
    max_digits = check_int(max_digits, "max_digits", minimum=min_digits)
    ink_threshold = check_int(
        ink_threshold, "ink_threshold", minimum=1, maximum=254
    )
    if channels not in (1, 3):
        raise ValueError(
            "Invalid value for argument `channels`. Expected 1 or 3. "
            f"Received: channels={channels!r}."
        )
    low, high = (float(s) for s in scale_range)
    if not 0 < low <= high or DIGIT_SIZE * high > image_size:
        raise ValueError(
            "Invalid value for argument `scale_range`. Expected 0 < low <= "
            f"high with {DIGIT_SIZE} * high <= image_size={image_size}. "
            f"Received: scale_range={tuple(scale_range)!r}."
        )
    check_rate(max_overlap, "max_overlap")

    rng = np.random.default_rng(seed)
    images = np.zeros((num_examples, image_size, image_size), np.uint8)
    boxes = np.full((num_examples, max_digits, 4), -1.0, np.float32)
    classes = np.full((num_examples, max_digits), -1, np.int32)
    masks = np.zeros(
        (num_examples, max_digits, image_size, image_size), np.uint8
    )
    for n in range(num_examples):
        count = int(rng.integers(min_digits, max_digits + 1))
        placed = 0
        for pick in rng.integers(0, len(digit_images), size=count):
            size = int(round(DIGIT_SIZE * rng.uniform(low, high)))
            digit = _scaled_digit(digit_images[pick], size)
            ink = digit >= ink_threshold
            if not ink.any():
                continue
            rows, cols = np.nonzero(ink)
            # Tight box of the ink inside the digit's square.
            inner = np.array(
                [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
            )
            for _ in range(_MAX_PLACEMENT_TRIES):
                top, left = rng.integers(0, image_size - size + 1, size=2)
                box = inner + np.array([top, left, top, left])
                if placed == 0 or (
                    _box_iou(box, boxes[n, :placed].astype(np.int64)).max()
                    <= max_overlap
                ):
                    break
            else:
                continue
            window = (slice(top, top + size), slice(left, left + size))
            canvas = images[n][window]
            canvas[ink] = digit[ink]
            canvas[~ink] = np.maximum(canvas[~ink], digit[~ink])
            # The new digit occludes earlier instances' masks.
            masks[n, :placed][(slice(None), *window)] &= ~ink
            masks[n, placed][window] = ink
            boxes[n, placed] = box
            classes[n, placed] = int(digit_labels[pick])
            placed += 1
        # Occlusion can shrink an earlier mask: recompute its tight box.
        for i in range(placed):
            rows, cols = np.nonzero(masks[n, i])
            if len(rows) == 0:
                boxes[n, i], classes[n, i] = -1.0, -1
                continue
            boxes[n, i] = [
                rows.min(),
                cols.min(),
                rows.max() + 1,
                cols.max() + 1,
            ]
    images = images[..., None]
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    return {
        "images": images,
        "boxes": boxes,
        "classes": classes,
        "masks": masks,
    }


def load_digit_scene_arrays(
    data_dir=None,
    split: str = "train",
    num_examples: int = 1000,
    *,
    validation_size: int = 5000,
    seed: int | None = None,
    **kwargs,
) -> dict[str, np.ndarray]:
    """Scenes from the MNIST split `split` (`"train"`, `"validation"` or
    `"test"`, see `load_mnist_arrays`): test scenes only use test-pool
    digits. `seed` defaults to a different value per split. Other keyword
    arguments go to `make_digit_scene_arrays`."""
    from keras_segattn.data.mnist import load_mnist_arrays

    digits, labels = load_mnist_arrays(
        data_dir, split, validation_size=validation_size
    )
    if seed is None:
        seed = {"train": 0, "validation": 1, "test": 2}[split]
    return make_digit_scene_arrays(
        digits, labels, num_examples, seed=seed, **kwargs
    )


def make_synthetic_digit_scenes(
    num_examples: int = 16, seed: int = 0, **kwargs
) -> dict[str, np.ndarray]:
    """The task from seven-segment digits (no data files needed)."""
    from keras_segattn.data.synthetic_digits import make_synthetic_digits

    digits, labels = make_synthetic_digits(100, size=DIGIT_SIZE, seed=seed)
    return make_digit_scene_arrays(
        digits, labels, num_examples, seed=seed, **kwargs
    )


def make_digit_scene_dataset(
    scenes: dict[str, np.ndarray],
    batch_size: int = 8,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """`(images, targets)` batches for `FasterRCNN.fit`: images float32
    [B, S, S, C] in 0..255 and targets `{"boxes", "classes", "masks"}`
    (masks float32). Generated scenes need no augmentation: make more of
    them instead."""
    missing = [key for key in SCENE_KEYS if key not in scenes]
    if missing:
        raise ValueError(
            "Invalid value for argument `scenes`. Expected the keys "
            f"{SCENE_KEYS} (see make_digit_scene_arrays). Missing: {missing}."
        )
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    dataset = tf.data.Dataset.from_tensor_slices(
        {key: scenes[key] for key in SCENE_KEYS}
    )
    if shuffle:
        dataset = dataset.shuffle(
            len(scenes["images"]), seed=seed, reshuffle_each_iteration=True
        )

    def to_example(scene):
        images = tf.cast(scene["images"], tf.float32)
        masks = tf.cast(scene["masks"], tf.float32)
        targets = {
            "boxes": scene["boxes"],
            "classes": scene["classes"],
            "masks": masks,
        }
        return images, targets

    dataset = dataset.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(
        tf.data.AUTOTUNE
    )
