"""ONNX export of image models through tf2onnx.

`export_onnx` traces the model's float32 inference graph (no XLA) with a
dynamic batch, converts it with `tf2onnx.convert.from_function` and writes
`output_dir/model.onnx`, whose input is `images` (float32 [batch, H, W, C],
0..255 as the Keras model takes them) and whose outputs carry the Keras
output names (`mask_probs`, `probabilities`, `detection_boxes`, ...).

It calls tf2onnx itself rather than `model.export(format="onnx")` for two
reasons: (1) tf2onnx lowers a float `Select`/`where` to `cond * x +
(1 - cond) * y` (tf2onnx/onnx_opset/controlflow.py, `Select.version_9`:
"Mul/Add ops are faster than Where"), which turns a -inf in the branch not
taken into NaN (-inf * 0); the ceil-mode padding of `max_pool_with_argmax`
is -inf, so DeconvNet/SegNet at an odd size would return NaN. A graph
rewriter marks every `Select` as NaN-handling, so it stays an ONNX `Where`
(same values, exactly). (2) tf2onnx only *logs* a TensorFlow op it cannot
map and writes the model with the TF op left in; here that, and any failed
conversion, raise a ValueError naming the layer and the op, and nothing is
written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_segattn import validation
from keras_segattn.export import _conversion

DEFAULT_OPSET = 17

# Conversions known to fail, by a name scope of the failing node: why.
_KNOWN_FAILURES = {
    "non_max_suppression_padded": (
        "tf2onnx cannot wire the control flow (If/While) of "
        "`tf.image.non_max_suppression_padded` (ops.batched_nms) in this "
        "graph; it depends on the detector's configuration (the op converts "
        "alone and in other detector sizes, see README)"
    ),
}


class _ConversionErrors(logging.Handler):
    """Collects tf2onnx's error records: an op it cannot map (only logged
    by tf2onnx) and a node whose handler raised."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.failures = []  # (node name, op type)

    def emit(self, record):
        message = str(record.msg)
        if message.startswith("Tensorflow op [") and len(record.args) == 2:
            self.failures.append((str(record.args[0]), str(record.args[1])))
        elif message.startswith("Failed to convert node") and record.args:
            # args: node name, the handler (a method of the class tf2onnx
            # registers for the TF op: `While`, `StatelessIfOp`, ...).
            handler = getattr(record.args[1], "__self__", None)
            op = getattr(handler, "__name__", "?")
            op = op[:-2] if op.endswith("Op") and len(op) > 2 else op
            self.failures.append((str(record.args[0]), op))


def _keep_select_as_where(graph, nodes):
    """tf2onnx rewriter: every float Select stays an exact ONNX `Where`
    (integer ones have no inf and keep tf2onnx's Mul/Add, which
    onnxruntime has kernels for: its CPU `Where` takes no int32)."""
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
    for node in nodes:
        if (
            node.type in ("Select", "SelectV2")
            and graph.get_dtype(node.output[0]) in floats
        ):
            node.set_attr("handles_nan", True)
    return nodes


def _non_standard_nodes(graph, onnx) -> list:
    """(node name, op type) of the nodes (subgraphs included) that are not
    standard ONNX operators."""
    found = []
    for node in graph.node:
        if not onnx.defs.has(node.op_type, node.domain or ""):
            found.append((node.name, f"{node.domain}:{node.op_type}"))
        for attribute in node.attribute:
            for body in [attribute.g, *attribute.graphs]:
                found += _non_standard_nodes(body, onnx)
    return found


def _unsupported_error(model, failures, detail: str) -> ValueError:
    node, op = failures[0]
    reason = next(
        (
            f"{why} (tf2onnx: {detail})"
            for scope, why in _KNOWN_FAILURES.items()
            if scope in node
        ),
        detail,
    )
    others = (
        f" ({len(failures) - 1} more failing node(s) after it)"
        if len(failures) > 1
        else ""
    )
    return ValueError(
        f"Cannot export model {model.name!r} to ONNX: "
        f"{_conversion.layer_of_node(model, node)} has TensorFlow op "
        f"{op!r} (node {node!r}) that tf2onnx does not convert: "
        f"{reason}{others}. Nothing was written."
    )


