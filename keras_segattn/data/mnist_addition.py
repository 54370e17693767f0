"""`tf.data` pipeline for MNIST addition, and its synthetic twin.

MNIST addition (Jaderberg et al., 2015, section 4.1): two MNIST digits on
one canvas, each with its own random rotation, scale and translation; the
label is their sum, 0..18. `make_mnist_addition_arrays` builds the canvases
from any digit images, `load_mnist_addition` from one MNIST split (see
`mnist.load_mnist_arrays`) and `make_synthetic_mnist_addition` from
seven-segment digits, for tests and `--smoke` runs.

The datasets yield `(images, sums)`: images float32 [B, S, S, 1] with
values in 0..255 and sums int32 [B], in fixed-size batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_segattn.data._mnist_pipeline import to_dataset
from keras_segattn.data.mnist import MNIST_SPLITS
from keras_segattn.data.mnist import load_mnist_arrays
from keras_segattn.data.synthetic_digits import make_synthetic_digits
from keras_segattn.validation import check_positive_int

PathLike = str | os.PathLike

MNIST_ADDITION_NUM_CLASSES = 19
"""Sums 0..18."""


def _warp_digits(
    digits: np.ndarray,
    canvas_size: int,
    centres: np.ndarray,
    angles: np.ndarray,
    scales: np.ndarray,
) -> np.ndarray:
    """Places digits [N, h, w] on canvases [N, S, S] (bilinear, zeros
    outside), rotated by `angles` (radians), scaled by `scales` and centred
    at `centres` [N, 2] (x, y in canvas pixels)."""
    num, height, width = digits.shape
    f32 = np.float32
    grid = np.arange(canvas_size, dtype=f32) + f32(0.5)
    u = grid[None, None, :] - centres[:, 0, None, None].astype(f32)
    v = grid[None, :, None] - centres[:, 1, None, None].astype(f32)
    cos = (np.cos(angles) / scales).astype(f32)[:, None, None]
    sin = (np.sin(angles) / scales).astype(f32)[:, None, None]
    # Inverse map: canvas offset -> digit pixel coordinates (centres 0..w-1).
    x = cos * u + sin * v + f32(width / 2 - 0.5)
    y = -sin * u + cos * v + f32(height / 2 - 0.5)
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx, fy = x - x0, y - y0
    # Zero border of 1 pixel; coordinates beyond it read the border.
    padded = np.pad(digits.astype(f32), ((0, 0), (1, 1), (1, 1)))
    flat = padded.reshape(-1)
    row_len, image_len = width + 2, (height + 2) * (width + 2)
    xi = np.clip(x0 + 1, 0, width).astype(np.int64)
    yi = np.clip(y0 + 1, 0, height).astype(np.int64)
    base = np.arange(num)[:, None, None] * image_len + yi * row_len + xi
    out = flat[base] * (1 - fx) * (1 - fy)
    out += flat[base + 1] * fx * (1 - fy)
    out += flat[base + row_len] * (1 - fx) * fy
    out += flat[base + row_len + 1] * fx * fy
    # Samples whose four corners all lie outside the digit are 0.
    touches = (x0 >= -1) & (x0 <= width - 1) & (y0 >= -1) & (y0 <= height - 1)
    return np.where(touches, out, f32(0))


def make_mnist_addition_arrays(
    digits: np.ndarray,
    labels: np.ndarray,
    num_examples: int,
    canvas_size: int = 48,
    seed: int = 0,
    *,
    max_rotation: float = 45.0,
    scale_range: Sequence[float] = (0.8, 1.1),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Builds the STN paper's MNIST-addition task from digit images.

    Each example draws two digits at random (independently, with
    replacement) and places them on one canvas, each with its own random
    rotation in [-max_rotation, max_rotation] degrees, scale in
    `scale_range` and translation: the first digit is centred in the left
    part of the canvas (x around 0.3 S), the second in the right part
    (x around 0.7 S), each jittered by up to 0.08 S horizontally and
    0.15 S vertically, so that they rarely overlap. Overlapping strokes
    take the maximum. The label is the sum of the two digits, 0..18.

    Args:
        digits: [N, h, w] digit images in 0..255 (uint8 or float).
        labels: [N] digit classes 0..9.
        num_examples: int > 0, canvases to make.
        canvas_size: int >= 2 * max(h, w) * 0.75, the side S.
        seed: int. Same seed, same arrays.
        max_rotation: float >= 0, degrees.
        scale_range: (low, high) with 0 < low <= high.

    Returns:
        `(images, sums, pair_labels)`: uint8 [num_examples, S, S, 1],
        int32 [num_examples] in 0..18 and int32 [num_examples, 2] (the two
        digits, left then right).

    Raises:
        ValueError: for mismatched `digits`/`labels`, a non-positive
            `num_examples` or a bad canvas size, rotation or scale range.
    """
    digits = np.asarray(digits)
    labels = np.asarray(labels).reshape(-1)
    if digits.ndim != 3 or len(digits) != len(labels) or not len(digits):
        raise ValueError(
            "Invalid value for argument `digits`. Expected [N, h, w] images "
            "with one label each. Received: digits.shape="
            f"{digits.shape} and labels.shape={labels.shape}."
        )
    num_examples = check_positive_int(num_examples, "num_examples")
    canvas_size = check_positive_int(canvas_size, "canvas_size")
    if canvas_size < 1.5 * max(digits.shape[1:]):
        raise ValueError(
            "Invalid value for argument `canvas_size`. Expected at least 1.5 "
            f"times the digit size {digits.shape[1:]} (two digits side by "
            f"side). Received: canvas_size={canvas_size}."
        )
    low, high = (float(s) for s in scale_range)
    if not 0 < low <= high:
        raise ValueError(
            "Invalid value for argument `scale_range`. Expected (low, high) "
            f"with 0 < low <= high. Received: scale_range={scale_range!r}."
        )
    if not max_rotation >= 0:
        raise ValueError(
            "Invalid value for argument `max_rotation`. Expected a "
            f"non-negative angle. Received: max_rotation={max_rotation!r}."
        )
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(digits), (num_examples, 2))
    angles = np.deg2rad(
        rng.uniform(-max_rotation, max_rotation, (2, num_examples))
    )
    scales = rng.uniform(low, high, (2, num_examples))
    jitter_x = rng.uniform(-0.08, 0.08, (2, num_examples)) * canvas_size
    jitter_y = rng.uniform(-0.15, 0.15, (2, num_examples)) * canvas_size
    images = np.zeros((num_examples, canvas_size, canvas_size, 1), np.uint8)
    chunk = 2048
    for start in range(0, num_examples, chunk):
        rows = slice(start, min(start + chunk, num_examples))
        canvas = np.zeros(
            (rows.stop - rows.start, canvas_size, canvas_size), np.float32
        )
        for k, position in enumerate((0.3, 0.7)):
            centres = np.stack(
                [
                    position * canvas_size + jitter_x[k, rows],
                    0.5 * canvas_size + jitter_y[k, rows],
                ],
                axis=-1,
            )
            warped = _warp_digits(
                digits[chosen[rows, k]],
                canvas_size,
                centres,
                angles[k, rows],
                scales[k, rows],
            )
            np.maximum(canvas, warped, out=canvas)
        images[rows, ..., 0] = np.clip(np.rint(canvas), 0, 255)
    pair_labels = labels[chosen].astype(np.int32)
    return images, pair_labels.sum(axis=1).astype(np.int32), pair_labels


