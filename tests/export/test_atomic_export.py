"""Export faults: a failed or killed export never leaves a half-written
version for TF Serving, and never damages the previous one."""

import inspect
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_for_serving
from keras_segattn.export import serving
from keras_segattn.export import write_version
from tests.killing import run_and_kill


def tiny_segmenter(seed):
    keras.utils.set_random_seed(seed)
    images = keras.Input((None, None, 3), name="images")
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(3, 1)(x)
    return keras.Model(images, keras.layers.Softmax(dtype="float32")(x))


_IMAGES = np.random.default_rng(0).integers(0, 256, (2, 6, 5, 3), np.uint8)


def _versions(export_dir):
    """What TF Serving's version scan sees: the all-digit folder names."""
    return sorted(p for p in os.listdir(export_dir) if p.isdigit())


def _serve(path):
    reloaded = tf.saved_model.load(path)
    out = reloaded.signatures["serving_default"](images=tf.constant(_IMAGES))
    return out["probabilities"].numpy()


def _tree(path):
    return {
        os.path.relpath(os.path.join(root, name), path): open(
            os.path.join(root, name), "rb"
        ).read()
        for root, _, names in os.walk(path)
        for name in names
    }


@pytest.fixture
def first_version(tmp_path):
    export_dir = tmp_path / "model"
    path = export_for_serving(tiny_segmenter(0), export_dir, version=1)
    return export_dir, path, _tree(path), _serve(path)


def _fail_after_saved_model(monkeypatch):
    def fail(path, images, **kwargs):
        assert os.path.exists(os.path.join(path, "saved_model.pb"))
        raise RuntimeError("failed midway")

    monkeypatch.setattr(serving, "write_warmup_requests", fail)


@pytest.mark.parametrize("version", [1, 2])
def test_failed_export_keeps_previous_version(
    first_version, monkeypatch, version
):
    export_dir, path, files, outputs = first_version
    _fail_after_saved_model(monkeypatch)
    with pytest.raises(RuntimeError, match="failed midway"):
        export_for_serving(
            tiny_segmenter(1),
            export_dir,
            version=version,
            warmup_images=_IMAGES,
        )
    assert os.listdir(export_dir) == ["1"]  # no new version, no leftovers
    assert _tree(path) == files
    np.testing.assert_array_equal(_serve(path), outputs)


def test_export_replaces_an_existing_version_whole(first_version):
    export_dir, path, files, outputs = first_version
    (export_dir / "1" / "stray_file").write_text("not part of the export")
    new_model = tiny_segmenter(1)
    assert export_for_serving(new_model, export_dir, version=1) == path
    assert "stray_file" not in os.listdir(path)
    assert os.listdir(export_dir) == ["1"]
    np.testing.assert_allclose(
        _serve(path), new_model(_IMAGES.astype("float32")), atol=1e-6
    )


def test_write_version_checks_version(tmp_path):
    with pytest.raises(ValueError, match="Received: version=0"):
        write_version(tmp_path, 0, lambda path: None)
    assert os.listdir(tmp_path) == []


def test_killed_export_leaves_previous_version_loadable(first_version):
    export_dir, path, files, outputs = first_version
    # The child re-exports version 1 and is killed after the SavedModel is
    # written but before its warmup requests: midway through the export.
    tmp_path = export_dir.parent
    run_and_kill(
        "import keras\n"
        + inspect.getsource(tiny_segmenter)
        + f"""
from keras_segattn.export import export_for_serving, serving

def block(path, images, **kwargs):
    reached_kill_point()

serving.write_warmup_requests = block
export_for_serving(
    tiny_segmenter(1), {str(export_dir)!r}, version=1, warmup_images=[0]
)
""",
        tmp_path,
    )
    assert _versions(export_dir) == ["1"]
    assert _tree(path) == files
    np.testing.assert_array_equal(_serve(path), outputs)
    hidden = [p for p in os.listdir(export_dir) if not p.isdigit()]
    assert len(hidden) == 1 and hidden[0].startswith(".1.partial-")
    assert "saved_model.pb" in os.listdir(export_dir / hidden[0])
    # The next export of that version removes the dead export's folder.
    export_for_serving(tiny_segmenter(2), export_dir, version=1)
    assert os.listdir(export_dir) == ["1"]


def test_failed_classifier_export_leaves_no_version(tmp_path, monkeypatch):
    # The classifier writes through `keras.export.ExportArchive`, also
    # inside `write_version`.
    from keras_segattn.export import classification

    inputs = keras.Input((6, 5, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))

    def fail(path, images, **kwargs):
        raise RuntimeError("failed midway")

    monkeypatch.setattr(classification, "write_warmup_requests", fail)
    with pytest.raises(RuntimeError, match="failed midway"):
        classification.export_classifier_for_serving(
            model, tmp_path, version=1, warmup_images=_IMAGES
        )
    assert os.listdir(tmp_path) == []
