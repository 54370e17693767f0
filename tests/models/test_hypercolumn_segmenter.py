"""Tests for `keras_segattn.models.build_hypercolumn_segmenter`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_for_serving
from keras_segattn.layers import Hypercolumn
from keras_segattn.models import build_hypercolumn_segmenter
from tests.models.helpers import NUM_CLASSES
from tests.models.helpers import VOID
from tests.models.helpers import random_images
from tests.testing import run_model_checks

TINY = {"filters": (4, 4, 8, 8, 8), "convs_per_stage": 1}


def _tiny(**kwargs):
    return build_hypercolumn_segmenter(
        NUM_CLASSES,
        image_shape=(32, 32, 3),
        head_filters=8,
        backbone_kwargs=TINY,
        **kwargs,
    )


def test_model_checks_and_serving(tmp_path):
    model = _tiny(dropout=0.1)
    hypercolumn = model.get_layer("hypercolumn")
    assert isinstance(hypercolumn, Hypercolumn)
    # pool2 (stride 4), pool3, pool4 stacked on the stride-4 grid.
    assert hypercolumn.output.shape == (None, 8, 8, 4 + 8 + 8)
    images = random_images(2, 32, 32)
    probs = model(images)
    assert tuple(probs.shape) == (2, 32, 32, NUM_CLASSES)
    assert probs.dtype == "float32"
    masks = np.random.default_rng(0).integers(0, NUM_CLASSES + 1, (2, 32, 32))
    run_model_checks(
        model,
        images,
        masks,
        tmp_path=tmp_path,
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=VOID),
    )
    path = export_for_serving(model, tmp_path / "serving")
    reloaded = tf.saved_model.load(path)
    uint8 = images.astype("uint8")
    outputs = reloaded.signatures["serving_default"](images=tf.constant(uint8))
    assert tuple(outputs["masks"].shape) == (2, 32, 32)
    np.testing.assert_allclose(
        outputs["probabilities"], model(uint8.astype("float32")), atol=1e-5
    )


def test_user_backbone_and_layer_order():
    images = keras.Input((24, 24, 3))
    a = keras.layers.Conv2D(2, 3, strides=2, padding="same", name="s2")(images)
    b = keras.layers.Conv2D(3, 3, strides=2, padding="same", name="s4")(a)
    user = keras.Model(images, b, name="user")
    model = build_hypercolumn_segmenter(
        2, backbone=user, layer_names=("s4", "s2"), image_shape=(24, 24, 3)
    )
    assert model.get_layer("hypercolumn").output.shape == (None, 6, 6, 5)
    assert tuple(model(random_images(1, 24, 24)).shape) == (1, 24, 24, 2)
    linear = build_hypercolumn_segmenter(
        2,
        backbone=user,
        layer_names=["s2"],
        image_shape=(24, 24, 3),
        head_filters=None,
    )
    assert "head_hidden" not in {layer.name for layer in linear.layers}


def test_missing_layer_names_list_available_ones():
    with pytest.raises(ValueError) as error:
        _tiny(layer_names=("block2_pool", "pool9"))
    message = str(error.value)
    assert "Invalid value for argument `layer_names`" in message
    assert "missing: ['pool9']" in message
    assert "block5_pool" in message


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layer_names": ()}, "Received: layer_names=()"),
        ({"layer_names": "block2_pool"}, "Received: layer_names='block2_pool'"),
        ({"image_shape": (None, None, 3)}, "Expected a static"),
        ({"num_classes": 0}, "Received: num_classes=0"),
        ({"dropout": 1.0}, "Received: dropout=1.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {
        "num_classes": NUM_CLASSES,
        "image_shape": (32, 32, 3),
        "backbone_kwargs": TINY,
        **kwargs,
    }
    with pytest.raises(ValueError, match=re.escape(match)):
        build_hypercolumn_segmenter(**arguments)
