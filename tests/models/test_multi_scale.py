"""Tests for `keras_segattn.models.build_multi_scale_segmenter`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_for_serving
from keras_segattn.layers import MultiScaleEncoder
from keras_segattn.models import build_multi_scale_segmenter
from tests.models.helpers import NUM_CLASSES
from tests.models.helpers import VOID
from tests.models.helpers import random_images
from tests.testing import run_model_checks


def _tiny(**kwargs):
    return build_multi_scale_segmenter(
        NUM_CLASSES, (32, 32, 3), filters=(4, 8), **kwargs
    )


def test_model_checks_and_serving(tmp_path):
    model = _tiny(head_filters=8)
    encoder = model.get_layer("multi_scale_encoder")
    assert isinstance(encoder, MultiScaleEncoder)
    # One shared encoder: its weights are counted once, whatever the scales.
    assert len(encoder.trainable_weights) == 6  # 2 x (kernel, gamma, beta)
    assert encoder.output.shape == (None, 16, 16, 24)
    images = random_images(2, 32, 32)
    probs = model(images)
    assert tuple(probs.shape) == (2, 32, 32, NUM_CLASSES)
    assert probs.dtype == "float32"
    np.testing.assert_allclose(np.sum(probs, -1), 1.0, atol=1e-5)
    masks = np.random.default_rng(0).integers(0, NUM_CLASSES + 1, (2, 32, 32))
    run_model_checks(
        model,
        images,
        masks,
        tmp_path=tmp_path,
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=VOID),
    )
    path = export_for_serving(model, tmp_path / "serving", version=1)
    reloaded = tf.saved_model.load(path)
    uint8 = images.astype("uint8")
    outputs = reloaded.signatures["serving_default"](images=tf.constant(uint8))
    assert outputs["masks"].dtype == tf.int32
    assert tuple(outputs["masks"].shape) == (2, 32, 32)
    np.testing.assert_allclose(
        outputs["probabilities"], model(uint8.astype("float32")), atol=1e-5
    )


def test_mixed_precision():
    model = _tiny(dtype="mixed_float16")
    assert model.get_layer("head_logits").compute_dtype == "float16"
    probs = model(random_images(1, 32, 32))
    assert probs.dtype == "float32" and np.all(np.isfinite(probs))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scales": (1.0, 0.0)}, "Received: scales=(1.0, 0.0)"),
        ({"scales": (0.5, 1.0)}, "Received: scales=(0.5, 1.0)"),
        ({"scales": (1.0, 1.0)}, "Received: scales=(1.0, 1.0)"),
        ({"image_shape": (None, None, 3)}, "Expected a static"),
        ({"num_classes": 0}, "Received: num_classes=0"),
        ({"head_filters": 0}, "Received: head_filters=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"num_classes": NUM_CLASSES, "image_shape": (32, 32, 3)}
    with pytest.raises(ValueError, match=re.escape(match)):
        build_multi_scale_segmenter(**{**arguments, **kwargs})
