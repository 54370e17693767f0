"""Tests for `keras_segattn.ops.sample_balanced`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops.sample_balanced import sample_balanced


def _labels(counts, num_boxes, seed=0):
    """int32 [len(counts), num_boxes]: per row (positives, negatives), the
    rest ignored (-1), shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    for positives, negatives in counts:
        row = np.full(num_boxes, -1, "int32")
        row[:positives] = 1
        row[positives : positives + negatives] = 0
        rows.append(rng.permutation(row))
    return np.stack(rows)


def _check_sample(labels, index, sampled, num_samples, fraction):
    index, sampled = np.asarray(index), np.asarray(sampled)
    assert index.shape == sampled.shape == (len(labels), num_samples)
    assert index.dtype == sampled.dtype == np.int32
    for row, idx, lab in zip(labels, index, sampled, strict=True):
        positives, negatives = np.sum(row == 1), np.sum(row == 0)
        expected_pos = min(positives, int(num_samples * fraction))
        expected_neg = min(num_samples - expected_pos, negatives)
        # Positives first, then negatives, then empty slots.
        expected = [1] * expected_pos + [0] * expected_neg
        expected += [-1] * (num_samples - len(expected))
        np.testing.assert_array_equal(lab, expected)
        taken = idx[lab >= 0]
        assert len(set(taken)) == len(taken)  # no duplicates
        np.testing.assert_array_equal(row[taken], lab[lab >= 0])
        np.testing.assert_array_equal(idx[lab < 0], 0)


@pytest.mark.parametrize(
    "counts, num_boxes, num_samples, fraction",
    [
        ([(100, 400), (3, 400), (0, 50), (200, 10)], 600, 256, 0.5),
        ([(40, 60), (5, 5), (0, 0)], 120, 64, 0.25),
        ([(3, 4)], 10, 32, 0.5),  # fewer boxes than slots
        ([(30, 30)], 80, 16, 0.0),
        ([(30, 30), (2, 30)], 80, 16, 1.0),
    ],
)
def test_counts_and_labels(counts, num_boxes, num_samples, fraction):
    labels = _labels(counts, num_boxes)
    index, sampled = sample_balanced(labels, num_samples, fraction, seed=1)
    _check_sample(labels, index, sampled, num_samples, fraction)


def test_uniform_random_subsets():
    # 2000 identical rows: each of 20 positives is drawn with probability
    # 4 / 20 and each of 50 negatives with probability 12 / 50.
    row = _labels([(20, 50)], 80)[0]
    labels = np.tile(row, (2000, 1))
    index, sampled = sample_balanced(labels, 16, 0.25, seed=7)
    index, sampled = np.asarray(index), np.asarray(sampled)
    counts = np.bincount(index[sampled >= 0], minlength=80) / 2000
    np.testing.assert_allclose(counts[row == 1], 4 / 20, atol=0.04)
    np.testing.assert_allclose(counts[row == 0], 12 / 50, atol=0.04)
    np.testing.assert_array_equal(counts[row == -1], 0.0)


def test_seed_generator_draws_afresh_under_xla():
    labels = _labels([(30, 60)], 100)
    generator = keras.random.SeedGenerator(3)

    @tf.function(jit_compile=True)
    def draw(labels):
        return sample_balanced(labels, 32, 0.5, seed=generator)

    first, second = (np.asarray(draw(labels)[0]) for _ in range(2))
    assert not np.array_equal(first, second)
    _check_sample(labels, *draw(labels), 32, 0.5)
    fixed = [np.asarray(sample_balanced(labels, 32, 0.5, seed=5)[0])] * 2
    np.testing.assert_array_equal(*fixed)


@pytest.mark.parametrize(
    "labels, kwargs, error, match",
    [
        (np.zeros((2, 5), "float32"), {}, TypeError, "labels.dtype=float32"),
        (np.zeros(5, "int32"), {}, ValueError, "labels.shape=(5,)"),
        (
            np.zeros((2, 5), "int32"),
            {"num_samples": 0},
            ValueError,
            "Received: num_samples=0",
        ),
        (
            np.zeros((2, 5), "int32"),
            {"positive_fraction": 1.5},
            ValueError,
            "Received: positive_fraction=1.5",
        ),
    ],
)
def test_errors(labels, kwargs, error, match):
    arguments = {"num_samples": 4, "positive_fraction": 0.5, **kwargs}
    with pytest.raises(error, match=re.escape(match)):
        sample_balanced(labels, **arguments)
