"""Tests for `keras_segattn.models.FCN` and the segmentation presets."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_for_serving
from keras_segattn.models import FCN
from keras_segattn.models import SEGMENTATION_PRESETS
from keras_segattn.models import build_fcn_segmenter
from keras_segattn.models import build_segmentation_model
from tests.models.helpers import NUM_CLASSES
from tests.models.helpers import check_tiny_preset
from tests.models.helpers import random_images
from tests.references import np_upsample_filt

TINY = {"filters": (4, 4, 8, 8, 8), "convs_per_stage": 1}


def _tiny_fcn(variant="8s", **kwargs):
    return FCN(NUM_CLASSES, variant=variant, backbone_kwargs=TINY, **kwargs)


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_output_shapes_any_size(variant):
    model = _tiny_fcn(variant)
    assert model.name == f"fcn{variant}"
    assert model.inputs[0].name == "images"
    assert model.output_names == ["mask_probs"] or (
        model.layers[-1].name == "mask_probs"
    )
    for height, width in ((64, 64), (50, 70), (33, 17)):
        probs = model(random_images(2, height, width))
        assert tuple(probs.shape) == (2, height, width, NUM_CLASSES)
        assert probs.dtype == "float32"
        np.testing.assert_allclose(np.sum(probs, -1), 1.0, atol=1e-5)
    static = _tiny_fcn(variant, image_shape=(50, 70, 3))
    assert static.output_shape == (None, 50, 70, NUM_CLASSES)


@pytest.mark.parametrize(
    "variant, present, absent, final",
    [
        ("32s", [], ["pool4", "pool3", "2x_1", "2x_2"], 32),
        ("16s", ["pool4", "2x_1"], ["pool3", "2x_2"], 16),
        ("8s", ["pool4", "pool3", "2x_1", "2x_2"], [], 8),
    ],
)
def test_variants_differ_structurally(variant, present, absent, final):
    model = _tiny_fcn(variant)
    names = {layer.name for layer in model.layers}
    expected = {f"fcn_score_{p}" for p in present if p.startswith("pool")}
    expected |= {f"fcn_crop_{p}" for p in present if p.startswith("pool")}
    expected |= {f"fcn_upsample_{p}" for p in present if p.startswith("2x")}
    assert expected <= names
    unexpected = {f"fcn_score_{p}" for p in absent if p.startswith("pool")}
    unexpected |= {f"fcn_upsample_{p}" for p in absent if p.startswith("2x")}
    assert not unexpected & names
    assert f"fcn_upsample_{final}x" in names
    assert {"fcn_score_fr", "fcn_crop_output", "mask_probs"} <= names


def test_bilinear_upsampling_layers_and_zero_scores():
    model = _tiny_fcn("8s")
    for name, factor, trainable in (
        ("fcn_upsample_2x_1", 2, True),
        ("fcn_upsample_2x_2", 2, True),
        ("fcn_upsample_8x", 8, False),
    ):
        layer = model.get_layer(name)
        assert layer.trainable is trainable
        assert layer.strides == (factor, factor)
        kernel = layer.kernel.numpy()
        size = 2 * factor
        assert kernel.shape == (size, size, NUM_CLASSES, NUM_CLASSES)
        for i in range(NUM_CLASSES):
            for j in range(NUM_CLASSES):
                expected = np_upsample_filt(size) if i == j else 0.0
                np.testing.assert_allclose(
                    kernel[..., i, j], expected, atol=1e-7
                )
    for name in ("fcn_score_fr", "fcn_score_pool4", "fcn_score_pool3"):
        assert not np.any(model.get_layer(name).kernel.numpy())
    # Zero-initialised scores: the untrained model predicts 1 / K everywhere.
    probs = model(random_images(1, 40, 24))
    np.testing.assert_allclose(probs, 1.0 / NUM_CLASSES, atol=1e-6)
    assert model.get_layer("fcn_upsample_8x").trainable is False
    trainable = _tiny_fcn("8s", trainable_final_upsampling=True)
    assert trainable.get_layer("fcn_upsample_8x").trainable is True


def test_keras_applications_backbone_by_name():
    kwargs = {"backbone": "MobileNetV2", "backbone_kwargs": {"alpha": 0.35}}
    # MobileNetV2 rounds sizes down: a static size is padded to 64x96.
    model = FCN(NUM_CLASSES, image_shape=(50, 70, 3), **kwargs)
    pad = model.get_layer("fcn_pad_images")
    assert pad.padding == ((0, 14), (0, 26))
    probs = model(random_images(1, 50, 70))
    assert tuple(probs.shape) == (1, 50, 70, NUM_CLASSES)
    dynamic = FCN(NUM_CLASSES, variant="16s", **kwargs)
    assert "fcn_pad_images" not in {layer.name for layer in dynamic.layers}
    probs = dynamic(random_images(1, 64, 32))
    assert tuple(probs.shape) == (1, 64, 32, NUM_CLASSES)


def test_user_backbone_with_skip_names():
    images = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=8, padding="same", name="s8")(images)
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="s16")(x)
    z = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="s32")(y)
    user = keras.Model(images, z, name="user")
    model = FCN(NUM_CLASSES, backbone=user, skip_layer_names=("s8", "s16"))
    probs = model(random_images(1, 45, 30))
    assert tuple(probs.shape) == (1, 45, 30, NUM_CLASSES)
    # "16s" needs only the stride-16 name; "32s" none.
    assert FCN(2, backbone=user, variant="16s", skip_layer_names=["s16"])
    assert FCN(2, backbone=user, variant="32s")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "Received: num_classes=0."),
        (
            {"variant": "4s"},
            "Expected one of ['32s', '16s', '8s']. Received: variant='4s'",
        ),
        ({"image_shape": (32, 32)}, "Received: image_shape=(32, 32)"),
        ({"backbone": "vgg_tiny"}, "Received: backbone='vgg_tiny'"),
        (
            {"skip_layer_names": ("block3_pool", "missing")},
            "Layer 'missing' does not exist",
        ),
        (
            {"skip_layer_names": ("block3_pool",)},
            "Received: skip_layer_names=('block3_pool',)",
        ),
        ({"dropout": -0.1, "head_filters": 4}, "Received: dropout=-0.1"),
    ],
)
def test_errors(kwargs, match):
    arguments = {"num_classes": NUM_CLASSES, "backbone_kwargs": TINY, **kwargs}
    if arguments.get("backbone", "vgg_small") != "vgg_small":
        arguments.pop("backbone_kwargs")
    with pytest.raises(ValueError, match=re.escape(match)):
        FCN(**arguments)


def test_user_backbone_without_skip_names_fails():
    images = keras.Input((None, None, 3))
    user = keras.Model(images, keras.layers.Conv2D(2, 3, strides=32)(images))
    with pytest.raises(ValueError, match=re.escape("skip_layer_names=()")):
        FCN(NUM_CLASSES, backbone=user)


def test_tiny_preset_model_checks(tmp_path):
    check_tiny_preset("fcn8s_tiny", max_params=20_000, tmp_path=tmp_path)


def test_serving_export(tmp_path):
    model = _tiny_fcn("16s")
    path = export_for_serving(model, tmp_path / "serving", version=1)
    reloaded = tf.saved_model.load(path)
    images = np.random.default_rng(1).integers(0, 256, (1, 20, 28, 3), "uint8")
    outputs = reloaded.signatures["serving_default"](images=tf.constant(images))
    assert tuple(outputs["masks"].shape) == (1, 20, 28)
    np.testing.assert_allclose(
        outputs["probabilities"],
        model(images.astype("float32")),
        atol=1e-5,
    )


def test_mixed_precision():
    model = _tiny_fcn("8s", dtype="mixed_float16")
    assert model.get_layer("fcn_score_fr").compute_dtype == "float16"
    probs = model(random_images(1, 36, 20))
    assert probs.dtype == "float32"
    assert tuple(probs.shape) == (1, 36, 20, NUM_CLASSES)
    assert np.all(np.isfinite(probs))


def test_presets_and_builder():
    assert {"fcn32s_small", "fcn16s_small", "fcn8s_small", "fcn8s_tiny"} <= set(
        SEGMENTATION_PRESETS
    )
    model = FCN(4, **SEGMENTATION_PRESETS["fcn8s_small"])
    assert 3e6 < model.count_params() < 4e6
    assert "fcn_fc6" in {layer.name for layer in model.layers}
    for name, variant in (("fcn32s", "32s"), ("fcn16s_small", "16s")):
        built = build_segmentation_model(name, 2, backbone_kwargs=TINY)
        assert built.name == f"fcn{variant}"
    assert build_fcn_segmenter(2, backbone_kwargs=TINY).name == "fcn8s"
    with pytest.raises(ValueError, match=re.escape("Received: name='fcn4s'")):
        build_segmentation_model("fcn4s", 2)
