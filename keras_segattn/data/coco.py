"""COCO-format captions and instances (COCO-MINI in ../shared/data).

Reads the standard COCO annotation files: `captions.json` (images +
`{"image_id", "caption"}` annotations) and `instances.json` (images,
`{"image_id", "category_id", "bbox" [x, y, w, h], "iscrowd", ...}`
annotations, categories), with the images in `images/` and, for
COCO-MINI, one binary mask PNG per annotation in `masks/<ann_id>.png`.

- `load_coco_captions`: images resized to a square, and their captions.
- `list_coco_instances`: one record per image with boxes in the TF Object
  Detection API convention (ymin, xmin, ymax, xmax, pixels), contiguous
  class ids 0..K-1 (COCO ids are 1..90 with gaps) and mask paths.
- `load_coco_instance_arrays`: the same as padded arrays of resized images,
  boxes, classes and masks, ready for `FasterRCNN(mask_head=True).fit`.

Both read the masks from COCO-MINI's per-annotation PNGs; for COCO's own
polygons and RLE (decoded by pycocotools) and masks streamed through
`tf.data`, see `coco_instances.load_coco_instances`.

Errors name the file: a missing or malformed JSON, an annotation that
points at an unknown image, an unreadable image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_segattn.validation import check_positive_int

PathLike = str | os.PathLike


def read_coco_json(path: PathLike, required=("images", "annotations")) -> dict:
    """Parses a COCO annotation file, checking its top-level keys."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Could not read {str(path)!r} as COCO JSON: {error}"
        ) from error
    missing = [key for key in required if key not in data]
    if not isinstance(data, dict) or missing:
        raise ValueError(
            f"Invalid COCO file {str(path)!r}: expected the keys "
            f"{list(required)}; missing {missing}."
        )
    return data


def _images_by_id(data: dict, path: Path) -> dict:
    try:
        return {image["id"]: image for image in data["images"]}
    except (KeyError, TypeError) as error:
        raise ValueError(
            f"Invalid COCO file {str(path)!r}: an image entry has no `id`."
        ) from error


def _decode(path, channels: int, what: str):
    """uint8 [H, W, channels] of an image file; errors name the file."""
    try:
        return tf.io.decode_image(
            tf.io.read_file(str(path)),
            channels=channels,
            expand_animations=False,
        )
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        raise ValueError(
            f"Could not decode {what} {str(path)!r}: {error.message}"
        ) from error


def _check_decoded_size(image, path, expected, what: str) -> None:
    """A decoded image or mask must have the size the annotations give;
    boxes and masks would otherwise be scaled wrongly, silently."""
    if expected is not None and tuple(image.shape[:2]) != tuple(expected):
        raise ValueError(
            f"The {what} {str(path)!r} decodes to height, width "
            f"{tuple(int(d) for d in image.shape[:2])} but its annotations "
            f"give {tuple(int(d) for d in expected)}."
        )


def _read_image(
    path: Path, image_size: int | None, expected_size=None
) -> np.ndarray:
    image = _decode(path, 3, "image")
    _check_decoded_size(image, path, expected_size, "image")
    if image_size is not None:
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return image.numpy()


def load_coco_captions(
    data_dir: PathLike,
    image_size: int = 128,
    captions_file: str = "captions.json",
    images_dir: str = "images",
):
    """Images (resized to `image_size` square) and their captions.

    Returns:
        (images uint8 [N, S, S, 3], captions: list of N lists of str,
        image_ids: list of N ints), images in the file's order.
    """
    data_dir = Path(data_dir)
    path = data_dir / captions_file
    data = read_coco_json(path)
    images = _images_by_id(data, path)
    captions: dict[int, list[str]] = {image_id: [] for image_id in images}
    for annotation in data["annotations"]:
        image_id = annotation.get("image_id")
        if image_id not in captions:
            raise ValueError(
                f"Invalid COCO file {str(path)!r}: caption "
                f"{annotation.get('id')} refers to unknown image {image_id}."
            )
        captions[image_id].append(str(annotation["caption"]).strip())
    ids = [i for i in images if captions[i]]
    pixels = np.stack(
        [
            _read_image(
                data_dir / images_dir / images[i]["file_name"], image_size
            )
            for i in ids
        ]
    )
    return pixels, [captions[i] for i in ids], ids


