"""Trained models by name: `load_pretrained("pets_fcn")`.

After keras-hub's `from_preset` (keras_hub/src/utils/preset_utils.py): a
pretrained model is a directory of plain files, found either by a known name
or by its path, so anyone can publish their own:

- `metadata.json`: what the model is (task, classes, input size, metrics,
  training command) and where its weights are;
- `config.json`: the model's architecture,
  `keras.saving.serialize_keras_object(model)`;
- the weights, one of
  - `model.weights.h5` (`model.save_weights`, what `save_pretrained`
    writes), or
  - the variables of the directory's own TF-Serving SavedModel
    (`<version>/variables/`): the committed models in `saved_models/` keep
    their weights only there, so each is stored once. `metadata.json` then
    lists, for each of the Keras model's variables in order, the name of
    the SavedModel variable that holds it (null: a random-number state
    the SavedModel lacks, kept as built).

`load_pretrained` rebuilds the architecture from `config.json` (safe-mode
deserialisation: registered classes only, no `Lambda`), assigns every weight
with a shape check and returns the model uncompiled, its preprocessing
inside (the models take images 0..255 and text as the exports do): call
`compile` to fine-tune it, or `predict` on it directly.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np

from keras_segattn import saving

METADATA_FILE = "metadata.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"

# The models committed in the repository's saved_models/ folder.
PRETRAINED_MODELS = (
    "pets_fcn",
    "camvid_fcn",
    "stn_cluttered_mnist",
    "nmt_spa_eng",
    "caption_digits",
    "caption_digits_hard",
    "digits_mask_rcnn",
    "digits_mask_rcnn_fpn",
    "digits_yolo",
    "pets_localization",
)


def default_pretrained_directory() -> Path:
    """The folder of the committed models: `saved_models/` of the source
    checkout this package runs from (`pip install -e .`)."""
    return Path(__file__).resolve().parents[2] / "saved_models"


def list_pretrained(directory: str | os.PathLike | None = None) -> list[str]:
    """Names of the pretrained models in `directory` (default: the
    committed ones): its sub-folders holding a `metadata.json`."""
    root = Path(directory) if directory is not None else None
    root = root or default_pretrained_directory()
    if not root.is_dir():
        return []
    return sorted(
        child.name
        for child in root.iterdir()
        if (child / METADATA_FILE).is_file()
    )


def _resolve(name, directory) -> Path:
    if not isinstance(name, str | os.PathLike):
        raise TypeError(
            "Invalid type for argument `name`. Expected a model name (str) "
            "or the path of a model directory. Received: "
            f"name={name!r} of type {type(name).__name__}."
        )
    if directory is not None and not Path(directory).is_dir():
        raise ValueError(
            "Invalid value for argument `directory`. Expected an existing "
            "directory of pretrained models. "
            f"Received: directory={directory!r}."
        )
    root = Path(directory) if directory is not None else None
    root = root or default_pretrained_directory()
    candidate = root / os.fspath(name)
    if os.fspath(name) in list_pretrained(root):
        return candidate
    if directory is None and Path(name).is_dir():
        return Path(name)  # a user directory given by its path
    known = list_pretrained(root)
    raise ValueError(
        "Unknown pretrained model. Expected one of the names "
        f"{known} (in {root}) or the path of a directory holding "
        f"{METADATA_FILE}, {CONFIG_FILE} and the weights. "
        f"Received: name={os.fspath(name)!r}."
    )


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"`{path.name}` doesn't exist in the pretrained model directory "
            f"`{path.parent}`: expected {path}."
        )
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read {path} as JSON: {error}") from error
    if not isinstance(value, dict):
        raise ValueError(
            f"Cannot read {path}: expected a JSON object, found "
            f"{type(value).__name__}."
        )
    return value


def read_pretrained_metadata(
    name: str | os.PathLike, directory: str | os.PathLike | None = None
) -> dict:
    """The `metadata.json` of a pretrained model (see `load_pretrained`)."""
    return _read_json(_resolve(name, directory) / METADATA_FILE)


def read_saved_model_variables(path: str | os.PathLike) -> dict:
    """The variables of a SavedModel (or TF checkpoint), by variable name.

    Reads the checkpoint only (no graph is loaded): its object graph names
    every stored variable (`"conv0/kernel"`). A variable stored twice (as
    `keras.export.ExportArchive` does, once per Keras and per TF variable)
    must hold the same value both times.

    Args:
        path: a SavedModel directory (`.../<version>`) or a checkpoint
            prefix.

    Returns:
        `{name: np.ndarray}`.

    Raises:
        FileNotFoundError, ValueError: naming the file, for a missing,
            unreadable or inconsistent checkpoint.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    prefix = Path(path)
    if prefix.is_dir():
        prefix = prefix / "variables" / "variables"
    index = Path(f"{prefix}.index")
    if not index.is_file():
        raise FileNotFoundError(
            f"No SavedModel variables found: expected {index}."
        )
    try:
        reader = tf.train.load_checkpoint(os.fspath(prefix))
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        values = {}
        for node in graph.nodes:
            for attribute in node.attributes:
                if attribute.name != "VARIABLE_VALUE":
                    continue
                value = reader.get_tensor(attribute.checkpoint_key)
                name = attribute.full_name
                if name in values and not np.array_equal(values[name], value):
                    raise ValueError(
                        f"Cannot read {index}: variable {name!r} is stored "
                        "twice with different values."
                    )
                values[name] = value
    except tf.errors.OpError as error:
        raise ValueError(
            f"Cannot read the SavedModel variables {index}: {error.message}"
        ) from error
    return values


