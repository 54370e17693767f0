"""Tests for `keras_segattn.metrics.cell_correlation`."""

import re

import numpy as np
import pytest

from keras_segattn.metrics import cell_correlation

TEXT = 'He said, "Go now."\nShe didn\'t.\n"Why?" he asked.\n'


def test_text_features_by_hand():
    features = cell_correlation.text_features('a "bc" d\nx "y\nz')
    # a _ " b c " _ d \n x _ " y \n z
    np.testing.assert_array_equal(
        features["inside_quotes"],
        [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0],
    )
    np.testing.assert_array_equal(
        features["line_position"],
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4, 0],
    )
    np.testing.assert_array_equal(
        features["word_position"],
        [0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 1, 0, 0],
    )
    assert tuple(features) == cell_correlation.TEXT_FEATURES


def _pearson(x, y):
    """Textbook Pearson r, one pair of series at a time."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx, dy = x - x.mean(), y - y.mean()
    return (dx * dy).sum() / np.sqrt((dx * dx).sum() * (dy * dy).sum())


def test_cell_correlations_match_pearson_and_handle_constant_cells():
    rng = np.random.default_rng(0)
    activations = rng.normal(size=(50, 4))
    activations[:, 2] = 0.3  # a dead cell
    feature = rng.normal(size=50)
    r = cell_correlation.cell_correlations(activations, feature)
    for cell in (0, 1, 3):
        np.testing.assert_allclose(
            r[cell], _pearson(activations[:, cell], feature), atol=1e-12
        )
    assert r[2] == 0.0


def test_a_synthetic_quote_cell_is_found():
    text = TEXT * 20
    features = cell_correlation.text_features(text)
    rng = np.random.default_rng(1)
    activations = np.tanh(rng.normal(size=(len(text), 16)))
    # Cell 11 is on inside quotes (noisy), cell 4 is off there (negative),
    # cell 7 ramps with the position in the line.
    activations[:, 11] = 0.8 * features["inside_quotes"] + rng.normal(
        0, 0.2, len(text)
    )
    activations[:, 4] = -0.5 * features["inside_quotes"] + rng.normal(
        0, 0.3, len(text)
    )
    activations[:, 7] = np.tanh(features["line_position"] / 10)
    top = cell_correlation.most_correlated_cells(activations, features, 2)
    assert [cell for cell, _ in top["inside_quotes"]] == [11, 4]
    assert top["inside_quotes"][0][1] > 0.8 and top["inside_quotes"][1][1] < 0
    assert top["line_position"][0][0] == 7
    assert set(top) == set(cell_correlation.TEXT_FEATURES)


def test_bad_arguments():
    with pytest.raises(TypeError, match="Received: text of type bytes"):
        cell_correlation.text_features(b"abc")
    with pytest.raises(ValueError, match=re.escape("Received: quote='<<'")):
        cell_correlation.text_features("abc", quote="<<")
    with pytest.raises(ValueError, match="Invalid rank for argument `acti"):
        cell_correlation.cell_correlations(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match=re.escape("feature.shape=(4,)")):
        cell_correlation.cell_correlations(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="`activations`. Expected finite"):
        cell_correlation.cell_correlations(
            np.full((5, 2), np.nan), np.arange(5.0)
        )
    with pytest.raises(ValueError, match=re.escape("Received: top_k=0")):
        cell_correlation.most_correlated_cells(
            np.zeros((5, 2)), {"f": np.arange(5.0)}, top_k=0
        )