def convert_to_onnx(
    model: keras.Model,
    *,
    opset: int = DEFAULT_OPSET,
    image_size: int | Sequence[int] | None = None,
):
    """Converts `model` to an in-memory ONNX `ModelProto` (see
    `export_onnx`, which writes it)."""
    model = _conversion.check_model(model)
    opset = validation.check_positive_int(opset, "opset")
    tf2onnx = _conversion.require("tf2onnx", "onnx", "ONNX export")
    onnx = _conversion.require("onnx", "onnx", "ONNX export")
    spec = _conversion.images_spec(model, image_size)
    names = model.output_names

    def infer(images):
        outputs = model(images, training=False)
        if isinstance(outputs, dict):
            return outputs
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return dict(zip(names, outputs, strict=True))

    function = tf.function(infer, input_signature=[spec], autograph=False)
    errors = _ConversionErrors()
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.addHandler(errors)
    logger.setLevel(logging.ERROR)  # tf2onnx logs every step at INFO
    try:
        proto, _ = tf2onnx.convert.from_function(
            function,
            input_signature=[spec],
            opset=opset,
            custom_rewriter=[_keep_select_as_where],
        )
    except Exception as error:  # tf2onnx raises bare ValueErrors etc.
        failures = errors.failures or [("?", type(error).__name__)]
        raise _unsupported_error(model, failures, str(error)) from error
    finally:
        logger.removeHandler(errors)
        logger.setLevel(level)
    failures = errors.failures or _non_standard_nodes(proto.graph, onnx)
    if failures:
        raise _unsupported_error(
            model, failures, "tf2onnx has no handler for it"
        )
    onnx.checker.check_model(proto)
    return proto


def export_onnx(
    model: keras.Model,
    output_dir: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    image_size: int | Sequence[int] | None = None,
    filename: str = "model.onnx",
) -> str:
    """Writes the model's float32 inference graph as `output_dir/model.onnx`.

    The ONNX graph takes `images`, float32 [batch, H, W, C] with a dynamic
    batch (the values the Keras model takes, 0..255), and returns the
    model's outputs under their Keras names (a dict model's keys). It is
    the model's own `call(training=False)` traced without XLA, converted by
    tf2onnx (see the module docstring for the two things added to a plain
    `model.export(format="onnx")`), checked with `onnx.checker` and
    written atomically. Verified with onnxruntime (outputs within 1e-4 of
    Keras at batch 1 and 3) for FCN, DeconvNet/SegNet and
    spatial-transformer classifiers, and for the Mask R-CNN configurations
    of benchmarks/bench_portable_export.py; other detector configurations
    fail in tf2onnx on the NMS control flow and are refused (see README).

    Args:
        model: a `keras.Model` with one image input [B, H, W, C].
        output_dir: folder to write to (created if missing).
        opset: ONNX opset to target.
        image_size: int or (H, W), for a model whose H or W is None (the
            ONNX input then gets that size); None keeps the model's.
        filename: name of the file in `output_dir`.

    Returns:
        The path of the written file.

    Raises:
        ImportError: if the `onnx` extra (tf2onnx, onnx) is not installed.
        TypeError: if `model` is not a `keras.Model`.
        ValueError: if the model has not one image input, `image_size`
            contradicts its size, or a TensorFlow op does not convert (the
            message names the layer, the op and the node; no file is
            written).
    """
    proto = convert_to_onnx(model, opset=opset, image_size=image_size)
    path = os.path.join(os.fspath(output_dir), filename)
    return _conversion.write_atomically(proto.SerializeToString(), path)
