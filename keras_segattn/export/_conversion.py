"""What the ONNX and LiteRT exports share: the input signature, the
optional-dependency imports, naming the layer behind a failing TF node, and
writing the file atomically."""

from __future__ import annotations

import importlib
import os
import re
import tempfile
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_segattn import validation


def require(module: str, extra: str, purpose: str):
    """Imports `module`, or raises ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the `{extra}` extra, which is not installed "
            f"(cannot import `{module}`: {error}). Install it with "
            f"`pip install 'keras-segattn[{extra}]'`."
        ) from error


def check_model(model) -> keras.Model:
    """The model must be a Keras model with one float image input
    [B, H, W, C]."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Invalid type for argument `model`. Expected a `keras.Model`. "
            f"Received: model={model!r} of type {type(model).__name__}."
        )
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError(
            "Invalid value for argument `model`. Expected a model with one "
            "image input [B, H, W, C]. Received: inputs "
            f"{[tuple(x.shape) for x in model.inputs]}."
        )
    return model


def images_spec(
    model: keras.Model, image_size: int | Sequence[int] | None
) -> tf.TensorSpec:
    """float32 `images` [None, H, W, C]: the batch stays dynamic, H and W
    are the model's (or `image_size` where the model leaves them None)."""
    _, height, width, channels = tuple(model.inputs[0].shape)
    if image_size is not None:
        size = validation.standardize_size(image_size, "image_size")
        for given, static in zip(size, (height, width), strict=True):
            if static is not None and given != static:
                raise ValueError(
                    "Invalid value for argument `image_size`. Expected the "
                    f"model's input size ({height}, {width}). Received: "
                    f"image_size={image_size!r}."
                )
        height, width = size
    return tf.TensorSpec(
        (None, height, width, channels), tf.float32, name="images"
    )


def _layer_names(layer, found: dict) -> dict:
    """{name: layer} of `layer` and everything nested in it."""
    found.setdefault(layer.name, layer)
    for sublayer in getattr(layer, "layers", ()):
        _layer_names(sublayer, found)
    for value in vars(layer).values():  # components kept as attributes
        if isinstance(value, keras.layers.Layer) and value.name not in found:
            _layer_names(value, found)
    return found


def layer_of_node(model: keras.Model, node_name: str) -> str:
    """'name' (Class) of the innermost model layer in a TF node's name
    scope (`fcn/score/Conv2D` -> 'score' (Conv2D)); TF appends `_<n>` to
    repeated scopes, which is stripped when the name itself is unknown."""
    layers = _layer_names(model, {})
    match = None
    for part in node_name.split("/")[:-1]:
        for name in (part, re.sub(r"_\d+$", "", part)):
            if name in layers and layers[name] is not model:
                match = layers[name]
                break
    if match is None:
        return f"model {model.name!r}"
    return f"layer {match.name!r} ({type(match).__name__})"


def write_atomically(data: bytes, path: str) -> str:
    """Writes `data` to a temporary file beside `path`, then renames it, so
    a reader never sees a half-written model."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path