def list_coco_instances(
    data_dir: PathLike,
    instances_file: str = "instances.json",
    images_dir: str = "images",
    masks_dir: str | None = "masks",
    skip_crowd: bool = True,
):
    """Per-image boxes, classes and mask paths of a COCO instances file.

    Returns:
        (records, categories): `records` is a list with one dict per image
        that has annotations: `image_path`, `image_id`, `height`, `width`,
        `boxes` float32 [n, 4] (ymin, xmin, ymax, xmax) in pixels,
        `classes` int32 [n] (contiguous ids), `annotation_ids` [n] and
        `mask_paths` (paths of `masks_dir/<ann_id>.png`, or None without
        `masks_dir`); `categories` lists the COCO category dicts in the
        order of the contiguous ids.
    """
    data_dir = Path(data_dir)
    path = data_dir / instances_file
    data = read_coco_json(path, ("images", "annotations", "categories"))
    images = _images_by_id(data, path)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    contiguous = {c["id"]: i for i, c in enumerate(categories)}
    grouped: dict[int, list[dict]] = {}
    for annotation in data["annotations"]:
        if skip_crowd and annotation.get("iscrowd", 0):
            continue
        if annotation.get("image_id") not in images:
            raise ValueError(
                f"Invalid COCO file {str(path)!r}: annotation "
                f"{annotation.get('id')} refers to unknown image "
                f"{annotation.get('image_id')}."
            )
        if annotation.get("category_id") not in contiguous:
            raise ValueError(
                f"Invalid COCO file {str(path)!r}: annotation "
                f"{annotation.get('id')} has unknown category "
                f"{annotation.get('category_id')}."
            )
        grouped.setdefault(annotation["image_id"], []).append(annotation)
    records = []
    for image_id, image_annotations in grouped.items():
        image = images[image_id]
        x, y, w, h = np.array(
            [a["bbox"] for a in image_annotations], np.float32
        ).T
        records.append(
            {
                "image_path": str(data_dir / images_dir / image["file_name"]),
                "image_id": image_id,
                "height": int(image["height"]),
                "width": int(image["width"]),
                "boxes": np.stack([y, x, y + h, x + w], axis=-1),
                "classes": np.array(
                    [contiguous[a["category_id"]] for a in image_annotations],
                    np.int32,
                ),
                "annotation_ids": [a["id"] for a in image_annotations],
                "mask_paths": None
                if masks_dir is None
                else [
                    str(data_dir / masks_dir / f"{a['id']}.png")
                    for a in image_annotations
                ],
            }
        )
    return records, categories


def _read_mask(path: str, image_size: int, expected_size=None) -> np.ndarray:
    mask = _decode(path, 1, "mask")
    _check_decoded_size(mask, path, expected_size, "mask")
    mask = tf.image.resize(mask, (image_size, image_size), method="nearest")
    return (mask.numpy()[..., 0] > 0).astype(np.uint8)


def load_coco_instance_arrays(
    data_dir: PathLike,
    image_size: int = 128,
    max_instances: int = 20,
    **kwargs,
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """COCO instances as the padded arrays a Mask R-CNN trains on.

    The same layout as `digit_scenes.make_digit_scene_arrays`, so
    `digit_scenes.make_digit_scene_dataset` batches it for
    `FasterRCNN.fit`: every image is resized to a square `image_size`
    (boxes scaled with it, masks resized nearest-neighbour); per image the
    `max_instances` largest non-crowd instances are kept.

    Args:
        data_dir: folder with `instances.json`, `images/` and `masks/`.
        image_size: int > 0, side of the resized images.
        max_instances: int > 0, rows M of the padded arrays.
        **kwargs: passed to `list_coco_instances`.

    Returns:
        `(arrays, categories)`: `arrays` has `images` uint8 [N, S, S, 3],
        `boxes` float32 [N, M, 4] (ymin, xmin, ymax, xmax, resized pixels;
        padding -1), `classes` int32 [N, M] (contiguous ids, -1 padding),
        `masks` uint8 [N, M, S, S]; `categories` as `list_coco_instances`.

    Raises:
        ValueError: for a bad size or count, and (naming the file) for an
            unreadable annotation file, image or mask, or an image or mask
            whose size is not the annotation's `height` and `width`.
    """
    image_size = check_positive_int(image_size, "image_size")
    max_instances = check_positive_int(max_instances, "max_instances")
    records, categories = list_coco_instances(data_dir, **kwargs)
    count = len(records)
    arrays = {
        "images": np.zeros((count, image_size, image_size, 3), np.uint8),
        "boxes": np.full((count, max_instances, 4), -1.0, np.float32),
        "classes": np.full((count, max_instances), -1, np.int32),
        "masks": np.zeros(
            (count, max_instances, image_size, image_size), np.uint8
        ),
    }
    for n, record in enumerate(records):
        expected_size = (record["height"], record["width"])
        arrays["images"][n] = _read_image(
            Path(record["image_path"]), image_size, expected_size
        )
        scale = np.array(
            [image_size / record["height"], image_size / record["width"]] * 2,
            np.float32,
        )
        boxes = record["boxes"] * scale
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = np.argsort(-areas, kind="stable")[:max_instances]
        arrays["boxes"][n, : len(keep)] = boxes[keep]
        arrays["classes"][n, : len(keep)] = record["classes"][keep]
        if record["mask_paths"] is not None:
            for row, index in enumerate(keep):
                arrays["masks"][n, row] = _read_mask(
                    record["mask_paths"][index], image_size, expected_size
                )
    return arrays, categories


def split_held_out(
    count: int, held_out_fraction: float = 0.2
) -> tuple[range, range]:
    """(train, held-out) row ranges for a COCO folder without its own
    validation images (COCO-MINI): the last `held_out_fraction` of the
    images, at least one, are held out; with a single image that image
    serves both (a smoke run, not a measurement).

    Raises:
        ValueError: for a negative count or a fraction outside (0, 1).
    """
    if not 0.0 < held_out_fraction < 1.0 or count < 0:
        raise ValueError(
            "Invalid arguments. Expected count >= 0 and 0 < "
            f"held_out_fraction < 1. Received: count={count}, "
            f"held_out_fraction={held_out_fraction}."
        )
    if count <= 1:
        return range(count), range(count)
    held = min(max(1, round(count * held_out_fraction)), count - 1)
    return range(count - held), range(count - held, count)
