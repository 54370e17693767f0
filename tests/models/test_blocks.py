"""Tests for the composite blocks of `keras_segattn.models.blocks`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers import CropToMatch
from keras_segattn.models import apply_bilinear_upsampling
from keras_segattn.models import apply_conv_block
from keras_segattn.models import apply_fcn_decoder
from keras_segattn.models import apply_upsample_block
from tests.references import np_bilinear_kernel


def _layer_names(outputs, inputs):
    model = keras.Model(inputs, outputs)
    return [layer.name for layer in model.layers], model


def test_conv_block_names_and_shapes():
    x = keras.Input((9, 7, 3))
    y = apply_conv_block(x, 5, num_convs=2, name="stage")
    names, model = _layer_names(y, x)
    assert names[1:] == [
        "stage_conv1",
        "stage_bn1",
        "stage_relu1",
        "stage_conv2",
        "stage_bn2",
        "stage_relu2",
    ]
    assert tuple(y.shape) == (None, 9, 7, 5)
    assert model.get_layer("stage_conv1").use_bias is False
    # Default: two convolutions; a sequence sets one width per conv.
    z = apply_conv_block(x, (6, 6, 2), name="dec")
    assert tuple(z.shape) == (None, 9, 7, 2)
    names, _ = _layer_names(z, x)
    assert "dec_conv3" in names and "dec_conv4" not in names
    assert len(_layer_names(apply_conv_block(x, 4, name="b"), x)[0]) == 7


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 0}, "Received: filters=0"),
        ({"filters": 4, "num_convs": 0}, "Received: num_convs=0"),
        ({"filters": (4, 4), "num_convs": 3}, "Received: num_convs=3"),
        ({"filters": ()}, "Received: filters=()"),
    ],
)
def test_conv_block_errors(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        apply_conv_block(keras.Input((4, 4, 3)), **kwargs)


@pytest.mark.parametrize("factor", [2, 3, 8])
def test_bilinear_upsampling_kernel_and_interior(factor):
    x = keras.Input((None, None, 2))
    y = apply_bilinear_upsampling(x, factor, trainable=False, name="up")
    model = keras.Model(x, y)
    layer = model.get_layer("up")
    assert layer.trainable is False and not layer.use_bias
    np.testing.assert_allclose(
        layer.kernel.numpy(),
        np_bilinear_kernel(factor, 2),
        atol=1e-7,
    )
    # Equals bilinear resizing away from an f-pixel border.
    rng = np.random.default_rng(0)
    images = rng.normal(size=(1, 5, 6, 2)).astype("float32")
    out = np.asarray(model(images))
    assert out.shape == (1, 5 * factor, 6 * factor, 2)
    resized = np.asarray(
        keras.ops.image.resize(
            images, (5 * factor, 6 * factor), interpolation="bilinear"
        )
    )
    f = factor
    np.testing.assert_allclose(
        out[:, f:-f, f:-f], resized[:, f:-f, f:-f], atol=1e-5
    )


def test_upsample_block_add_crops_to_skip():
    x = keras.Input((4, 5, 6))
    skip = keras.Input((7, 9, 3))
    y = apply_upsample_block(x, 3, skip=skip, name="up1")
    assert tuple(y.shape) == (None, 7, 9, 3)
    model = keras.Model([x, skip], y)
    names = [layer.name for layer in model.layers]
    for expected in ("up1_project", "up1_upsample", "up1_crop", "up1_add"):
        assert expected in names
    assert isinstance(model.get_layer("up1_crop"), CropToMatch)
    assert model.get_layer("up1_upsample").trainable is True
    np.testing.assert_allclose(
        model.get_layer("up1_upsample").kernel.numpy(),
        np_bilinear_kernel(2, 3),
        atol=1e-7,
    )
    # Reference: project, upsample, crop top-left, add.
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(2, 4, 5, 6)).astype("float32")
    ss = rng.normal(size=(2, 7, 9, 3)).astype("float32")
    projected = model.get_layer("up1_project")(xs)
    upsampled = np.asarray(model.get_layer("up1_upsample")(projected))
    np.testing.assert_allclose(
        np.asarray(model([xs, ss])), upsampled[:, :7, :9] + ss, atol=1e-5
    )


def test_upsample_block_concat_convs_and_no_skip():
    x = keras.Input((None, None, 4))
    skip = keras.Input((None, None, 2))
    y = apply_upsample_block(
        x, skip=skip, fuse="concat", num_convs=1, factor=4, name="u"
    )
    assert tuple(y.shape) == (None, None, None, 4)
    model = keras.Model([x, skip], y)
    assert "u_project" not in [layer.name for layer in model.layers]
    out = model([np.zeros((1, 3, 3, 4)), np.zeros((1, 10, 11, 2))])
    assert tuple(out.shape) == (1, 10, 11, 4)
    z = apply_upsample_block(x, factor=3, trainable_upsampling=False, name="v")
    assert tuple(z.shape) == (None, None, None, 4)


@pytest.mark.parametrize(
    "kwargs, skip_shape, exc, match",
    [
        ({"fuse": "mul"}, (8, 8, 4), ValueError, "Received: fuse='mul'"),
        ({"factor": 0}, None, ValueError, "Received: factor=0"),
        ({"num_convs": -1}, None, ValueError, "Received: num_convs=-1"),
        ({"filters": 0}, None, ValueError, "Received: filters=0"),
        ({}, (8, 8, 3), ValueError, "Received: skip.shape=(None, 8, 8, 3)"),
        ({}, (9, 8, 4), ValueError, "at least as large as `reference`"),
    ],
)
def test_upsample_block_errors(kwargs, skip_shape, exc, match):
    x = keras.Input((4, 4, 4))
    skip = None if skip_shape is None else keras.Input(skip_shape)
    with pytest.raises(exc, match=re.escape(match)):
        apply_upsample_block(x, skip=skip, **kwargs)


def _fcn_inputs():
    images = keras.Input((None, None, 3), name="images")
    pool3 = keras.Input((None, None, 5), name="pool3")
    pool4 = keras.Input((None, None, 6), name="pool4")
    final = keras.Input((None, None, 7), name="final")
    return images, pool3, pool4, final


@pytest.mark.parametrize(
    "variant, present, absent, final",
    [
        ("32s", [], ["fcn_score_pool4", "fcn_score_pool3"], 32),
        ("16s", ["fcn_score_pool4"], ["fcn_score_pool3"], 16),
        ("8s", ["fcn_score_pool4", "fcn_score_pool3"], [], 8),
    ],
)
def test_fcn_decoder_variants(variant, present, absent, final):
    images, pool3, pool4, last = _fcn_inputs()
    logits = apply_fcn_decoder(
        last, (pool3, pool4), 4, variant, reference=images, head_filters=8
    )
    model = keras.Model([images, pool3, pool4, last], logits)
    names = [layer.name for layer in model.layers]
    for name in present + ["fcn_score_fr", "fcn_fc6", "fcn_fc7"]:
        assert name in names
    for name in absent:
        assert name not in names
    up = model.get_layer(f"fcn_upsample_{final}x")
    assert up.trainable is False
    assert up.kernel.shape == (2 * final, 2 * final, 4, 4)
    np.testing.assert_allclose(
        up.kernel.numpy(),
        np_bilinear_kernel(final, 4),
        atol=1e-7,
    )
    for name in [n for n in names if n.startswith("fcn_score")]:
        assert not np.any(model.get_layer(name).kernel.numpy())
    # A 50x70 image: stride 8/16/32 maps rounded up, output cropped.
    out = model(
        [
            np.zeros((1, 50, 70, 3)),
            np.ones((1, 7, 9, 5)),
            np.ones((1, 4, 5, 6)),
            np.ones((1, 2, 3, 7)),
        ]
    )
    assert tuple(out.shape) == (1, 50, 70, 4)
    # Zero-initialised scores: all logits start at exactly zero.
    assert not np.any(np.asarray(out))


def test_fcn_decoder_dict_skips_and_no_reference():
    _, pool3, pool4, last = _fcn_inputs()
    logits = apply_fcn_decoder(
        last, {"pool4": pool4, "pool3": pool3}, 3, "8s", name="dec"
    )
    model = keras.Model([pool3, pool4, last], logits)
    out = model(
        [np.ones((1, 8, 8, 5)), np.ones((1, 4, 4, 6)), np.ones((1, 2, 2, 7))]
    )
    assert tuple(out.shape) == (1, 64, 64, 3)
    assert "dec_upsample_2x_2" in [layer.name for layer in model.layers]
    # "16s" takes a single tensor as pool4.
    single = apply_fcn_decoder(last, [pool4], 3, "16s", name="single")
    assert tuple(single.shape) == (None, None, None, 3)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"num_classes": 0}, ValueError, "Received: num_classes=0"),
        (
            {"variant": "4s"},
            ValueError,
            "Expected one of ['32s', '16s', '8s']. Received: variant='4s'",
        ),
        ({"dropout": 1.0}, ValueError, "Received: dropout=1.0"),
        ({"head_filters": 0}, ValueError, "Received: head_filters=0"),
        ({"skips": "pool4"}, TypeError, "Received: type(skips)=str"),
        ({"skips": ()}, ValueError, "Missing: ['pool3', 'pool4']"),
        ({"variant": "16s", "skips": {"pool3": 1}}, ValueError, "['pool4']"),
        ({"skips": (1, 2, 3)}, ValueError, "Received: 3 tensors"),
    ],
)
def test_fcn_decoder_errors(kwargs, exc, match):
    _, pool3, pool4, last = _fcn_inputs()
    arguments = {"skips": (pool3, pool4), "num_classes": 3, **kwargs}
    with pytest.raises(exc, match=re.escape(match)):
        apply_fcn_decoder(last, **arguments)
