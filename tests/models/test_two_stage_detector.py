"""Tests for `keras_segattn.models.TwoStageDetector` (the component model)."""

import json
import re

import keras
import numpy as np
import pytest

from keras_segattn import layers
from keras_segattn.models import TwoStageDetector
from keras_segattn.models.two_stage_detector import LOSS_NAMES
from tests.models.test_faster_rcnn import check_first_step_losses
from tests.models.test_faster_rcnn import make_scene
from tests.models.test_faster_rcnn import plain_backbone

NUM_CLASSES = 3


def components(**overrides) -> dict:
    """A tiny single-level detector's components, built by hand."""
    parts = {
        "backbone": plain_backbone(),
        "rpn_head": layers.RPNHead(num_anchors=6),
        "proposal_generator": layers.ProposalGenerator(
            32,
            ((8.0, 16.0),),  # one level
            pre_nms_top_n_train=64,
            pre_nms_top_n_test=48,
            post_nms_top_n_train=32,
            post_nms_top_n_test=16,
        ),
        "anchor_labeler": layers.AnchorLabeler(batch_size_per_image=32, seed=1),
        "roi_sampler": layers.RoISampler(batch_size_per_image=16, seed=2),
        "roi_pooler": layers.RoIAlign(
            7, spatial_scale=1 / 8, aligned=False, name="roi_align"
        ),
        "box_head": layers.BoxHead(NUM_CLASSES, units=32),
        "detection_postprocessor": layers.DetectionPostprocessor(
            32, max_detections=6
        ),
    }
    return {**parts, **overrides}


def test_wires_components_trains_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = TwoStageDetector(**components())
    images, targets = make_scene(2)
    first_stage = model(images, training=True)
    assert sorted(first_stage) == ["features", "rpn_deltas", "rpn_objectness"]
    assert [tuple(f.shape) for f in first_stage["features"]] == [(2, 4, 4, 32)]
    assert [tuple(o.shape) for o in first_stage["rpn_objectness"]] == [
        (2, 4, 4, 6)
    ]
    model.compile(optimizer="adam", jit_compile=True)
    assert model.jit_compile is True
    history = model.fit(images, targets, batch_size=2, verbose=0).history
    check_first_step_losses(history, LOSS_NAMES)

    config = model.get_config()
    json.dumps(config)
    assert config["roi_pooler"]["class_name"] == "RoIAlign"
    clone = TwoStageDetector.from_config(config)
    assert clone.count_params() == model.count_params()
    path = tmp_path / "detector.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is TwoStageDetector
    expected, actual = model(images), restored(images)
    assert sorted(expected) == sorted(actual)
    for key in expected:
        np.testing.assert_array_equal(expected[key], actual[key])


def test_component_errors():
    with pytest.raises(
        TypeError, match=re.escape("Received None for ['box_head']")
    ):
        TwoStageDetector(**components(box_head=None))
    with pytest.raises(
        TypeError, match=re.escape("Received: type(backbone)=RPNHead")
    ):
        TwoStageDetector(**components(backbone=layers.RPNHead(6)))
    with pytest.raises(ValueError, match="Expected all of"):
        TwoStageDetector(**components(mask_head=layers.MaskHead(NUM_CLASSES)))
    images = keras.Input((None, None, 3))
    dynamic = keras.Model(images, keras.layers.Conv2D(4, 3)(images))
    with pytest.raises(ValueError, match="Expected one input of static"):
        TwoStageDetector(**components(backbone=dynamic))
