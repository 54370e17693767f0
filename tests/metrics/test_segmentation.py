"""Tests for `keras_segattn.metrics` (pixel accuracy, metric factory)."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.metrics import MaskedPixelAccuracy
from keras_segattn.metrics import segmentation_metrics


def np_pixel_accuracy(labels, probs, void_label, weights=None):
    correct = total = 0.0
    for index in np.ndindex(labels.shape):
        label = int(labels[index])
        if label == void_label:
            continue
        weight = 1.0 if weights is None else float(weights[index])
        correct += weight * (int(np.argmax(probs[index])) == label)
        total += weight
    return correct / total


def np_mean_iou(labels, probs, num_classes, void_label):
    """Mean over classes that occur (in labels or predictions) of IoU."""
    confusion = np.zeros((num_classes, num_classes))
    for index in np.ndindex(labels.shape):
        label = int(labels[index])
        if label == void_label:
            continue
        confusion[label, int(np.argmax(probs[index]))] += 1
    ious = []
    for c in range(num_classes):
        union = confusion[c].sum() + confusion[:, c].sum() - confusion[c, c]
        if union > 0:
            ious.append(confusion[c, c] / union)
    return float(np.mean(ious))


def _batch(seed, num_classes=4, void_label=4):
    rng = np.random.default_rng(seed)
    probs = rng.uniform(size=(2, 5, 6, num_classes)).astype("float32")
    labels = rng.integers(0, num_classes + 1, size=(2, 5, 6)).astype("int32")
    labels[1, :, 0] = void_label
    return labels, probs


def test_pixel_accuracy_matches_numpy_and_accumulates():
    metric = MaskedPixelAccuracy(ignore_class=4)
    (l1, p1), (l2, p2) = _batch(0), _batch(1)
    metric.update_state(l1, p1)
    np.testing.assert_allclose(
        float(metric.result()), np_pixel_accuracy(l1, p1, 4), rtol=1e-6
    )
    metric.update_state(l2[..., None], p2)  # [B, H, W, 1] masks
    both = np_pixel_accuracy(
        np.concatenate([l1, l2]), np.concatenate([p1, p2]), 4
    )
    np.testing.assert_allclose(float(metric.result()), both, rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_pixel_accuracy_void_predictions_do_not_count():
    labels = np.array([[[0, 1, 9]]], "int32")
    probs = np.eye(3, dtype="float32")[[[[0, 0, 2]]]]  # right, wrong, void
    metric = MaskedPixelAccuracy(ignore_class=9)
    metric.update_state(labels, probs)
    assert float(metric.result()) == pytest.approx(0.5)
    # Keras's metric counts the void pixel.
    keras_metric = keras.metrics.SparseCategoricalAccuracy()
    keras_metric.update_state(labels, probs)
    assert float(keras_metric.result()) == pytest.approx(1 / 3)


def test_pixel_accuracy_sample_weight_and_sparse_predictions():
    labels, probs = _batch(2)
    rng = np.random.default_rng(3)
    weights = rng.uniform(size=labels.shape).astype("float32")
    metric = MaskedPixelAccuracy(ignore_class=4)
    metric.update_state(labels, probs, sample_weight=weights)
    np.testing.assert_allclose(
        float(metric.result()),
        np_pixel_accuracy(labels, probs, 4, weights),
        rtol=1e-6,
    )
    sparse = MaskedPixelAccuracy(ignore_class=4, sparse_y_pred=True)
    sparse.update_state(labels, np.argmax(probs, -1))
    np.testing.assert_allclose(
        float(sparse.result()), np_pixel_accuracy(labels, probs, 4), rtol=1e-6
    )


def test_pixel_accuracy_config_round_trip():
    metric = MaskedPixelAccuracy(ignore_class=11, name="acc")
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(metric)
    )
    assert type(revived) is MaskedPixelAccuracy
    assert revived.get_config() == metric.get_config()


def test_segmentation_metrics_match_numpy():
    labels, probs = _batch(4)
    mean_iou, accuracy = segmentation_metrics(num_classes=4, void_label=4)
    assert (mean_iou.name, accuracy.name) == ("mean_iou", "pixel_accuracy")
    assert isinstance(mean_iou, keras.metrics.MeanIoU)
    mean_iou.update_state(labels, probs)
    accuracy.update_state(labels, probs)
    np.testing.assert_allclose(
        float(mean_iou.result()), np_mean_iou(labels, probs, 4, 4), rtol=1e-6
    )
    np.testing.assert_allclose(
        float(accuracy.result()), np_pixel_accuracy(labels, probs, 4), rtol=1e-6
    )


def test_metrics_in_xla_fit():
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=3),
        metrics=segmentation_metrics(3, void_label=3),
        jit_compile=True,
    )
    assert model.jit_compile is True
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    y = rng.integers(0, 4, size=(2, 4, 4)).astype("int32")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    assert set(history) >= {"loss", "mean_iou", "pixel_accuracy"}
    assert all(np.isfinite(v[0]) for v in history.values())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "Received: num_classes=0."),
        ({"num_classes": 3, "void_label": 2.0}, "Received: void_label=2.0."),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        segmentation_metrics(**kwargs)
    if "void_label" in kwargs:
        with pytest.raises(ValueError, match="Received: ignore_class=2.0"):
            MaskedPixelAccuracy(ignore_class=kwargs["void_label"])
