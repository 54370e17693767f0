"""Joint augmentation of detection images, boxes and instance masks.

`DetectionAugmenter` applies a random horizontal flip, a random scale
(zoom about the centre) and a random crop position (a shift of the zoomed
window) to images and their targets together, through Keras core's
bounding-box-aware preprocessing layers: `keras.layers.RandomFlip`,
`keras.layers.RandomZoom` and `keras.layers.RandomTranslation`, each given
the targets' `bounding_box_format`. Instance masks travel as the layers'
`"segmentation_masks"` (channels = instances, nearest-neighbour
resampling), so boxes and masks move with the pixels.

A zoom in followed by a shift is a random crop of a random size resized to
the image size (keras-cv's `JitteredResize`); a zoom out pads with zeros.
`keras.layers.RandomCrop` is not used: in Keras 3.15 it shifts the x
coordinates of boxes by the crop's row offset and the y coordinates by its
column offset (checked on "xyxy" boxes), and it crops to a smaller size.

Shapes never change (static for XLA `fit`): rows keep their places, and a
row whose box leaves the image (zero area after clipping) becomes padding
(box -1, class -1, empty mask, `iscrowd` 0), as do padding rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_segattn import validation

CLASS_KEYS = ("classes", "labels")


def _check_scale_range(scale_range) -> tuple[float, float]:
    if (
        not isinstance(scale_range, (tuple, list))
        or len(scale_range) != 2
        or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool)
            for s in scale_range
        )
        or not 0 < scale_range[0] <= scale_range[1]
    ):
        raise ValueError(
            "Invalid value for argument `scale_range`. Expected (low, high) "
            "with 0 < low <= high (1 keeps the size). Received: "
            f"scale_range={scale_range!r}."
        )
    return float(scale_range[0]), float(scale_range[1])


class DetectionAugmenter:
    """Random flip, scale jitter and crop of images with boxes and masks.

    Call it on `(images, targets)`, batched or not, e.g. in
    `dataset.map(DetectionAugmenter("yxyx"))`: every image gets its own
    draw. Build it once, outside `map` (it holds the Keras layers and
    their seed generators).

    Args:
        bounding_box_format: absolute format of `targets["boxes"]` (pixels):
            `"xyxy"`, `"yxyx"`, `"xywh"`, `"center_xywh"` or
            `"center_yxhw"`.
        flip: bool. Random horizontal flip (probability 0.5).
        scale_range: (low, high) > 0, the zoom factor applied to the image
            content (> 1 zooms in, < 1 zooms out). The layer draws the
            relative zoom `1 / scale - 1` uniformly. `(1, 1)` disables it.
        max_shift: float in [0, 1), the largest shift of the crop window,
            as a fraction of the image height and width. 0 disables it.
        seed: int or None.

    Call arguments:
        images: float or uint8 [B, H, W, C] or [H, W, C].
        targets: dict with `"boxes"` [B, M, 4] (or [M, 4]) in
            `bounding_box_format`, padded with rows of -1, the classes as
            `"classes"` or `"labels"` (the Keras and keras-hub key) [B, M]
            int, -1 padding, and optionally `"masks"` [B, M, H, W] binary
            instance masks and `"iscrowd"` [B, M]. Other keys pass through.
        training: bool, default True; False returns the inputs unchanged.

    Returns:
        `(images, targets)` with the same keys, shapes and dtypes (images
        as float32), transformed jointly.

    Raises:
        ValueError: for an unknown `bounding_box_format`, bad ranges, or
            targets without boxes and classes.
    """

    def __init__(
        self,
        bounding_box_format: str = "yxyx",
        *,
        flip: bool = True,
        scale_range: Sequence[float] = (0.8, 1.25),
        max_shift: float = 0.1,
        seed: int | None = None,
    ):
        self.bounding_box_format = validation.check_bounding_box_format(
            bounding_box_format
        )
        self.flip = bool(flip)
        self.scale_range = _check_scale_range(scale_range)
        max_shift = validation.check_non_negative_float(max_shift, "max_shift")
        if max_shift >= 1:
            raise ValueError(
                "Invalid value for argument `max_shift`. Expected a "
                f"fraction in [0, 1). Received: max_shift={max_shift!r}."
            )
        self.max_shift = max_shift
        self.seed = seed

        def layer_seed(offset):
            return None if seed is None else seed + offset

        box_format = self.bounding_box_format
        self.layers = []
        if self.flip:
            self.layers.append(
                keras.layers.RandomFlip(
                    "horizontal",
                    bounding_box_format=box_format,
                    seed=layer_seed(0),
                )
            )
        low, high = self.scale_range
        if (low, high) != (1.0, 1.0):
            self.layers.append(
                keras.layers.RandomZoom(
                    height_factor=(1.0 / high - 1.0, 1.0 / low - 1.0),
                    fill_mode="constant",
                    bounding_box_format=box_format,
                    seed=layer_seed(1),
                )
            )
        if self.max_shift > 0:
            self.layers.append(
                keras.layers.RandomTranslation(
                    height_factor=self.max_shift,
                    width_factor=self.max_shift,
                    fill_mode="constant",
                    bounding_box_format=box_format,
                    seed=layer_seed(2),
                )
            )

    def _class_key(self, targets) -> str:
        if not isinstance(targets, dict) or "boxes" not in targets:
            raise ValueError(
                "Invalid value for argument `targets`. Expected a dict with "
                '"boxes" and "classes" (or "labels"). Received: '
                f"{type(targets).__name__} with keys "
                f"{sorted(targets) if isinstance(targets, dict) else None}."
            )
        for key in CLASS_KEYS:
            if key in targets:
                return key
        raise ValueError(
            "Invalid value for argument `targets`. Expected the classes "
            'under "classes" or "labels". Received: keys '
            f"{sorted(targets)}."
        )

    def __call__(self, images, targets, training: bool = True):
        class_key = self._class_key(targets)
        if not training or not self.layers:
            return images, targets
        images = tf.cast(images, tf.float32)
        batched = images.shape.rank == 4
        boxes = tf.cast(targets["boxes"], tf.float32)
        classes = tf.cast(targets[class_key], tf.int32)
        padding = tf.logical_or(
            tf.reduce_all(tf.equal(boxes, -1.0), axis=-1), classes < 0
        )
        data = {
            "images": images,
            "bounding_boxes": {
                "boxes": boxes,
                "labels": tf.where(padding, -1, classes),
            },
        }
        masks = targets.get("masks")
        if masks is not None:
            # [.., M, H, W] -> [.., H, W, M]: instances as channels.
            perm = [0, 2, 3, 1] if batched else [1, 2, 0]
            data["segmentation_masks"] = tf.transpose(
                tf.cast(masks, tf.float32), perm
            )
        for layer in self.layers:
            data = layer(data, training=True)
        new_boxes = tf.cast(data["bounding_boxes"]["boxes"], tf.float32)
        labels = tf.cast(data["bounding_boxes"]["labels"], tf.int32)
        xyxy = keras.utils.bounding_boxes.convert_format(
            new_boxes, source=self.bounding_box_format, target="xyxy"
        )
        area = tf.maximum(xyxy[..., 2] - xyxy[..., 0], 0.0) * tf.maximum(
            xyxy[..., 3] - xyxy[..., 1], 0.0
        )
        keep = tf.logical_and(
            tf.logical_not(padding), tf.logical_and(labels >= 0, area > 0)
        )
        out = dict(targets)
        out["boxes"] = tf.cast(
            tf.where(keep[..., None], new_boxes, -1.0),
            targets["boxes"].dtype,
        )
        out[class_key] = tf.cast(
            tf.where(keep, classes, -1), targets[class_key].dtype
        )
        if masks is not None:
            perm = [0, 3, 1, 2] if batched else [2, 0, 1]
            moved = tf.transpose(data["segmentation_masks"], perm)
            moved = tf.where(keep[..., None, None], tf.round(moved), 0.0)
            out["masks"] = tf.cast(moved, masks.dtype)
        if "iscrowd" in targets:
            out["iscrowd"] = tf.where(
                keep, targets["iscrowd"], tf.zeros_like(targets["iscrowd"])
            )
        return tf.ensure_shape(data["images"], images.shape), out


AUGMENTATIONS = ("none", "scale-crop", "flip-scale-crop")
"""Names of `make_detection_augmenter` (the examples' `--augment`)."""


def make_detection_augmenter(
    augmentation: str,
    bounding_box_format: str = "yxyx",
    seed: int | None = None,
) -> DetectionAugmenter | None:
    """A `DetectionAugmenter` by name, or None for `"none"`.

    `"scale-crop"` is the default scale jitter and crop without the flip
    (for classes a mirror changes, such as digits); `"flip-scale-crop"`
    adds the horizontal flip.

    Raises:
        ValueError: for an unknown name or `bounding_box_format`.
    """
    augmentation = validation.check_one_of(
        augmentation, AUGMENTATIONS, "augmentation"
    )
    if augmentation == "none":
        return None
    return DetectionAugmenter(
        bounding_box_format,
        flip=augmentation == "flip-scale-crop",
        seed=seed,
    )
