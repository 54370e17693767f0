"""Export faults: a failed or killed export never leaves a half-written
version for TF Serving, and never damages the previous one."""

import ast
import inspect
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn import saving
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


def test_leftovers_of_dead_exports_of_any_version_are_removed(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: never running
    leftover = tmp_path / f".2.partial-{dead}-abc"
    (leftover / "variables").mkdir(parents=True)
    (tmp_path / ".notes").write_text("not an export's")  # left alone
    write_version(tmp_path, 3, lambda path: None)
    assert sorted(os.listdir(tmp_path)) == [".notes", "3"]


def test_write_version_checks_version(tmp_path):
    with pytest.raises(ValueError, match="Received: version=0"):
        write_version(tmp_path, 0, lambda path: None)
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """One child process (one TensorFlow import for both checks) killed
    while it was midway through two writes: re-exporting version 1 (the
    SavedModel written, its warmup requests not yet) and saving a `.keras`
    file over a good one (the zip half written, inside Keras's
    `save_own_variables`)."""
    tmp_path = tmp_path_factory.mktemp("killed")
    export_dir = tmp_path / "model"
    path = export_for_serving(tiny_segmenter(0), export_dir, version=1)
    keras_file = tmp_path / "model.keras"
    good = tiny_segmenter(0)
    saving.save_model_atomic(good, keras_file)
    before = {
        "files": _tree(path),
        "outputs": _serve(path),
        "keras_bytes": keras_file.read_bytes(),
    }
    run_and_kill(
        "import keras\n"
        + inspect.getsource(tiny_segmenter)
        + f"""
import threading
from keras_segattn import saving
from keras_segattn.export import export_for_serving, serving

exporting = threading.Event()

def block_export(path, images, **kwargs):
    exporting.set()
    threading.Event().wait()

serving.write_warmup_requests = block_export
threading.Thread(
    target=export_for_serving,
    args=(tiny_segmenter(1), {str(export_dir)!r}),
    kwargs=dict(version=1, warmup_images=[0]),
    daemon=True,
).start()
exporting.wait()

class Blocking(keras.layers.Conv2D):
    def save_own_variables(self, store):
        super().save_own_variables(store)
        reached_kill_point()

images = keras.Input((None, None, 3))
model = keras.Model(images, Blocking(3, 1)(images))
saving.save_model_atomic(model, {str(keras_file)!r})
""",
        tmp_path,
    )
    return export_dir, path, keras_file, good, before


def test_killed_export_leaves_previous_version_loadable(killed):
    export_dir, path, _, _, before = killed
    assert _versions(export_dir) == ["1"]
    assert _tree(path) == before["files"]
    np.testing.assert_array_equal(_serve(path), before["outputs"])
    hidden = [p for p in os.listdir(export_dir) if not p.isdigit()]
    assert len(hidden) == 1 and hidden[0].startswith(".1.partial-")
    assert "saved_model.pb" in os.listdir(export_dir / hidden[0])
    # The next export of that version removes the dead export's folder.
    export_for_serving(tiny_segmenter(2), export_dir, version=1)
    assert os.listdir(export_dir) == ["1"]


def test_killed_keras_save_never_replaces_a_good_file(killed):
    _, _, keras_file, good, before = killed
    assert keras_file.read_bytes() == before["keras_bytes"]
    x = _IMAGES.astype("float32")
    np.testing.assert_array_equal(
        keras.saving.load_model(keras_file)(x), good(x)
    )
    folder = keras_file.parent
    leftovers = [p for p in os.listdir(folder) if p.startswith(".model.keras")]
    assert leftovers, "the child was not killed while saving"
    # The next save removes the dead writer's temporary file.
    saving.save_model_atomic(tiny_segmenter(2), keras_file)
    assert not [p for p in os.listdir(folder) if ".partial-" in p]


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


def _writes_a_saved_model(node) -> bool:
    """`tf.saved_model.save(...)` or `<archive>.write_out(...)`."""
    if not isinstance(node, ast.Call):
        return False
    name = ast.unparse(node.func)
    return name.endswith("saved_model.save") or name.endswith(".write_out")


def test_every_exporter_writes_through_write_version():
    # A static guard for exporters added later: every SavedModel write in
    # keras_segattn/export/ happens inside a function handed to
    # `write_version` (inline, or by the name of a nested function).
    import keras_segattn.export as package

    unguarded = []
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        parents = {
            child: parent
            for parent in ast.walk(tree)
            for child in ast.iter_child_nodes(parent)
        }
        for node in filter(_writes_a_saved_model, ast.walk(tree)):
            chain, current = [], node
            while current in parents:
                current = parents[current]
                chain.append(current)
            inline = any(
                isinstance(a, ast.Call)
                and ast.unparse(a.func).endswith("write_version")
                for a in chain
            )
            functions = [a for a in chain if isinstance(a, ast.FunctionDef)]
            by_name = len(functions) >= 2 and any(
                isinstance(call, ast.Call)
                and ast.unparse(call.func).endswith("write_version")
                and any(
                    isinstance(arg, ast.Name) and arg.id == functions[0].name
                    for arg in call.args
                )
                for call in ast.walk(functions[1])
            )
            if not (inline or by_name):
                unguarded.append(f"{path.name}:{node.lineno}")
    assert not unguarded, unguarded
