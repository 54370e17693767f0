"""COCO's own `instances_*.json`, masks decoded by pycocotools, streamed.

`load_coco_instances` reads an official COCO instances file (or any file in
its format, such as `../shared/data/coco_mini/instances.json`) and the
folder of its images, and returns a `tf.data.Dataset` of fixed-size
detection examples. Every kind of COCO segmentation is decoded by
pycocotools' own `COCO.annToMask`: polygons (a list of `[x1, y1, x2, y2,
...]` rings), uncompressed RLE (`{"counts": [ints], "size": [h, w]}`,
used by crowd regions) and compressed RLE (`"counts"` as a string).

Masks are decoded one image at a time inside the pipeline (in
`tf.numpy_function`), so memory holds a few images' masks, never the
N x M x H x W array of the whole set.

Crowd regions (`iscrowd: 1`) follow the COCO evaluation: `COCOeval` never
counts a crowd region as an object to find; it only excuses detections
that fall on it. Such a region is neither a positive nor a negative, a
distinction the training losses here do not make, so by default
(`crowd="drop"`) crowd regions are left out of the targets (Detectron2's
practice). `crowd="keep"` keeps them as rows with `iscrowd` 1, for an
evaluation that passes them on to COCOeval as ignore regions
(`metrics.coco_ground_truth(..., iscrowd=targets["iscrowd"])`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_segattn import validation
from keras_segattn.data._segmentation_files import open_checked

PathLike = str | os.PathLike

COCO_DOWNLOAD_HINT = (
    "Get COCO 2017 from https://cocodataset.org/#download: "
    "annotations_trainval2017.zip holds annotations/instances_train2017.json "
    "and instances_val2017.json; train2017.zip and val2017.zip the images."
)
CROWD_MODES = ("drop", "keep")
INSTANCE_TARGET_KEYS = ("boxes", "classes", "masks", "iscrowd")


def _pycocotools_coco():
    try:
        from pycocotools.coco import COCO
    except ImportError as error:  # pragma: no cover - install hint
        raise ImportError(
            "Reading COCO instances needs pycocotools: `pip install "
            "pycocotools` (it is in the `examples` and `test` extras)."
        ) from error
    return COCO


def _index_annotation_file(annotation_file: Path):
    """pycocotools' `COCO` index of a file; errors name the file."""
    import contextlib
    import io

    coco_cls = _pycocotools_coco()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its progress
            coco = coco_cls(str(annotation_file))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"Could not read {str(annotation_file)!r} as a COCO instances "
            f"file: {error!r}"
        ) from error
    for key in ("images", "annotations", "categories"):
        if key not in coco.dataset:
            raise ValueError(
                f"Invalid COCO file {str(annotation_file)!r}: expected the "
                f"keys ['images', 'annotations', 'categories']; missing "
                f"{key!r}."
            )
    return coco


