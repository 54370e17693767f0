"""Tests for `keras_segattn.losses.segmentation_loss`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.losses import segmentation_loss


def np_masked_cross_entropy(labels, probs, void_label):
    """Mean of -log p[label] over the pixels whose label is not void."""
    total, count = 0.0, 0
    for index in np.ndindex(labels.shape):
        label = int(labels[index])
        if label == void_label:
            continue
        total -= np.log(max(float(probs[index][label]), 1e-7))
        count += 1
    return total / count


def _random_batch(rng, num_classes=4, void_label=4):
    logits = rng.normal(size=(2, 5, 6, num_classes))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, num_classes + 1, size=(2, 5, 6))
    labels[0, 0, :] = void_label
    return labels.astype("int32"), probs.astype("float32")


def test_matches_numpy_and_ignores_void():
    rng = np.random.default_rng(0)
    labels, probs = _random_batch(rng)
    loss = segmentation_loss(void_label=4)
    assert isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
    expected = np_masked_cross_entropy(labels, probs, 4)
    np.testing.assert_allclose(float(loss(labels, probs)), expected, rtol=1e-5)
    # [B, H, W, 1] masks give the same value.
    np.testing.assert_allclose(
        float(loss(labels[..., None], probs)), expected, rtol=1e-5
    )
    # Changing the predictions at void pixels changes nothing.
    altered = probs.copy()
    altered[labels == 4] = np.roll(altered[labels == 4], 1, axis=-1)
    np.testing.assert_allclose(
        float(loss(labels, altered)), expected, rtol=1e-5
    )


def test_no_void_label_is_plain_mean():
    rng = np.random.default_rng(1)
    labels, probs = _random_batch(rng)
    labels = np.minimum(labels, 3)
    expected = np_masked_cross_entropy(labels, probs, void_label=None)
    np.testing.assert_allclose(
        float(segmentation_loss()(labels, probs)), expected, rtol=1e-5
    )


def test_from_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(1, 3, 3, 3)).astype("float32")
    labels = rng.integers(0, 4, size=(1, 3, 3)).astype("int32")
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = np_masked_cross_entropy(labels, probs, void_label=3)
    value = segmentation_loss(void_label=3, from_logits=True)(labels, logits)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_serializable():
    loss = segmentation_loss(void_label=11)
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert revived.get_config()["ignore_class"] == 11


@pytest.mark.parametrize("void_label", [1.5, "void", True])
def test_bad_void_label(void_label):
    with pytest.raises(
        ValueError, match=re.escape(f"Received: void_label={void_label!r}")
    ):
        segmentation_loss(void_label=void_label)
