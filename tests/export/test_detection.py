"""Tests for `keras_segattn.export.export_detector_for_serving`."""

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_detector_for_serving
from keras_segattn.export.__main__ import main as export_cli
from keras_segattn.export.detection import DETECTION_OUTPUTS
from keras_segattn.models import FasterRCNN
from tests.export.helpers import run_with_v1_loader
from tests.export.helpers import saved_model_cli
from tests.export.helpers import saved_model_cli_run
from tests.export.helpers import serve_in_fresh_process
from tests.export.helpers import stored_variable_bytes
from tests.export.helpers import warmup_requests

SIZE = 32
MAX_DETECTIONS = 6
OUTPUTS = sorted([*DETECTION_OUTPUTS, "detection_masks"])
TINY_MASK_RCNN = {
    "image_shape": (SIZE, SIZE, 3),
    "backbone_kwargs": {"filters": (8, 8, 16, 16, 16), "convs_per_stage": 1},
    "anchor_sizes": (8.0, 16.0),
    "rpn_pre_nms_top_n_test": 48,
    "rpn_post_nms_top_n_test": 16,
    "box_head_units": 16,
    # An untrained head scores every class about 1 / (K + 1): keep them
    # all, so that the comparisons below see real detections.
    "box_score_threshold": 0.0,
    "max_detections": MAX_DETECTIONS,
    "mask_head": True,
    "mask_roi_output_size": 7,
    "mask_head_filters": 8,
    "mask_head_convs": 1,
    "seed": 3,
}
ERRORS = (TypeError, ValueError, tf.errors.InvalidArgumentError)


def _images(batch=2, height=SIZE, width=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, height, width, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = FasterRCNN(3, **TINY_MASK_RCNN)
    path = export_detector_for_serving(
        model,
        tmp_path_factory.mktemp("detector"),
        version=2,
        warmup_images=list(_images(2, seed=7)),
    )
    return model, path


def test_layout_and_outputs_match_the_model(exported):
    model, path = exported
    assert Path(path).name == "2" and (Path(path) / "saved_model.pb").is_file()
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    assert set(reloaded.signatures) == {
        "serving_default",
        "serving_image_bytes",
    }
    images = _images(3)
    served = reloaded.signatures["serving_default"](images=tf.constant(images))
    assert sorted(served) == OUTPUTS
    expected = model(images.astype("float32"), training=False)
    assert int(np.sum(expected["num_detections"])) > 0
    for key in OUTPUTS:
        assert served[key].dtype == tf.float32
        np.testing.assert_allclose(
            served[key].numpy(), np.asarray(expected[key]), atol=1e-5
        )
    assert served["detection_masks"].shape == (3, MAX_DETECTIONS, SIZE, SIZE)


def test_other_sizes_are_resized_and_boxes_scaled_back(exported):
    model, path = exported
    signature = tf.saved_model.load(path).signatures["serving_default"]
    images = _images(2, height=64, width=48, seed=1)
    served = signature(images=tf.constant(images))
    resized = tf.image.resize(
        tf.cast(images, tf.float32), (SIZE, SIZE), method="bilinear"
    )
    expected = model(resized, training=False)
    scale = np.array([64 / SIZE, 48 / SIZE] * 2, np.float32)
    np.testing.assert_allclose(
        served["detection_boxes"].numpy(),
        np.asarray(expected["detection_boxes"]) * scale,
        atol=1e-4,
    )
    np.testing.assert_allclose(
        served["detection_scores"].numpy(),
        np.asarray(expected["detection_scores"]),
        atol=1e-5,
    )
    assert served["detection_masks"].shape == (2, MAX_DETECTIONS, 64, 48)


def test_tf_serving_readers_and_fresh_process(exported, tmp_path):
    _, path = exported
    images = _images(1, seed=2)
    result = run_with_v1_loader(path, "images", images, tf.uint8)
    assert sorted(result) == OUTPUTS
    shown = saved_model_cli("show", "--all", "--dir", path)
    assert re.search(r"inputs\['images'\].*\n\s*dtype: DT_UINT8", shown)
    assert re.search(
        r"outputs\['detection_boxes'\].*\n\s*dtype: DT_FLOAT\n"
        rf"\s*shape: \(-1, {MAX_DETECTIONS}, 4\)",
        shown,
    )
    assert re.search(
        r"outputs\['detection_masks'\].*\n\s*dtype: DT_FLOAT\n"
        rf"\s*shape: \(-1, {MAX_DETECTIONS}, -1, -1\)",
        shown,
    )
    np.save(tmp_path / "x.npy", images)
    assert "detection_scores" in saved_model_cli_run(
        path, "--inputs", f"images={tmp_path / 'x.npy'}"
    )
    fresh = serve_in_fresh_process(path, images=images)
    for key in OUTPUTS:
        np.testing.assert_allclose(fresh[key], result[key], atol=1e-5)


def test_warmup_requests_parse_and_run(exported):
    _, path = exported
    signature = tf.saved_model.load(path).signatures["serving_default"]
    requests = warmup_requests(path)
    assert len(requests) == 2
    for request, sample in zip(requests, _images(2, seed=7), strict=True):
        assert request.model_spec.signature_name == "serving_default"
        images = tf.make_ndarray(request.inputs["images"])
        np.testing.assert_array_equal(images[0], sample)
        served = signature(images=tf.constant(images))
        assert served["detection_boxes"].shape == (1, MAX_DETECTIONS, 4)


def test_empty_batch_and_bad_requests(exported):
    _, path = exported
    reloaded = tf.saved_model.load(path)
    signature = reloaded.signatures["serving_default"]
    empty = signature(images=tf.zeros((0, 20, 24, 3), tf.uint8))
    assert empty["detection_boxes"].shape == (0, MAX_DETECTIONS, 4)
    assert empty["num_detections"].shape == (0,)
    assert empty["detection_masks"].shape == (0, MAX_DETECTIONS, 20, 24)
    with pytest.raises(ERRORS):
        signature(images=tf.zeros((1, SIZE, SIZE, 3), tf.float32))
    with pytest.raises(ERRORS, match="images"):
        signature(images=tf.zeros((1, SIZE, SIZE, 1), tf.uint8))
    with pytest.raises(ERRORS):
        signature(images=tf.zeros((SIZE, SIZE, 3), tf.uint8))
    by_bytes = reloaded.signatures["serving_image_bytes"]
    images = _images(2, seed=4)
    png = tf.stack([tf.io.encode_png(image) for image in images])
    from_png = by_bytes(image_bytes=png)
    from_pixels = signature(images=tf.constant(images))
    for key in OUTPUTS:
        np.testing.assert_array_equal(from_png[key], from_pixels[key])
    empty = by_bytes(image_bytes=tf.constant([], tf.string))
    assert empty["detection_boxes"].shape[0] == 0
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Unknown image file format|decode"
    ):
        by_bytes(image_bytes=tf.constant([b"not an image"]))


