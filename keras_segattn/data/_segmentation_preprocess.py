"""Per-example preprocessing of the segmentation pipelines.

`standardize_image_size` checks the `image_size` argument of the loaders
(int, (height, width) or None). `make_standardize` returns the function
every `(image, mask)` pair goes through: RGB float32 image, int32 mask,
optional `label_map` from raw mask values to class ids, and resizing
(images bilinearly, masks by nearest neighbour, so they keep the same
geometry and masks gain no new values).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

Tensor = tf.Tensor
LabelMap = Mapping[int, int] | Callable[[Tensor], Tensor]


def standardize_image_size(
    image_size, name: str = "image_size", allow_none: bool = True
) -> tuple[int, int] | None:
    if image_size is None and allow_none:
        return None
    received = image_size
    if isinstance(image_size, (int, np.integer)) and not isinstance(
        image_size, bool
    ):
        image_size = (image_size, image_size)
    ok = (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool)
            for v in image_size
        )
        and min(image_size) > 0
    )
    if not ok:
        allowed = "None, " if allow_none else ""
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected {allowed}a "
            "positive int or a pair of positive ints (height, width). "
            f"Received: {name}={received!r}"
        )
    return int(image_size[0]), int(image_size[1])


def label_values_of(
    label_map: LabelMap | None, void_label: int | None, strict: bool
) -> set[int] | None:
    """The raw mask values that are labels, when a dict `label_map` makes
    every other value an error (no `void_label`, or `strict`); else None."""
    if isinstance(label_map, Mapping) and (void_label is None or strict):
        return {int(key) for key in label_map}
    return None


def _label_map_fn(
    label_map: LabelMap | None, void_label: int | None, strict: bool = False
) -> Callable[[Tensor, Tensor], Tensor] | None:
    """Returns fn(mask int32 [H, W], name) -> class ids, or None.

    With a dict, values that are not keys become `void_label`, or fail the
    iteration naming the mask file when `void_label` is None or `strict`.
    """
    if label_map is None:
        return None
    if callable(label_map):

        def apply_callable(mask, name):
            del name
            return tf.cast(label_map(mask), tf.int32)

        return apply_callable
    if not isinstance(label_map, Mapping) or not label_map:
        raise ValueError(
            "Invalid value for argument `label_map`. Expected None, a "
            "non-empty dict {raw mask value: class id} or a callable. "
            f"Received: label_map={label_map!r}"
        )
    keys = list(label_map)
    if any(
        isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0
        for k in keys
    ) or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer))
        for v in label_map.values()
    ):
        raise ValueError(
            "Invalid value for argument `label_map`. Expected non-negative "
            f"int keys and int values. Received: label_map={label_map!r}"
        )
    to_void = void_label is not None and not strict
    unknown = int(void_label) if to_void else -1
    # Dense table: index = raw value, the last entry catches every other one.
    table = np.full(int(max(keys)) + 2, unknown, np.int32)
    for key, value in label_map.items():
        table[int(key)] = int(value)
    size = len(table)
    table = tf.constant(table)

    def apply_dict(mask, name):
        index = tf.where((mask < 0) | (mask >= size - 1), size - 1, mask)
        mapped = tf.gather(table, index)
        if to_void:
            return mapped
        check = tf.debugging.Assert(
            tf.reduce_all(mapped >= 0),
            [
                "Mask has values that are not keys of `label_map` "
                f"(keys: {sorted(int(k) for k in keys)}):",
                name,
                "values:",
                tf.unique(tf.reshape(mask, [-1]))[0],
            ],
            summarize=20,
        )
        with tf.control_dependencies([check]):
            return tf.identity(mapped)

    return apply_dict


def make_standardize(
    image_size: tuple[int, int] | None,
    label_map: LabelMap | None,
    void_label: int | None,
    strict_labels: bool = False,
) -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]:
    """fn(image [H, W, C], mask [H, W(, 1)], name) -> (float32, int32)."""
    map_labels = _label_map_fn(label_map, void_label, strict_labels)

    def standardize(image, mask, name):
        image = tf.convert_to_tensor(image)
        mask = tf.convert_to_tensor(mask)
        if mask.shape.rank == 3:
            mask = mask[..., 0]
        if image.shape.rank == 3 and image.shape[-1] == 4:
            image = image[..., :3]  # RGBA: drop alpha
        elif image.shape.rank == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        check = tf.debugging.Assert(
            tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(mask)[:2])),
            [
                "Image and mask sizes differ:",
                name,
                "image shape",
                tf.shape(image),
                "mask shape",
                tf.shape(mask),
            ],
        )
        with tf.control_dependencies([check]):
            image = tf.cast(image, tf.float32)
            mask = tf.cast(mask, tf.int32)
        if map_labels is not None:
            mask = map_labels(mask, name)
        if image_size is not None:
            # Bilinear without antialiasing, as the serving signature resizes.
            image = tf.image.resize(image, image_size, method="bilinear")
            mask = tf.image.resize(
                mask[..., None], image_size, method="nearest"
            )[..., 0]
            image = tf.ensure_shape(image, (*image_size, 3))
            mask = tf.ensure_shape(mask, image_size)
        else:
            image = tf.ensure_shape(image, (None, None, 3))
            mask = tf.ensure_shape(mask, (None, None))
        return image, mask

    return standardize
