"""Tests for `keras_segattn.models.OverfeatDetector`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.models.overfeat import OverfeatDetector


def _models():
    trunk = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
        ],
        name="trunk",
    )
    classifier = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            trunk,
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    regressor = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            trunk,
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="sigmoid"),
        ]
    )
    return classifier, regressor


def test_score_maps_match_windows_and_boxes_map_back():
    classifier, regressor = _models()
    detector = OverfeatDetector(classifier, regressor, scales=(1.0, 0.5))
    assert detector.window == (8, 8) and detector.stride == (2, 2)
    images = np.random.default_rng(0).uniform(0, 1, (2, 16, 20, 1))
    levels = detector.score_maps(images.astype("float32"))
    assert [level["size"] for level in levels] == [(16, 20), (8, 10)]
    scores = np.asarray(levels[0]["scores"])
    boxes = np.asarray(levels[0]["boxes"])
    assert scores.shape == (2, 5, 7, 3) and boxes.shape == (2, 5, 7, 4)
    i, j = 3, 5
    crop = images[:, 2 * i : 2 * i + 8, 2 * j : 2 * j + 8].astype("float32")
    np.testing.assert_allclose(scores[:, i, j], classifier(crop), atol=1e-5)
    relative = np.asarray(regressor(crop))
    expected = relative * 8 + np.array([2 * j, 2 * i, 2 * j, 2 * i])
    np.testing.assert_allclose(boxes[:, i, j], expected, atol=1e-4)
    # Scale 0.5: pixels of the half-size image map back times 2.
    coarse = np.asarray(levels[1]["boxes"])
    assert coarse.shape == (2, 1, 2, 4)
    half = np.asarray(levels[1]["scores"])
    assert half.shape == (2, 1, 2, 3)


def test_without_regressor_boxes_are_windows():
    classifier, _ = _models()
    detector = OverfeatDetector(classifier, scales=(0.75,))
    images = np.zeros((1, 16, 16, 1), "float32")
    boxes = np.asarray(detector.score_maps(images)[0]["boxes"])
    assert boxes.shape == (1, 3, 3, 4)
    # Window (0, 1) of the 12x12 level covers x 2..10, y 0..8 there.
    np.testing.assert_allclose(
        boxes[0, 0, 1], np.array([2, 0, 10, 8]) * 16 / 12, atol=1e-5
    )


@pytest.mark.parametrize("merge", ["overfeat", "nms"])
def test_detect_outputs(merge):
    classifier, regressor = _models()
    detector = OverfeatDetector(
        classifier,
        regressor,
        scales=(1.0, 0.75),
        background_class=0,
        score_threshold=0.0,
        max_candidates=20,
        max_detections=5,
        merge=merge,
    )
    images = np.random.default_rng(1).uniform(0, 1, (2, 16, 16, 1))
    out = detector.detect(images.astype("float32"))
    assert out["detection_boxes"].shape == (2, 5, 4)
    assert out["detection_scores"].shape == (2, 5)
    assert out["num_detections"].shape == (2,)
    for b in range(2):
        count = out["num_detections"][b]
        assert 1 <= count <= 5
        assert set(out["detection_classes"][b, :count]) <= {1, 2}
        boxes = out["detection_boxes"][b, :count]
        assert np.all(boxes[:, 2] >= boxes[:, 0])
        assert np.all(out["detection_boxes"][b, count:] == 0)


@pytest.mark.parametrize("scales", [(1.0, 0.0), (-0.5,), (), "big"])
def test_non_positive_scales_are_rejected(scales):
    classifier, _ = _models()
    with pytest.raises(ValueError, match=re.escape("argument `scales`")):
        OverfeatDetector(classifier, scales=scales)


def test_scale_too_small_for_a_window():
    classifier, _ = _models()
    detector = OverfeatDetector(classifier, scales=(0.25,))
    with pytest.raises(ValueError, match="`scales`.*scale 0.25"):
        detector.score_maps(np.zeros((1, 16, 16, 1), "float32"))


def test_bad_head_names_the_layer():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Dense(2, name="pixel_dense"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    with pytest.raises(ValueError, match="'pixel_dense'"):
        OverfeatDetector(model)


def test_regressor_geometry_must_match():
    classifier, _ = _models()
    other = keras.Sequential(
        [keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    with pytest.raises(ValueError, match="box_regressor"):
        OverfeatDetector(classifier, other)
