"""SavedModel export of classifier + localiser models
(`models.localization.build_classifier_localizer`).

As in `detection.py`, the serving function takes raw uint8 images of any
size, resizes them in the graph to the model's fixed input size (bilinear,
cast to float 0..255) and scales the model's normalised boxes back to the
request's pixels. It is traced without `jit_compile` and written to
`export_dir/<version>/` with `serving.write_serving_archive`
(`serving_default` on uint8 images, `serving_image_bytes` on JPEG/PNG).
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from keras_segattn.export.serving import check_request_images
from keras_segattn.export.serving import static_image_shape
from keras_segattn.export.serving import write_serving_archive
from keras_segattn.validation import check_version

LOCALIZATION_OUTPUTS = ("probabilities", "classes", "detection_boxes")


def _num_classes(model: keras.Model) -> int:
    outputs = model.output
    if not isinstance(outputs, dict) or not {"classes", "boxes"} <= set(
        outputs
    ):
        received = sorted(outputs) if isinstance(outputs, dict) else outputs
        raise ValueError(
            "Invalid value for argument `model`. Expected a dict of outputs "
            "with `classes` [B, K] and `boxes` [B, 4], as "
            f"build_classifier_localizer returns. Received: {received}."
        )
    if tuple(outputs["boxes"].shape[1:]) != (4,):
        raise ValueError(
            "Invalid value for argument `model`. Expected `boxes` of shape "
            f"[B, 4]. Received: {tuple(outputs['boxes'].shape)}."
        )
    return int(outputs["classes"].shape[-1])


def make_localization_serving_fn(model: keras.Model):
    """Returns `fn(images) -> dict` for serving a classifier + localiser.

    Args:
        model: takes float images [B, H, W, C] in 0..255 of a static size
            and returns `{"classes": [B, K] probabilities, "boxes": [B, 4]
            normalised (ymin, xmin, ymax, xmax)}`.

    Returns:
        A callable taking uint8 images [b, h, w, C] of any size and
        returning `probabilities` float32 [b, K], `classes` int32 [b] (the
        argmax) and `detection_boxes` float32 [b, 4] (ymin, xmin, ymax,
        xmax in pixels of the given images).
    """
    height, width, channels = static_image_shape(model, "a localiser")
    num_classes = _num_classes(model)

    def predict(images):
        size = tf.cast(tf.shape(images)[1:3], tf.float32)
        x = tf.image.resize(
            tf.cast(images, tf.float32), (height, width), method="bilinear"
        )
        outputs = model(x, training=False)
        boxes = tf.cast(outputs["boxes"], tf.float32) * tf.tile(size, [2])
        return tf.cast(outputs["classes"], tf.float32), boxes

    def empty(images):
        batch = tf.shape(images)[:1]
        return (
            tf.zeros(tf.concat([batch, [num_classes]], 0)),
            tf.zeros(tf.concat([batch, [4]], 0)),
        )

    def serve(images):
        # Convolutions reject an empty batch, so answer it here.
        images = check_request_images(images, channels)
        probabilities, boxes = tf.cond(
            tf.shape(images)[0] > 0,
            lambda: predict(images),
            lambda: empty(images),
        )
        probabilities = tf.ensure_shape(probabilities, [None, num_classes])
        return {
            "probabilities": probabilities,
            "classes": tf.argmax(probabilities, -1, output_type=tf.int32),
            "detection_boxes": tf.ensure_shape(boxes, [None, 4]),
        }

    return serve


def export_localizer_for_serving(
    model: keras.Model,
    export_dir: str | os.PathLike,
    *,
    version: int = 1,
    warmup_images=None,
) -> str:
    """Exports a classifier + localiser for TF Serving.

    Signatures:

    - `serving_default`: `images` uint8 [batch, height, width, C] of any
      size (resized in the graph to the model's input size) ->
      `probabilities` float32 [batch, K], `classes` int32 [batch] and
      `detection_boxes` float32 [batch, 4] (ymin, xmin, ymax, xmax in
      pixels of the request's images).
    - `serving_image_bytes`: `image_bytes` tf.string [batch] (JPEG/PNG of
      one common size), same outputs.

    Args:
        model: as `make_localization_serving_fn`.
        export_dir: base directory; writes `export_dir/<version>/`.
        version: TF Serving version number (int >= 1).
        warmup_images: optional uint8 arrays [H, W, C] written as TF
            Serving warmup requests.

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: for a bad version, a model without a static input
            size or without the `classes` and `boxes` outputs.
    """
    version = check_version(version)
    image_shape = static_image_shape(model, "a localiser")
    serve = make_localization_serving_fn(model)
    return write_serving_archive(
        model,
        export_dir,
        serve,
        version=version,
        channels=image_shape[-1],
        warmup_images=warmup_images,
    )
