"""Seven-segment digits, a synthetic stand-in for MNIST digits.

`make_synthetic_digits` draws balanced, shuffled digit images with random
stroke width, box and slant. The synthetic twins of the MNIST-family
loaders (`make_synthetic_cluttered_mnist`, `make_synthetic_mnist_addition`)
and of the digit scenes and captions are built from them, for tests and
`--smoke` runs that need no data files.
"""

from __future__ import annotations

import numpy as np

from keras_segattn.validation import check_positive_int

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
