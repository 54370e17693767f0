"""Tests for `keras_segattn.models.backbones`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.models import DEFAULT_SKIP_LAYER_NAMES
from keras_segattn.models import FCN
from keras_segattn.models import apply_residual_block
from keras_segattn.models import build_resnet_small_backbone
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


def test_resnet_small_layout_and_size():
    model = build_resnet_small_backbone()
    assert model.name == "resnet_small"
    assert model.inputs[0].name == "images"
    names = [layer.name for layer in model.layers]
    for i in range(1, 6):
        assert f"stage{i}_out" in names and f"stage{i}_block2_add" in names
    assert "stage1_block1_shortcut_conv" in names
    assert "stage1_block2_shortcut_conv" not in names  # identity shortcut
    assert model.output is model.get_layer("stage5_out").output
    assert 3.5e6 < model.count_params() < 5e6


@pytest.mark.parametrize("size, expected", [(64, 2), (45, 2), (33, 2), (7, 1)])
def test_resnet_small_rounds_up_at_every_stride(size, expected):
    model = build_resnet_small_backbone(
        filters=(2, 2, 2, 2, 3), blocks_per_stage=1
    )
    probe = keras.Model(
        model.inputs,
        [model.get_layer(f"stage{i}_out").output for i in (3, 4, 5)],
    )
    outputs = probe(np.zeros((1, size, size + 32, 3), "float32"))
    for stride, out in zip((8, 16, 32), outputs, strict=True):
        assert out.shape[1:3] == (-(-size // stride), -(-(size + 32) // stride))
    assert tuple(outputs[-1].shape) == (1, expected, expected + 1, 3)


def test_residual_block_matches_numpy():
    """Post-activation basic block: relu(bn(conv(relu(bn(conv(x))))) + sc)."""
    rng = np.random.default_rng(0)
    inputs = keras.Input((5, 6, 3))
    model = keras.Model(inputs, apply_residual_block(inputs, 4, strides=2))
    for layer in model.layers:
        for weight in layer.weights:
            weight.assign(rng.uniform(0.5, 1.5, size=weight.shape))
    x = rng.normal(size=(2, 5, 6, 3)).astype("float32")

    def conv(y, kernel, stride):  # "same" padding as TF: extra on the end
        k = kernel.shape[0]
        out_h, out_w = -(-y.shape[1] // stride), -(-y.shape[2] // stride)
        pad_h = max((out_h - 1) * stride + k - y.shape[1], 0)
        pad_w = max((out_w - 1) * stride + k - y.shape[2], 0)
        y = np.pad(
            y,
            (
                (0, 0),
                (pad_h // 2, pad_h - pad_h // 2),
                (pad_w // 2, pad_w - pad_w // 2),
                (0, 0),
            ),
        )
        out = np.zeros((y.shape[0], out_h, out_w, kernel.shape[-1]))
        for i in range(out_h):
            for j in range(out_w):
                patch = y[
                    :, i * stride : i * stride + k, j * stride : j * stride + k
                ]
                out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, kernel)
        return out

    def bn(y, layer):
        gamma, beta, mean, var = (np.asarray(w) for w in layer.weights)
        return gamma * (y - mean) / np.sqrt(var + layer.epsilon) + beta

    get = model.get_layer
    y = np.maximum(
        bn(
            conv(x, np.asarray(get("residual_block_conv1").kernel), 2),
            get("residual_block_bn1"),
        ),
        0,
    )
    y = bn(
        conv(y, np.asarray(get("residual_block_conv2").kernel), 1),
        get("residual_block_bn2"),
    )
    shortcut = bn(
        conv(x, np.asarray(get("residual_block_shortcut_conv").kernel), 2),
        get("residual_block_shortcut_bn"),
    )
    expected = np.maximum(y + shortcut, 0)
    np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-4)


def test_residual_block_starts_as_identity_shortcut():
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, apply_residual_block(inputs, 3))
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 3)).astype("float32")
    # Zero-initialised last BN scale: the block is relu(x) at initialisation.
    np.testing.assert_allclose(model(x), np.maximum(x, 0), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": (8, 8)}, "Received: filters=(8, 8)"),
        ({"blocks_per_stage": 0}, "Received: blocks_per_stage=0"),
        ({"blocks_per_stage": (1, 2)}, "Received: blocks_per_stage=(1, 2)"),
    ],
)
def test_resnet_small_errors(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        build_resnet_small_backbone(**kwargs)


def test_fcn_on_resnet_small_fits_with_xla():
    model = FCN(
        3,
        backbone="resnet_small",
        image_shape=(45, 61, 3),
        backbone_kwargs={"filters": (4, 4, 8, 8, 8), "blocks_per_stage": 1},
        head_filters=8,
    )
    assert not any("pad_images" in layer.name for layer in model.layers)
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    assert model.jit_compile is True
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, size=(2, 45, 61, 3)).astype("float32")
    masks = rng.integers(0, 3, size=(2, 45, 61)).astype("int32")
    history = model.fit(images, masks, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert tuple(model(images).shape) == (2, 45, 61, 3)
    with pytest.raises(
        ValueError, match="Expected None for backbone='resnet_small'"
    ):
        get_backbone("resnet_small", weights="imagenet")


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
