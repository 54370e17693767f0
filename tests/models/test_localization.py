"""Tests for `keras_segattn.models.localization`."""

import keras
import numpy as np
import pytest

from keras_segattn.data.pets_localization import (
    make_synthetic_pets_localization,
)
from keras_segattn.models import box_iou
from keras_segattn.models import box_loss
from keras_segattn.models import build_classifier_localizer

TINY = {
    "image_shape": (32, 32, 3),
    "backbone_kwargs": {"filters": (8, 8, 16, 16, 16), "convs_per_stage": 1},
    "head_units": 8,
}


def _compiled(kind):
    model = build_classifier_localizer(3, **TINY)
    model.compile(
        optimizer="adam",
        loss={
            "classes": "sparse_categorical_crossentropy",
            "boxes": box_loss(kind),
        },
        loss_weights={"classes": 1.0, "boxes": 10.0},
        metrics={"classes": ["accuracy"], "boxes": [box_iou]},
        jit_compile=True,
    )
    return model


def test_outputs_named_shaped_and_float32():
    model = build_classifier_localizer(3, **TINY, dtype="mixed_float16")
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert sorted(out) == ["boxes", "classes"]
    assert out["classes"].shape == (2, 3) and out["boxes"].shape == (2, 4)
    assert out["classes"].dtype == "float32"
    assert out["boxes"].dtype == "float32"
    assert model.input.name == "images" or model.inputs[0].name == "images"


@pytest.mark.parametrize("kind", ["smooth_l1", "l2"])
def test_fit_one_xla_step_with_loss_dict(kind):
    model = _compiled(kind)
    data = make_synthetic_pets_localization(4, 32, batch_size=4)
    history = model.fit(data, epochs=1, verbose=0)
    assert model.jit_compile is True
    for key in ("loss", "classes_loss", "boxes_loss", "boxes_box_iou"):
        assert np.isfinite(history.history[key][0]), key


def test_box_loss_kinds():
    y, p = np.zeros((1, 4), "float32"), np.full((1, 4), 0.5, "float32")
    # Huber(delta=0.1) at |x| = 0.5: 0.1 * (0.5 - 0.05).
    np.testing.assert_allclose(float(box_loss("smooth_l1")(y, p)), 0.045)
    np.testing.assert_allclose(float(box_loss("l2")(y, p)), 0.25)
    with pytest.raises(ValueError, match="kind"):
        box_loss("l1")


def test_box_iou():
    a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5]], "float32")
    b = np.array([[0, 0, 0.5, 1], [0.5, 0.5, 1, 1]], "float32")
    np.testing.assert_allclose(np.asarray(box_iou(a, b)), [0.5, 0.0])


def test_keras_round_trip(tmp_path):
    model = _compiled("smooth_l1")
    model.fit(make_synthetic_pets_localization(4, 32, batch_size=4), verbose=0)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for k in ("classes", "boxes"):
        np.testing.assert_allclose(
            loaded.predict(x, verbose=0)[k],
            model.predict(x, verbose=0)[k],
            atol=1e-5,
        )


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_shape"):
        build_classifier_localizer(3, image_shape=(None, None, 3))
    with pytest.raises(ValueError, match="num_classes"):
        build_classifier_localizer(0, **TINY)
