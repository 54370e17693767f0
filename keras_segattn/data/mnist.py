"""`tf.data` pipelines for the spatial-transformer digit tasks.

- Cluttered MNIST 40x40 (the `cluttered_mnist_40x40_trainval.npz` file of
  the TensorFlow/Lasagne spatial-transformer examples): one MNIST digit at a
  random position among random 5x5 clutter fragments.
- MNIST (`mnist_train.npz`, the 60,000 standard training digits; rows
  50,000+ are the *test pool*: train only on rows < 50,000).
- MNIST addition (Jaderberg et al., 2015, section 4.1): two MNIST digits on
  one canvas, each with its own random rotation, scale and translation;
  the label is their sum, 0..18.

Every pipeline yields `(images, labels)`: images float32 [B, H, W, 1] with
values in 0..255 (no normalisation: the models and serving signatures
rescale in the graph, as for the segmentation data) and labels int32 [B].
Batches keep a fixed size (`drop_remainder=True`) so that an XLA-compiled
step compiles once. Each loader has a synthetic twin
(`make_synthetic_cluttered_mnist`, `make_synthetic_mnist_addition`) built
from seven-segment digits, for tests and `--smoke` runs.

The data pipelines are TensorFlow-only by design; this module imports
nothing from the rest of the package.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_segattn.validation import check_non_negative_int
from keras_segattn.validation import check_positive_int
from keras_segattn.validation import check_split

PathLike = str | os.PathLike

CLUTTERED_MNIST_FILE = "cluttered_mnist_40x40_trainval.npz"
"""File name of the cluttered MNIST archive (../shared/data/cluttered_mnist)."""
CLUTTERED_MNIST_SAMPLE_FILE = "sample.npz"
"""File name of the embedded sample (sample_data/cluttered_mnist)."""
CLUTTERED_MNIST_IMAGE_SIZE = 40
MNIST_FILE = "mnist_train.npz"
"""File name of the MNIST archive (../shared/data/mnist)."""
MNIST_TEST_POOL_START = 50_000
"""Rows from here on are the MNIST test pool, never used for training."""
MNIST_ADDITION_NUM_CLASSES = 19
"""Sums 0..18."""

CLUTTERED_MNIST_SPLITS = ("train", "validation", "test")
MNIST_SPLITS = ("train", "validation", "test")

_SHUFFLE_BUFFER = 10_000


# --------------------------------------------------------------------------
def _resolve_file(data_dir: PathLike, names: Sequence[str]) -> Path:
    """`data_dir` itself if it is a file, else the first of `names` in it."""
    path = Path(data_dir)
    if path.is_file():
        return path
    if path.is_dir():
        for name in names:
            if (path / name).is_file():
                return path / name
        raise ValueError(
            f"Invalid value for argument `data_dir`. Expected a folder "
            f"holding {' or '.join(names)}. Received: data_dir={str(path)!r}"
            f" (no such file in it: {str(path / names[0])!r})."
        )
    raise ValueError(
        f"Invalid value for argument `data_dir`. Expected an existing folder "
        f"(or .npz file) holding {names[0]}. Received: "
        f"data_dir={str(path)!r}, which does not exist."
    )


def _read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Reads `keys` from an .npz archive, or raises a ValueError naming it."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise ValueError(
                    f"Corrupt or unexpected archive {str(path)!r}: missing "
                    f"arrays {missing}; it holds {sorted(archive.files)}."
                )
            return {k: np.asarray(archive[k]) for k in keys}
    except ValueError as error:
        if str(path) in str(error):
            raise
        raise ValueError(
            f"Could not read the archive {str(path)!r}: {error}"
        ) from error
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(
            f"Could not read the archive {str(path)!r} (missing, truncated "
            f"or not an .npz file): {type(error).__name__}: {error}"
        ) from error


def _check_arrays(path, images, labels, image_key, label_key, pixels):
    if images.ndim < 2 or images.shape[0] != len(labels):
        raise ValueError(
            f"Corrupt archive {str(path)!r}: `{image_key}` has shape "
            f"{images.shape} but `{label_key}` has {len(labels)} labels."
        )
    if int(np.prod(images.shape[1:])) != pixels:
        raise ValueError(
            f"Corrupt archive {str(path)!r}: expected {pixels} pixels per "
            f"image in `{image_key}`. Received shape {images.shape}."
        )


def _to_dataset(
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


# --------------------------------------------------------------------------
# Cluttered MNIST


def load_cluttered_mnist_arrays(
    data_dir: PathLike = "../shared/data/cluttered_mnist",
    split: str = "train",
    *,
    validation_size: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split of cluttered MNIST 40x40 as NumPy arrays.

    The archive's own `X_train`/`y_train` (10,000 images) and `X_valid`/
    `y_valid` (1,000) are used as follows, since its test part is held out
    of ../shared/data:

    - `"train"`: `X_train` without its last `validation_size` rows;
    - `"validation"`: the last `validation_size` rows of `X_train` (for
      model selection and early stopping);
    - `"test"`: `X_valid`, the split to report errors on.

    Args:
        data_dir: folder holding `cluttered_mnist_40x40_trainval.npz` (or
            the embedded `sample.npz`), or the .npz file itself.
        split: `"train"`, `"validation"` or `"test"`.
        validation_size: int >= 0, rows of `X_train` held out; must leave
            at least one training row.

    Returns:
        `(images, labels)`: images float32 [N, 40, 40, 1] in 0..255 and
        labels int32 [N] in 0..9.

    Raises:
        ValueError: for a missing or unreadable archive (the message names
            the file), arrays of unexpected shapes, an unknown split or a
            bad `validation_size`.
    """
    split = check_split(split, CLUTTERED_MNIST_SPLITS)
    validation_size = check_non_negative_int(validation_size, "validation_size")
    path = _resolve_file(
        data_dir, (CLUTTERED_MNIST_FILE, CLUTTERED_MNIST_SAMPLE_FILE)
    )
    keys = ("X_valid", "y_valid") if split == "test" else ("X_train", "y_train")
    arrays = _read_npz(path, keys)
    images = arrays[keys[0]]
    labels = arrays[keys[1]].reshape(-1)
    size = CLUTTERED_MNIST_IMAGE_SIZE
    _check_arrays(path, images, labels, keys[0], keys[1], size * size)
    if split != "test":
        if validation_size >= len(images):
            raise ValueError(
                f"Invalid value for argument `validation_size`. Expected "
                f"fewer than the {len(images)} training rows of "
                f"{str(path)!r}. Received: validation_size={validation_size}."
            )
        cut = len(images) - validation_size
        rows = slice(0, cut) if split == "train" else slice(cut, None)
        images, labels = images[rows], labels[rows]
    images = images.reshape(-1, size, size, 1).astype("float32") * 255.0
    return images, labels.astype("int32")


