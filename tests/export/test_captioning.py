"""Tests for `keras_segattn.export.export_captioner_for_serving`."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data import CAPTION_VOCABULARY
from keras_segattn.decoding import greedy_decode
from keras_segattn.export import BEAM_SERVING_KEY
from keras_segattn.export import export_captioner_for_serving
from keras_segattn.models import ShowAttendTellCaptioner
from tests.export.helpers import run_with_v1_loader
from tests.export.helpers import saved_model_cli
from tests.export.helpers import saved_model_cli_run
from tests.export.helpers import serve_in_fresh_process
from tests.export.helpers import stored_variable_bytes
from tests.export.helpers import warmup_requests

VOCABULARY = list(CAPTION_VOCABULARY)
MAX_LENGTH = 6


def _images(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, 16, 16, 1)).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = ShowAttendTellCaptioner(
        len(VOCABULARY),
        image_shape=(16, 16, 1),
        filters=(4, 6),
        embedding_dim=6,
        decoder_units=8,
        attention_units=5,
    )
    path = export_captioner_for_serving(
        model,
        tmp_path_factory.mktemp("captions"),
        VOCABULARY,
        max_output_length=MAX_LENGTH,
        warmup_images=list(_images(2, seed=5)),
    )
    return model, path


def test_outputs_match_the_model(exported):
    model, path = exported
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {
        "serving_default",
        BEAM_SERVING_KEY,
        "serving_image_bytes",
    }
    images = _images(3)
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    assert sorted(served) == ["attention", "caption", "tokens"]
    expected = greedy_decode(
        model,
        images.astype("float32"),
        MAX_LENGTH,
        VOCABULARY.index("[START]"),
        VOCABULARY.index("[END]"),
    )
    np.testing.assert_array_equal(served["tokens"], expected["tokens"])
    np.testing.assert_allclose(
        served["attention"], expected["attention"], atol=1e-6
    )
    beam = loaded.signatures[BEAM_SERVING_KEY](images=tf.constant(images))
    assert beam["caption"].shape == (3,) and beam["scores"].shape == (3,)


def test_tf_serving_readers_and_fresh_process(exported, tmp_path):
    _, path = exported
    images = _images(1, seed=2)
    result = run_with_v1_loader(path, "images", images, tf.uint8)
    assert result["caption"].shape == (1,)
    shown = saved_model_cli("show", "--all", "--dir", path)
    assert re.search(r"outputs\['caption'\].*\n\s*dtype: DT_STRING", shown)
    np.save(tmp_path / "x.npy", images)
    assert "caption" in saved_model_cli_run(
        path, "--inputs", f"images={tmp_path / 'x.npy'}"
    )
    fresh = serve_in_fresh_process(path, images=images)
    assert fresh["caption"].tolist() == result["caption"].tolist()


def test_warmup_empty_batch_and_bad_requests(exported):
    _, path = exported
    signature = tf.saved_model.load(path).signatures["serving_default"]
    requests = warmup_requests(path)
    assert len(requests) == 2
    for request in requests:
        images = tf.make_ndarray(request.inputs["images"])
        assert signature(images=tf.constant(images))["caption"].shape == (1,)
    empty = signature(images=tf.zeros((0, 16, 16, 1), tf.uint8))
    assert empty["caption"].shape == (0,)
    assert empty["tokens"].shape == (0, MAX_LENGTH)
    errors = (TypeError, ValueError, tf.errors.InvalidArgumentError)
    with pytest.raises(errors):
        signature(images=tf.zeros((1, 16, 16, 1), tf.float32))
    with pytest.raises(errors, match="images"):
        signature(images=tf.zeros((1, 12, 16, 1), tf.uint8))


def test_variables_stored_once_and_bad_arguments(exported, tmp_path):
    model, path = exported
    assert stored_variable_bytes(path) < 1.5 * 4 * model.count_params() + 4096
    with pytest.raises(ValueError, match="`vocabulary`"):
        export_captioner_for_serving(model, tmp_path, VOCABULARY[:-1])
    with pytest.raises(TypeError, match="ShowAttendTellCaptioner"):
        export_captioner_for_serving(object(), tmp_path, VOCABULARY)


def test_image_bytes_signature_matches_serving_default(exported):
    model, path = exported
    loaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    by_bytes = loaded.signatures["serving_image_bytes"]
    images = _images(2, seed=3)
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    png = tf.stack([tf.io.encode_png(image) for image in images])
    from_png = by_bytes(image_bytes=png)
    assert sorted(from_png) == ["attention", "caption", "tokens"]
    for key in served:
        np.testing.assert_array_equal(from_png[key], served[key])
    # A colour JPEG of another size: decoded to grayscale, resized to the
    # model's 16 x 16, captioned greedily like that image.
    rgb = np.random.default_rng(4).integers(0, 256, (24, 20, 3), np.uint8)
    jpeg = tf.io.encode_jpeg(rgb)
    gray = tf.image.resize(
        tf.cast(tf.io.decode_jpeg(jpeg, channels=1), tf.float32), (16, 16)
    )
    expected = greedy_decode(
        model,
        gray[None],
        MAX_LENGTH,
        VOCABULARY.index("[START]"),
        VOCABULARY.index("[END]"),
    )
    got = by_bytes(image_bytes=tf.stack([jpeg]))
    np.testing.assert_array_equal(got["tokens"], expected["tokens"])
    empty = by_bytes(image_bytes=tf.constant([], tf.string))
    assert empty["caption"].shape == (0,)
    assert empty["attention"].shape[0] == 0
    with pytest.raises(tf.errors.InvalidArgumentError):
        by_bytes(image_bytes=tf.constant([b"not an image"]))
