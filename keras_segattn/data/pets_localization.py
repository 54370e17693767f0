"""Oxford-IIIT Pet breeds with one box per image, for classification plus
localisation.

The box of an image is the tight box of its pet pixels in the trimap: the
pet class (trimap value 1) **plus the border class (3)**. The border is the
ring of uncertain pixels around the pet's outline, so with it the box
covers the whole silhouette (fur edges, ears, tails) rather than stopping
one or two pixels inside it (`include_border=False` gives the box of value
1 alone). A trimap without pet pixels gives the box `[0, 0, 0, 0]`.

Boxes are normalised `(ymin, xmin, ymax, xmax)` in [0, 1] of the image
(a pixel row `r` spans `[r / H, (r + 1) / H)`, so a pet filling the image
is `[0, 0, 1, 1]`). Augmentation is joint: a random horizontal flip (which
swaps and mirrors `xmin` and `xmax`) and a random scale-crop (a window of
`min_scale..1` times the image side, anywhere inside it, resized back),
the box transformed with the image and clipped to the window.

- `load_pets_localization` reads a local folder (`images/`, `trimaps/`,
  `index.csv` with `breed` and `class_id`), with the breed-stratified,
  seed-independent splits of `oxford_pets.list_oxford_pets`.
- `make_synthetic_pets_localization` is its twin for tests and `--smoke`.
- `make_localization_dataset` batches in-memory arrays; it rejects boxes
  outside [0, 1] with a `ValueError` naming `boxes`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Literal

import numpy as np
import tensorflow as tf

from keras_segattn.data._segmentation_files import check_on_error
from keras_segattn.data._segmentation_files import verify_pairs
from keras_segattn.data._segmentation_files import warn_skipped
from keras_segattn.data.oxford_pets import PETS_LABEL_MAP
from keras_segattn.data.oxford_pets import list_oxford_pets
from keras_segattn.data.segmentation import IMAGE_EXTENSIONS
from keras_segattn.validation import check_positive_int
from keras_segattn.validation import check_rate
from keras_segattn.validation import standardize_size

PathLike = str | os.PathLike

PET_TRIMAP_VALUE = 1
BORDER_TRIMAP_VALUE = 3
DEFAULT_MIN_SCALE = 0.75


# --------------------------------------------------------------------------
# Boxes


def check_normalized_boxes(boxes, name: str = "boxes") -> np.ndarray:
    """Returns `boxes` as float32 [N, 4] or raises `ValueError` naming
    `name` unless every box is `(ymin, xmin, ymax, xmax)` with all values
    in [0, 1] and `ymin <= ymax`, `xmin <= xmax`."""
    array = np.asarray(boxes, np.float32)
    if array.ndim != 2 or array.shape[-1] != 4:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected normalised "
            "boxes of shape [N, 4] (ymin, xmin, ymax, xmax). Received: "
            f"shape {array.shape}."
        )
    bad = ~np.all(np.isfinite(array) & (array >= 0.0) & (array <= 1.0), -1)
    bad |= (array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1])
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected normalised "
            "boxes (ymin, xmin, ymax, xmax) in [0, 1] with ymin <= ymax and "
            f"xmin <= xmax; {int(bad.sum())} box(es) are not, the first at "
            f"index {index}: {array[index].tolist()}."
        )
    return array


def box_from_trimap(trimap, include_border: bool = True):
    """The normalised tight box (ymin, xmin, ymax, xmax) of a trimap's pet
    pixels (value 1, plus 3 with `include_border`); zeros without any.

    Args:
        trimap: int tensor [H, W] or [H, W, 1] of trimap values 1..3.
        include_border: bool. Count the border class (3) as pet.

    Returns:
        float32 [4] in [0, 1].
    """
    trimap = tf.convert_to_tensor(trimap)
    if trimap.shape.rank == 3:
        trimap = trimap[..., 0]
    pet = tf.equal(trimap, PET_TRIMAP_VALUE)
    if include_border:
        pet |= tf.equal(trimap, BORDER_TRIMAP_VALUE)
    size = tf.cast(tf.shape(trimap), tf.float32)
    rows = tf.where(tf.reduce_any(pet, axis=1))[:, 0]
    cols = tf.where(tf.reduce_any(pet, axis=0))[:, 0]

    def tight():
        low = tf.cast(tf.stack([rows[0], cols[0]]), tf.float32)
        high = tf.cast(tf.stack([rows[-1], cols[-1]]), tf.float32) + 1.0
        return tf.concat([low / size, high / size], 0)

    return tf.cond(tf.size(rows) > 0, tight, lambda: tf.zeros([4]))


def flip_box_left_right(box):
    """The box (ymin, xmin, ymax, xmax) of the left-right mirrored image."""
    ymin, xmin, ymax, xmax = tf.unstack(box, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def crop_box(box, window):
    """The box in the normalised coordinates of a crop `window`
    (ymin, xmin, ymax, xmax, itself normalised), clipped to [0, 1]."""
    offset = tf.tile(window[..., :2], [2])
    extent = tf.tile(window[..., 2:] - window[..., :2], [2])
    return tf.clip_by_value((box - offset) / extent, 0.0, 1.0)


def augment_image_and_box(
    image, box, seed, min_scale: float = DEFAULT_MIN_SCALE
):
    """Random horizontal flip and scale-crop of an image and its box.

    Args:
        image: [H, W, C] tensor (any dtype; the crop keeps it).
        box: float32 [4] normalised (ymin, xmin, ymax, xmax).
        seed: int32 [2] stateless seed.
        min_scale: float in (0, 1]: the crop's side is `min_scale..1` times
            the image's (the same factor for both sides).

    Returns:
        `(image, box)`: the cropped (not yet resized) image and its box,
        clipped to [0, 1].
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    box = tf.cond(flip, lambda: flip_box_left_right(box), lambda: box)
    shape = tf.shape(image)
    size = tf.cast(shape[:2], tf.float32)
    scale = tf.random.stateless_uniform([], seeds[1], min_scale, 1.0)
    crop = tf.maximum(tf.cast(tf.round(size * scale), tf.int32), 1)
    room = shape[:2] - crop
    top = tf.cast(
        tf.floor(
            tf.random.stateless_uniform([], seeds[2])
            * tf.cast(room[0] + 1, tf.float32)
        ),
        tf.int32,
    )
    left = tf.cast(
        tf.floor(
            tf.random.stateless_uniform([], seeds[3])
            * tf.cast(room[1] + 1, tf.float32)
        ),
        tf.int32,
    )
    top, left = tf.minimum(top, room[0]), tf.minimum(left, room[1])
    image = image[top : top + crop[0], left : left + crop[1]]
    start = tf.cast(tf.stack([top, left]), tf.float32)
    window = tf.concat([start, start + tf.cast(crop, tf.float32)], 0)
    return image, crop_box(box, window / tf.tile(size, [2]))