def load_cluttered_mnist(
    data_dir: PathLike = "../shared/data/cluttered_mnist",
    split: str = "train",
    *,
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int | None = 0,
    validation_size: int = 1000,
    drop_remainder: bool = True,
    max_shift: int = 0,
) -> tf.data.Dataset:
    """Cluttered MNIST 40x40 as a batched `tf.data.Dataset`.

    Args:
        data_dir: folder with the archive (see
            `load_cluttered_mnist_arrays`), or the .npz file.
        split: `"train"`, `"validation"` (held out of `X_train`) or
            `"test"` (the archive's `X_valid`).
        batch_size: int > 0.
        shuffle: bool; defaults to True for `"train"` only (reshuffled
            every epoch).
        seed: shuffle seed.
        validation_size: rows of `X_train` held out for `"validation"`.
        drop_remainder: bool. Drop a last, smaller batch.
        max_shift: int >= 0. Augmentation: translate each image by a
            random whole number of pixels in [-max_shift, max_shift] per
            axis, zeros shifted in, new draws every epoch (0: off).

    Returns:
        A dataset of `(images, labels)`: float32 [B, 40, 40, 1] in 0..255
        and int32 [B].

    Raises:
        ValueError: see `load_cluttered_mnist_arrays`; also for a
            `batch_size` that leaves no batch.
    """
    max_shift = check_non_negative_int(max_shift, "max_shift")
    images, labels = load_cluttered_mnist_arrays(
        data_dir, split, validation_size=validation_size
    )
    shuffle = split == "train" if shuffle is None else bool(shuffle)
    return _to_dataset(
        images,
        labels,
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        f"cluttered MNIST {split!r}",
        max_shift=max_shift,
    )


# Seven-segment digits: segments a (top), b (top right), c (bottom right),
# d (bottom), e (bottom left), f (top left), g (middle).
_SEGMENTS = {
    0: "abcdef",
    1: "bc",
    2: "abged",
    3: "abgcd",
    4: "fgbc",
    5: "afgcd",
    6: "afgedc",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}


