"""SavedModel export of detectors and instance segmenters (Faster R-CNN,
Mask R-CNN), of detectors that take proposals (Fast R-CNN, R-CNN) and of
instance refiners that take boxes (SDSRefiner), with the TF Object
Detection API's output names.

As in `serving.py`, the serving function takes raw uint8 images of any
size, preprocesses in the graph (bilinear resize to the model's fixed input
size, cast to float 0..255, the model's own normalisation) and
post-processes in the graph: boxes are scaled back to each request's pixel
coordinates and instance masks resized back to its size. It is traced
without `jit_compile` (TF Serving builds run no XLA-compiled graph) and
written to `export_dir/<version>/`.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from keras_segattn.export.serving import SERVING_KEY
from keras_segattn.export.serving import check_request_images
from keras_segattn.export.serving import static_image_shape
from keras_segattn.export.serving import write_serving_archive
from keras_segattn.export.serving import write_version
from keras_segattn.ops._boxes import is_padding_box
from keras_segattn.validation import check_non_negative_int
from keras_segattn.validation import check_positive_int
from keras_segattn.validation import check_version

DETECTION_OUTPUTS = (
    "detection_boxes",
    "detection_scores",
    "detection_classes",
    "num_detections",
)
MASK_OUTPUT = "detection_masks"


def _detector_specs(model: keras.Model) -> tuple[tuple, dict[str, tuple]]:
    """(image_shape, {output name: static shape}) of a detector, checked."""
    image_shape = static_image_shape(model, "a detector")
    outputs = model.output
    missing = (
        list(DETECTION_OUTPUTS)
        if not isinstance(outputs, dict)
        else [k for k in DETECTION_OUTPUTS if k not in outputs]
    )
    if missing:
        received = sorted(outputs) if isinstance(outputs, dict) else outputs
        raise ValueError(
            "Invalid value for argument `model`. Expected a dict of outputs "
            f"with {list(DETECTION_OUTPUTS)} (and optionally "
            f"{MASK_OUTPUT!r}), as FasterRCNN returns. Missing: {missing}; "
            f"received: {received}."
        )
    names = [*DETECTION_OUTPUTS] + (
        [MASK_OUTPUT] if MASK_OUTPUT in outputs else []
    )
    return image_shape, {k: tuple(outputs[k].shape) for k in names}


def make_detection_serving_fn(
    model: keras.Model,
    bounding_box_format: str = "yxyx",
    label_offset: int = 0,
    with_proposals: bool = False,
):
    """Returns `fn(images) -> dict` for serving a detector.

    Args:
        model: a Keras model taking float images [B, H, W, C] in 0..255 of a
            static size and returning the TF OD API dict (`FasterRCNN`):
            `detection_boxes` [B, D, 4] in absolute pixels of that size,
            `detection_scores`, `detection_classes` [B, D], `num_detections`
            [B] and optionally `detection_masks` [B, D, H, W].
        bounding_box_format: the format of the model's `detection_boxes`;
            the served boxes are always "yxyx" (ymin, xmin, ymax, xmax).
        label_offset: int added to the served `detection_classes` of real
            detections (1 gives the TF OD API's 1-based label-map ids).
        with_proposals: bool. The model takes `{"images", "proposals"}`
            (`FastRCNN`, `RCNN`); the function then takes `(images,
            proposals)`, proposals float32 [b, N, 4] (ymin, xmin, ymax,
            xmax in pixels of the given images, padding rows four -1),
            scaled in the graph to the model's input size and converted to
            its `bounding_box_format`.

    Returns:
        A callable taking uint8 images [b, h, w, C] of any size and
        returning float32 `detection_boxes` [b, D, 4] (yxyx, pixels of the
        given images), `detection_scores` [b, D], `detection_classes`
        [b, D] (class ids plus `label_offset`), `num_detections` [b] and,
        for instance models, `detection_masks` [b, D, h, w] (probabilities;
        threshold at 0.5).
    """
    image_shape, specs = _detector_specs(model)
    height, width, channels = image_shape
    has_masks = MASK_OUTPUT in specs

    # Plain Python control flow on Python values only: not for AutoGraph.
    @tf.autograph.experimental.do_not_convert
    def predict(images, proposals=None):
        size = tf.shape(images)[1:3]
        x = tf.image.resize(
            tf.cast(images, tf.float32), (height, width), method="bilinear"
        )
        scale = tf.cast(size, tf.float32) / tf.constant(
            [height, width], tf.float32
        )
        if proposals is not None:
            x = {
                "images": x,
                "proposals": _proposals_to_model(
                    proposals, 1.0 / tf.tile(scale, [2]), bounding_box_format
                ),
            }
        outputs = model(x, training=False)
        outputs = {k: tf.cast(outputs[k], tf.float32) for k in specs}
        boxes = outputs["detection_boxes"]
        if bounding_box_format != "yxyx":
            boxes = keras.utils.bounding_boxes.convert_format(
                boxes, source=bounding_box_format, target="yxyx"
            )
        # Padding slots are zeros and stay zeros.
        outputs["detection_boxes"] = boxes * tf.tile(scale, [2])
        if label_offset:
            valid = tf.sequence_mask(
                tf.cast(outputs["num_detections"], tf.int32),
                boxes.shape[1],
                dtype=tf.float32,
            )
            outputs["detection_classes"] += float(label_offset) * valid
        if has_masks:
            masks = tf.transpose(outputs[MASK_OUTPUT], [0, 2, 3, 1])
            masks = tf.image.resize(masks, size, method="bilinear")
            outputs[MASK_OUTPUT] = tf.transpose(masks, [0, 3, 1, 2])
        return outputs

    def empty(images):
        batch = tf.shape(images)[:1]
        size = tf.shape(images)[1:3]
        result = {
            k: tf.zeros(tf.concat([batch, list(specs[k][1:])], 0))
            for k in DETECTION_OUTPUTS
        }
        if has_masks:
            result[MASK_OUTPUT] = tf.zeros(
                tf.concat([batch, [specs[MASK_OUTPUT][1]], size], 0)
            )
        return result

    def serve(images, proposals=None):
        images = check_request_images(images, channels)
        if proposals is not None:
            proposals = tf.ensure_shape(
                proposals, num_proposals_shape, name="proposals"
            )
        # Convolutions reject an empty batch: answer it with empty outputs.
        outputs = tf.cond(
            tf.shape(images)[0] > 0,
            lambda: predict(images, proposals),
            lambda: empty(images),
        )
        shapes = {k: [None, *s[1:]] for k, s in specs.items()}
        if has_masks:
            shapes[MASK_OUTPUT] = [None, specs[MASK_OUTPUT][1], None, None]
        return {k: tf.ensure_shape(v, shapes[k]) for k, v in outputs.items()}

    if not with_proposals:
        return lambda images: serve(images)
    num_proposals_shape = [None, *_proposals_shape(model)[1:]]
    return serve


def _proposals_shape(model: keras.Model) -> tuple:
    """The static [B, N, 4] of a proposal detector's "proposals" input."""
    names = [getattr(i, "name", "") for i in model.inputs]
    shapes = [tuple(i.shape) for i in model.inputs]
    for name, shape in zip(names, shapes, strict=True):
        if name.startswith("proposals") and len(shape) == 3:
            if shape[1] is not None and shape[2] == 4:
                return shape
    raise ValueError(
        "Invalid value for argument `model`. Expected a proposal detector "
        '(FastRCNN, RCNN) with a "proposals" input [B, N, 4] of a static N. '
        f"Received: a model with inputs {shapes} named {names}."
    )


def _proposals_to_model(proposals, scale, bounding_box_format: str):
    """Request-pixel yxyx proposals -> the model's pixels and format, the
    padding rows (four -1) kept."""
    proposals = tf.cast(proposals, tf.float32)
    padding = is_padding_box(proposals)[..., None]
    boxes = proposals * scale
    if bounding_box_format != "yxyx":
        boxes = keras.utils.bounding_boxes.convert_format(
            boxes, source="yxyx", target=bounding_box_format
        )
    return tf.where(padding, -tf.ones_like(boxes), boxes)


def export_detector_for_serving(
    model: keras.Model,
    export_dir: str | os.PathLike,
    *,
    version: int = 1,
    label_offset: int = 0,
    warmup_images=None,
) -> str:
    """Exports a detector or instance segmenter for TF Serving.

    Signatures (TF Object Detection API names):

    - `serving_default`: `images` uint8 [batch, height, width, C] of any
      size (resized in the graph to the model's input size) ->
      `detection_boxes` float32 [batch, D, 4] (ymin, xmin, ymax, xmax in
      pixels of the request's images), `detection_scores` float32
      [batch, D], `detection_classes` float32 [batch, D] (the model's
      0-based ids plus `label_offset`),
      `num_detections` float32 [batch] and, for Mask R-CNN,
      `detection_masks` float32 [batch, D, height, width]. Slots past
      `num_detections` are zeros.
    - `serving_image_bytes`: `image_bytes` tf.string [batch] (JPEG/PNG of
      one common size), same outputs.

    Args:
        model: a `FasterRCNN` (or any model with those outputs and a
            static input size); its `bounding_box_format` attribute, if
            any, says how its boxes are written ("yxyx" otherwise).
        export_dir: base directory; writes `export_dir/<version>/`.
        version: TF Serving version number (int >= 1).
        label_offset: int >= 0 added to the class ids of real detections:
            0 keeps the model's 0-based ids, 1 gives the TF OD API's
            label-map ids (0 is its background).
        warmup_images: optional uint8 arrays [H, W, C] written as TF
            Serving warmup requests.

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: for a bad version or a model without a static input
            size or without the detection outputs.
    """
    version = check_version(version)
    label_offset = check_non_negative_int(label_offset, "label_offset")
    if len(model.inputs) != 1:
        raise ValueError(
            "Invalid value for argument `model`. Expected a detector taking "
            "images only; export a model that also takes proposals "
            "(FastRCNN, RCNN) with export_proposal_detector_for_serving. "
            f"Received: a model with {len(model.inputs)} inputs."
        )
    image_shape, _ = _detector_specs(model)
    serve = make_detection_serving_fn(
        model, getattr(model, "bounding_box_format", "yxyx"), label_offset
    )
    return write_serving_archive(
        model,
        export_dir,
        serve,
        version=version,
        channels=image_shape[-1],
        warmup_images=warmup_images,
    )


def export_proposal_detector_for_serving(
    model: keras.Model,
    export_dir: str | os.PathLike,
    *,
    version: int = 1,
    label_offset: int = 0,
) -> str:
    """Exports a detector that takes its region proposals as an input
    (`FastRCNN`, `RCNN`) for TF Serving.

    The serving graph takes the images *and* their proposals: selective
    search (`keras_segattn.data.selective_search_proposals`) is OpenCV C++
    on the CPU with a data-dependent number of boxes and no TF kernel, so
    it cannot be part of a SavedModel; clients compute the proposals
    (as the papers precompute them) and send them with the images.

    Signature `serving_default`: `images` uint8 [batch, height, width, C]
    of any size (resized in the graph to the model's input size) and
    `proposals` float32 [batch, N, 4] (ymin, xmin, ymax, xmax in pixels of
    the request's images, padding rows four -1; N the model's
    `num_proposals`) -> the outputs of `export_detector_for_serving`
    (`detection_boxes` in the request's pixels, `detection_scores`,
    `detection_classes`, `num_detections`). Traced without XLA.

    Args:
        model: a `FastRCNN` or `RCNN` (a model with inputs "images" and
            "proposals" and the detection outputs).
        export_dir: base directory; writes `export_dir/<version>/`.
        version: TF Serving version number (int >= 1).
        label_offset: int >= 0 added to the class ids of real detections.

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: for a bad version or a model without those inputs and
            outputs.
    """
    version = check_version(version)
    label_offset = check_non_negative_int(label_offset, "label_offset")
    image_shape, _ = _detector_specs(model)
    proposals_shape = _proposals_shape(model)
    serve = make_detection_serving_fn(
        model,
        getattr(model, "bounding_box_format", "yxyx"),
        label_offset,
        with_proposals=True,
    )
    return _write_images_and_boxes_archive(
        model,
        export_dir,
        version,
        serve,
        image_shape[-1],
        tf.TensorSpec([None, *proposals_shape[1:]], tf.float32, "proposals"),
    )


def _write_images_and_boxes_archive(
    model, export_dir, version: int, serve, channels: int, boxes_spec
) -> str:
    """Writes a SavedModel whose `serving_default` takes uint8 `images` of
    any size and the boxes of `boxes_spec` (proposals, or the boxes to
    segment): `serve(images, boxes)`, traced without XLA."""
    module = tf.Module()
    module.model_variables = [v.value for v in model.variables]
    module.serve = tf.function(
        serve,
        input_signature=[
            tf.TensorSpec([None, None, None, channels], tf.uint8, "images"),
            boxes_spec,
        ],
    )
    return write_version(
        export_dir,
        version,
        lambda path: tf.saved_model.save(
            module, path, signatures={SERVING_KEY: module.serve}
        ),
    )


def _refiner_specs(model: keras.Model) -> tuple[tuple, bool]:
    """(image_shape, has_classes) of an instance refiner, checked."""
    names = sorted(getattr(i, "name", "") for i in model.inputs)
    outputs = model.output
    if names != ["boxes", "images"] or not (
        isinstance(outputs, dict) and "mask_logits" in outputs
    ):
        received = sorted(outputs) if isinstance(outputs, dict) else outputs
        raise ValueError(
            "Invalid value for argument `model`. Expected an instance "
            'refiner (SDSRefiner) with inputs "images" and "boxes" and a '
            '"mask_logits" output. Received: a model with inputs '
            f"{names} and outputs {received}."
        )
    shape = next(tuple(i.shape) for i in model.inputs if i.name == "images")
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(
            "Invalid value for argument `model`. Expected an instance "
            "refiner taking images [batch, height, width, channels] of a "
            f"static size. Received: a model with images of shape {shape}."
        )
    if not hasattr(model, "paste_masks"):
        raise ValueError(
            "Invalid value for argument `model`. Expected a model with a "
            "`paste_masks(mask_logits, boxes)` method (SDSRefiner). "
            f"Received: {type(model).__name__}."
        )
    return shape[1:], "class_logits" in outputs


def make_instance_refiner_serving_fn(
    model: keras.Model, num_boxes: int, label_offset: int = 0
):
    """Returns `fn(images, boxes) -> dict` for serving an instance refiner.

    Args:
        model: an `SDSRefiner` (inputs "images" of a static size and
            "boxes" (x1, y1, x2, y2) pixels, outputs "mask_logits" and,
            with the MNC cascade, "class_logits"; a `paste_masks` method).
        num_boxes: int >= 1, the static number of boxes per image.
        label_offset: int added to the served classes of real boxes.

    Returns:
        A callable taking uint8 images [b, h, w, C] of any size and float32
        boxes [b, num_boxes, 4] (ymin, xmin, ymax, xmax in pixels of the
        given images, padding rows four -1) and returning float32
        `detection_masks` [b, num_boxes, h, w] (probabilities; threshold
        at 0.5; zeros for padding rows) and, with the cascade,
        `detection_classes` and `detection_scores` [b, num_boxes] (the most
        likely class plus `label_offset` and its probability; zeros for
        padding rows).
    """
    (height, width, channels), has_classes = _refiner_specs(model)
    num_boxes = check_positive_int(num_boxes, "num_boxes")
    label_offset = check_non_negative_int(label_offset, "label_offset")

    def predict(images, boxes):
        size = tf.shape(images)[1:3]
        x = tf.image.resize(
            tf.cast(images, tf.float32), (height, width), method="bilinear"
        )
        scale = tf.cast(size, tf.float32) / tf.constant(
            [height, width], tf.float32
        )
        boxes = _proposals_to_model(boxes, 1.0 / tf.tile(scale, [2]), "xyxy")
        outputs = model({"images": x, "boxes": boxes}, training=False)
        # Pasted at the model's size (padding boxes paste zeros), then
        # resized to the request's, as export_detector_for_serving does.
        masks = model.paste_masks(outputs["mask_logits"], boxes)
        masks = tf.image.resize(
            tf.transpose(masks, [0, 2, 3, 1]), size, method="bilinear"
        )
        result = {MASK_OUTPUT: tf.transpose(masks, [0, 3, 1, 2])}
        if has_classes:
            valid = tf.cast(tf.logical_not(is_padding_box(boxes)), tf.float32)
            probs = tf.nn.softmax(tf.cast(outputs["class_logits"], tf.float32))
            classes = tf.cast(tf.argmax(probs, -1), tf.float32)
            result["detection_classes"] = (classes + label_offset) * valid
            result["detection_scores"] = tf.reduce_max(probs, -1) * valid
        return result

    def empty(images):
        batch = tf.shape(images)[:1]
        result = {
            MASK_OUTPUT: tf.zeros(
                tf.concat([batch, [num_boxes], tf.shape(images)[1:3]], 0)
            )
        }
        if has_classes:
            for key in ("detection_classes", "detection_scores"):
                result[key] = tf.zeros(tf.concat([batch, [num_boxes]], 0))
        return result

    def serve(images, boxes):
        images = check_request_images(images, channels)
        boxes = tf.ensure_shape(boxes, [None, num_boxes, 4], name="boxes")
        check = tf.debugging.assert_equal(
            tf.shape(boxes)[0],
            tf.shape(images)[0],
            message="Invalid request: `images` and `boxes` need the same "
            "batch size.",
        )
        with tf.control_dependencies([check]):
            # Convolutions reject an empty batch: answer it with zeros.
            return tf.cond(
                tf.shape(images)[0] > 0,
                lambda: predict(images, boxes),
                lambda: empty(images),
            )

    return serve


def export_instance_refiner_for_serving(
    model: keras.Model,
    export_dir: str | os.PathLike,
    *,
    num_boxes: int = 100,
    version: int = 1,
    label_offset: int = 0,
) -> str:
    """Exports an instance refiner (`SDSRefiner`) for TF Serving.

    The refiner predicts a mask for each box it is given (from a detector
    or a person), so the request carries the boxes with the images, as
    `export_proposal_detector_for_serving`'s carries proposals.

    Signature `serving_default`: `images` uint8 [batch, height, width, C]
    of any size (resized in the graph to the model's input size) and
    `boxes` float32 [batch, num_boxes, 4] (ymin, xmin, ymax, xmax in
    pixels of the request's images, the TF OD API's `detection_boxes`
    layout; pad with rows of four -1) -> `detection_masks` float32
    [batch, num_boxes, height, width] (mask probabilities in the request's
    pixels; zeros for padding rows) and, for a refiner with the MNC
    cascade (`num_classes`), `detection_classes` float32 [batch,
    num_boxes] (0-based class plus `label_offset`) and `detection_scores`
    float32 [batch, num_boxes] (its softmax probability), both 0 for
    padding rows. Traced without XLA.

    Args:
        model: an `SDSRefiner`.
        export_dir: base directory; writes `export_dir/<version>/`.
        num_boxes: int >= 1, the static number of box rows per image.
        version: TF Serving version number (int >= 1).
        label_offset: int >= 0 added to the classes of real boxes.

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: for a bad `version`, `num_boxes` or `label_offset`, or a
            model without those inputs and outputs.
    """
    version = check_version(version)
    serve = make_instance_refiner_serving_fn(model, num_boxes, label_offset)
    channels = _refiner_specs(model)[0][-1]
    return _write_images_and_boxes_archive(
        model,
        export_dir,
        version,
        serve,
        channels,
        tf.TensorSpec([None, num_boxes, 4], tf.float32, "boxes"),
    )