def _image_record(coco, image_id, image_dir: Path, path: Path, verify) -> dict:
    image = coco.imgs[image_id]
    try:
        file_name, height, width = (
            image["file_name"],
            int(image["height"]),
            int(image["width"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"Invalid COCO file {str(path)!r}: image {image_id} needs "
            f"`file_name`, `height` and `width`. Received: {image!r}."
        ) from error
    image_path = image_dir / file_name
    if not image_path.is_file():
        raise ValueError(
            f"Image {str(image_path)!r} of {str(path)!r} (image id "
            f"{image_id}) is missing on disk. {COCO_DOWNLOAD_HINT}"
        )
    if verify:
        size = open_checked(image_path, "image", full=verify == "full")
        if size != (width, height):
            raise ValueError(
                f"Image {str(image_path)!r} is {size[0]}x{size[1]} (width x "
                f"height) but {str(path)!r} gives {width}x{height}."
            )
    return {
        "image_id": int(image_id),
        "image_path": str(image_path),
        "height": height,
        "width": width,
    }


def index_coco_instances(
    annotation_file: PathLike,
    image_dir: PathLike,
    *,
    crowd: str = "drop",
    max_instances: int | None = None,
    skip_empty: bool = True,
    verify: bool | str = True,
):
    """Checks a COCO instances file against its images and groups it.

    Args:
        annotation_file: path of a COCO `instances_*.json`.
        image_dir: folder holding the `file_name` of every image.
        crowd: `"drop"` or `"keep"` (see the module docstring).
        max_instances: keep the largest (by box area) `max_instances`
            annotations per image; None keeps all.
        skip_empty: leave out images without (kept) annotations.
        verify: True opens every kept image with PIL (headers, PNG
            checksums, a JPEG without its end marker decoded at 1/8
            scale) and checks its size against the file's, so that a
            truncated, empty or mis-sized image fails here, naming it;
            `"full"` decodes every image; False checks only that it exists
            (a damaged image then fails while the dataset is read).

    Returns:
        `(coco, records, categories)`: the pycocotools `COCO` object; one
        dict per image (`image_id`, `image_path`, `height`, `width`,
        `annotation_ids`, `boxes` float32 [n, 4] (ymin, xmin, ymax, xmax)
        pixels, `classes` int32 [n] contiguous ids, `iscrowd` int32 [n]),
        in the file's image order; the category dicts in the order of the
        contiguous ids (sorted COCO ids).

    Raises:
        FileNotFoundError: if `annotation_file` or `image_dir` does not
            exist (the message says where to get COCO).
        ValueError: for a malformed file, an annotation of an unknown image
            or category, an image missing on disk or (with `verify`)
            unreadable or of another size (naming the files).
    """
    crowd = validation.check_one_of(crowd, CROWD_MODES, "crowd")
    verify = validation.check_one_of(verify, (True, False, "full"), "verify")
    if max_instances is not None:
        max_instances = validation.check_positive_int(
            max_instances, "max_instances"
        )
    path, image_dir = Path(annotation_file), Path(image_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"COCO annotation file {str(path)!r} not found. "
            f"{COCO_DOWNLOAD_HINT}"
        )
    if not image_dir.is_dir():
        raise FileNotFoundError(
            f"COCO image folder {str(image_dir)!r} not found. "
            f"{COCO_DOWNLOAD_HINT}"
        )
    coco = _index_annotation_file(path)
    categories = sorted(coco.dataset["categories"], key=lambda c: c["id"])
    contiguous = {c["id"]: i for i, c in enumerate(categories)}
    grouped: dict[int, list[dict]] = {}
    for annotation in coco.dataset["annotations"]:
        image_id = annotation.get("image_id")
        if image_id not in coco.imgs:
            raise ValueError(
                f"Invalid COCO file {str(path)!r}: annotation "
                f"{annotation.get('id')} refers to unknown image {image_id}."
            )
        if annotation.get("category_id") not in contiguous:
            raise ValueError(
                f"Invalid COCO file {str(path)!r}: annotation "
                f"{annotation.get('id')} has unknown category "
                f"{annotation.get('category_id')} (known: "
                f"{sorted(contiguous)})."
            )
        if "bbox" not in annotation or "segmentation" not in annotation:
            raise ValueError(
                f"Invalid COCO file {str(path)!r}: annotation "
                f"{annotation.get('id')} needs `bbox` and `segmentation`."
            )
        if crowd == "drop" and annotation.get("iscrowd", 0):
            continue
        grouped.setdefault(image_id, []).append(annotation)
    records = []
    for image_id in coco.imgs:
        annotations = grouped.get(image_id, [])
        if skip_empty and not annotations:
            continue
        record = _image_record(coco, image_id, image_dir, path, verify)
        xywh = np.array([a["bbox"] for a in annotations], np.float32)
        xywh = xywh.reshape(-1, 4)
        order = np.argsort(-xywh[:, 2] * xywh[:, 3], kind="stable")
        order = order[:max_instances]
        annotations = [annotations[i] for i in order]
        x, y, w, h = xywh[order].T
        record.update(
            annotation_ids=[int(a["id"]) for a in annotations],
            boxes=np.stack([y, x, y + h, x + w], axis=-1).reshape(-1, 4),
            classes=np.array(
                [contiguous[a["category_id"]] for a in annotations], np.int32
            ),
            iscrowd=np.array(
                [int(bool(a.get("iscrowd", 0))) for a in annotations],
                np.int32,
            ),
        )
        records.append(record)
    return coco, records, categories


def load_coco_instances(
    annotation_file: PathLike,
    image_dir: PathLike,
    *,
    image_size: int | tuple[int, int] = 128,
    max_instances: int = 20,
    crowd: str = "drop",
    shuffle: bool = False,
    seed: int | None = None,
    verify: bool | str = True,
) -> tuple[tf.data.Dataset, list[dict]]:
    """Streams COCO instances (boxes, classes, masks) as `tf.data`.

    Images are resized to `image_size` (bilinear with antialiasing, as
    `load_coco_instance_arrays`), boxes scaled with them and masks,
    decoded by `pycocotools.coco.COCO.annToMask` at the image's size,
    resized nearest-neighbour. Per image the `max_instances` largest
    annotations (by box area) are kept and the rest padded, so every
    example has the same static shape (for `fit(jit_compile=True)`).
    Images without annotations are left out.

    Args:
        annotation_file: a COCO `instances_*.json`.
        image_dir: folder of its images (`file_name` of each entry).
        image_size: int or (height, width) > 0, the resized image size.
        max_instances: int > 0, rows M of the padded targets.
        crowd: `"drop"` (default) leaves crowd regions out; `"keep"` keeps
            them as rows with `iscrowd` 1. See the module docstring.
        shuffle: shuffle the images (reshuffled every epoch).
        seed: shuffle seed.
        verify: True, "full" or False: how the images are checked when
            the dataset is built (see `index_coco_instances`).

    Returns:
        `(dataset, categories)`. The dataset yields unbatched
        `(images, targets)`: images float32 [H, W, 3] in 0..255; targets
        `"boxes"` float32 [M, 4] (ymin, xmin, ymax, xmax, resized pixels,
        rows of -1 for padding), `"classes"` int32 [M] (contiguous ids in
        `categories` order, -1 padding), `"masks"` uint8 [M, H, W] (0/1),
        `"iscrowd"` int32 [M] (0 padding) and `"image_id"` int64 (the
        COCO id). Batch it with `dataset.batch(B, drop_remainder=True)`
        for the detectors' `fit`. `categories` are the COCO category dicts
        in the order of the contiguous ids.

    Raises:
        FileNotFoundError: a missing annotation file or image folder (the
            message says where to get COCO).
        ValueError: for bad arguments, and, naming the file, for a
            malformed file, unknown image or category ids and images
            missing on disk, and (with `verify`) images that are
            truncated, empty or of another size than the file says. With
            `verify=False` an image whose decoded size differs from its
            `height`/`width` fails when read, naming the image.
    """
    height, width = validation.standardize_size(image_size, "image_size")
    max_instances = validation.check_positive_int(
        max_instances, "max_instances"
    )
    coco, records, categories = index_coco_instances(
        annotation_file,
        image_dir,
        crowd=crowd,
        max_instances=max_instances,
        verify=verify,
    )
    if not records:
        raise ValueError(
            f"COCO file {str(annotation_file)!r} has no image with "
            f"annotations (crowd={crowd!r})."
        )

    def decode_masks(index, decoded_shape):
        record = records[int(index)]
        if tuple(decoded_shape[:2]) != (record["height"], record["width"]):
            raise ValueError(
                f"Image {record['image_path']!r} decodes to "
                f"{tuple(int(d) for d in decoded_shape[:2])} but "
                f"{str(annotation_file)!r} gives height, width "
                f"{(record['height'], record['width'])}."
            )
        masks = [
            coco.annToMask(coco.anns[ann_id])
            for ann_id in record["annotation_ids"]
        ]
        if not masks:
            return np.zeros((0, record["height"], record["width"]), np.uint8)
        return np.stack(masks).astype(np.uint8)

    paths = tf.constant([r["image_path"] for r in records])
    image_ids = tf.constant([r["image_id"] for r in records], tf.int64)
    scales = np.array(
        [[height / r["height"], width / r["width"]] * 2 for r in records],
        np.float32,
    )
    boxes = np.full((len(records), max_instances, 4), -1.0, np.float32)
    classes = np.full((len(records), max_instances), -1, np.int32)
    iscrowd = np.zeros((len(records), max_instances), np.int32)
    for n, record in enumerate(records):
        count = len(record["classes"])
        boxes[n, :count] = record["boxes"] * scales[n]
        classes[n, :count] = record["classes"]
        iscrowd[n, :count] = record["iscrowd"]
    static = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(records)), boxes, classes, iscrowd)
    )
    if shuffle:
        static = static.shuffle(
            len(records), seed=seed, reshuffle_each_iteration=True
        )

    def load(index, example_boxes, example_classes, example_iscrowd):
        image = tf.io.decode_image(
            tf.io.read_file(tf.gather(paths, index)),
            channels=3,
            expand_animations=False,
        )
        masks = tf.numpy_function(
            decode_masks, [index, tf.shape(image)], tf.uint8, stateful=False
        )
        masks = tf.image.resize(
            tf.reshape(masks, [-1, tf.shape(image)[0], tf.shape(image)[1], 1]),
            (height, width),
            method="nearest",
        )[..., 0]
        count = tf.shape(masks)[0]
        masks = tf.pad(masks, [[0, max_instances - count], [0, 0], [0, 0]])
        image = tf.image.resize(image, (height, width), antialias=True)
        image = tf.clip_by_value(tf.round(image), 0.0, 255.0)
        targets = {
            "boxes": example_boxes,
            "classes": example_classes,
            "masks": tf.ensure_shape(
                tf.cast(masks, tf.uint8), (max_instances, height, width)
            ),
            "iscrowd": example_iscrowd,
            "image_id": tf.gather(image_ids, index),
        }
        return tf.ensure_shape(image, (height, width, 3)), targets

    dataset = static.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset, categories
