"""SavedModel export of image classifiers (and spatial-transformer models).

Like `serving.py`, the serving functions take raw uint8 images, preprocess
in the graph and return a dict of named outputs (TF Model Garden's serving
modules: tensorflow/models official/vision/serving/export_base.py). They are
traced without `jit_compile`, so a TF Serving build without XLA runs them,
and the archive goes to `export_dir/<version>/`, the layout TF Serving loads.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from keras_segattn.export.serving import SERVING_KEY
from keras_segattn.export.serving import decode_image_bytes_to_shape
from keras_segattn.export.serving import static_image_shape
from keras_segattn.export.serving import write_version
from keras_segattn.export.serving import write_warmup_requests
from keras_segattn.validation import check_version

FLOAT_SERVING_KEY = "serving_float32"
IMAGE_BYTES_SERVING_KEY = "serving_image_bytes"


def _output_specs(model: keras.Model) -> dict[str, tuple]:
    """{name: static shape} of the model's outputs; a single output is
    `probabilities`."""
    outputs = model.outputs
    if isinstance(model.output, dict):
        names = list(model.output)
        outputs = [model.output[k] for k in names]
    elif len(outputs) == 1:
        names = ["probabilities"]
    else:
        raise ValueError(
            "Invalid value for argument `model`. Expected a single "
            "`probabilities` output or a dict of named outputs including "
            f"`probabilities`. Received: a model with {len(outputs)} "
            "unnamed outputs."
        )
    if "probabilities" not in names:
        raise ValueError(
            "Invalid value for argument `model`. Expected an output named "
            f"`probabilities`. Received outputs {names}."
        )
    return {n: tuple(o.shape) for n, o in zip(names, outputs, strict=True)}


def make_classifier_serving_fn(model: keras.Model, image_shape: tuple):
    """Returns `fn(images) -> dict` for serving a classifier.

    Args:
        model: maps float32 images [B, *image_shape] in 0..255 to class
            probabilities [B, num_classes], or to a dict of outputs with
            `probabilities` among them (e.g. `transformed_images`, `theta`).
        image_shape: (height, width, channels) the model takes.

    Returns:
        A callable taking images [B, *image_shape] (any real dtype, values
        0..255) and returning `probabilities` float32 [B, num_classes],
        `classes` int32 [B] (the argmax) and the model's other outputs as
        float32.
    """
    specs = _output_specs(model)

    def predict(x):
        outputs = model(x, training=False)
        if not isinstance(outputs, dict):
            outputs = {"probabilities": outputs}
        return {k: tf.cast(outputs[k], tf.float32) for k in specs}

    def empty(batch_shape):
        return {
            k: tf.zeros(tf.concat([batch_shape, list(s[1:])], 0))
            for k, s in specs.items()
        }

    def serve(images):
        # A signature checks the dtype of a request but not its shape:
        # check it here, so a bad request gets an error naming `images`.
        images = tf.ensure_shape(images, [None, *image_shape], name="images")
        x = tf.cast(images, tf.float32)
        # Convolution kernels reject an empty batch: answer it with empty
        # outputs of the right shape.
        batch = tf.shape(images)[:1]
        outputs = tf.cond(
            batch[0] > 0, lambda: predict(x), lambda: empty(batch)
        )
        outputs = {
            k: tf.ensure_shape(v, [None, *specs[k][1:]])
            for k, v in outputs.items()
        }
        outputs["classes"] = tf.argmax(
            outputs["probabilities"], axis=-1, output_type=tf.int32
        )
        return outputs

    return serve


def export_classifier_for_serving(
    model: keras.Model,
    export_dir: str | os.PathLike,
    *,
    version: int = 1,
    include_float_signature: bool = True,
    warmup_images=None,
) -> str:
    """Exports an image classifier as a SavedModel that TF Serving loads.

    The `serving_default` signature takes `images`: uint8 [batch, H, W, C]
    (the model's input size) and returns `probabilities` (float32
    [batch, num_classes]), `classes` (int32 [batch], the argmax) and every
    other named output of the model as float32; for a spatial-transformer
    classifier those are `transformed_images` [batch, h, w, C] and `theta`
    [batch, P]. `serving_image_bytes` does the same for `image_bytes`
    (tf.string [batch], PNG or JPEG of one common size per batch), decoded
    in the graph to C channels (grayscale for C=1) and resized bilinearly
    to H x W. With `include_float_signature`, `serving_float32` does the
    same for float32 images (values 0..255, as the uint8 ones).

    Args:
        model: a Keras model taking float images [B, H, W, C] in 0..255,
            returning probabilities or a dict of outputs that includes
            `probabilities`. Its input size must be static.
        export_dir: base directory; the SavedModel goes to
            `export_dir/<version>/`.
        version: TF Serving version number (int >= 1).
        include_float_signature: bool. Also add `serving_float32`.
        warmup_images: optional uint8 arrays [H, W, C] written as TF
            Serving warmup requests (`serving.write_warmup_requests`).

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: for a bad version, a model whose input is not
            [B, H, W, C] with static H, W, C, or outputs without
            `probabilities`.
    """
    version = check_version(version)
    image_shape = static_image_shape(model)
    _output_specs(model)
    serve = make_classifier_serving_fn(model, image_shape)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SERVING_KEY,
        serve,
        input_signature=[
            tf.TensorSpec([None, *image_shape], tf.uint8, name="images")
        ],
    )
    archive.add_endpoint(
        IMAGE_BYTES_SERVING_KEY,
        lambda image_bytes: serve(
            decode_image_bytes_to_shape(image_bytes, image_shape)
        ),
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    if include_float_signature:
        archive.add_endpoint(
            FLOAT_SERVING_KEY,
            make_classifier_serving_fn(model, image_shape),
            input_signature=[
                tf.TensorSpec([None, *image_shape], tf.float32, name="images")
            ],
        )

    def write(path):
        archive.write_out(path, verbose=False)
        if warmup_images is not None:
            write_warmup_requests(path, warmup_images)

    return write_version(export_dir, version, write)