def test_label_offset_shifts_real_detections_only(exported, tmp_path):
    model, path = exported
    shifted = export_detector_for_serving(
        model, tmp_path, version=1, label_offset=1
    )
    images = tf.constant(_images(2, seed=3))
    base = tf.saved_model.load(path).signatures["serving_default"](
        images=images
    )
    plus_one = tf.saved_model.load(shifted).signatures["serving_default"](
        images=images
    )
    valid = np.arange(MAX_DETECTIONS) < base["num_detections"].numpy()[:, None]
    np.testing.assert_array_equal(
        plus_one["detection_classes"].numpy(),
        base["detection_classes"].numpy() + valid,
    )
    with pytest.raises(ValueError, match="Received: label_offset=-1"):
        export_detector_for_serving(model, tmp_path, label_offset=-1)


def test_variables_stored_once_and_bad_arguments(exported, tmp_path):
    model, path = exported
    assert stored_variable_bytes(path) < 1.5 * 4 * model.count_params() + 4096
    with pytest.raises(ValueError, match="Received: version=0"):
        export_detector_for_serving(model, tmp_path, version=0)
    images = keras.Input((8, 8, 3))
    classifier = keras.Model(images, keras.layers.Dense(2)(images))
    with pytest.raises(ValueError, match="Missing: .*detection_boxes"):
        export_detector_for_serving(classifier, tmp_path)
    dynamic = keras.Input((None, None, 3))
    with pytest.raises(ValueError, match="static size"):
        export_detector_for_serving(
            keras.Model(dynamic, {"detection_boxes": dynamic}), tmp_path
        )


def test_cli_exports_a_keras_file(exported, tmp_path, capsys):
    model, _ = exported
    model.save(tmp_path / "detector.keras")
    samples = tmp_path / "samples"
    samples.mkdir()
    for i, image in enumerate(_images(2, seed=9)):
        tf.io.write_file(str(samples / f"{i}.png"), tf.io.encode_png(image))
    assert (
        export_cli(
            [
                str(tmp_path / "detector.keras"),
                "--task",
                "detection",
                "--output-dir",
                str(tmp_path / "out"),
                "--warmup-images",
                str(samples),
            ]
        )
        == 0
    )
    path = tmp_path / "out" / "1"
    assert capsys.readouterr().out.strip() == str(path)
    assert (path / "assets.extra" / "tf_serving_warmup_requests").is_file()
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        images=tf.constant(_images(1))
    )
    np.testing.assert_allclose(
        served["detection_scores"].numpy(),
        np.asarray(model(_images(1).astype("float32"))["detection_scores"]),
        atol=1e-5,
    )
