"""SavedModel export with TF-Serving signatures.

The serving functions take raw uint8 images, preprocess in the graph and
return a dict of named outputs, after the serving modules of the TF Model
Garden (tensorflow/models: official/vision/serving/export_base.py,
semantic_segmentation.py). They are traced without `jit_compile`, so a
TF Serving build without XLA runs them, whatever the model was trained with.
The archive is written to `export_dir/<version>/`, the numbered layout that TF
Serving's model server loads, atomically (`write_version`): TF Serving never
sees a half-written version.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_segattn import saving
from keras_segattn import validation

SERVING_KEY = "serving_default"


def write_version(
    export_dir: str | os.PathLike,
    version: int,
    write: Callable[[str], object],
) -> str:
    """Writes `export_dir/<version>/` atomically; every exporter uses it.

    `write(path)` fills a hidden temporary folder beside the version
    (`export_dir/.<version>.partial-<pid>-...`, a name TF Serving's version
    scan skips: it loads all-digit names only), which is then renamed to
    `<version>/` (`keras_segattn.saving.atomic_directory`). So:

    - a version folder is complete or absent, whatever happens midway: an
      exception deletes the temporary folder; a killed process leaves it
      hidden, and the next export to `export_dir` (any version) removes it;
    - an existing `<version>/` is replaced as a whole, in one atomic swap
      on Linux (`renameat2(RENAME_EXCHANGE)`), never merged with or left
      half-replaced by the new files. TF Serving does not reload a version
      number it has loaded: export a new number to roll out a new model.

    Args:
        export_dir: base directory (TF Serving's model directory).
        version: int >= 1.
        write: `fn(path)` writing the SavedModel (and any assets) to `path`.

    Returns:
        The path of the version directory.

    Raises:
        ValueError: for a bad `version`.
    """
    version = validation.check_version(version)
    path = os.path.join(os.fspath(export_dir), str(version))
    if os.path.isdir(export_dir):  # what dead exports of other versions left
        for entry in os.listdir(export_dir):
            name = entry[1:].split(".", 1)[0]
            if entry.startswith(".") and name.isdigit():
                saving.clean_leftovers(os.path.join(export_dir, name))
    with saving.atomic_directory(path) as temporary:
        write(temporary)
    return path


def static_image_shape(model: keras.Model, kind: str = "a model") -> tuple:
    """(H, W, C) of a model taking images [batch, H, W, C] of a static size.

    Raises:
        ValueError: naming `model`, for any other input.
    """
    input_shape = tuple(model.inputs[0].shape)
    if len(input_shape) != 4 or None in input_shape[1:]:
        raise ValueError(
            f"Invalid value for argument `model`. Expected {kind} taking "
            "images [batch, height, width, channels] of a static size. "
            f"Received: a model with input shape {input_shape}."
        )
    return input_shape[1:]


def check_request_images(images, channels: int, name: str = "images"):
    """Checks a request of images of any size inside a serving function.

    A signature checks a request's dtype but not its shape. This checks the
    rank (4), the channels and, unless the batch is empty, a height and a
    width of at least one pixel, so that a malformed request fails with an
    `InvalidArgumentError` naming `name` instead of reaching (and failing
    obscurely, or aborting, in) a resize or convolution kernel.

    Args:
        images: uint8 tensor, the request.
        channels: int, the channels the model takes.
        name: str, the signature's input name (in the errors).

    Returns:
        `images` with the static shape [None, None, None, channels].
    """
    images = tf.ensure_shape(images, [None, None, None, channels], name=name)
    shape = tf.shape(images)
    check = tf.debugging.Assert(
        tf.logical_or(tf.equal(shape[0], 0), tf.reduce_all(shape[1:3] > 0)),
        [
            f"Invalid request: `{name}` needs a height and a width of at "
            f"least 1 pixel. Received: {name} of shape",
            shape,
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


def _check_test_time_augmentation(scales, flip) -> tuple[tuple, bool]:
    """(scales, flip) of a segmentation export, checked."""
    scales = validation.check_positive_floats(scales, "test_time_scales")
    return scales, validation.check_bool(flip, "test_time_flip")


def make_segmentation_serving_fn(
    model: keras.Model,
    *,
    label_offset: int = 0,
    inference_size: Sequence[int] | None = None,
    test_time_scales: Sequence[float] = (1.0,),
    test_time_flip: bool = False,
):
    """Returns `fn(images) -> {"masks", "probabilities"}` for serving.

    Args:
        model: a Keras model mapping float images [B, H, W, 3] in 0..255 to
            per-pixel class probabilities [B, H, W, num_classes].
        label_offset: int added to the argmax, so that `masks` use the
            dataset's own numbering (Oxford pets trimaps: 1).
        inference_size: optional (height, width). The images are resized
            (bilinear) to it before the model and the probabilities resized
            back to each input's size, so any input size gives the scale the
            model was trained at.
        test_time_scales: the sizes the model sees each image at, as
            multiples of `inference_size` (of the image's own size without
            one), rounded to whole pixels; the default `(1.0,)` is one
            pass. With several, the probabilities of every pass, resized to
            the image's size, are averaged (multi-scale inference, e.g.
            `(0.75, 1.0, 1.25)` as in DeepLab's multi-scale inputs).
        test_time_flip: bool. Also run each scale on the horizontally
            flipped image (its probabilities flipped back) and average.

    Returns:
        A callable taking uint8 images [B, H, W, 3] and returning
        `masks` int32 [B, H, W] and `probabilities` float32
        [B, H, W, num_classes].

    Raises:
        ValueError: for a bad `inference_size` or `test_time_scales`.
        TypeError: for a `test_time_flip` that is not a bool.
    """
    if inference_size is not None:
        inference_size = validation.standardize_size(
            inference_size, "inference_size"
        )
    scales, flip = _check_test_time_augmentation(
        test_time_scales, test_time_flip
    )
    offset = int(label_offset)
    num_classes = model.outputs[0].shape[-1]

    def pass_size(size, scale):
        """The model's input size for one scale (None: the image's own)."""
        if inference_size is not None:
            return tuple(max(1, round(side * scale)) for side in inference_size)
        if scale == 1.0:
            return None
        scaled = tf.round(tf.cast(size, tf.float32) * scale)
        return tf.maximum(tf.cast(scaled, tf.int32), 1)

    def predict(images):
        size = tf.shape(images)[1:3]
        x = tf.cast(images, tf.float32)
        total = None
        for scale in scales:
            target = pass_size(size, scale)
            resized = x if target is None else tf.image.resize(x, target)
            for flipped in (False, True) if flip else (False,):
                inputs = tf.reverse(resized, [2]) if flipped else resized
                p = tf.cast(model(inputs, training=False), tf.float32)
                p = tf.reverse(p, [2]) if flipped else p
                if target is not None:
                    p = tf.image.resize(p, size, method="bilinear")
                total = p if total is None else total + p
        passes = len(scales) * (2 if flip else 1)
        return total if passes == 1 else total / float(passes)

    def serve(images):
        images = check_request_images(images, 3)
        # Convolution kernels reject an empty batch; answer it with empty
        # outputs of the right shape instead of an error.
        shape = tf.shape(images)
        probabilities = tf.cond(
            shape[0] > 0,
            lambda: predict(images),
            lambda: tf.zeros(tf.concat([shape[:3], [num_classes]], 0)),
        )
        probabilities = tf.ensure_shape(
            probabilities, [None, None, None, num_classes]
        )
        masks = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"masks": masks + offset, "probabilities": probabilities}

    return serve


def decode_image_bytes(image_bytes, channels: int = 3):
    """Decodes a batch of JPEG/PNG/GIF/BMP strings to uint8 images.

    Args:
        image_bytes: tf.string [batch], encoded images of one common size.
        channels: channels to decode to (3 RGB, 1 grayscale).

    Returns:
        uint8 tensor [batch, height, width, channels].
    """
    image_bytes = tf.ensure_shape(image_bytes, [None], name="image_bytes")

    def decode_all():
        return tf.map_fn(
            lambda b: tf.io.decode_image(
                b, channels=channels, dtype=tf.uint8, expand_animations=False
            ),
            image_bytes,
            fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8),
        )

    return tf.cond(
        tf.size(image_bytes) > 0,
        decode_all,
        lambda: tf.zeros([0, 0, 0, channels], tf.uint8),
    )


def decode_image_bytes_to_shape(image_bytes, image_shape):
    """Decodes JPEG/PNG strings and resizes them to a model's input size.

    Args:
        image_bytes: tf.string [batch], encoded images of one common size.
        image_shape: (height, width, channels) of the model's input;
            `channels=1` decodes to grayscale (a colour image is converted).

    Returns:
        float32 [batch, height, width, channels], values 0..255, resized
        bilinearly (an image already of that size is returned unchanged).
    """
    height, width, channels = image_shape
    images = decode_image_bytes(image_bytes, channels)

    def resize():
        return tf.image.resize(
            tf.cast(images, tf.float32), (height, width), method="bilinear"
        )

    return tf.cond(
        tf.shape(images)[0] > 0,
        resize,
        lambda: tf.zeros([0, height, width, channels]),
    )


def write_warmup_requests(
    export_path: str | os.PathLike,
    images,
    *,
    input_name: str = "images",
    dtype=np.uint8,
) -> str:
    """Writes `assets.extra/tf_serving_warmup_requests` for TF Serving.

    One `PredictRequest` for `serving_default` per image (batch of one),
    stored as `PredictionLog` records in a TFRecord file, the format TF
    Serving replays at load time (tensorflow/serving: "SavedModel Warmup").

    Args:
        export_path: the SavedModel version directory.
        images: iterable of uint8 arrays [H, W, C] (real sample inputs),
            or of other single examples with `dtype` (`object` for
            sentences of a `tf.string` signature).
        input_name: the signature's input name.
        dtype: NumPy dtype of the examples.

    Returns:
        The path of the written file.

    Raises:
        ImportError: if `tensorflow-serving-api` is not installed.
        ValueError: if `images` is empty.
    """
    try:
        from tensorflow_serving.apis import model_pb2
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError as error:  # pragma: no cover - install hint
        raise ImportError(
            "Writing warmup requests needs `tensorflow-serving-api`; with "
            "tensorflow-cpu install it with `pip install --no-deps "
            "tensorflow-serving-api==2.21.*`."
        ) from error
    images = [np.asarray(image, dtype) for image in images]
    if not images:
        raise ValueError(
            "Invalid value for argument `images`. Expected at least one "
            "sample image. Received: an empty sequence."
        )
    directory = os.path.join(os.fspath(export_path), "assets.extra")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "tf_serving_warmup_requests")
    with tf.io.TFRecordWriter(path) as writer:
        for image in images:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name=SERVING_KEY)
            )
            request.inputs[input_name].CopyFrom(
                tf.make_tensor_proto(image[None])
            )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def write_serving_archive(
    model: keras.Model,
    export_dir: str | os.PathLike,
    serve_images,
    *,
    version: int = 1,
    channels: int = 3,
    warmup_images=None,
) -> str:
    """Writes a SavedModel with the two image signatures around a function.

    - `serving_default`: `images` uint8 [batch, height, width, channels].
    - `serving_image_bytes`: `image_bytes` tf.string [batch] (JPEG/PNG, one
      common size per batch), decoded in the graph, same outputs.

    Args:
        model: the Keras model `serve_images` calls (tracked for variables).
        export_dir: base directory; writes `export_dir/<version>/`.
        serve_images: `fn(uint8 images) -> dict of named tensors`.
        version: TF Serving version number (int >= 1).
        channels: image channels of the signatures.
        warmup_images: optional uint8 arrays [H, W, channels] written as
            TF Serving warmup requests.

    Returns:
        The path of the written version directory.
    """
    version = validation.check_version(version)
    # A plain `tf.Module` rather than `keras.export.ExportArchive`: in Keras
    # 3.15 the archive checkpoints every variable twice (the Keras variables
    # and the `tf.Variable`s they wrap), doubling the SavedModel. Tracking
    # only the wrapped `tf.Variable`s that the functions capture stores each
    # once and keeps the graph loadable by TF1-style loaders (TF Serving).
    module = tf.Module()
    module.model_variables = [v.value for v in model.variables]
    module.serve = tf.function(
        serve_images,
        input_signature=[
            tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")
        ],
    )
    module.serve_image_bytes = tf.function(
        lambda image_bytes: serve_images(
            decode_image_bytes(image_bytes, channels)
        ),
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )

    def write(path):
        tf.saved_model.save(
            module,
            path,
            signatures={
                SERVING_KEY: module.serve,
                "serving_image_bytes": module.serve_image_bytes,
            },
        )
        if warmup_images is not None:
            write_warmup_requests(path, warmup_images)

    return write_version(export_dir, version, write)


def export_for_serving(
    model: keras.Model,
    export_dir: str | os.PathLike,
    *,
    version: int = 1,
    task: str = "segmentation",
    label_offset: int = 0,
    inference_size: Sequence[int] | None = None,
    warmup_images=None,
    test_time_scales: Sequence[float] = (1.0,),
    test_time_flip: bool = False,
) -> str:
    """Exports `model` as a SavedModel that TF Serving can load.

    The `serving_default` signature takes `images`: uint8 [batch, height,
    width, 3] of any size, and for `task="segmentation"` returns `masks`
    (int32 [batch, height, width], class ids plus `label_offset`) and
    `probabilities` (float32 [batch, height, width, num_classes]). A second
    signature, `serving_image_bytes`, takes `image_bytes` (tf.string
    [batch], JPEG or PNG) and returns the same outputs.

    Args:
        model: the Keras model (float images 0..255 in, probabilities out).
        export_dir: base directory; the SavedModel goes to
            `export_dir/<version>/`.
        version: TF Serving version number (int >= 1).
        task: "segmentation" (the only task so far).
        label_offset: added to class ids in `masks`.
        inference_size: optional (height, width) the images are resized to.
        warmup_images: optional uint8 arrays [H, W, 3] (real samples) to
            write as `assets.extra/tf_serving_warmup_requests`.
        test_time_scales, test_time_flip: test-time augmentation in the
            graph (see `make_segmentation_serving_fn`): the probabilities
            averaged over these scales of the inference size, and over
            horizontal flips. The default is one pass.

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: for an unknown task, a bad version, inference size or
            scales, or a model whose input is not [B, H, W, 3].
        TypeError: for a `test_time_flip` that is not a bool.
    """
    version = validation.check_version(version)
    if task != "segmentation":
        raise ValueError(
            "Invalid value for argument `task`. Expected one of "
            f"['segmentation']. Received: task={task!r}."
        )
    input_shape = tuple(model.inputs[0].shape)
    if len(input_shape) != 4 or input_shape[-1] != 3:
        raise ValueError(
            "Invalid value for argument `model`. Expected a model taking "
            "images [batch, height, width, 3]. Received: a model with input "
            f"shape {input_shape}."
        )
    fixed = input_shape[1:3]
    if inference_size is None and None not in fixed:
        inference_size = fixed  # a fixed-size model: resize into it
    serve = make_segmentation_serving_fn(
        model,
        label_offset=label_offset,
        inference_size=inference_size,
        test_time_scales=test_time_scales,
        test_time_flip=test_time_flip,
    )
    return write_serving_archive(
        model, export_dir, serve, version=version, warmup_images=warmup_images
    )
