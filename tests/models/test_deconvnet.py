"""Tests for `keras_segattn.models.DeconvNet` and `SegNet`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_for_serving
from keras_segattn.layers import MaxPoolingWithArgmax2D
from keras_segattn.layers import MaxUnpooling2D
from keras_segattn.models import SEGMENTATION_PRESETS
from keras_segattn.models import DeconvNet
from keras_segattn.models import SegNet
from keras_segattn.models import build_segmentation_model
from tests.models.helpers import NUM_CLASSES
from tests.models.helpers import VOID
from tests.models.helpers import check_tiny_preset
from tests.models.helpers import random_images
from tests.testing import run_model_checks


def test_structure_and_shapes():
    model = DeconvNet(NUM_CLASSES, filters=(4, 8, 8), convs_per_stage=(1, 2, 1))
    assert model.name == "deconvnet"
    assert model.inputs[0].name == "images"
    assert model.layers[-1].name == "mask_probs"
    names = [layer.name for layer in model.layers]
    for stage in (1, 2, 3):
        pool = model.get_layer(f"encoder_block{stage}_pool")
        unpool = model.get_layer(f"decoder_block{stage}_unpool")
        assert isinstance(pool, MaxPoolingWithArgmax2D)
        assert isinstance(unpool, MaxUnpooling2D)
        # The decoder unpools with the switches of the mirrored stage.
        assert unpool._inbound_nodes[0].input_tensors[1] is pool.output[1]
    # Mirrored decoder: last conv of each stage narrows to the stage above.
    assert model.get_layer("decoder_block3_conv1").filters == 8
    assert model.get_layer("decoder_block2_conv1").filters == 8
    assert model.get_layer("decoder_block2_conv2").filters == 4
    assert model.get_layer("decoder_block1_conv1").filters == 4
    assert (
        "encoder_block2_conv2" in names and "decoder_block2_conv3" not in names
    )
    for height, width in ((32, 32), (16, 48)):
        probs = model(random_images(2, height, width))
        assert tuple(probs.shape) == (2, height, width, NUM_CLASSES)
        assert probs.dtype == "float32"
        np.testing.assert_allclose(np.sum(probs, -1), 1.0, atol=1e-5)


def test_segnet_alias_and_static_shape():
    model = SegNet(NUM_CLASSES, image_shape=(16, 24, 3), filters=(4, 4))
    assert model.name == "segnet"
    assert model.output_shape == (None, 16, 24, NUM_CLASSES)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "Received: num_classes=0."),
        ({"image_shape": (32, 32)}, "Received: image_shape=(32, 32)"),
        ({"filters": ()}, "Received: filters=()"),
        ({"filters": (4, 0)}, "Received: filters=0"),
        ({"convs_per_stage": (1, 1, 1)}, "Received: convs_per_stage=(1, 1, 1)"),
    ],
)
def test_errors(kwargs, match):
    arguments = {"num_classes": NUM_CLASSES, "filters": (4, 4), **kwargs}
    with pytest.raises(ValueError, match=re.escape(match)):
        DeconvNet(**arguments)


def test_any_dynamic_size_is_restored():
    model = DeconvNet(NUM_CLASSES, filters=(4, 4, 4), convs_per_stage=1)
    for height, width in ((30, 32), (45, 60), (7, 9), (1, 1)):
        probs = model(random_images(1, height, width))
        assert tuple(probs.shape) == (1, height, width, NUM_CLASSES)


def test_camvid_native_size_static_shapes():
    # 360 -> 180 -> 90 -> 45 -> 23 and back; 480 -> ... -> 30 and back.
    model = SegNet(11, image_shape=(360, 480, 3), filters=(4, 4, 4, 4))
    assert model.output_shape == (None, 360, 480, 11)
    assert model.get_layer("encoder_block4_pool").output[0].shape == (
        None,
        23,
        30,
        4,
    )
    unpool = model.get_layer("decoder_block4_unpool")
    assert unpool.output_size == (45, 60)
    assert unpool.output.shape == (None, 45, 60, 4)
    assert model.get_layer("decoder_block1_unpool").output_size == (360, 480)


def test_odd_size_model_checks(tmp_path):
    # 45x60 with 3 pools: 45 -> 23 -> 12 -> 6 -> 12 -> 23 -> 45. Dynamic
    # shapes, so the unpools read the size from the pre-pool tensors.
    model = SegNet(NUM_CLASSES, filters=(4, 4, 4), convs_per_stage=1)
    unpool = model.get_layer("decoder_block3_unpool")
    assert unpool.output_size is None
    assert (
        unpool._inbound_nodes[0].arguments.kwargs["reference"]
        is model.get_layer("encoder_block3_pool").input
    )
    images = random_images(2, 45, 60)
    masks = np.random.default_rng(1).integers(0, NUM_CLASSES + 1, (2, 45, 60))
    assert tuple(model(images).shape) == (2, 45, 60, NUM_CLASSES)
    run_model_checks(
        model,
        images,
        masks.astype("int32"),
        tmp_path=tmp_path,
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=VOID),
    )
    # The static-shape model (output_size per unpool) computes the same.
    static = DeconvNet(
        NUM_CLASSES,
        image_shape=(45, 60, 3),
        filters=(4, 4, 4),
        convs_per_stage=1,
    )
    assert static.get_layer("decoder_block3_unpool").output_size == (12, 15)
    static.set_weights(model.get_weights())
    np.testing.assert_allclose(
        np.asarray(static(images)), np.asarray(model(images)), atol=1e-6
    )


def test_odd_size_export_for_serving(tmp_path):
    model = SegNet(NUM_CLASSES, filters=(4, 4, 4), convs_per_stage=1)
    path = export_for_serving(model, tmp_path, version=2)
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    serve = reloaded.signatures["serving_default"]
    for height, width in ((45, 60), (23, 31)):
        images = random_images(2, height, width).astype("uint8")
        out = serve(images=tf.constant(images))
        assert out["masks"].shape == (2, height, width)
        expected = np.asarray(model(images.astype("float32")))
        np.testing.assert_allclose(
            out["probabilities"].numpy(), expected, atol=1e-5
        )
        np.testing.assert_array_equal(out["masks"].numpy(), expected.argmax(-1))


def test_tiny_preset_model_checks(tmp_path):
    check_tiny_preset("deconvnet_tiny", max_params=2_000, tmp_path=tmp_path)


def test_small_preset_size():
    model = DeconvNet(11, **SEGMENTATION_PRESETS["deconvnet_small"])
    assert 2e6 < model.count_params() < 3e6
    assert build_segmentation_model("segnet", 2, filters=(4,)).name == "segnet"