def assign_weights(
    model: keras.Model, values: Mapping, names, source: str = "weights"
) -> None:
    """Sets `model.variables[i]` to `values[names[i]]` for every i.

    A name of None leaves that variable as built; only a random-number
    state (`SeedGenerator`, which draws training-time samples) may be
    left so.

    Raises:
        ValueError: naming `source`, unless `names` has one entry per
            variable, each name is used once and present, and every shape
            matches.
    """
    variables = model.variables
    names = list(names)
    if len(names) != len(variables):
        raise ValueError(
            f"Cannot load {source}: it maps {len(names)} variables, the "
            f"model has {len(variables)}."
        )
    given = [name for name in names if name is not None]
    if len(set(given)) != len(given):
        raise ValueError(f"Cannot load {source}: a variable is listed twice.")
    for variable, name in zip(variables, names, strict=True):
        if name is None:
            if not variable.path.endswith("seed_generator_state"):
                raise ValueError(
                    f"Cannot load {source}: no weights for {variable.path}."
                )
            continue
        if name not in values:
            raise ValueError(
                f"Cannot load {source}: no variable {name!r} (for "
                f"{variable.path})."
            )
        value = np.asarray(values[name])
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"Cannot load {source}: {name!r} has shape {value.shape}, "
                f"{variable.path} needs {tuple(variable.shape)}."
            )
        variable.assign(value.astype(variable.dtype))


def load_pretrained(
    name: str | os.PathLike, directory: str | os.PathLike | None = None
) -> keras.Model:
    """Returns a trained Keras model by name or from a directory.

    After keras-hub's `from_preset`. The committed models are
    `keras_segattn.models.PRETRAINED_MODELS` (`"pets_fcn"`, `"camvid_fcn"`,
    `"stn_cluttered_mnist"`, `"nmt_spa_eng"`, `"caption_digits"`,
    `"digits_mask_rcnn"`, `"digits_mask_rcnn_fpn"`, `"digits_yolo"`,
    `"pets_localization"`); `saved_models/README.md` describes each, and
    `read_pretrained_metadata(name)` returns its task, classes, input size,
    metrics and training command.

    Args:
        name: a model name in `directory`, or the path of a model directory
            (`metadata.json`, `config.json` and weights, as written by
            `save_pretrained`).
        directory: folder holding model directories by name (default: the
            repository's `saved_models/`).

    Returns:
        The uncompiled Keras model with its weights.

    Raises:
        TypeError: if `name` is not a string or path.
        ValueError: for an unknown name (listing the known ones), or weights
            that do not fit the architecture.
        FileNotFoundError: naming the missing file of a model directory.

    Example:

    ```python
    model = keras_segattn.models.load_pretrained("pets_fcn")
    probabilities = model.predict(images)  # float images 0..255
    ```
    """
    path = _resolve(name, directory)
    metadata = _read_json(path / METADATA_FILE)
    config = _read_json(path / CONFIG_FILE)
    weights = metadata.get("weights", {"format": "keras", "file": WEIGHTS_FILE})
    try:
        model = keras.saving.deserialize_keras_object(config)
    except Exception as error:
        raise ValueError(
            f"Cannot build the model of {path / CONFIG_FILE}: {error}"
        ) from error
    if weights.get("format") == "saved_model":
        variables = path / weights["path"]
        values = read_saved_model_variables(variables)
        assign_weights(model, values, weights["variables"], str(variables))
    elif weights.get("format") == "keras":
        file = path / weights.get("file", WEIGHTS_FILE)
        if not file.is_file():
            raise FileNotFoundError(
                f"`{file.name}` doesn't exist in the pretrained model "
                f"directory `{path}`: expected {file}."
            )
        try:
            model.load_weights(file)
        except Exception as error:
            raise ValueError(f"Cannot load weights {file}: {error}") from error
    else:
        raise ValueError(
            f"Cannot read {path / METADATA_FILE}: `weights.format` must be "
            f"'keras' or 'saved_model'. Received: {weights.get('format')!r}."
        )
    return model


def save_pretrained(
    model: keras.Model, directory: str | os.PathLike, **metadata
) -> Path:
    """Writes `model` as a pretrained-model directory `load_pretrained`
    reads: `config.json`, `model.weights.h5` and `metadata.json` holding
    the given keyword arguments (JSON values: task, classes, metrics...).

    Only the architecture and weights are written, not a compiled model's
    optimizer, loss or optimizer state (compile the loaded model to
    fine-tune it). Each file is written to a temporary file and renamed
    into place (`keras_segattn.saving.atomic_file`), so a save killed
    midway never leaves a broken file; other files in `directory` are
    kept.

    Returns:
        The directory.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Invalid type for argument `model`. Expected a keras.Model. "
            f"Received: {type(model).__name__}."
        )
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    config = keras.saving.serialize_keras_object(model)
    metadata = {
        **metadata,
        "weights": {"format": "keras", "file": WEIGHTS_FILE},
    }
    if getattr(model, "optimizer", None) is not None:
        # `save_weights` of a compiled model also writes the optimizer's
        # slots (twice the weights for Adam): save an uncompiled copy.
        weights = model.get_weights()
        config.pop("compile_config", None)
        model = keras.saving.deserialize_keras_object(copy.deepcopy(config))
        model.set_weights(weights)
        config = keras.saving.serialize_keras_object(model)
    saving.save_model_atomic(model, path / WEIGHTS_FILE, weights_only=True)
    for name, content in (
        (CONFIG_FILE, json.dumps(config, indent=1)),
        (METADATA_FILE, json.dumps(metadata, indent=2)),
    ):
        with saving.atomic_file(path / name) as temporary:
            Path(temporary).write_text(content, "utf-8")
    return path
