"""Tests for `keras_segattn.data.digit_captions`."""

import numpy as np
import pytest

from keras_segattn.data import digit_captions as dc


@pytest.mark.parametrize(
    "labels, cells, expected",
    [
        ([3, 7], [(0, 0), (0, 2)], "three left of seven"),
        ([7, 3], [(0, 2), (0, 0)], "three left of seven"),
        ([3, 7, 1], [(0, 0), (0, 1), (2, 0)], "three left of seven above one"),
        ([5, 2], [(1, 1), (0, 2)], "two above five"),
    ],
)
def test_grammar(labels, cells, expected):
    assert dc.caption_for(labels, cells) == expected


def test_canvases_put_each_digit_in_its_cell():
    digits = np.zeros((10, 28, 28), np.uint8)
    for label in range(10):
        digits[label, 4:24, 4:24] = 10 + label  # brightness encodes label
    images, captions = dc.make_digit_caption_arrays(
        digits, np.arange(10), 30, min_digits=2, max_digits=4, seed=3
    )
    assert images.shape == (30, 84, 84, 1) and images.dtype == np.uint8
    words = {w: i for i, w in enumerate(dc.DIGIT_WORDS)}
    for image, caption in zip(images[..., 0], captions, strict=True):
        found = []
        for row in range(3):
            for col in range(3):
                cell = image[28 * row : 28 * row + 28, 28 * col : 28 * col + 28]
                if cell.max() > 0:
                    found.append((int(cell.max()) - 10, (row, col)))
        assert 2 <= len(found) <= 4
        labels, cells = zip(*found, strict=True)
        assert dc.caption_for(list(labels), list(cells)) == caption
        assert all(
            w in words or w in ("left", "of", "above") for w in caption.split()
        )


def test_deterministic_and_synthetic_twin():
    a = dc.make_synthetic_digit_captions(8, seed=1)
    b = dc.make_synthetic_digit_captions(8, seed=1)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert set(" ".join(a[1]).split()) <= set(dc.CAPTION_VOCABULARY)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_digits": 0}, "min_digits"),
        ({"min_digits": 3, "max_digits": 2}, "max_digits"),
        ({"max_shift": 9}, "max_shift"),
    ],
)
def test_bad_arguments(kwargs, match):
    digits = np.zeros((4, 28, 28), np.uint8)
    with pytest.raises(ValueError, match=match):
        dc.make_digit_caption_arrays(digits, np.arange(4), 2, **kwargs)
    with pytest.raises(ValueError, match="digit_images"):
        dc.make_digit_caption_arrays(np.zeros((4, 20, 20)), np.arange(4), 2)
