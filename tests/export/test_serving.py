import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_for_serving
from tests.export.helpers import run_with_v1_loader
from tests.export.helpers import saved_model_cli
from tests.export.helpers import saved_model_cli_run
from tests.export.helpers import serve_in_fresh_process
from tests.export.helpers import stored_variable_bytes
from tests.export.helpers import warmup_requests


def _tiny_segmenter(num_classes=3, image_shape=(None, None, 3)):
    images = keras.Input(image_shape, name="images")
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(num_classes, 1)(x)
    probs = keras.layers.Softmax(dtype="float32", name="mask_probs")(x)
    return keras.Model(images, probs)


def _images(batch=2, height=12, width=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _tiny_segmenter()
    path = export_for_serving(
        model, tmp_path_factory.mktemp("export"), version=3, label_offset=1
    )
    return model, path


def test_layout_and_outputs(exported):
    model, path = exported
    assert path.endswith("/3")
    reloaded = tf.saved_model.load(path)
    images = _images()
    out = reloaded.signatures["serving_default"](images=tf.constant(images))
    assert sorted(out) == ["masks", "probabilities"]
    assert out["masks"].dtype == tf.int32
    assert out["masks"].shape == (2, 12, 10)
    assert out["probabilities"].shape == (2, 12, 10, 3)
    expected = np.asarray(model(images.astype("float32")))
    np.testing.assert_allclose(
        out["probabilities"].numpy(), expected, atol=1e-6
    )
    np.testing.assert_array_equal(out["masks"].numpy(), expected.argmax(-1) + 1)


def test_reload_in_fresh_process_matches(exported, tmp_path):
    model, path = exported
    images = _images(seed=3)
    served = serve_in_fresh_process(path, images=images)["probabilities"]
    np.testing.assert_allclose(
        served, model(images.astype("float32")), atol=1e-5
    )


def test_v1_loader_runs_signature_by_tensor_names(exported):
    _, path = exported
    result = run_with_v1_loader(path, "images", _images(batch=1), tf.uint8)
    assert result["masks"].shape == (1, 12, 10)
    assert result["masks"].dtype == np.int32


def test_saved_model_cli_show_and_run(exported, tmp_path):
    _, path = exported
    shown = saved_model_cli("show", "--all", "--dir", path)
    assert "serving_default" in shown
    assert re.search(r"inputs\['images'\].*\n\s*dtype: DT_UINT8", shown)
    assert re.search(r"outputs\['masks'\].*\n\s*dtype: DT_INT32", shown)
    np.save(tmp_path / "x.npy", _images(batch=1))
    ran = saved_model_cli_run(path, "--inputs", f"images={tmp_path / 'x.npy'}")
    assert "masks" in ran


def test_empty_batch_returns_empty_outputs(exported):
    _, path = exported
    reloaded = tf.saved_model.load(path)
    out = reloaded.signatures["serving_default"](
        images=tf.zeros((0, 8, 8, 3), tf.uint8)
    )
    assert out["masks"].shape == (0, 8, 8)
    assert out["probabilities"].shape == (0, 8, 8, 3)


@pytest.mark.parametrize(
    "bad",
    [
        tf.zeros((1, 8, 8, 3), tf.float32),
        tf.zeros((8, 8, 3), tf.uint8),
        tf.zeros((1, 8, 8, 4), tf.uint8),
    ],
    ids=["float", "rank3", "four_channels"],
)
def test_bad_requests_fail_clearly(exported, bad):
    _, path = exported
    reloaded = tf.saved_model.load(path)
    with pytest.raises(
        (TypeError, ValueError, tf.errors.InvalidArgumentError),
        match="images|shape|dtype|uint8|incompatible",
    ):
        reloaded.signatures["serving_default"](images=bad)


def test_inference_size_resizes_and_restores(tmp_path):
    model = _tiny_segmenter()
    path = export_for_serving(model, tmp_path, inference_size=(8, 8))
    out = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.constant(_images(height=20, width=14))
    )
    assert out["masks"].shape == (2, 20, 14)
    np.testing.assert_allclose(
        out["probabilities"].numpy().sum(-1), 1.0, atol=1e-5
    )


def _averaged_passes(model, images, sizes, flip):
    """The mean of the model's probabilities over input `sizes` (None: the
    image's own) and, with `flip`, their mirror images, each resized back
    to the images' size."""
    x = images.astype("float32")
    height, width = images.shape[1:3]
    total = []
    for size in sizes:
        scaled = x if size is None else tf.image.resize(x, size).numpy()
        for flipped in (False, True) if flip else (False,):
            inputs = scaled[:, :, ::-1] if flipped else scaled
            p = np.asarray(model(inputs))
            p = p[:, :, ::-1] if flipped else p
            if size is not None:
                p = tf.image.resize(p, (height, width)).numpy()
            total.append(p)
    return np.mean(total, axis=0)