# --------------------------------------------------------------------------
# Pipelines


def _finish(
    dataset,
    *,
    num_examples: int,
    image_size,
    batch_size: int,
    training: bool,
    augment: bool,
    seed,
    min_scale: float,
    drop_remainder: bool,
):
    """(image, class, box) examples -> shuffled, augmented, resized,
    batched `(images, {"classes", "boxes"})`."""
    height, width = image_size
    if training:
        dataset = dataset.shuffle(
            num_examples, seed=seed, reshuffle_each_iteration=True
        )
    if augment:
        seeds = tf.data.Dataset.random(
            seed=seed, rerandomize_each_iteration=True
        ).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds))

    def prepare(example, pair=None):
        image, label, box = example
        if pair is not None:
            image, box = augment_image_and_box(
                image, box, tf.cast(pair % (2**31 - 1), tf.int32), min_scale
            )
        image = tf.image.resize(
            tf.cast(image, tf.float32), (height, width), method="bilinear"
        )
        image = tf.clip_by_value(image, 0.0, 255.0)
        image = tf.ensure_shape(image, [height, width, 3])
        return image, {
            "classes": tf.cast(label, tf.int32),
            "boxes": tf.ensure_shape(tf.cast(box, tf.float32), [4]),
        }

    dataset = dataset.map(
        (lambda example, pair: prepare(example, pair))
        if augment
        else (lambda *example: prepare(example)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_localization_dataset(
    images,
    classes,
    boxes,
    *,
    image_size: int | tuple[int, int] | None = None,
    batch_size: int = 8,
    training: bool = False,
    augment: bool | None = None,
    seed: int | None = 0,
    min_scale: float = DEFAULT_MIN_SCALE,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Batches in-memory images, class ids and normalised boxes.

    Args:
        images: [N, H, W, 3] array, values 0..255.
        classes: int [N] class ids.
        boxes: [N, 4] normalised (ymin, xmin, ymax, xmax) in [0, 1].
        image_size: int or (height, width) of the output; None keeps H, W.
        batch_size: int > 0.
        training: bool. Shuffle every epoch.
        augment: bool. Joint flip and scale-crop; defaults to `training`.
        seed: int or None. Shuffle and augmentation seed.
        min_scale: float in (0, 1]. Smallest crop side (fraction).
        drop_remainder: bool.

    Returns:
        A `tf.data.Dataset` of `(images, {"classes": ..., "boxes": ...})`:
        images float32 [B, h, w, 3] in 0..255, classes int32 [B], boxes
        float32 [B, 4] normalised.

    Raises:
        ValueError: for boxes outside [0, 1] (or with min > max), naming
            `boxes`; mismatched lengths; bad sizes.
    """
    images = np.asarray(images)
    classes = np.asarray(classes, np.int32)
    boxes = check_normalized_boxes(boxes, "boxes")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            "Invalid value for argument `images`. Expected [N, H, W, 3]. "
            f"Received: shape {images.shape}."
        )
    if not len(images) == len(classes) == len(boxes):
        raise ValueError(
            "Invalid values for arguments `images`, `classes`, `boxes`. "
            "Expected the same number of examples. Received: "
            f"{len(images)}, {len(classes)}, {len(boxes)}."
        )
    batch_size = check_positive_int(batch_size, "batch_size")
    size = (
        images.shape[1:3]
        if image_size is None
        else standardize_size(image_size, "image_size")
    )
    dataset = tf.data.Dataset.from_tensor_slices((images, classes, boxes))
    return _finish(
        dataset,
        num_examples=len(images),
        image_size=tuple(size),
        batch_size=batch_size,
        training=training,
        augment=training if augment is None else augment,
        seed=seed,
        min_scale=_check_min_scale(min_scale),
        drop_remainder=drop_remainder,
    )


def _check_min_scale(min_scale) -> float:
    if not 0.0 < float(min_scale) <= 1.0:
        raise ValueError(
            "Invalid value for argument `min_scale`. Expected a float in "
            f"(0, 1]. Received: min_scale={min_scale!r}."
        )
    return float(min_scale)


def make_synthetic_pets_localization_arrays(
    num_examples: int,
    image_size: int | tuple[int, int] = 32,
    seed: int = 0,
    num_classes: int = 3,
) -> dict[str, np.ndarray]:
    """Noise images, each with one "pet": an ellipse whose colour says its
    class, with a trimap (1 inside, 3 on a one-pixel ring, 2 elsewhere).

    Returns:
        Dict of `images` float32 [N, H, W, 3] in 0..255, `trimaps` uint8
        [N, H, W], `classes` int32 [N] (balanced) and `boxes` float32
        [N, 4] (the trimaps' boxes, border included).
    """
    num_examples = check_positive_int(num_examples, "num_examples")
    num_classes = check_positive_int(num_classes, "num_classes")
    height, width = standardize_size(image_size, "image_size")
    rng = np.random.default_rng(seed)
    palette = rng.uniform(30, 225, (num_classes, 3))
    images = rng.uniform(0, 255, (num_examples, height, width, 3))
    images = (0.5 * images + 64).astype(np.float32)
    trimaps = np.full((num_examples, height, width), 2, np.uint8)
    classes = (np.arange(num_examples) % num_classes).astype(np.int32)
    rng.shuffle(classes)
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    for i, label in enumerate(classes):
        ry = rng.uniform(0.15, 0.4) * height
        rx = rng.uniform(0.15, 0.4) * width
        cy = rng.uniform(ry, height - ry)
        cx = rng.uniform(rx, width - rx)
        r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        ring = ((yy - cy) / (ry + 1)) ** 2 + ((xx - cx) / (rx + 1)) ** 2
        trimaps[i][ring <= 1] = BORDER_TRIMAP_VALUE
        trimaps[i][r <= 1] = PET_TRIMAP_VALUE
        images[i][r <= 1] = palette[label]
    boxes = np.stack([box_from_trimap(t).numpy() for t in trimaps])
    return {
        "images": images,
        "trimaps": trimaps,
        "classes": classes,
        "boxes": boxes.astype(np.float32),
    }


def make_synthetic_pets_localization(
    num_examples: int,
    image_size: int | tuple[int, int] = 32,
    seed: int = 0,
    batch_size: int = 8,
    *,
    num_classes: int = 3,
    training: bool = False,
    augment: bool | None = None,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Synthetic twin of `load_pets_localization` (tests and `--smoke`):
    the examples of `make_synthetic_pets_localization_arrays` through
    `make_localization_dataset`, in the loader's output format."""
    arrays = make_synthetic_pets_localization_arrays(
        num_examples, image_size, seed, num_classes
    )
    return make_localization_dataset(
        arrays["images"],
        arrays["classes"],
        arrays["boxes"],
        batch_size=batch_size,
        training=training,
        augment=augment,
        seed=seed,
        drop_remainder=drop_remainder,
    )


def pets_breeds(data_dir: PathLike) -> tuple[tuple[str, ...], dict]:
    """`(class_names, {name: class index})` of a local pets folder.

    Class indices rank the `class_id` column of `index.csv` (0..K-1 in
    `class_id` order); without `class_id`, breeds sorted by name. Without
    `index.csv`, breeds come from the `<breed>_<number>` file names.
    """
    data_dir = Path(data_dir)
    index = data_dir / "index.csv"
    if index.is_file():
        with open(index, newline="") as f:
            rows = list(csv.DictReader(f))
        breeds = {
            r["name"]: r.get("breed") or r["name"].rsplit("_", 1)[0]
            for r in rows
        }
        ids = {}
        for r in rows:
            key = r.get("class_id")
            ids[breeds[r["name"]]] = int(key) if key else 0
        order = sorted(ids, key=lambda b: (ids[b], b))
    else:
        breeds = {
            p.stem: p.stem.rsplit("_", 1)[0]
            for p in (data_dir / "images").iterdir()
            if p.suffix.lower() in IMAGE_EXTENSIONS
        }
        order = sorted(set(breeds.values()))
    rank = {b: i for i, b in enumerate(order)}
    return tuple(order), {n: rank[b] for n, b in breeds.items()}


def _image_path(data_dir: Path, name: str) -> str:
    for ext in IMAGE_EXTENSIONS:
        path = data_dir / "images" / f"{name}{ext}"
        if path.is_file():
            return str(path)
    raise ValueError(
        f"No image for {name!r} in {data_dir / 'images'} "
        f"(looked for {', '.join(IMAGE_EXTENSIONS)})."
    )


def list_pets_localization(
    data_dir: PathLike,
    split: Literal["train", "validation", "all"] = "train",
    validation_fraction: float = 0.2,
    on_error: Literal["raise", "skip"] = "raise",
) -> list[tuple[str, str, str, int]]:
    """`(name, image path, trimap path, class index)` of one split.

    A name without its trimap or image raises a `ValueError` naming the
    missing file, or with `on_error="skip"` is left out (one warning names
    them all and counts them).
    """
    check_on_error(on_error)
    data_dir = Path(data_dir)
    names = list_oxford_pets(
        data_dir, split, validation_fraction=validation_fraction
    )
    _, labels = pets_breeds(data_dir)
    records, problems = [], []
    for name in names:
        trimap = data_dir / "trimaps" / f"{name}.png"
        try:
            if not trimap.is_file():
                raise ValueError(f"Missing trimap {trimap} for image {name!r}.")
            image = _image_path(data_dir, name)
        except ValueError as error:
            if on_error == "raise":
                raise
            problems.append(str(error))
            continue
        records.append((name, image, str(trimap), labels[name]))
    warn_skipped(problems, len(names), "pets samples")
    if not records:
        raise ValueError(
            f"No sample of the {split!r} split of {data_dir} left."
        )
    return records


def load_pets_localization(
    data_dir: PathLike,
    image_size: int | tuple[int, int] = 128,
    split: Literal["train", "validation", "all"] = "train",
    validation_fraction: float = 0.2,
    seed: int | None = 0,
    batch_size: int = 16,
    augment: bool | None = None,
    *,
    training: bool | None = None,
    include_border: bool = True,
    min_scale: float = DEFAULT_MIN_SCALE,
    cache: bool = True,
    drop_remainder: bool = True,
    verify: bool | Literal["full"] = True,
    on_error: Literal["raise", "skip"] = "raise",
) -> tf.data.Dataset:
    """Loads pets images, breed ids and trimap boxes from a local folder.

    Each image is decoded at its native size (RGBA PNGs lose alpha), its
    box computed from its trimap (`box_from_trimap`: values 1 and 3 by
    default), then (when augmenting) flipped and scale-cropped jointly with
    the box, and resized to `image_size`.

    Args:
        data_dir: folder with `images/`, `trimaps/` and `index.csv`.
        image_size: int or (height, width) of the output images.
        split: `"train"`, `"validation"` or `"all"`
            (`oxford_pets.list_oxford_pets`: breed-stratified, by name).
        validation_fraction: float in [0, 1).
        seed: int or None. Shuffle and augmentation seed (not the split).
        batch_size: int > 0.
        augment: bool. Defaults to `training`.
        training: bool. Shuffle every epoch; defaults to `split == "train"`.
        include_border: bool. Count the trimap's border (3) as pet.
        min_scale: float in (0, 1]. Smallest crop side (fraction).
        cache: bool. Keep decoded native images and boxes in memory.
        drop_remainder: bool.
        verify: True, False or `"full"`: check every image and trimap
            when the dataset is built, as `load_segmentation_directory`
            does (readable, not truncated, same size; `"full"` decodes
            them all and checks the trimap values).
        on_error: `"raise"` or `"skip"`: leave out (one warning names each
            file and counts them) the samples with a missing, empty,
            truncated or unreadable image or trimap, a trimap of another
            size or with values other than 1, 2 and 3.

    Returns:
        A `tf.data.Dataset` of `(images, {"classes": ..., "boxes": ...})`:
        images float32 [B, H, W, 3] in 0..255, classes int32 [B] (see
        `pets_breeds`) and boxes float32 [B, 4] normalised (ymin, xmin,
        ymax, xmax).

    Raises:
        ValueError: as `list_oxford_pets`, or for missing files and bad
            arguments; naming the file, for a faulty image or trimap (a
            trimap value other than 1, 2 or 3 fails the iteration, or with
            `verify="full"` the load).
    """
    check_rate(validation_fraction, "validation_fraction")
    batch_size = check_positive_int(batch_size, "batch_size")
    size = standardize_size(image_size, "image_size")
    check_on_error(on_error)
    if verify not in (True, False, "full"):
        raise ValueError(
            "Invalid value for argument `verify`. Expected True, False or "
            f"'full'. Received: verify={verify!r}"
        )
    records = list_pets_localization(
        data_dir, split, validation_fraction, on_error
    )
    if training is None:
        training = split == "train"
    if verify or on_error == "skip":
        kept, _, _ = verify_pairs(
            [Path(r[1]) for r in records],
            [Path(r[2]) for r in records],
            full=verify == "full",
            label_values=set(PETS_LABEL_MAP),
            on_error=on_error,
        )
        kept = {str(path) for path in kept}
        records = [r for r in records if r[1] in kept]
    _, images, trimaps, labels = zip(*records, strict=True)
    trimap_values = tf.constant(sorted(PETS_LABEL_MAP), tf.uint8)

    def read(image_path, trimap_path, label):
        image = tf.io.decode_image(
            tf.io.read_file(image_path), channels=3, expand_animations=False
        )
        trimap = tf.io.decode_png(tf.io.read_file(trimap_path), channels=1)
        known = tf.reduce_any(tf.equal(trimap[..., None], trimap_values), -1)
        check = tf.debugging.Assert(
            tf.reduce_all(known),
            [
                "Trimap values must be 1, 2 or 3:",
                trimap_path,
                "values:",
                tf.unique(tf.reshape(trimap, [-1]))[0],
            ],
            summarize=20,
        )
        with tf.control_dependencies([check]):
            box = box_from_trimap(trimap, include_border)
        return image, label, box

    dataset = tf.data.Dataset.from_tensor_slices(
        (list(images), list(trimaps), np.asarray(labels, np.int32))
    ).map(read, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        dataset = dataset.cache()
    return _finish(
        dataset,
        num_examples=len(records),
        image_size=tuple(size),
        batch_size=batch_size,
        training=bool(training),
        augment=bool(training) if augment is None else bool(augment),
        seed=seed,
        min_scale=_check_min_scale(min_scale),
        drop_remainder=drop_remainder,
    )
