"""Atomic writes (`keras_segattn.saving`). The SIGKILL checks of a `.keras`
save and of an export share one child process in
tests/export/test_atomic_export.py."""

import os
import re
import stat
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_segattn import saving


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3, name="dense")(inputs)
    return keras.Model(inputs, outputs)


def _visible(folder):
    return sorted(p for p in os.listdir(folder) if not p.startswith("."))


def test_save_model_atomic_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "model.keras"
    first, second = _model(0), _model(1)
    assert saving.save_model_atomic(first, path) == str(path)
    saving.save_model_atomic(second, path)
    loaded = keras.saving.load_model(path)
    x = np.ones((2, 4), "float32")
    np.testing.assert_array_equal(loaded(x), second(x))
    assert os.listdir(path.parent) == ["model.keras"]  # no temporary left


def test_save_model_atomic_weights_only(tmp_path):
    path = tmp_path / "best.weights.h5"
    model = _model(0)
    saving.save_model_atomic(model, path, weights_only=True)
    other = _model(1)
    other.load_weights(path)
    np.testing.assert_array_equal(
        other.get_layer("dense").kernel, model.get_layer("dense").kernel
    )


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("model.h5", {}, "'.keras'"),
        ("model.keras", {"weights_only": True}, "'.weights.h5'"),
    ],
)
def test_save_model_atomic_checks_extension(tmp_path, name, kwargs, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        saving.save_model_atomic(_model(), tmp_path / name, **kwargs)


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    saving.save_model_atomic(_model(0), path)
    before = path.read_bytes()

    def broken_save(self, filepath, **kwargs):
        with open(filepath, "wb") as file:
            file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        saving.save_model_atomic(_model(1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.keras"]


def test_atomic_directory_replaces_as_a_whole(tmp_path):
    target = tmp_path / "1"
    with saving.atomic_directory(target) as folder:
        open(os.path.join(folder, "old_only"), "w").close()
        open(os.path.join(folder, "shared"), "w").write("old")
    with saving.atomic_directory(target) as folder:
        open(os.path.join(folder, "shared"), "w").write("new")
    assert sorted(os.listdir(target)) == ["shared"]  # not merged
    assert (target / "shared").read_text() == "new"
    assert os.listdir(tmp_path) == ["1"]


def test_atomic_directory_without_exchange_renames_aside(tmp_path, monkeypatch):
    # Platforms without renameat2: the old folder is moved aside first.
    monkeypatch.setattr(saving, "_exchange", lambda first, second: False)
    target = tmp_path / "1"
    for content in ("old", "new"):
        with saving.atomic_directory(target) as folder:
            open(os.path.join(folder, "file"), "w").write(content)
    assert (target / "file").read_text() == "new"
    assert os.listdir(tmp_path) == ["1"]


def test_leftovers_of_dead_writers_are_cleaned(tmp_path):
    target = tmp_path / "1"
    dead = 2**22 + 12345  # above the default pid_max: never running
    partial = tmp_path / f".1.partial-{dead}-abc"
    partial.mkdir()
    # A replace cut between its two renames: the old version moved aside.
    aside = tmp_path / f".1.old-{dead}-def"
    (aside / "content").mkdir(parents=True)
    (aside / "content" / "saved_model.pb").write_text("previous")
    live = tmp_path / f".1.partial-{os.getpid()}-ghi"  # a running writer
    live.mkdir()
    saving.clean_leftovers(target)
    assert (target / "saved_model.pb").read_text() == "previous"
    assert sorted(os.listdir(tmp_path)) == [live.name, "1"]


def test_atomic_model_checkpoint_saves_best_only(tmp_path):
    path = tmp_path / "best.keras"
    model = _model(0)
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 4), "float32")
    callback = saving.AtomicModelCheckpoint(
        path, monitor="loss", save_best_only=True
    )
    model.fit(x, np.zeros((8, 3)), epochs=2, verbose=0, callbacks=[callback])
    assert os.listdir(tmp_path) == ["best.keras"]
    np.testing.assert_allclose(
        keras.saving.load_model(path)(x), model(x), atol=1e-6
    )


def test_atomic_model_checkpoint_rejects_placeholders(tmp_path):
    with pytest.raises(ValueError, match="Received: filepath="):
        saving.AtomicModelCheckpoint(tmp_path / "m-{epoch}.keras")


def test_atomic_writes_get_default_permissions(tmp_path):
    # mkdtemp/mkstemp create owner-only entries; what replaces the target
    # must be readable as a plain mkdir/open would make it (TF Serving may
    # run as another user).
    umask = os.umask(0o022)
    try:
        with saving.atomic_directory(tmp_path / "1") as folder:
            (Path(folder) / "saved_model.pb").write_bytes(b"x")
        with saving.atomic_file(tmp_path / "model.keras") as name:
            Path(name).write_bytes(b"x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "1").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "model.keras").stat().st_mode) == 0o644