@pytest.mark.parametrize(
    "inference_size, scales, sizes",
    [
        ((8, 8), (0.5, 1.0, 1.3), [(4, 4), (8, 8), (10, 10)]),
        (None, (1.0, 0.5), [None, (10, 7)]),
    ],
)
def test_test_time_augmentation(tmp_path, inference_size, scales, sizes):
    keras.utils.set_random_seed(1)
    model = _tiny_segmenter()
    path = export_for_serving(
        model,
        tmp_path,
        inference_size=inference_size,
        test_time_scales=scales,
        test_time_flip=True,
    )
    images = _images(height=20, width=14)
    out = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.constant(images)
    )
    probabilities = out["probabilities"].numpy()
    expected = _averaged_passes(model, images, sizes, flip=True)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_array_equal(out["masks"].numpy(), expected.argmax(-1))
    # Each part matters: neither the flips nor the scales alone give it.
    for other in (
        _averaged_passes(model, images, sizes, flip=False),
        _averaged_passes(model, images, sizes[:1], flip=True),
    ):
        assert np.abs(probabilities - other).max() > 1e-3


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"test_time_scales": ()}, ValueError, "at least one number"),
        ({"test_time_scales": (1.0, 0.0)}, ValueError, "test_time_scales=0.0"),
        ({"test_time_scales": "1.0"}, ValueError, "test_time_scales='1.0'"),
        ({"test_time_flip": "yes"}, TypeError, "test_time_flip='yes'"),
    ],
)
def test_bad_test_time_augmentation(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=re.escape(match)):
        export_for_serving(_tiny_segmenter(), tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"version": 0}, "Received: version=0"),
        ({"task": "detection"}, "Received: task='detection'"),
        ({"inference_size": (0, 4)}, r"Received: inference_size=\(0, 4\)"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_for_serving(_tiny_segmenter(), tmp_path, **kwargs)


def test_model_with_wrong_input_is_rejected(tmp_path):
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match=re.escape("input shape (None, 5)")):
        export_for_serving(model, tmp_path)


def test_signature_json_safe(exported):
    # The signature's structured outputs are plain names, as TF Serving shows.
    _, path = exported
    reloaded = tf.saved_model.load(path)
    outputs = reloaded.signatures["serving_default"].structured_outputs
    assert json.dumps(sorted(outputs)) == '["masks", "probabilities"]'


def _encode(images, fmt):
    encode = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
    return tf.stack([encode(image) for image in images])


def test_image_bytes_signature_matches_uint8_signature(exported):
    _, path = exported
    reloaded = tf.saved_model.load(path)
    images = _images(batch=2)
    by_bytes = reloaded.signatures["serving_image_bytes"](
        image_bytes=_encode(images, "png")
    )
    by_pixels = reloaded.signatures["serving_default"](
        images=tf.constant(images)
    )
    for key in ("masks", "probabilities"):
        np.testing.assert_array_equal(
            by_bytes[key].numpy(), by_pixels[key].numpy()
        )
    jpeg = reloaded.signatures["serving_image_bytes"](
        image_bytes=_encode(images, "jpeg")
    )
    assert jpeg["masks"].shape == (2, 12, 10)


def test_image_bytes_empty_and_corrupt(exported):
    _, path = exported
    signature = tf.saved_model.load(path).signatures["serving_image_bytes"]
    empty = signature(image_bytes=tf.constant([], tf.string))
    assert empty["masks"].shape[0] == 0
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Unknown image file format|decode"
    ):
        signature(image_bytes=tf.constant([b"not an image"]))


def test_warmup_requests_parse_and_run(tmp_path):
    from keras_segattn.export import write_warmup_requests

    model = _tiny_segmenter()
    samples = [_images(batch=1, height=9, width=7, seed=s)[0] for s in range(3)]
    path = export_for_serving(model, tmp_path, warmup_images=samples)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    requests = warmup_requests(path)
    assert len(requests) == 3
    for request, sample in zip(requests, samples, strict=True):
        assert request.model_spec.signature_name == "serving_default"
        images = tf.make_ndarray(request.inputs["images"])
        np.testing.assert_array_equal(images[0], sample)
        assert signature(images=tf.constant(images))["masks"].shape == (1, 9, 7)
    with pytest.raises(ValueError, match="Received: an empty sequence"):
        write_warmup_requests(path, [])


def test_cli_exports_a_keras_file(tmp_path, capsys):
    from keras_segattn.export.__main__ import main

    model = _tiny_segmenter()
    model.save(tmp_path / "m.keras")
    samples = tmp_path / "samples"
    samples.mkdir()
    tf.io.write_file(
        str(samples / "a.png"), tf.io.encode_png(_images(batch=1)[0])
    )
    assert (
        main(
            [
                str(tmp_path / "m.keras"),
                "--output-dir",
                str(tmp_path / "out"),
                "--version",
                "2",
                "--inference-size",
                "8",
                "--warmup-images",
                str(samples),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip().endswith("/2")
    # Test-time augmentation from the command line.
    argv = [str(tmp_path / "m.keras"), "--output-dir", str(tmp_path / "tta")]
    argv += ["--inference-size", "8", "--test-time-scales", "0.5", "1"]
    assert main([*argv, "--test-time-flip"]) == 0
    images = _images(height=20, width=14)
    served = tf.saved_model.load(str(tmp_path / "tta" / "1")).signatures[
        "serving_default"
    ](images=tf.constant(images))
    np.testing.assert_allclose(
        served["probabilities"].numpy(),
        _averaged_passes(model, images, [(4, 4), (8, 8)], flip=True),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match=re.escape("test_time_scales=-2.0")):
        main([*argv, "--test-time-scales", "1", "-2"])
    assert (
        tmp_path / "out" / "2" / "assets.extra" / "tf_serving_warmup_requests"
    ).exists()
    with pytest.raises(SystemExit):
        main(["--help"])


def test_variables_are_stored_once(exported):
    # Keras's ExportArchive checkpoints every variable twice; ours must not.
    model, path = exported
    assert stored_variable_bytes(path) < 1.5 * 4 * model.count_params() + 4096
