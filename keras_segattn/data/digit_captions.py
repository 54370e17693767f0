"""A measurable captioning task: MNIST digits on a canvas, described by a
fixed grammar ("three left of seven above one").

Each canvas (84x84 by default) is a 3x3 grid of 28x28 cells; 2-4 distinct
cells receive one MNIST digit each (with a random shift of up to
`max_shift` pixels inside the cell's margin). The caption names the digits
in reading order (top to bottom, then left to right) and joins consecutive
ones with the relation that holds between their cells: "left of" when they
share a row, "above" otherwise. So "three left of seven above one" is a
3 and a 7 side by side, with a 1 in a lower row. The caption is a function
of the image, and exact-match accuracy and BLEU are meaningful.

Train canvases use MNIST training digits (rows < 50,000 of
`mnist_train.npz`), test canvases the held-out test pool (rows 50,000+),
as `keras_segattn.data.mnist` splits them; `make_synthetic_digit_captions`
builds the same task from seven-segment digits for tests and `--smoke`.
"""

from __future__ import annotations

import numpy as np

DIGIT_WORDS = (
    "zero", "one", "two", "three", "four",
    "five", "six", "seven", "eight", "nine",
)  # fmt: skip
CAPTION_VOCABULARY = ("", "[UNK]", "[START]", "[END]", *DIGIT_WORDS,
                      "left", "of", "above")  # fmt: skip
"""Fixed vocabulary: padding, OOV, start and end tokens, then the words."""
GRID = 3
CELL = 28


def caption_for(labels, cells) -> str:
    """The caption of digits `labels` placed in grid `cells` (row, col)."""
    order = sorted(range(len(labels)), key=lambda i: tuple(cells[i]))
    words = [DIGIT_WORDS[labels[order[0]]]]
    for previous, current in zip(order, order[1:], strict=False):
        same_row = cells[previous][0] == cells[current][0]
        words += ["left", "of"] if same_row else ["above"]
        words.append(DIGIT_WORDS[labels[current]])
    return " ".join(words)


def make_digit_caption_arrays(
    digit_images: np.ndarray,
    digit_labels: np.ndarray,
    num_examples: int,
    *,
    min_digits: int = 2,
    max_digits: int = 4,
    max_shift: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Canvases and captions from a pool of 28x28 digits.

    Args:
        digit_images: [N, 28, 28] (or [N, 28, 28, 1]) digits with values
            0..255 (MNIST layout), uint8 or float.
        digit_labels: int [N] their classes 0..9.
        num_examples: canvases to make.
        min_digits, max_digits: digits per canvas, 1 <= min <= max <= 9.
        max_shift: random shift of each digit, pixels (0..4), clipped to the
            canvas.
        seed: NumPy seed.

    Returns:
        (images uint8 [num_examples, 84, 84, 1], captions list of str).
    """
    digit_images = np.asarray(digit_images)
    if digit_images.ndim == 4 and digit_images.shape[-1] == 1:
        digit_images = digit_images[..., 0]
    if digit_images.dtype != np.uint8:  # float digits in 0..255
        digit_images = np.clip(np.round(digit_images), 0, 255).astype(np.uint8)
    if digit_images.ndim != 3 or digit_images.shape[1:] != (CELL, CELL):
        raise ValueError(
            "Invalid shape for argument `digit_images`. Expected "
            f"[N, {CELL}, {CELL}]. Received: {digit_images.shape}."
        )
    if len(digit_labels) != len(digit_images):
        raise ValueError(
            "Mismatched lengths of `digit_images` and `digit_labels`: "
            f"{len(digit_images)} and {len(digit_labels)}."
        )
    if not 1 <= min_digits <= max_digits <= GRID * GRID:
        raise ValueError(
            "Invalid values for arguments `min_digits`, `max_digits`. "
            f"Expected 1 <= min_digits <= max_digits <= {GRID * GRID}. "
            f"Received: min_digits={min_digits}, max_digits={max_digits}."
        )
    if not 0 <= max_shift <= 4:
        raise ValueError(
            "Invalid value for argument `max_shift`. Expected 0..4. "
            f"Received: max_shift={max_shift}."
        )
    rng = np.random.default_rng(seed)
    size = GRID * CELL
    canvases = np.zeros((num_examples, size, size), np.uint8)
    captions = []
    for n in range(num_examples):
        count = int(rng.integers(min_digits, max_digits + 1))
        flat_cells = rng.choice(GRID * GRID, size=count, replace=False)
        cells = [(int(c) // GRID, int(c) % GRID) for c in flat_cells]
        picks = rng.integers(0, len(digit_images), size=count)
        for (row, col), pick in zip(cells, picks, strict=True):
            dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
            top = int(np.clip(row * CELL + dy, 0, size - CELL))
            left = int(np.clip(col * CELL + dx, 0, size - CELL))
            window = canvases[n, top : top + CELL, left : left + CELL]
            np.maximum(window, digit_images[pick], out=window)
        captions.append(
            caption_for([int(digit_labels[p]) for p in picks], cells)
        )
    return canvases[..., None], captions


def make_synthetic_digit_captions(
    num_examples: int = 64, seed: int = 0, **kwargs
) -> tuple[np.ndarray, list[str]]:
    """The task from seven-segment digits (no data files needed)."""
    from keras_segattn.data.synthetic_digits import make_synthetic_digits

    images, labels = make_synthetic_digits(200, size=CELL, seed=seed)
    return make_digit_caption_arrays(
        images, labels, num_examples, seed=seed, **kwargs
    )
