"""LiteRT (TensorFlow Lite) export of image models.

`export_litert` is Keras's own `model.export(format="litert")` (an
`ExportArchive` SavedModel converted by `tf.lite.TFLiteConverter`, which
freezes the variables) restricted to the TFLite builtin ops: the
`ai-edge-litert` interpreter has no Flex (Select TF ops) delegate, so a
model needing one would load nowhere that package runs. The input keeps a
dynamic batch (`interpreter.resize_tensor_input`). A TensorFlow op with no
builtin kernel raises a ValueError naming the layer and the op, and the
written file is loaded by the LiteRT interpreter before it is moved into
place.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_segattn.export import _conversion

# error: loc(callsite(fused["RealDiv:", "faster_rcnn_1/roi_align_1/truediv_2@
# ..."] at ...))): 'tf.RealDiv' op is neither a custom op nor a flex op
_FAILED_NODE = re.compile(
    r"error: loc\([^\n]*?fused\[\"(\w+):\", \"([^\"@]+)@[^\n]*?\)\): ([^\n]*)"
)
_KNOWN_FAILURES = {
    "RealDiv": (
        "no builtin kernel takes its dtype (float64: RoIAlign divides in "
        "float64 so that its bin edges round as torchvision's do)"
    ),
}


def _unsupported_error(model, message: str) -> ValueError:
    found = list(dict.fromkeys(_FAILED_NODE.findall(message)))
    if not found:
        return ValueError(
            f"Cannot export model {model.name!r} to LiteRT: the TFLite "
            f"converter failed: {message[-2000:]}. Nothing was written."
        )
    op, node, detail = found[0]
    where = _conversion.layer_of_node(model, node)
    layers = sorted(
        {_conversion.layer_of_node(model, n) for _, n, _ in found} - {where}
    )
    also = f" (also in {', '.join(layers)})" if layers else ""
    reason = _KNOWN_FAILURES.get(op, f"the converter says: {detail}")
    return ValueError(
        f"Cannot export model {model.name!r} to LiteRT: {where} has "
        f"TensorFlow op '{op}' (node {node!r}) that converts to no TFLite "
        f"builtin op: {reason}{also}. Ops needing the Flex delegate are "
        "refused because the ai-edge-litert interpreter has none. Nothing "
        "was written."
    )


def export_litert(
    model: keras.Model,
    output_dir: str | os.PathLike,
    *,
    image_size: int | Sequence[int] | None = None,
    filename: str = "model.tflite",
) -> str:
    """Writes the model's float32 inference graph as `output_dir/model.tflite`.

    The flatbuffer takes `images`, float32 [batch, H, W, C] with a dynamic
    batch (0..255, as the Keras model takes them), and returns the model's
    outputs; only TFLite builtin ops are allowed (see the module
    docstring). Verified against Keras with the `ai-edge-litert`
    interpreter for FCN, DeconvNet/SegNet and spatial-transformer
    classifiers; Mask R-CNN does not convert (RoIAlign's float64 division,
    see README).

    Args:
        model: a `keras.Model` with one image input [B, H, W, C].
        output_dir: folder to write to (created if missing).
        image_size: int or (H, W), for a model whose H or W is None;
            None keeps the model's.
        filename: name of the file in `output_dir`.

    Returns:
        The path of the written file.

    Raises:
        ImportError: if the `litert` extra (ai-edge-litert) is missing.
        TypeError: if `model` is not a `keras.Model`.
        ValueError: if the model has not one image input, `image_size`
            contradicts its size, or an op has no TFLite builtin kernel
            (the message names the layer and the op; nothing is written).
    """
    model = _conversion.check_model(model)
    interpreter_module = _conversion.require(
        "ai_edge_litert.interpreter", "litert", "LiteRT export"
    )
    spec = _conversion.images_spec(model, image_size)
    with tempfile.TemporaryDirectory() as folder:
        temporary = os.path.join(folder, filename)
        try:
            model.export(
                temporary,
                format="litert",
                input_signature=[spec],
                verbose=False,
                target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
            )
        except Exception as error:  # the converter's ConverterError
            raise _unsupported_error(model, str(error)) from error
        with open(temporary, "rb") as file:
            data = file.read()
    interpreter = interpreter_module.Interpreter(model_content=data)
    interpreter.allocate_tensors()  # every op has a kernel
    path = os.path.join(os.fspath(output_dir), filename)
    return _conversion.write_atomically(data, path)
