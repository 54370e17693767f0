"""COCO and MNIST through TensorFlow Datasets (`tfds.load`).

Both read prepared TFDS data only, unless `download=True` (which needs
network access and, for COCO, about 40 GB of disk): `data_dir` is the
TFDS data folder (None: TFDS's default, `~/tensorflow_datasets`).
TFDS is imported on first use.

- `load_tfds_coco`: the `coco/2017` builder, as fixed-size detection
  examples like `load_coco_instances` yields. TFDS's `coco/2017` has
  boxes, labels and `is_crowd` but no segmentation, so there are no masks:
  for instance masks read the COCO json with `load_coco_instances`.
- `load_tfds_mnist`: the `mnist` builder as `(images, labels)` batches like
  `load_mnist`. TFDS's `"test"` split is the standard MNIST test set, which
  `../shared/data/mnist` holds out.
"""

from __future__ import annotations

import os

import tensorflow as tf

from keras_segattn import validation
from keras_segattn.data.coco_instances import CROWD_MODES

PathLike = str | os.PathLike


def _tfds_load(name, split, data_dir, download, shuffle, seed):
    import tensorflow_datasets as tfds

    read_config = None
    if shuffle and seed is not None:
        read_config = tfds.ReadConfig(shuffle_seed=seed)
    dataset, info = tfds.load(
        name,
        split=split,
        data_dir=None if data_dir is None else str(data_dir),
        download=download,
        shuffle_files=bool(shuffle),
        read_config=read_config,
        with_info=True,
    )
    return dataset, info


def load_tfds_coco(
    split: str = "train",
    *,
    image_size: int | tuple[int, int] = 128,
    max_instances: int = 20,
    crowd: str = "drop",
    data_dir: PathLike | None = None,
    download: bool = False,
    shuffle: bool = False,
    seed: int | None = None,
) -> tuple[tf.data.Dataset, list[str]]:
    """COCO 2017 detection examples from TFDS (`coco/2017`), unbatched.

    Images are resized to `image_size` (bilinear with antialiasing), TFDS's
    relative boxes become pixels of the resized image, and per image the
    `max_instances` largest boxes are kept, padded with -1, so every
    example has one static shape. Boxes of zero or negative area are
    dropped; crowd regions follow `crowd` as in `load_coco_instances`.

    Args:
        split: a TFDS split of `coco/2017`: `"train"`, `"validation"`,
            `"test"` or a slice such as `"validation[:10%]"`.
        image_size: int or (height, width) > 0.
        max_instances: int > 0, rows M of the padded targets.
        crowd: `"drop"` (crowd regions left out) or `"keep"` (kept, with
            `iscrowd` 1).
        data_dir: TFDS data folder, or None for TFDS's default.
        download: let TFDS download and prepare COCO (network needed).
        shuffle: shuffle the files (and, with `seed`, deterministically).
        seed: int or None.

    Returns:
        `(dataset, class_names)`: `(images, targets)` examples, images
        float32 [H, W, 3] in 0..255, targets `"boxes"` float32 [M, 4]
        (ymin, xmin, ymax, xmax, pixels, -1 padding), `"classes"` int32
        [M] (TFDS's contiguous ids 0..79, -1 padding), `"iscrowd"` int32
        [M] and `"image_id"` int64; and the 80 class names.

    Raises:
        ValueError: for bad arguments.
        Errors of `tfds.load`, e.g. when `coco/2017` is not prepared in
            `data_dir` and `download=False`.
    """
    height, width = validation.standardize_size(image_size, "image_size")
    max_instances = validation.check_positive_int(
        max_instances, "max_instances"
    )
    crowd = validation.check_one_of(crowd, CROWD_MODES, "crowd")
    dataset, info = _tfds_load(
        "coco/2017", split, data_dir, download, shuffle, seed
    )
    class_names = list(info.features["objects"]["label"].names)
    scale = tf.constant([height, width, height, width], tf.float32)

    def convert(example):
        objects = example["objects"]
        count = tf.shape(objects["bbox"])[0]
        checks = [
            tf.debugging.assert_equal(
                tf.shape(objects[key])[0],
                count,
                message=f"coco/2017: objects/{key} and objects/bbox have "
                "different lengths",
            )
            for key in ("label", "is_crowd")
        ]
        with tf.control_dependencies(checks):
            boxes = tf.cast(objects["bbox"], tf.float32) * scale
        classes = tf.cast(objects["label"], tf.int32)
        iscrowd = tf.cast(objects["is_crowd"], tf.int32)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        valid = area > 0
        if crowd == "drop":
            valid = tf.logical_and(valid, iscrowd == 0)
        # Pad to at least M rows, then keep the M largest valid boxes.
        pad = tf.maximum(max_instances - tf.shape(boxes)[0], 0)
        area = tf.pad(
            tf.where(valid, area, -1.0), [[0, pad]], constant_values=-1.0
        )
        valid = tf.pad(valid, [[0, pad]])
        boxes = tf.pad(boxes, [[0, pad], [0, 0]])
        classes = tf.pad(classes, [[0, pad]])
        iscrowd = tf.pad(iscrowd, [[0, pad]])
        _, rows = tf.math.top_k(area, k=max_instances)
        keep = tf.gather(valid, rows)
        image = tf.image.resize(
            example["image"], (height, width), antialias=True
        )
        targets = {
            "boxes": tf.where(keep[:, None], tf.gather(boxes, rows), -1.0),
            "classes": tf.where(keep, tf.gather(classes, rows), -1),
            "iscrowd": tf.where(keep, tf.gather(iscrowd, rows), 0),
            "image_id": tf.cast(example["image/id"], tf.int64),
        }
        image = tf.clip_by_value(tf.round(image), 0.0, 255.0)
        return tf.ensure_shape(image, (height, width, 3)), targets

    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset, class_names


def load_tfds_mnist(
    split: str = "train",
    *,
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int | None = 0,
    data_dir: PathLike | None = None,
    download: bool = False,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """MNIST from TFDS (`mnist`) in the layout of `load_mnist`.

    Args:
        split: a TFDS split of `mnist`: `"train"` (60,000 digits),
            `"test"` (the standard 10,000) or a slice (`"train[:90%]"`).
        batch_size: int > 0.
        shuffle: bool; defaults to True for splits starting with "train".
        seed: shuffle seed.
        data_dir: TFDS data folder, or None for TFDS's default.
        download: let TFDS download and prepare MNIST (network needed).
        drop_remainder: bool (fixed-size batches for XLA).

    Returns:
        A dataset of `(images, labels)`: float32 [B, 28, 28, 1] in 0..255
        and int32 [B].

    Raises:
        ValueError: for a bad `batch_size`.
        Errors of `tfds.load`, e.g. when `mnist` is not prepared in
            `data_dir` and `download=False`.
    """
    batch_size = validation.check_positive_int(batch_size, "batch_size")
    if shuffle is None:
        shuffle = split.startswith("train")
    dataset, _ = _tfds_load("mnist", split, data_dir, download, shuffle, seed)
    if shuffle:
        dataset = dataset.shuffle(
            10_000, seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def standardize(example):
        return (
            tf.cast(example["image"], tf.float32),
            tf.cast(example["label"], tf.int32),
        )

    dataset = dataset.map(standardize, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
