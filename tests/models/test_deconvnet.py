"""Tests for `keras_segattn.models.DeconvNet` and `SegNet`."""

import re

import numpy as np
import pytest

from keras_segattn.layers import MaxPoolingWithArgmax2D
from keras_segattn.layers import MaxUnpooling2D
from keras_segattn.models import SEGMENTATION_PRESETS
from keras_segattn.models import DeconvNet
from keras_segattn.models import SegNet
from keras_segattn.models import build_segmentation_model
from tests.models.helpers import NUM_CLASSES
from tests.models.helpers import check_tiny_preset
from tests.models.helpers import random_images


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
        (
            {"image_shape": (50, 64, 3)},
            "divisible by 2 ** len(filters) = 4",
        ),
        ({"image_shape": (50, 64, 3)}, "Received: image_shape=(50, 64, 3)"),
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


def test_dynamic_size_not_divisible_fails_when_called():
    model = DeconvNet(NUM_CLASSES, filters=(4, 4), convs_per_stage=1)
    with pytest.raises(Exception, match="divisible"):
        model(random_images(1, 30, 32))


def test_tiny_preset_model_checks(tmp_path):
    check_tiny_preset("deconvnet_tiny", max_params=2_000, tmp_path=tmp_path)


def test_small_preset_size():
    model = DeconvNet(11, **SEGMENTATION_PRESETS["deconvnet_small"])
    assert 2e6 < model.count_params() < 3e6
    assert build_segmentation_model("segnet", 2, filters=(4,)).name == "segnet"