def load_mnist_addition(
    data_dir: PathLike | None = None,
    split: str = "train",
    *,
    num_examples: int = 60_000,
    canvas_size: int = 48,
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int = 0,
    validation_size: int = 5000,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """The MNIST-addition task as a batched `tf.data.Dataset`.

    Digits of each canvas come from the same MNIST split (see
    `load_mnist_arrays`): the `"test"` split only uses the test pool
    (rows 50,000+), `"train"` only rows before the validation rows.

    Args:
        data_dir: folder holding `mnist_train.npz`, or the file itself.
        split: `"train"`, `"validation"` or `"test"`.
        num_examples: int > 0, canvases to build (once, in memory, uint8).
        canvas_size: int, side of the canvases.
        batch_size: int > 0.
        shuffle: bool; defaults to True for `"train"` only.
        seed: int. Draws and shuffles; each split adds its own offset so
            that splits never share a draw.
        validation_size: MNIST rows before 50,000 held out for
            `"validation"`.
        drop_remainder: bool.

    Returns:
        A dataset of `(images, sums)`: float32 [B, S, S, 1] in 0..255 and
        int32 [B] in 0..18.
    """
    digits, labels = load_mnist_arrays(
        data_dir, split, validation_size=validation_size
    )
    offset = MNIST_SPLITS.index(split)
    images, sums, _ = make_mnist_addition_arrays(
        digits, labels, num_examples, canvas_size, seed * 3 + offset
    )
    shuffle = split == "train" if shuffle is None else bool(shuffle)
    return to_dataset(
        images,
        sums,
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        f"MNIST addition {split!r}",
    )


def make_synthetic_mnist_addition(
    num_examples: int,
    canvas_size: int = 48,
    seed: int = 0,
    batch_size: int = 32,
    *,
    shuffle: bool = False,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Synthetic twin of `load_mnist_addition` (seven-segment digits).

    Args:
        num_examples: int > 0.
        canvas_size: int >= 42 (two 28-pixel digits).
        seed: int.
        batch_size: int > 0.
        shuffle: bool.
        drop_remainder: bool.

    Returns:
        A dataset of `(images, sums)`: float32 [B, S, S, 1] in 0..255 and
        int32 [B] in 0..18.
    """
    digits, labels = make_synthetic_digits(200, 28, seed)
    images, sums, _ = make_mnist_addition_arrays(
        digits, labels, num_examples, canvas_size, seed
    )
    return to_dataset(
        images,
        sums,
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        "the synthetic MNIST addition",
    )
