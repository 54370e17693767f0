"""Tests for `keras_segattn.export.export_classifier_for_serving`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_classifier_for_serving
from keras_segattn.layers import SpatialTransformer
from keras_segattn.layers import build_localization_head
from tests.export.helpers import run_with_v1_loader
from tests.export.helpers import saved_model_cli
from tests.export.helpers import saved_model_cli_run
from tests.export.helpers import serve_in_fresh_process
from tests.export.helpers import warmup_requests


def _st_classifier():
    images = keras.Input((8, 8, 1), name="images")
    localization = keras.Sequential(
        [keras.layers.Flatten(), build_localization_head("attention")]
    )
    transformed, theta = SpatialTransformer(
        localization, 4, transform="attention", return_theta=True
    )(images)
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(transformed))
    probabilities = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(
        images,
        {
            "probabilities": probabilities,
            "transformed_images": transformed,
            "theta": theta,
        },
    )


def test_uint8_and_float_signatures_match_the_model(tmp_path):
    model = _st_classifier()
    path = export_classifier_for_serving(model, tmp_path, version=3)
    assert path == str(tmp_path / "3")
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1))
    expected = model(images.astype("float32"))
    served = reloaded.signatures["serving_default"](
        images=tf.constant(images, tf.uint8)
    )
    for key in ("probabilities", "transformed_images", "theta"):
        np.testing.assert_allclose(
            served[key].numpy(), np.asarray(expected[key]), atol=1e-6
        )
    np.testing.assert_array_equal(
        served["classes"].numpy(),
        np.argmax(np.asarray(expected["probabilities"]), -1),
    )
    floats = reloaded.signatures["serving_float32"](
        images=tf.constant(images, tf.float32)
    )
    np.testing.assert_allclose(
        floats["probabilities"].numpy(), served["probabilities"].numpy()
    )
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        reloaded.signatures["serving_default"](
            images=tf.zeros((1, 8, 9, 1), tf.uint8)
        )


def test_plain_classifier_gets_probabilities_and_classes(tmp_path):
    images = keras.Input((6, 6, 1))
    outputs = keras.layers.Dense(4, activation="softmax")(
        keras.layers.Flatten()(images)
    )
    path = export_classifier_for_serving(
        keras.Model(images, outputs), tmp_path, include_float_signature=False
    )
    reloaded = tf.saved_model.load(path)
    assert sorted(reloaded.signatures) == [
        "serving_default",
        "serving_image_bytes",
    ]
    served = reloaded.signatures["serving_default"](
        images=tf.zeros((0, 6, 6, 1), tf.uint8)
    )
    assert served["probabilities"].shape == (0, 4)
    assert sorted(served) == ["classes", "probabilities"]


def test_bad_arguments(tmp_path):
    images = keras.Input((6, 6, 1))
    flat = keras.layers.Flatten()(images)
    model = keras.Model(images, keras.layers.Dense(2)(flat))
    with pytest.raises(ValueError, match=re.escape("Received: version=0")):
        export_classifier_for_serving(model, tmp_path, version=0)
    unnamed = keras.Model(images, {"scores": keras.layers.Dense(2)(flat)})
    with pytest.raises(ValueError, match="Expected an output named"):
        export_classifier_for_serving(unnamed, tmp_path)
    dynamic = keras.Input((None, None, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(dynamic)
    with pytest.raises(ValueError, match="of a static size"):
        export_classifier_for_serving(
            keras.Model(dynamic, keras.layers.Dense(2)(pooled)), tmp_path
        )


def test_cli_exports_a_classifier(tmp_path, capsys):
    from PIL import Image

    from keras_segattn.export.__main__ import main

    _st_classifier().save(tmp_path / "st.keras")
    samples = tmp_path / "samples"
    samples.mkdir()
    Image.new("RGB", (20, 16), (200, 10, 10)).save(samples / "a.png")
    argv = [
        str(tmp_path / "st.keras"),
        "--task",
        "classification",
        "--output-dir",
        str(tmp_path / "out"),
        "--warmup-images",
        str(samples),
    ]
    assert main(argv) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("/1")
    signature = tf.saved_model.load(path).signatures["serving_default"]
    served = signature(images=tf.zeros((2, 8, 8, 1), tf.uint8))
    assert served["probabilities"].shape == (2, 3)
    warmup = tf.io.gfile.join(
        path, "assets.extra", "tf_serving_warmup_requests"
    )
    assert tf.io.gfile.exists(warmup)


@pytest.fixture(scope="module")
def exported_st(tmp_path_factory):
    model = _st_classifier()
    samples = [np.full((8, 8, 1), v, np.uint8) for v in (0, 128)]
    path = export_classifier_for_serving(
        model, tmp_path_factory.mktemp("st"), warmup_images=samples
    )
    return model, path, samples


def test_tf_serving_readers(exported_st, tmp_path):
    model, path, _ = exported_st
    images = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 1))
    images = images.astype(np.uint8)
    expected = np.asarray(model(images.astype("float32"))["probabilities"])
    result = run_with_v1_loader(path, "images", images, tf.uint8)
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-6)
    assert result["theta"].shape == (2, 3)  # attention transform: s, tx, ty
    shown = saved_model_cli("show", "--all", "--dir", path)
    assert re.search(r"inputs\['images'\].*\n\s*dtype: DT_UINT8", shown)
    assert re.search(r"outputs\['classes'\].*\n\s*dtype: DT_INT32", shown)
    assert "serving_float32" in shown
    np.save(tmp_path / "x.npy", images)
    ran = saved_model_cli_run(path, "--inputs", f"images={tmp_path / 'x.npy'}")
    assert "transformed_images" in ran
    # A fresh process reloads it and gets the same probabilities.
    fresh = serve_in_fresh_process(path, images=images)
    np.testing.assert_allclose(fresh["probabilities"], expected, atol=1e-5)


def test_warmup_and_bad_requests(exported_st):
    _, path, samples = exported_st
    signature = tf.saved_model.load(path).signatures["serving_default"]
    requests = warmup_requests(path)
    assert len(requests) == len(samples)
    for request, sample in zip(requests, samples, strict=True):
        images = tf.make_ndarray(request.inputs["images"])
        np.testing.assert_array_equal(images[0], sample)
        assert signature(images=tf.constant(images))["classes"].shape == (1,)
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        signature(images=tf.zeros((1, 8, 8, 1), tf.float32))  # dtype
    with pytest.raises(
        (TypeError, ValueError, tf.errors.InvalidArgumentError), match="images"
    ):
        signature(images=tf.zeros((8, 8, 1), tf.uint8))  # rank


def _encode(images, fmt):
    encode = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
    return tf.stack([encode(image) for image in images])


def test_image_bytes_signature_matches_serving_default(exported_st):
    model, path, _ = exported_st
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    images = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 1))
    images = images.astype(np.uint8)
    served = reloaded.signatures["serving_default"](images=tf.constant(images))
    by_bytes = reloaded.signatures["serving_image_bytes"]
    from_png = by_bytes(image_bytes=_encode(images, "png"))
    assert sorted(from_png) == sorted(served)
    for key in served:
        np.testing.assert_array_equal(from_png[key], served[key])
    # JPEG is lossy: the same predictions up to its error.
    from_jpeg = by_bytes(image_bytes=_encode(images, "jpeg"))
    assert from_jpeg["probabilities"].shape == (2, 3)
    # A colour PNG of another size is decoded to grayscale and resized to
    # the model's 8 x 8 (bilinear).
    rgb = np.random.default_rng(3).integers(0, 256, (1, 16, 12, 3))
    png = _encode(rgb.astype(np.uint8), "png")
    gray = tf.io.decode_png(png[0], channels=1)
    expected = model(tf.image.resize(tf.cast(gray, tf.float32)[None], (8, 8)))
    got = by_bytes(image_bytes=png)
    np.testing.assert_allclose(
        got["probabilities"], expected["probabilities"], atol=1e-6
    )
    empty = by_bytes(image_bytes=tf.constant([], tf.string))
    assert empty["probabilities"].shape == (0, 3)
    assert empty["transformed_images"].shape == (0, 4, 4, 1)
    with pytest.raises(tf.errors.InvalidArgumentError):
        by_bytes(image_bytes=tf.constant([b"not an image"]))
