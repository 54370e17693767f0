"""Oxford-IIIT Pet trimaps (Parkhi et al., "Cats and Dogs", CVPR 2012).

Two sources, one output format (that of `load_segmentation_directory`):

- `load_oxford_pets` reads a local folder laid out like
  `../shared/data/oxford_pets` or `sample_data/oxford_pets`:
  `images/<name>.jpg` (or `.png`), `trimaps/<name>.png` and an optional
  `index.csv` (`name,image,trimap,breed,...`).
- `load_tfds_oxford_pets` reads the TFDS `oxford_iiit_pet` builder (only from
  a local TFDS `data_dir` unless `download=True`).

Trimap values 1 (pet), 2 (background) and 3 (border) become class ids 0, 1
and 2 (`PETS_LABEL_MAP`). A model trained on them predicts 0..2; serving adds
`PETS_LABEL_OFFSET` back to report the dataset's own 1..3.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Literal

import tensorflow as tf

from keras_segattn.data.segmentation import IMAGE_EXTENSIONS
from keras_segattn.data.segmentation import load_segmentation_directory
from keras_segattn.data.segmentation import prepare_segmentation_dataset
from keras_segattn.validation import check_rate
from keras_segattn.validation import check_split

PathLike = str | os.PathLike

PETS_CLASS_NAMES = ("pet", "background", "border")
"""Class names, indexed by class id."""
PETS_NUM_CLASSES = 3
"""Number of classes (no void label: every pixel is scored)."""
PETS_LABEL_OFFSET = 1
"""Trimap value = class id + `PETS_LABEL_OFFSET` (serving adds it back)."""
PETS_LABEL_MAP = {1: 0, 2: 1, 3: 2}
"""Trimap value -> class id, the `label_map` of both loaders."""

_SPLITS = ("train", "validation", "all")


def _breed(name: str) -> str:
    # Oxford-IIIT names are <breed>_<number>; breeds contain underscores.
    return name.rsplit("_", 1)[0]


def _split_key(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def list_oxford_pets(
    data_dir: PathLike,
    split: Literal["train", "validation", "all"] = "train",
    *,
    validation_fraction: float = 0.2,
) -> list[str]:
    """Lists the sample names of one split of a local Oxford-IIIT Pet folder.

    The validation split is held out by name, stratified by breed: within
    each breed (from `index.csv`, else the name's `<breed>_<number>` form)
    the names are ordered by the SHA-1 of the name and the first
    `round(n * validation_fraction)` (at least 1 and at most n - 1 when
    n >= 2) are validation. The split depends only on the names and
    `validation_fraction`, not on any seed, so it is identical on every run
    and machine, and train and validation are disjoint.

    Args:
        data_dir: folder with `images/`, `trimaps/` and optionally
            `index.csv`.
        split: `"train"`, `"validation"` or `"all"`.
        validation_fraction: float in [0, 1). Share of each breed held out.

    Returns:
        Sorted list of names (file stems).

    Raises:
        ValueError: for an unknown `split`, a `validation_fraction` outside
            [0, 1), a missing `data_dir`, `images/` or `index.csv` rows, or
            an empty split.
    """
    check_split(split, _SPLITS)
    check_rate(validation_fraction, "validation_fraction")
    data_dir = Path(data_dir)
    if not (data_dir / "images").is_dir():
        raise ValueError(
            "Invalid value for argument `data_dir`: expected a folder with "
            f"images/ and trimaps/, but {data_dir / 'images'} is not a "
            f"directory. Received: data_dir={str(data_dir)!r}"
        )
    index = data_dir / "index.csv"
    if index.is_file():
        with open(index, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or "name" not in rows[0]:
            raise ValueError(f"{index} has no rows with a `name` column.")
        breeds = {r["name"]: r.get("breed") or _breed(r["name"]) for r in rows}
    else:
        breeds = {
            p.stem: _breed(p.stem)
            for p in (data_dir / "images").iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        }
    if split == "all":
        names = list(breeds)
    else:
        by_breed: dict[str, list[str]] = {}
        for name, breed in breeds.items():
            by_breed.setdefault(breed, []).append(name)
        names = []
        for group in by_breed.values():
            group = sorted(group, key=lambda n: (_split_key(n), n))
            n = len(group)
            held = round(n * validation_fraction)
            if validation_fraction > 0 and n >= 2:
                held = min(max(held, 1), n - 1)
            names += group[:held] if split == "validation" else group[held:]
    if not names:
        raise ValueError(
            f"The {split!r} split of {data_dir} is empty "
            f"(validation_fraction={validation_fraction})."
        )
    return sorted(names)


def load_oxford_pets(
    data_dir: PathLike,
    split: Literal["train", "validation", "all"] = "train",
    *,
    image_size: int | tuple[int, int] | None = (256, 256),
    batch_size: int = 8,
    training: bool | None = None,
    shuffle: bool | None = None,
    augment: bool | None = None,
    validation_fraction: float = 0.2,
    seed: int | None = 0,
    deterministic: bool = False,
    cache: bool = False,
    drop_remainder: bool = True,
    verify: bool | Literal["full"] = True,
    on_error: Literal["raise", "skip"] = "raise",
) -> tf.data.Dataset:
    """Loads Oxford-IIIT Pet images and trimaps from a local folder.

    Trimaps 1 (pet), 2 (background), 3 (border) become class ids 0, 1, 2.
    Splits come from `list_oxford_pets` (held out by name, stratified by
    breed, identical on every run). The one RGBA PNG photo of the shared
    data (`images/Abyssinian_5.png`) loads like the JPEGs (alpha dropped).

    Args:
        data_dir: folder with `images/`, `trimaps/` and optionally
            `index.csv` (e.g. `sample_data/oxford_pets`).
        split: `"train"`, `"validation"` or `"all"`.
        image_size: int or (height, width), or None for native sizes (then
            `batch_size=1`).
        batch_size: int > 0.
        training: bool. Shuffle and augment; defaults to
            `split == "train"`.
        shuffle: bool. Defaults to `training`.
        augment: bool. Defaults to `training`.
        validation_fraction: float in [0, 1). Share of each breed held out
            as validation.
        seed: int or None. Shuffle and augmentation seed (not the split).
        deterministic: bool. See `load_segmentation_directory`.
        cache: bool. Cache decoded, resized examples in memory.
        drop_remainder: bool.
        verify: True, False or `"full"`. See `load_segmentation_directory`.
        on_error: `"raise"` or `"skip"`: leave out (with one warning naming
            them) the samples with a truncated, empty or unreadable file, a
            trimap of another size than its image or with a value other
            than 1, 2 or 3, or a missing image or trimap. See
            `load_segmentation_directory`.

    Returns:
        A `tf.data.Dataset` of `(images, masks)`: images float32
        [B, H, W, 3] in 0..255 and masks int32 [B, H, W] in {0, 1, 2}.

    Raises:
        ValueError: as `list_oxford_pets` and `load_segmentation_directory`
            (missing files, unreadable files named, bad arguments). A
            trimap value other than 1, 2 or 3 fails the iteration with an
            error naming the file (the load, with `verify="full"`).
    """
    names = list_oxford_pets(
        data_dir, split, validation_fraction=validation_fraction
    )
    if training is None:
        training = split == "train"
    data_dir = Path(data_dir)
    return load_segmentation_directory(
        data_dir / "images",
        data_dir / "trimaps",
        image_size=image_size,
        batch_size=batch_size,
        training=training,
        shuffle=shuffle,
        augment=augment,
        seed=seed,
        deterministic=deterministic,
        label_map=PETS_LABEL_MAP,
        files=names,
        cache=cache,
        drop_remainder=drop_remainder,
        verify=verify,
        on_error=on_error,
    )


def load_tfds_oxford_pets(
    split: str = "train",
    *,
    image_size: int | tuple[int, int] | None = (256, 256),
    batch_size: int = 8,
    training: bool | None = None,
    shuffle: bool | None = None,
    augment: bool | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    data_dir: PathLike | None = None,
    download: bool = False,
    cache: bool = False,
    drop_remainder: bool = True,
    shuffle_buffer_size: int = 256,
) -> tf.data.Dataset:
    """Loads Oxford-IIIT Pet from TFDS (`oxford_iiit_pet`).

    Uses the TFDS examples' `"image"` (uint8 [H, W, 3]) and
    `"segmentation_mask"` (uint8 [H, W, 1], trimap values 1..3) through
    `prepare_segmentation_dataset`, so the output matches `load_oxford_pets`
    exactly. TFDS is imported on first use.

    Args:
        split: a TFDS split: `"train"`, `"test"` or a slice such as
            `"train[:80%]"`.
        image_size: int or (height, width), or None for native sizes.
        batch_size: int > 0.
        training: bool. Shuffle and augment; defaults to
            `split == "train"`.
        shuffle: bool. Shuffle files and examples; defaults to `training`.
        augment: bool. Defaults to `training`.
        seed: int or None.
        deterministic: bool. See `load_segmentation_directory`.
        data_dir: TFDS data folder; None uses TFDS's default
            (`~/tensorflow_datasets`).
        download: bool. Let TFDS download and prepare the data (needs
            network access); by default only prepared data is read.
        cache: bool. Cache resized examples in memory.
        drop_remainder: bool.
        shuffle_buffer_size: int > 0. Examples in the shuffle buffer (held
            at their native size, about 0.5 MB each).

    Returns:
        A `tf.data.Dataset` of `(images, masks)`: images float32
        [B, H, W, 3] in 0..255 and masks int32 [B, H, W] in {0, 1, 2}.

    Raises:
        ValueError: for bad arguments (see `prepare_segmentation_dataset`).
        Errors of `tfds.load`, e.g. when the dataset is not prepared in
            `data_dir` and `download=False`.
    """
    import tensorflow_datasets as tfds

    if training is None:
        training = split == "train"
    if shuffle is None:
        shuffle = bool(training)
    read_config = None
    if shuffle and (deterministic or seed is not None):
        read_config = tfds.ReadConfig(shuffle_seed=0 if seed is None else seed)
    dataset = tfds.load(
        "oxford_iiit_pet",
        split=split,
        data_dir=None if data_dir is None else str(data_dir),
        download=download,
        shuffle_files=bool(shuffle),
        read_config=read_config,
    )
    pairs = dataset.map(
        lambda example: (example["image"], example["segmentation_mask"]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return prepare_segmentation_dataset(
        pairs,
        image_size=image_size,
        batch_size=batch_size,
        training=bool(training),
        shuffle=shuffle,
        augment=augment,
        seed=seed,
        deterministic=deterministic,
        label_map=PETS_LABEL_MAP,
        cache=cache,
        drop_remainder=drop_remainder,
        shuffle_buffer_size=shuffle_buffer_size,
    )
