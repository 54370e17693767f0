"""Tests for `keras_segattn.models.load_pretrained` and `save_pretrained`.

Every committed model is loaded by name and run through the package's own
serving function on one small batch (the samples of
`tools/recover_pretrained.py`, synthetic digits for the digit models); its
outputs must equal the committed SavedModel's `serving_default`.
"""

import argparse
import importlib.util
import json
import re
import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.models import PRETRAINED_MODELS
from keras_segattn.models import list_pretrained
from keras_segattn.models import load_pretrained
from keras_segattn.models import read_pretrained_metadata
from keras_segattn.models import save_pretrained
from keras_segattn.models.pretrained import read_saved_model_variables

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "recover_pretrained", ROOT / "tools" / "recover_pretrained.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _tool()
COMMITTED = list_pretrained()


def test_the_committed_models_are_listed():
    assert set(COMMITTED) <= set(PRETRAINED_MODELS)
    for name in COMMITTED:
        metadata = read_pretrained_metadata(name)
        assert metadata["name"] == name
        assert metadata["task"] and metadata["training_command"]
        assert metadata["metrics"]


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_model_equals_its_saved_model(name):
    spec = TOOL.recipe(name)
    model = load_pretrained(name)
    assert isinstance(model, keras.Model)
    saved = tf.saved_model.load(str(ROOT / "saved_models" / name / "1"))
    args = argparse.Namespace(data_dir=None)
    samples = [spec["samples"](args)[0][:1]]  # one example
    worst = TOOL.run_against_saved_model(
        saved, spec["serve"](model), samples, spec["input"], 1e-5
    )
    assert worst <= 1e-5


def _tiny_model():
    images = keras.Input((6, 6, 1), name="images")
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(2, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(images, outputs)


def test_user_directory_round_trip(tmp_path):
    model = _tiny_model()
    for variable in model.variables:  # not the initial values
        variable.assign(np.random.default_rng(1).normal(size=variable.shape))
    path = save_pretrained(
        model, tmp_path / "mine", task="image_classification", classes=3
    )
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "metadata.json",
        "model.weights.h5",
    ]
    images = np.random.default_rng(0).uniform(0, 255, (2, 6, 6, 1))
    expected = model.predict(images, verbose=0)
    by_path = load_pretrained(str(path))
    by_name = load_pretrained("mine", directory=tmp_path)
    assert list_pretrained(tmp_path) == ["mine"]
    assert read_pretrained_metadata("mine", tmp_path)["classes"] == 3
    for loaded in (by_path, by_name):
        np.testing.assert_array_equal(
            loaded.predict(images, verbose=0), expected
        )
    # Ready to fine-tune.
    by_path.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    by_path.fit(images, np.array([0, 2]), epochs=1, verbose=0)
    # A compiled model's optimizer slots are not written (Adam: 2x size).
    again = save_pretrained(by_path, tmp_path / "tuned")
    with h5py.File(again / "model.weights.h5", "r") as weights:
        assert "optimizer" not in weights
    np.testing.assert_array_equal(
        load_pretrained(str(again)).predict(images, verbose=0),
        by_path.predict(images, verbose=0),
    )


def test_committed_weights_round_trip_through_a_user_directory(tmp_path):
    name = "stn_cluttered_mnist"
    if name not in COMMITTED:
        pytest.skip(f"{name} is not committed")
    model = load_pretrained(name)
    path = save_pretrained(model, tmp_path / name, task="classification")
    images = np.random.default_rng(0).uniform(0, 255, (1, 40, 40, 1))
    expected = model.predict(images, verbose=0)
    got = load_pretrained(path).predict(images, verbose=0)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="Unknown pretrained model") as info:
        load_pretrained("pets_fcn_large")
    assert "name='pets_fcn_large'" in str(info.value)
    for name in COMMITTED:
        assert repr(name) in str(info.value)
    with pytest.raises(ValueError, match=r"Expected one of the names \[\]"):
        load_pretrained("pets_fcn", directory=tmp_path)
    with pytest.raises(ValueError, match="argument `directory`"):
        load_pretrained("pets_fcn", directory=tmp_path / "missing")
    with pytest.raises(TypeError, match="argument `name`"):
        load_pretrained(3)


def test_broken_directories_name_the_file(tmp_path):
    path = save_pretrained(_tiny_model(), tmp_path / "m", task="test")
    (path / "model.weights.h5").unlink()
    with pytest.raises(FileNotFoundError, match="model.weights.h5"):
        load_pretrained(path)
    (path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(path)
    (path / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(path / "metadata"))):
        load_pretrained(path)
    # A directory without metadata.json is not a model directory.
    (path / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        load_pretrained(path)


def test_saved_model_weights_are_checked(tmp_path):
    name = "stn_cluttered_mnist"
    if name not in COMMITTED:
        pytest.skip(f"{name} is not committed")
    source = ROOT / "saved_models" / name
    copy = tmp_path / name
    shutil.copytree(source, copy)
    metadata = json.loads((copy / "metadata.json").read_text())
    metadata["weights"]["variables"][0] = "no/such/variable"
    (copy / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="no variable 'no/such/variable'"):
        load_pretrained(copy)
    metadata["weights"]["variables"] = metadata["weights"]["variables"][1:]
    (copy / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="maps 19 variables"):
        load_pretrained(copy)
    shutil.rmtree(copy / "1" / "variables")
    with pytest.raises(FileNotFoundError, match="variables.index"):
        read_saved_model_variables(copy / "1")
    (copy / "1" / "variables").mkdir()
    (copy / "1" / "variables" / "variables.index").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="variables.index"):
        read_saved_model_variables(copy / "1")
