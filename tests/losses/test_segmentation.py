"""Tests for `keras_segattn.losses.segmentation_loss`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.losses import median_frequency_weights
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
    expected = np_masked_cross_entropy(labels, probs, 4)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=4)
    np.testing.assert_allclose(
        float(keras_loss(labels, probs)), expected, rtol=1e-5
    )
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
    assert revived.get_config()["void_label"] == 11
    assert revived.get_config()["class_weights"] is None
    plain = segmentation_loss()
    assert isinstance(plain, keras.losses.SparseCategoricalCrossentropy)
    assert plain.get_config()["ignore_class"] is None


@pytest.mark.parametrize("void_label", [1.5, "void", True])
def test_bad_void_label(void_label):
    with pytest.raises(
        ValueError, match=re.escape(f"Received: void_label={void_label!r}")
    ):
        segmentation_loss(void_label=void_label)


def np_weighted_cross_entropy(labels, probs, weights, void_label):
    """sum over non-void pixels of w[label] * -log p[label], / their count."""
    total, count = 0.0, 0
    for index in np.ndindex(labels.shape):
        label = int(labels[index])
        if label == void_label:
            continue
        total -= weights[label] * np.log(max(float(probs[index][label]), 1e-7))
        count += 1
    return total / count


def test_class_weights_match_numpy():
    rng = np.random.default_rng(3)
    labels, probs = _random_batch(rng)
    weights = [0.5, 2.0, 1.0, 4.0]
    loss = segmentation_loss(void_label=4, class_weights=weights)
    expected = np_weighted_cross_entropy(labels, probs, weights, 4)
    np.testing.assert_allclose(float(loss(labels, probs)), expected, rtol=1e-5)
    np.testing.assert_allclose(
        float(loss(labels[..., None], probs)), expected, rtol=1e-5
    )
    # All-ones weights are exactly the unweighted loss.
    ones = segmentation_loss(void_label=4, class_weights=[1.0] * 4)
    np.testing.assert_allclose(
        float(ones(labels, probs)),
        float(segmentation_loss(void_label=4)(labels, probs)),
        rtol=1e-6,
    )


def test_class_weights_gradient_matches_numpy():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 3, 4, 3)).astype("float32")
    labels = rng.integers(0, 4, size=(2, 3, 4)).astype("int32")
    labels[0, 0, 0] = 3  # at least one void pixel
    weights = np.array([0.25, 3.0, 1.5])
    loss = segmentation_loss(
        void_label=3, from_logits=True, class_weights=weights
    )
    import tensorflow as tf

    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(labels, variable)
    gradient = tape.gradient(value, variable).numpy()
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    valid = labels != 3
    onehot = np.eye(3)[np.where(valid, labels, 0)]
    expected = (probs - onehot) * weights[np.where(valid, labels, 0)][..., None]
    expected = np.where(valid[..., None], expected, 0.0) / valid.sum()
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-7)


def test_class_weighted_loss_serializable_and_fits():
    loss = segmentation_loss(void_label=2, class_weights=[1.0, 3.0])
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert revived.get_config()["class_weights"] == [1.0, 3.0]
    assert revived.get_config()["void_label"] == 2
    model = keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            keras.layers.Conv2D(2, 1, activation="softmax"),
        ]
    )
    model.compile("sgd", loss=loss, jit_compile=True)
    assert model.jit_compile is True
    rng = np.random.default_rng(5)
    history = model.fit(
        rng.normal(size=(4, 4, 4, 1)).astype("float32"),
        rng.integers(0, 3, size=(4, 4, 4)).astype("int32"),
        epochs=1,
        verbose=0,
    )
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "class_weights", [[], [1.0, -1.0], [1.0, float("nan")], "abc", [[1.0]], 3.0]
)
def test_bad_class_weights(class_weights):
    with pytest.raises(ValueError, match="argument `class_weights`"):
        segmentation_loss(class_weights=class_weights)


def test_class_weights_count_must_match_classes():
    loss = segmentation_loss(class_weights=[1.0, 1.0])
    probs = np.full((1, 2, 2, 3), 1 / 3, "float32")
    with pytest.raises(ValueError, match="one weight per class"):
        loss(np.zeros((1, 2, 2), "int32"), probs)


def np_median_frequency(masks, num_classes, void_label):
    """Eigen & Fergus: freq(c) = pixels of c / pixels of images with c."""
    freq = []
    for c in range(num_classes):
        pixels = images = 0
        for mask in masks:
            kept = mask[mask != void_label] if void_label is not None else mask
            if (kept == c).any():
                pixels += (kept == c).sum()
                images += kept.size
        freq.append(pixels / images if images else 0.0)
    freq = np.array(freq)
    median = np.median(freq[freq > 0])
    return np.where(freq > 0, median / np.where(freq > 0, freq, 1), 0.0)


def test_median_frequency_weights_match_numpy_and_hand_values():
    # Two 2x2 masks: class 0 in both, class 1 only in the first, void 3.
    masks = np.array([[[0, 1], [1, 3]], [[0, 0], [2, 0]]], "int32")
    weights = median_frequency_weights(masks, 3, void_label=3)
    # freq = [4/7, 2/3, 1/4], median 4/7.
    np.testing.assert_allclose(weights, [1.0, 6 / 7, 16 / 7], rtol=1e-6)
    rng = np.random.default_rng(6)
    masks = rng.integers(0, 6, size=(7, 9, 8)).astype("int64")
    masks[2][masks[2] == 1] = 5  # class 1 absent from one image
    np.testing.assert_allclose(
        median_frequency_weights(masks, 5, void_label=5),
        np_median_frequency(masks, 5, 5),
        rtol=1e-6,
    )


def test_median_frequency_weights_from_dataset_and_missing_class():
    import tensorflow as tf

    masks = np.array([[[0, 0], [0, 1]], [[1, 1], [0, 0]]], "int32")
    images = np.zeros((2, 2, 2, 3), "float32")
    dataset = tf.data.Dataset.from_tensor_slices(
        (images, masks[..., None])
    ).batch(1)
    with pytest.warns(UserWarning, match=r"classes \[2\] never appear"):
        weights = median_frequency_weights(dataset, 3)
        expected = median_frequency_weights(masks, 3, None)
    np.testing.assert_allclose(weights, expected)
    assert weights[2] == 0.0


@pytest.mark.parametrize(
    "masks, match",
    [
        (np.array([[[0, 7]]]), "label 7"),
        (np.array([[[-1, 0]]]), "label -1"),
        (np.zeros((1, 2, 2), "float32"), "integer label maps"),
        (np.full((1, 2, 2), 3), "at least one non-void pixel"),
    ],
)
def test_median_frequency_weights_bad_masks(masks, match):
    with pytest.raises(ValueError, match=match):
        median_frequency_weights(masks, 3, void_label=3)
