"""Tests for `keras_segattn.models.backbones`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.models import DEFAULT_SKIP_LAYER_NAMES
from keras_segattn.models import build_vgg_small_backbone
from keras_segattn.models import get_backbone
from keras_segattn.models.backbones import _apply_preprocessing


def test_vgg_small_layout_and_size():
    model = build_vgg_small_backbone()
    assert model.name == "vgg_small"
    assert model.inputs[0].name == "images"
    assert isinstance(model.layers[1], keras.layers.Rescaling)
    names = [layer.name for layer in model.layers]
    for i in range(1, 6):
        assert f"block{i}_pool" in names
    assert "block3_conv3" in names and "block2_conv3" not in names
    assert model.output is model.get_layer("block5_pool").output
    assert 2.5e6 < model.count_params() < 3.5e6


@pytest.mark.parametrize("size, expected", [(64, 2), (50, 2), (33, 2), (7, 1)])
def test_vgg_small_rounds_up(size, expected):
    model = build_vgg_small_backbone(filters=(2, 2, 2, 2, 3), convs_per_stage=1)
    out = model(np.zeros((1, size, size + 32, 3), "float32"))
    assert tuple(out.shape) == (1, expected, expected + 1, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": (8, 8)}, "Received: filters=(8, 8)"),
        ({"filters": (8, 8, 8, 8, 0)}, "Received: filters=0"),
        ({"convs_per_stage": (1, 2)}, "Received: convs_per_stage=(1, 2)"),
        ({"image_shape": (32, 32)}, "Received: image_shape=(32, 32)"),
        ({"image_shape": (32, 32, None)}, "Received: image_shape="),
    ],
)
def test_vgg_small_errors(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        build_vgg_small_backbone(**kwargs)


def test_get_backbone_default_is_vgg_small():
    model, skips = get_backbone(backbone_kwargs={"filters": (2, 2, 2, 2, 2)})
    assert model.name == "vgg_small"
    assert skips == ("block3_pool", "block4_pool")
    assert skips == DEFAULT_SKIP_LAYER_NAMES["vgg_small"]


def test_application_by_name_with_preprocessing():
    model, skips = get_backbone(
        "MobileNetV2",
        (32, 32, 3),
        backbone_kwargs={"alpha": 0.35},
    )
    assert skips == ("block_5_add", "block_12_add")
    assert model.inputs[0].name == "images"
    rescaling = model.get_layer("preprocess_rescaling")
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3))
    expected = keras.applications.mobilenet_v2.preprocess_input(images.copy())
    np.testing.assert_allclose(
        np.asarray(rescaling(images.astype("float32"))), expected, atol=1e-5
    )
    strides = [32 // model.get_layer(n).output.shape[1] for n in skips] + [
        32 // model.output.shape[1]
    ]
    assert strides == [8, 16, 32]


@pytest.mark.parametrize(
    "mode, reference",
    [
        ("caffe", keras.applications.vgg16.preprocess_input),
        ("torch", keras.applications.densenet.preprocess_input),
        ("tf", keras.applications.mobilenet.preprocess_input),
    ],
)
def test_preprocessing_matches_keras_applications(mode, reference):
    images = keras.Input((4, 5, 3))
    model = keras.Model(images, _apply_preprocessing(images, mode, None))
    x = np.random.default_rng(1).uniform(0, 255, (2, 4, 5, 3))
    expected = reference(x.copy())
    np.testing.assert_allclose(
        np.asarray(model(x.astype("float32"))), expected, atol=1e-4
    )
    assert not model.trainable_weights


def test_caffe_preprocessing_keras_round_trip(tmp_path):
    images = keras.Input((4, 5, 3))
    model = keras.Model(images, _apply_preprocessing(images, "caffe", None))
    model.save(tmp_path / "caffe.keras")
    restored = keras.saving.load_model(tmp_path / "caffe.keras")
    x = np.random.default_rng(2).uniform(0, 255, (1, 4, 5, 3))
    np.testing.assert_array_equal(
        np.asarray(restored(x.astype("float32"))),
        np.asarray(model(x.astype("float32"))),
    )
    clone = keras.Model.from_config(model.get_config())  # initializers only
    np.testing.assert_allclose(
        np.asarray(clone(x.astype("float32"))),
        keras.applications.vgg16.preprocess_input(x.copy()),
        atol=1e-4,
    )


def test_user_model_with_skip_names():
    images = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=8, padding="same", name="s8")(images)
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="s16")(x)
    z = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="s32")(y)
    user = keras.Model(images, z)
    model, skips = get_backbone(user, skip_layer_names=["s8", "s16"])
    assert model is user and skips == ("s8", "s16")
    assert get_backbone(user)[1] == ()


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (
            {"backbone": "vgg_tiny"},
            ValueError,
            "'VGG16', 'VGG19', 'ResNet50'",
        ),
        ({"backbone": "vgg_tiny"}, ValueError, "Received: backbone='vgg_tiny'"),
        ({"backbone": 3}, TypeError, "Received: type(backbone)=int"),
        (
            {"weights": "imagenet"},
            ValueError,
            "Received: weights='imagenet'",
        ),
        (
            {"skip_layer_names": ("block3_pool", "block9_pool")},
            ValueError,
            "Layer 'block9_pool' does not exist",
        ),
        (
            {"skip_layer_names": "block3_pool"},
            ValueError,
            "Received: skip_layer_names='block3_pool'",
        ),
        ({"image_shape": (32, 32, 3, 1)}, ValueError, "`image_shape`"),
    ],
)
def test_get_backbone_errors(kwargs, exc, match):
    if kwargs.get("backbone", "vgg_small") == "vgg_small":
        kwargs["backbone_kwargs"] = {"filters": (2, 2, 2, 2, 2)}
    with pytest.raises(exc, match=re.escape(match)):
        get_backbone(**kwargs)


def test_missing_skip_layer_lists_available_names():
    with pytest.raises(ValueError) as info:
        get_backbone(
            skip_layer_names=("nope", "block4_pool"),
            backbone_kwargs={"filters": (2, 2, 2, 2, 2)},
        )
    message = str(info.value)
    assert "`skip_layer_names`" in message
    assert "'nope'" in message and "block5_pool" in message
    assert "Received: skip_layer_names=('nope', 'block4_pool')" in message


def test_user_model_rejects_weights():
    user = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)])
    with pytest.raises(ValueError, match=re.escape("Received: weights='x'")):
        get_backbone(user, weights="x")


def test_inception_resnet_v2_is_aligned_at_strides_8_16_32():
    model, skips = get_backbone("InceptionResNetV2", (80, 80, 3))
    assert skips == ("block35_10_ac", "block17_20_ac")
    # Rebuilt with "same" padding: ceil(80 / s) rows at every stride.
    sizes = [model.get_layer(n).output.shape[1] for n in skips]
    assert sizes + [model.output.shape[1]] == [10, 5, 3]
    assert not [
        layer.name
        for layer in model.layers
        if getattr(layer, "padding", None) == "valid"
    ]
    images = np.random.default_rng(2).uniform(0, 255, (1, 80, 80, 3))
    expected = keras.applications.inception_resnet_v2.preprocess_input(
        images.copy()
    )
    rescaling = model.get_layer("preprocess_rescaling")
    np.testing.assert_allclose(
        np.asarray(rescaling(images.astype("float32"))), expected, atol=1e-5
    )