def _seven_segment_digit(
    digit: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """A float32 [size, size] seven-segment digit in 0..1, with random
    stroke width, box and slant."""
    image = np.zeros((size, size), np.float32)
    width = rng.uniform(0.28, 0.42) * size
    height = rng.uniform(0.6, 0.78) * size
    left = (size - width) / 2 + rng.uniform(-0.05, 0.05) * size
    top = (size - height) / 2 + rng.uniform(-0.05, 0.05) * size
    thick = max(1.0, rng.uniform(0.08, 0.12) * size)
    slant = rng.uniform(-0.15, 0.15)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    xx = xx + slant * (yy - size / 2)
    right, bottom, middle = left + width, top + height, top + height / 2
    boxes = {
        "a": (left, top, right, top + thick),
        "g": (left, middle - thick / 2, right, middle + thick / 2),
        "d": (left, bottom - thick, right, bottom),
        "f": (left, top, left + thick, middle),
        "b": (right - thick, top, right, middle),
        "e": (left, middle, left + thick, bottom),
        "c": (right - thick, middle, right, bottom),
    }
    for segment in _SEGMENTS[int(digit)]:
        x1, y1, x2, y2 = boxes[segment]
        inside = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
        image[inside] = 1.0
    return image


def make_synthetic_digits(
    num_examples: int, size: int = 28, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seven-segment digits, a synthetic stand-in for MNIST digits.

    Args:
        num_examples: int > 0.
        size: int >= 8, the side of each digit image.
        seed: int.

    Returns:
        `(digits, labels)`: float32 [N, size, size] in 0..255 and int32 [N]
        (balanced classes, shuffled).
    """
    num_examples = check_positive_int(num_examples, "num_examples")
    size = check_positive_int(size, "size")
    if size < 8:
        raise ValueError(
            "Invalid value for argument `size`. Expected at least 8 pixels. "
            f"Received: size={size}."
        )
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_examples) % 10).astype(np.int32)
    digits = np.stack([_seven_segment_digit(d, size, rng) for d in labels])
    return digits * 255.0, labels


def make_synthetic_cluttered_mnist_arrays(
    num_examples: int,
    image_size: int = 40,
    seed: int = 0,
    *,
    num_clutter: int = 5,
    clutter_size: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic cluttered digits in the format of the cluttered MNIST data.

    Each image holds one seven-segment digit (side `min(28, image_size)`)
    at a random position and `num_clutter` random `clutter_size` squares
    cut from other digits, as the cluttered MNIST generator does with
    MNIST digits.

    Args:
        num_examples: int > 0.
        image_size: int >= 12, side of the square images.
        seed: int. Same seed, same arrays.
        num_clutter: int >= 0, clutter fragments per image.
        clutter_size: int > 0, side of each fragment.

    Returns:
        `(images, labels)`: float32 [N, S, S, 1] in 0..255, int32 [N].

    Raises:
        ValueError: for a non-positive `num_examples`, an `image_size`
            below 12 or bad clutter arguments.
    """
    num_examples = check_positive_int(num_examples, "num_examples")
    image_size = check_positive_int(image_size, "image_size")
    if image_size < 12:
        raise ValueError(
            "Invalid value for argument `image_size`. Expected at least 12 "
            f"pixels. Received: image_size={image_size}."
        )
    num_clutter = check_non_negative_int(num_clutter, "num_clutter")
    clutter_size = check_positive_int(clutter_size, "clutter_size")
    digit_size = min(28, image_size)
    clutter_size = min(clutter_size, digit_size)
    digits, labels = make_synthetic_digits(2 * num_examples, digit_size, seed)
    rng = np.random.default_rng(seed + 1)
    images = np.zeros((num_examples, image_size, image_size), np.float32)
    span = image_size - digit_size + 1
    for n in range(num_examples):
        for _ in range(num_clutter):
            source = digits[rng.integers(num_examples, 2 * num_examples)]
            sy, sx = rng.integers(0, digit_size - clutter_size + 1, 2)
            dy, dx = rng.integers(0, image_size - clutter_size + 1, 2)
            patch = source[sy : sy + clutter_size, sx : sx + clutter_size]
            region = images[n, dy : dy + clutter_size, dx : dx + clutter_size]
            np.maximum(region, patch, out=region)
        y, x = rng.integers(0, span, 2)
        region = images[n, y : y + digit_size, x : x + digit_size]
        np.maximum(region, digits[n], out=region)
    return images[..., None], labels[:num_examples]


def make_synthetic_cluttered_mnist(
    num_examples: int,
    image_size: int = 40,
    seed: int = 0,
    batch_size: int = 32,
    *,
    shuffle: bool = False,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Synthetic twin of `load_cluttered_mnist`, for tests and `--smoke`.

    Args:
        num_examples: int > 0.
        image_size: int >= 12.
        seed: int.
        batch_size: int > 0; with `drop_remainder`, at most `num_examples`.
        shuffle: bool.
        drop_remainder: bool.

    Returns:
        A dataset of `(images, labels)`: float32 [B, S, S, 1] in 0..255 and
        int32 [B].
    """
    images, labels = make_synthetic_cluttered_mnist_arrays(
        num_examples, image_size, seed
    )
    return _to_dataset(
        images,
        labels,
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        "the synthetic cluttered MNIST",
    )


# --------------------------------------------------------------------------
# MNIST


def load_mnist_arrays(
    data_dir: PathLike = "../shared/data/mnist",
    split: str = "train",
    *,
    validation_size: int = 5000,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split of `mnist_train.npz` (uint8 [60000, 28, 28]).

    Rows 50,000-59,999 are the *test pool* (the standard MNIST test set is
    held out of ../shared/data; see its README): never train on them.

    - `"train"`: rows 0 .. 49,999 - `validation_size`;
    - `"validation"`: the `validation_size` rows before 50,000;
    - `"test"`: rows 50,000 .. 59,999.

    Args:
        data_dir: folder holding `mnist_train.npz`, or the file itself.
        split: `"train"`, `"validation"` or `"test"`.
        validation_size: int in [0, 50000).

    Returns:
        `(digits, labels)`: uint8 [N, 28, 28] in 0..255 and int32 [N].

    Raises:
        ValueError: for a missing or unreadable archive (the message names
            the file), unexpected arrays, an unknown split or a bad
            `validation_size`.
    """
    split = check_split(split, MNIST_SPLITS)
    validation_size = check_non_negative_int(validation_size, "validation_size")
    if validation_size >= MNIST_TEST_POOL_START:
        raise ValueError(
            "Invalid value for argument `validation_size`. Expected fewer "
            f"than {MNIST_TEST_POOL_START}. Received: "
            f"validation_size={validation_size}."
        )
    path = _resolve_file(data_dir, (MNIST_FILE,))
    arrays = _read_npz(path, ("x", "y"))
    digits, labels = arrays["x"], arrays["y"].reshape(-1)
    _check_arrays(path, digits, labels, "x", "y", 28 * 28)
    if len(digits) <= MNIST_TEST_POOL_START:
        raise ValueError(
            f"Corrupt archive {str(path)!r}: expected the 60,000 MNIST "
            f"training digits (test pool from row {MNIST_TEST_POOL_START}). "
            f"Received {len(digits)} rows."
        )
    cut = MNIST_TEST_POOL_START - validation_size
    rows = {
        "train": slice(0, cut),
        "validation": slice(cut, MNIST_TEST_POOL_START),
        "test": slice(MNIST_TEST_POOL_START, None),
    }[split]
    digits = digits[rows].reshape(-1, 28, 28)
    return digits.astype(np.uint8), labels[rows].astype(np.int32)


def load_mnist(
    data_dir: PathLike = "../shared/data/mnist",
    split: str = "train",
    *,
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int | None = 0,
    validation_size: int = 5000,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """MNIST digits as a batched `tf.data.Dataset`.

    Args:
        data_dir: folder holding `mnist_train.npz`, or the file itself.
        split: `"train"`, `"validation"` or `"test"` (the test pool, rows
            50,000+); see `load_mnist_arrays`.
        batch_size: int > 0.
        shuffle: bool; defaults to True for `"train"` only.
        seed: shuffle seed.
        validation_size: rows before 50,000 held out for `"validation"`.
        drop_remainder: bool.

    Returns:
        A dataset of `(images, labels)`: float32 [B, 28, 28, 1] in 0..255
        and int32 [B].
    """
    digits, labels = load_mnist_arrays(
        data_dir, split, validation_size=validation_size
    )
    shuffle = split == "train" if shuffle is None else bool(shuffle)
    return _to_dataset(
        digits[..., None],
        labels,
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        f"MNIST {split!r}",
    )


# --------------------------------------------------------------------------
# MNIST addition


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
    data_dir: PathLike = "../shared/data/mnist",
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
    return _to_dataset(
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
    return _to_dataset(
        images,
        sums,
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        "the synthetic MNIST addition",
    )
