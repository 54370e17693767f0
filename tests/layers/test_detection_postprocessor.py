"""Tests for `keras_segattn.layers.detection_postprocessor`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers.detection_postprocessor import DETECTION_KEYS
from keras_segattn.layers.detection_postprocessor import DetectionPostprocessor
from tests.ops.test_postprocess_detections import IMAGE
from tests.ops.test_postprocess_detections import _inputs
from tests.ops.test_postprocess_detections import np_postprocess
from tests.testing import check_config_round_trip


def _call_inputs(seed=0):
    logits, deltas, proposals = _inputs(seed)
    return {
        "class_logits": logits,
        "box_deltas": deltas,
        "proposals": proposals,
    }


@pytest.mark.parametrize("bounding_box_format", ["yxyx", "xyxy"])
def test_matches_reference_in_od_api_format(bounding_box_format):
    layer = DetectionPostprocessor(
        IMAGE, max_detections=20, bounding_box_format=bounding_box_format
    )
    check_config_round_trip(layer)
    inputs = _call_inputs()
    outputs = layer(**inputs)
    assert sorted(outputs) == sorted(DETECTION_KEYS)
    assert all(v.dtype == "float32" for v in outputs.values())
    boxes = np.asarray(outputs["detection_boxes"])
    assert boxes.shape == (2, 20, 4)
    for b in range(2):
        ref_boxes, ref_scores, ref_labels = np_postprocess(
            *(
                inputs[k][b]
                for k in ("class_logits", "box_deltas", "proposals")
            ),
            0.05,
            0.5,
            20,
        )
        n = len(ref_scores)
        assert outputs["num_detections"][b] == n
        if bounding_box_format == "yxyx":
            ref_boxes = ref_boxes[:, [1, 0, 3, 2]]
        np.testing.assert_allclose(boxes[b, :n], ref_boxes, atol=1e-3)
        np.testing.assert_array_equal(boxes[b, n:], 0.0)
        np.testing.assert_allclose(
            outputs["detection_scores"][b, :n], ref_scores, atol=1e-6
        )
        # 0-based class ids, background excluded.
        np.testing.assert_array_equal(
            outputs["detection_classes"][b, :n], ref_labels - 1
        )


def test_functional_model_round_trip_and_mixed_precision(tmp_path):
    inputs = _call_inputs(1)
    symbolic = {
        name: keras.Input(value.shape[1:], name=name)
        for name, value in inputs.items()
    }
    layer = DetectionPostprocessor(IMAGE, max_detections=7)
    outputs = layer(**symbolic)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "detection_boxes": (None, 7, 4),
        "detection_scores": (None, 7),
        "detection_classes": (None, 7),
        "num_detections": (None,),
    }
    model = keras.Model(symbolic, outputs)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    expected, actual = model(inputs), restored(inputs)
    for key in DETECTION_KEYS:
        np.testing.assert_array_equal(expected[key], actual[key])
    mixed = DetectionPostprocessor(
        IMAGE, max_detections=7, dtype="mixed_float16"
    )
    for key, value in mixed(**inputs).items():
        assert value.dtype == "float32", key
        np.testing.assert_allclose(value, expected[key], atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_detections": 0}, "Received: max_detections=0"),
        ({"nms_threshold": -1}, "Received: nms_threshold=-1"),
        ({"bbox_reg_weights": (1, 1)}, "Received: bbox_reg_weights=(1, 1)"),
        ({"bounding_box_format": "xyz"}, "Received: bounding_box_format='xyz'"),
        ({"pre_nms_top_n": 0}, "Received: pre_nms_top_n=0"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        DetectionPostprocessor(IMAGE, **kwargs)
