"""Tests for the recurrent refinement segmenter (Pinheiro & Collobert)."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_for_serving
from keras_segattn.models import build_recurrent_refinement_segmenter
from keras_segattn.models import recurrent_refinement_inference_model
from tests.models.helpers import NUM_CLASSES
from tests.models.helpers import random_images
from tests.testing import check_saved_model


def _tiny(steps=3, **kwargs):
    return build_recurrent_refinement_segmenter(
        NUM_CLASSES, (16, 16, 3), steps=steps, filters=(4, 8), **kwargs
    )


def test_per_step_outputs_and_shared_weights():
    model = _tiny(steps=3)
    assert sorted(model.output_names) == ["mask_probs", "step_1", "step_2"]
    outputs = model(random_images(2, 16, 16))
    for probs in outputs.values():
        assert tuple(probs.shape) == (2, 16, 16, NUM_CLASSES)
        assert probs.dtype == "float32"
        np.testing.assert_allclose(np.sum(probs, -1), 1.0, atol=1e-5)
    # Each step sees the previous prediction, so the steps differ.
    assert not np.allclose(outputs["step_1"], outputs["mask_probs"])
    # One network, whatever the number of steps.
    network = model.get_layer("refinement_network")
    assert len(network._inbound_nodes) == 3
    assert model.count_params() == _tiny(steps=1).count_params()
    initial = model.get_layer("initial_prediction")
    assert not initial.trainable
    np.testing.assert_allclose(
        initial(np.zeros((1, 2, 2, 3), "float32")), 1.0 / NUM_CLASSES
    )


def test_fit_with_loss_on_every_step_round_trip_and_export(tmp_path):
    model = _tiny(steps=2)
    images = random_images(2, 16, 16)
    masks = np.random.default_rng(0).integers(0, NUM_CLASSES, (2, 16, 16))
    loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(
        optimizer="adam",
        loss={name: loss for name in model.output_names},
        jit_compile=True,
    )
    assert model.jit_compile is True
    history = model.fit(
        images,
        {name: masks for name in model.output_names},
        batch_size=2,
        verbose=0,
    )
    assert {"step_1_loss", "mask_probs_loss"} <= set(history.history)
    total = history.history["loss"][0]
    parts = history.history["step_1_loss"][0]
    parts += history.history["mask_probs_loss"][0]
    np.testing.assert_allclose(total, parts, rtol=1e-5)

    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    expected, actual = model(images), restored(images)
    for name in model.output_names:
        np.testing.assert_array_equal(expected[name], actual[name])

    inference = recurrent_refinement_inference_model(restored)
    assert inference.output_names == ["mask_probs"]
    np.testing.assert_array_equal(inference(images), actual["mask_probs"])
    check_saved_model(inference, images, tmp_path, atol=1e-5)
    serving = export_for_serving(inference, tmp_path / "serving", version=3)
    assert serving.endswith("3")
    reloaded = tf.saved_model.load(serving)
    uint8 = images.astype("uint8")
    outputs = reloaded.signatures["serving_default"](images=tf.constant(uint8))
    assert tuple(outputs["masks"].shape) == (2, 16, 16)
    np.testing.assert_allclose(
        outputs["probabilities"],
        inference(uint8.astype("float32")),
        atol=1e-5,
    )


def test_single_output_form_and_mixed_precision():
    model = _tiny(steps=2, per_step_outputs=False, dtype="mixed_float16")
    assert model.output_names == ["mask_probs"]
    probs = model(random_images(1, 16, 16))
    assert probs.dtype == "float32" and np.all(np.isfinite(probs))
    dynamic = build_recurrent_refinement_segmenter(2, steps=1, filters=(4,))
    assert tuple(dynamic(random_images(1, 9, 7))["mask_probs"].shape) == (
        1,
        9,
        7,
        2,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "Received: steps=0"),
        ({"steps": 1.5}, "Received: steps=1.5"),
        ({"num_classes": 0}, "Received: num_classes=0"),
        ({"filters": ()}, "Received: filters=()"),
        ({"dilation_rates": (1,)}, "Received: dilation_rates=(1,)"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"num_classes": NUM_CLASSES, "filters": (4, 8), **kwargs}
    with pytest.raises(ValueError, match=re.escape(match)):
        build_recurrent_refinement_segmenter(**arguments)


def test_inference_model_needs_mask_probs():
    images = keras.Input((4, 4, 3))
    other = keras.Model(images, keras.layers.Conv2D(2, 1)(images))
    with pytest.raises(ValueError, match="mask_probs"):
        recurrent_refinement_inference_model(other)
