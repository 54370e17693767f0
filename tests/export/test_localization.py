"""Tests for `keras_segattn.export.export_localizer_for_serving`."""

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_localizer_for_serving
from keras_segattn.models import build_classifier_localizer

TINY = {
    "image_shape": (32, 32, 3),
    "backbone_kwargs": {"filters": (8, 8, 16, 16, 16), "convs_per_stage": 1},
    "head_units": 8,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build_classifier_localizer(3, **TINY)
    path = export_localizer_for_serving(
        model, tmp_path_factory.mktemp("loc"), version=2
    )
    return model, path


def test_outputs_named_and_boxes_in_request_pixels(exported):
    model, path = exported
    assert path.endswith("2")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 48, 80, 3)).astype(np.uint8)
    served = serve(images=tf.constant(images))
    assert sorted(served) == ["classes", "detection_boxes", "probabilities"]
    resized = tf.image.resize(tf.cast(images, tf.float32), (32, 32))
    expected = model.predict(resized.numpy(), verbose=0)
    np.testing.assert_allclose(
        served["probabilities"].numpy(), expected["classes"], atol=1e-5
    )
    np.testing.assert_array_equal(
        served["classes"].numpy(), np.argmax(expected["classes"], -1)
    )
    np.testing.assert_allclose(
        served["detection_boxes"].numpy(),
        expected["boxes"] * np.array([48, 80, 48, 80]),
        atol=1e-3,
    )


def test_empty_batch_and_image_bytes(exported):
    _, path = exported
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_default"](
        images=tf.zeros((0, 20, 20, 3), tf.uint8)
    )
    assert served["detection_boxes"].shape == (0, 4)
    assert served["probabilities"].shape == (0, 3)
    assert "serving_image_bytes" in loaded.signatures


def test_rejects_a_model_without_boxes(tmp_path):
    import keras

    x = keras.Input((8, 8, 3))
    y = keras.layers.Flatten()(x)
    model = keras.Model(x, {"classes": keras.layers.Dense(2)(y)})
    with pytest.raises(ValueError, match="boxes"):
        export_localizer_for_serving(model, tmp_path)
