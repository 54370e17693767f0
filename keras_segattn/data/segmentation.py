"""`tf.data` pipelines for semantic segmentation, and their synthetic twin.

`load_segmentation_directory` reads an image folder and a mask folder whose
files pair up by stem (`images/cat_1.jpg` with `masks/cat_1.png`).
`prepare_segmentation_dataset` runs the same preprocessing and augmentation on
any dataset of `(image, mask)` pairs (the TFDS loaders use it), and
`make_synthetic_segmentation` makes a small learnable dataset in the same
format for tests and `--smoke` runs.

Every pipeline yields `(images, masks)`: images float32 [B, H, W, 3] with
values in 0..255 (no normalisation: the models and serving signatures do it in
the graph) and masks int32 [B, H, W] of class ids.

The data pipeline is TensorFlow-only by design (`tf.data`, `tf.io`,
`tf.image`); augmentation uses Keras 3 preprocessing layers, which run inside
`tf.data` whatever the Keras backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from keras_segattn.validation import check_optional_int
from keras_segattn.validation import check_positive_int

Tensor = tf.Tensor
PathLike = str | os.PathLike
LabelMap = Mapping[int, int] | Callable[[Tensor], Tensor]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
"""File extensions (lower case) read as images by default."""
MASK_EXTENSIONS = (".png",)
"""File extensions (lower case) read as masks by default."""

# Formats `tf.io.decode_image` decodes (as PIL names them; MPO is a JPEG).
_TF_IMAGE_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF")
# Masks are decoded with `channels=1` as 8-bit: a palette PNG would be
# expanded to RGB and converted to grey (indices lost) and a 16-bit PNG
# rescaled, so only 8-bit greyscale masks are accepted.
_MASK_MODES = ("L",)

# Augmentation strengths (see `prepare_segmentation_dataset`).
_ZOOM_FACTOR = (-0.25, 0.1)  # Keras convention: negative zooms in
_TRANSLATION_FACTOR = 0.1
_BRIGHTNESS_FACTOR = 0.1
_CONTRAST_FACTOR = 0.2
_NUM_AUGMENTATION_SEEDS = 5

_DEFAULT_SHUFFLE_BUFFER = 1024


# --------------------------------------------------------------------------
# Argument checks (data/ imports nothing from the package, so they live here)
# --------------------------------------------------------------------------


def _standardize_image_size(
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


def _check_directory(path: PathLike, name: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise ValueError(
            f"Invalid value for argument `{name}`: directory not found. "
            f"Received: {name}={str(path)!r}"
        )
    if not path.is_dir():
        raise ValueError(
            f"Invalid value for argument `{name}`: not a directory. "
            f"Received: {name}={str(path)!r}"
        )
    return path


def _normalize_extensions(extensions: Sequence[str], name: str) -> tuple:
    if isinstance(extensions, str):
        extensions = (extensions,)
    result = tuple(
        (e if e.startswith(".") else "." + e).lower() for e in extensions
    )
    if not result:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected at least one "
            f"file extension. Received: {name}={extensions!r}"
        )
    return result


def _short_list(items: Sequence[str], limit: int = 10) -> str:
    items = list(items)
    text = ", ".join(items[:limit])
    if len(items) > limit:
        text += f", ... ({len(items) - limit} more)"
    return text


# --------------------------------------------------------------------------
# File discovery and eager verification
# --------------------------------------------------------------------------


def _files_by_stem(
    directory: Path, extensions: tuple, kind: str
) -> dict[str, Path]:
    by_stem: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix.lower() not in extensions:
            continue
        if path.stem in by_stem:
            raise ValueError(
                f"Two {kind} files share the stem {path.stem!r} in "
                f"{directory}: {by_stem[path.stem].name} and {path.name}. "
                "Images and masks are matched by stem, so stems must be "
                "unique."
            )
        by_stem[path.stem] = path
    return by_stem


def _strip_extension(name: str, extensions: tuple) -> str:
    name = os.path.basename(str(name).strip())
    root, ext = os.path.splitext(name)
    return root if ext.lower() in extensions else name


def _open_checked(
    path: Path, kind: str, full: bool, modes: tuple | None = None
) -> tuple[int, int]:
    """Opens `path` with PIL; returns (width, height) or raises ValueError."""
    try:
        with Image.open(path) as im:
            im.verify()  # structure and, for PNG, checksums
        with Image.open(path) as im:  # `verify` leaves the file unusable
            size, fmt, mode = im.size, im.format, im.mode
            if full:
                im.load()
    except Exception as e:  # PIL raises many types for corrupt files
        raise ValueError(
            f"Cannot read {kind} file {path}: {type(e).__name__}: {e}".rstrip(
                ": "
            )
        ) from e
    if fmt not in _TF_IMAGE_FORMATS:
        raise ValueError(
            f"Cannot read {kind} file {path}: format {fmt} is not one "
            f"`tf.io.decode_image` decodes ({', '.join(_TF_IMAGE_FORMATS)})."
        )
    if modes is not None and mode not in modes:
        raise ValueError(
            f"Invalid {kind} file {path}: expected an 8-bit greyscale "
            f"image (PIL mode {' or '.join(modes)}) whose pixel values are "
            f"labels, got mode {mode}. Convert palette or 16-bit masks to "
            "8-bit greyscale first."
        )
    return size


def _verify_pairs(
    image_paths: Sequence[Path], mask_paths: Sequence[Path], full: bool
) -> list[tuple[int, int]]:
    sizes = []
    for image_path, mask_path in zip(image_paths, mask_paths, strict=True):
        image_size = _open_checked(image_path, "image", full)
        mask_size = _open_checked(mask_path, "mask", full, _MASK_MODES)
        if image_size != mask_size:
            raise ValueError(
                f"Image and mask sizes differ: {image_path} is "
                f"{image_size[0]}x{image_size[1]} (width x height) but "
                f"{mask_path} is {mask_size[0]}x{mask_size[1]}."
            )
        sizes.append(image_size)
    return sizes


# --------------------------------------------------------------------------
# Per-example preprocessing and per-batch augmentation
# --------------------------------------------------------------------------


def _label_map_fn(
    label_map: LabelMap | None, void_label: int | None
) -> Callable[[Tensor, Tensor], Tensor] | None:
    """Returns fn(mask int32 [H, W], name) -> class ids, or None."""
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
    unknown = -1 if void_label is None else int(void_label)
    # Dense table: index = raw value, the last entry catches every other one.
    table = np.full(int(max(keys)) + 2, unknown, np.int32)
    for key, value in label_map.items():
        table[int(key)] = int(value)
    size = len(table)
    table = tf.constant(table)

    def apply_dict(mask, name):
        index = tf.where((mask < 0) | (mask >= size - 1), size - 1, mask)
        mapped = tf.gather(table, index)
        if void_label is not None:
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


def _make_standardize(
    image_size: tuple[int, int] | None,
    label_map: LabelMap | None,
    void_label: int | None,
) -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]:
    """fn(image [H, W, C], mask [H, W(, 1)], name) -> (float32, int32)."""
    map_labels = _label_map_fn(label_map, void_label)

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


def _derive_seeds(seed: int | None, count: int) -> list[int | None]:
    if seed is None:
        return [None] * count
    state = np.random.SeedSequence(seed).generate_state(count)
    return [int(s) & 0x7FFFFFFF for s in state]


def _make_augmenter(
    seed: int | None, void_label: int | None
) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """fn(images [B, H, W, 3], masks [B, H, W]) -> same, jointly augmented."""
    seeds = _derive_seeds(seed, _NUM_AUGMENTATION_SEEDS)
    # Pixels moved in from outside the image: mirrored image and labels when
    # there is no void label; otherwise black image and void labels.
    fill_mode = "reflect" if void_label is None else "constant"
    geometric = (
        keras.layers.RandomFlip("horizontal", seed=seeds[0]),
        keras.layers.RandomZoom(
            _ZOOM_FACTOR, fill_mode=fill_mode, fill_value=0.0, seed=seeds[1]
        ),
        keras.layers.RandomTranslation(
            _TRANSLATION_FACTOR,
            _TRANSLATION_FACTOR,
            fill_mode=fill_mode,
            fill_value=0.0,
            seed=seeds[2],
        ),
    )
    photometric = (
        keras.layers.RandomBrightness(
            _BRIGHTNESS_FACTOR, value_range=(0, 255), seed=seeds[3]
        ),
        keras.layers.RandomContrast(
            _CONTRAST_FACTOR, value_range=(0, 255), seed=seeds[4]
        ),
    )
    # With a void label, masks travel shifted by one so that the constant
    # fill value 0 marks the filled pixels, which become `void_label`.
    shift = 0 if void_label is None else 1

    def augment(images, masks):
        data = {
            "images": images,
            "segmentation_masks": tf.cast(masks[..., None] + shift, tf.float32),
        }
        for layer in geometric:
            data = layer(data, training=True)
        images = data["images"]
        for layer in photometric:
            images = layer(images, training=True)
        # Masks use nearest interpolation, so rounding only undoes float32.
        masks = tf.cast(tf.round(data["segmentation_masks"][..., 0]), tf.int32)
        if void_label is not None:
            masks = tf.where(masks > 0, masks - 1, void_label)
        return tf.cast(images, tf.float32), masks

    return augment


def _build_pipeline(
    elements: tf.data.Dataset,
    standardize: Callable[..., tuple[Tensor, Tensor]],
    *,
    batch_size: int,
    training: bool,
    shuffle: bool | None,
    augment: bool | None,
    seed: int | None,
    deterministic: bool,
    void_label: int | None,
    cache: bool,
    drop_remainder: bool,
    shuffle_buffer_size: int,
) -> tf.data.Dataset:
    """elements -> [shuffle] -> standardize -> [cache, shuffle] -> batch ->
    [augment] -> prefetch. `shuffle` and `augment` default to `training`."""
    training = bool(training)
    shuffle = training if shuffle is None else bool(shuffle)
    augment = training if augment is None else bool(augment)
    deterministic, cache = bool(deterministic), bool(cache)
    drop_remainder = bool(drop_remainder)
    if deterministic and seed is None:
        seed = 0
    autotune = tf.data.AUTOTUNE
    ds = elements
    if shuffle and not cache:  # shuffle the cheap elements (e.g. paths)
        ds = ds.shuffle(shuffle_buffer_size, seed=seed)
    ds = ds.map(standardize, num_parallel_calls=autotune)
    if cache:
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(shuffle_buffer_size, seed=seed)
    ds = ds.batch(
        batch_size, drop_remainder=drop_remainder, num_parallel_calls=autotune
    )
    if augment:
        # The Keras layers draw from `SeedGenerator` variables: parallel
        # calls would race on them, so the map is serial when deterministic
        # (it works on whole batches, so the cost is small).
        ds = ds.map(
            _make_augmenter(seed, void_label),
            num_parallel_calls=None if deterministic else autotune,
        )
    ds = ds.prefetch(autotune)
    if deterministic:
        options = tf.data.Options()
        options.deterministic = True
        ds = ds.with_options(options)
    return ds


def _check_common(
    image_size, batch_size, seed, void_label
) -> tuple[tuple[int, int] | None, int, int | None, int | None]:
    return (
        _standardize_image_size(image_size),
        check_positive_int(batch_size, "batch_size"),
        check_optional_int(seed, "seed"),
        check_optional_int(void_label, "void_label"),
    )


# --------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------


def load_segmentation_directory(
    image_dir: PathLike,
    mask_dir: PathLike,
    *,
    image_size: int | tuple[int, int] | None = (256, 256),
    batch_size: int = 8,
    training: bool = False,
    shuffle: bool | None = None,
    augment: bool | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    label_map: LabelMap | None = None,
    void_label: int | None = None,
    image_extensions: Sequence[str] = IMAGE_EXTENSIONS,
    mask_extensions: Sequence[str] = MASK_EXTENSIONS,
    files: Sequence[str] | None = None,
    cache: bool = False,
    drop_remainder: bool = True,
    verify: bool | Literal["full"] = True,
) -> tf.data.Dataset:
    """Loads image/mask pairs from two folders as a batched `tf.data` dataset.

    Images and masks pair up by file stem (`images/cat_1.jpg` with
    `masks/cat_1.png`); files with other extensions are ignored. Images are
    decoded with `tf.io.decode_image(channels=3, expand_animations=False)`
    (greyscale is expanded, alpha dropped, a GIF gives its first frame),
    masks as 8-bit greyscale whose pixel values are labels. Both are resized
    to `image_size`, images bilinearly and masks by nearest neighbour, so
    they keep the same geometry and masks gain no new values.

    With `augment` (default: `training`), each batch is augmented with Keras
    preprocessing layers called on `{"images", "segmentation_masks"}`, so
    image and mask get the same random transform: horizontal flip, zoom
    (25% in to 10% out) and translation (up to 10%), masks by nearest
    neighbour. Pixels that come from outside the image are mirrored
    (`fill_mode="reflect"`, labels mirrored with them) when `void_label` is
    None, else filled black with mask value `void_label`. Brightness (±10%)
    and contrast (±20%) jitter then apply to the image only.

    Args:
        image_dir: folder of images.
        mask_dir: folder of masks (8-bit greyscale PNG by default).
        image_size: int or (height, width) to resize to, or None to keep
            each image's own size (then batches need `batch_size=1` or
            same-sized images).
        batch_size: int > 0.
        training: bool. Default for `shuffle` and `augment`.
        shuffle: bool. Reshuffle every epoch; defaults to `training`.
        augment: bool. Joint augmentation as above; defaults to `training`.
        seed: int or None. Seeds the shuffle and the augmentation layers.
            The shuffle order also depends on TensorFlow's global seed
            (`keras.utils.set_random_seed`); the augmentation does not.
            Without `deterministic`, parallel augmentation may still assign
            transforms to batches in a different order from run to run.
        deterministic: bool. Makes the stream reproducible: `seed` defaults
            to 0, `tf.data.Options.deterministic` is set and the
            augmentation runs serially. Two datasets built alike then yield
            identical batches, epoch after epoch (each epoch still has its
            own order and transforms).
        label_map: None, a dict {raw mask value: class id} or a callable
            taking and returning an int32 tensor [H, W], applied to raw mask
            values before resizing (e.g. `{1: 0, 2: 1, 3: 2}` for the
            Oxford-IIIT Pet trimaps). With a dict, values that are not keys
            become `void_label`, or fail the iteration with an error naming
            the mask file when `void_label` is None.
        void_label: int or None. The class id (after `label_map`) of pixels
            to ignore in losses and metrics (e.g. 11 for CamVid). The loader
            keeps such pixels; it only uses the value to fill pixels that
            augmentation brings in from outside the image and for dict
            `label_map` misses.
        image_extensions: extensions of image files (case-insensitive).
        mask_extensions: extensions of mask files (case-insensitive).
        files: optional names to load, as stems or file names (e.g. the
            lines of a `files.txt`), in this order; other files in the
            folders are ignored. Defaults to every matched stem, sorted.
        cache: bool. Cache the decoded, resized examples in memory (the
            shuffle then holds a whole epoch of examples).
        drop_remainder: bool. Drop a last, smaller batch (a new batch shape
            costs another XLA compilation).
        verify: True opens every file with PIL when the dataset is built
            (`Image.verify`: headers, PNG checksums) and checks image and
            mask sizes agree; `"full"` also decodes every file; False skips
            the checks (a corrupt file then fails the iteration with a
            TensorFlow error that does not name it).

    Returns:
        A `tf.data.Dataset` of `(images, masks)`: images float32
        [B, H, W, 3] in 0..255 and masks int32 [B, H, W].

    Raises:
        ValueError: for a bad `image_size`, `batch_size`, `seed`,
            `void_label` or `label_map`; a missing folder (named); no files
            found; images without masks or masks without images (named);
            names in `files` without an image or a mask; a file PIL cannot
            read, a mask that is not 8-bit greyscale, or an image and mask
            of different sizes (named); images of different sizes with
            `image_size=None` and `batch_size > 1`.
    """
    image_size, batch_size, seed, void_label = _check_common(
        image_size, batch_size, seed, void_label
    )
    if verify not in (True, False, "full"):
        raise ValueError(
            "Invalid value for argument `verify`. Expected True, False or "
            f"'full'. Received: verify={verify!r}"
        )
    image_dir = _check_directory(image_dir, "image_dir")
    mask_dir = _check_directory(mask_dir, "mask_dir")
    image_extensions = _normalize_extensions(
        image_extensions, "image_extensions"
    )
    mask_extensions = _normalize_extensions(mask_extensions, "mask_extensions")
    images = _files_by_stem(image_dir, image_extensions, "image")
    masks = _files_by_stem(mask_dir, mask_extensions, "mask")

    if files is None:
        if not images and not masks:
            raise ValueError(
                f"No image files ({', '.join(image_extensions)}) found in "
                f"{image_dir} and no mask files "
                f"({', '.join(mask_extensions)}) in {mask_dir}."
            )
        no_mask = sorted(images.keys() - masks.keys())
        no_image = sorted(masks.keys() - images.keys())
        problems = []
        if no_mask:
            problems.append(
                f"{len(no_mask)} image(s) in {image_dir} have no mask in "
                f"{mask_dir}: " + _short_list([images[s].name for s in no_mask])
            )
        if no_image:
            problems.append(
                f"{len(no_image)} mask(s) in {mask_dir} have no image in "
                f"{image_dir}: "
                + _short_list([masks[s].name for s in no_image])
            )
        if problems:
            raise ValueError(
                "Images and masks are matched by file stem. "
                + "; ".join(problems)
                + "."
            )
        stems = sorted(images)
    else:
        if isinstance(files, (str, os.PathLike)):
            raise ValueError(
                "Invalid value for argument `files`. Expected a list of "
                f"names, not one string. Received: files={files!r}"
            )
        extensions = image_extensions + mask_extensions
        stems = [_strip_extension(f, extensions) for f in files]
        stems = [s for s in stems if s]
        if not stems:
            raise ValueError(
                "Invalid value for argument `files`. Expected at least one "
                f"name. Received: files={files!r}"
            )
        no_image = [s for s in stems if s not in images]
        no_mask = [s for s in stems if s not in masks]
        problems = []
        if no_image:
            problems.append(
                f"{len(no_image)} name(s) have no image file in "
                f"{image_dir}: " + _short_list(no_image)
            )
        if no_mask:
            problems.append(
                f"{len(no_mask)} name(s) have no mask file in "
                f"{mask_dir}: " + _short_list(no_mask)
            )
        if problems:
            raise ValueError(
                "Names in `files` not found. " + "; ".join(problems) + "."
            )

    image_paths = [images[s] for s in stems]
    mask_paths = [masks[s] for s in stems]
    if verify:
        sizes = _verify_pairs(image_paths, mask_paths, full=verify == "full")
        if image_size is None and batch_size > 1 and len(set(sizes)) > 1:
            raise ValueError(
                "With `image_size=None` every image keeps its own size, so "
                "a batch can only hold same-sized images, but the images "
                f"in {image_dir} have {len(set(sizes))} different sizes. "
                "Pass an `image_size` or `batch_size=1`."
            )
    if drop_remainder and len(stems) < batch_size:
        raise ValueError(
            f"Only {len(stems)} image/mask pairs in {image_dir}, fewer than "
            f"batch_size={batch_size}: with `drop_remainder=True` the "
            "dataset would be empty. Lower `batch_size` or pass "
            "`drop_remainder=False`."
        )

    standardize = _make_standardize(image_size, label_map, void_label)

    def read(image_path, mask_path):
        image = tf.io.decode_image(
            tf.io.read_file(image_path), channels=3, expand_animations=False
        )
        mask = tf.io.decode_image(
            tf.io.read_file(mask_path), channels=1, expand_animations=False
        )
        return standardize(image, mask, mask_path)

    elements = tf.data.Dataset.from_tensor_slices(
        ([str(p) for p in image_paths], [str(p) for p in mask_paths])
    )
    return _build_pipeline(
        elements,
        read,
        batch_size=batch_size,
        training=training,
        shuffle=shuffle,
        augment=augment,
        seed=seed,
        deterministic=deterministic,
        void_label=void_label,
        cache=cache,
        drop_remainder=drop_remainder,
        shuffle_buffer_size=len(stems),
    )


def prepare_segmentation_dataset(
    dataset: tf.data.Dataset,
    *,
    image_size: int | tuple[int, int] | None = (256, 256),
    batch_size: int = 8,
    training: bool = False,
    shuffle: bool | None = None,
    augment: bool | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    label_map: LabelMap | None = None,
    void_label: int | None = None,
    cache: bool = False,
    drop_remainder: bool = True,
    shuffle_buffer_size: int | None = None,
) -> tf.data.Dataset:
    """Preprocesses a dataset of `(image, mask)` pairs for segmentation.

    The pipeline of `load_segmentation_directory` for examples that are
    already decoded (TFDS, NumPy arrays, a generator): same resizing,
    `label_map`, augmentation, batching and output format. See
    `load_segmentation_directory` for the shared arguments.

    Args:
        dataset: `tf.data.Dataset` of unbatched `(image, mask)` pairs:
            image integer or float [H, W, C] with C in {1, 3, 4} and values
            in 0..255, mask integer [H, W] or [H, W, 1] of raw labels.
        image_size: int or (height, width), or None to keep native sizes.
        batch_size: int > 0.
        training: bool. Default for `shuffle` and `augment`.
        shuffle: bool. Defaults to `training`.
        augment: bool. Defaults to `training`.
        seed: int or None.
        deterministic: bool.
        label_map: None, a dict {raw value: class id} or a callable.
        void_label: int or None.
        cache: bool. Cache the resized examples in memory.
        drop_remainder: bool.
        shuffle_buffer_size: int > 0. Defaults to the dataset's cardinality
            when known and at most 1024, else 1024. The buffer holds
            decoded examples at their input size.

    Returns:
        A `tf.data.Dataset` of `(images, masks)`: images float32
        [B, H, W, 3] in 0..255 and masks int32 [B, H, W].

    Raises:
        ValueError: for a bad `image_size`, `batch_size`, `seed`,
            `void_label`, `label_map` or `shuffle_buffer_size`, or a
            `dataset` whose elements are not `(image, mask)` pairs.
    """
    image_size, batch_size, seed, void_label = _check_common(
        image_size, batch_size, seed, void_label
    )
    spec = dataset.element_spec
    if not (
        isinstance(spec, tuple)
        and len(spec) == 2
        and all(isinstance(s, tf.TensorSpec) for s in spec)
        and spec[0].shape.rank in (None, 3)
        and spec[1].shape.rank in (None, 2, 3)
    ):
        raise ValueError(
            "Invalid value for argument `dataset`. Expected unbatched "
            "(image [H, W, C], mask [H, W] or [H, W, 1]) pairs. Received: "
            f"element_spec={spec}"
        )
    if shuffle_buffer_size is None:
        cardinality = int(dataset.cardinality())
        shuffle_buffer_size = (
            min(cardinality, _DEFAULT_SHUFFLE_BUFFER)
            if cardinality > 0
            else _DEFAULT_SHUFFLE_BUFFER
        )
    shuffle_buffer_size = check_positive_int(
        shuffle_buffer_size, "shuffle_buffer_size"
    )
    standardize = _make_standardize(image_size, label_map, void_label)
    name = tf.constant("(example)")
    return _build_pipeline(
        dataset,
        lambda image, mask: standardize(image, mask, name),
        batch_size=batch_size,
        training=training,
        shuffle=shuffle,
        augment=augment,
        seed=seed,
        deterministic=deterministic,
        void_label=void_label,
        cache=cache,
        drop_remainder=drop_remainder,
        shuffle_buffer_size=shuffle_buffer_size,
    )


# --------------------------------------------------------------------------
# Synthetic twin
# --------------------------------------------------------------------------


def _class_colours(num_classes: int) -> np.ndarray:
    """[num_classes, 3] float colours: dark grey background, then hues."""
    colours = [(40.0, 40.0, 40.0)]
    for c in range(1, num_classes):
        hue = (c - 1) / max(1, num_classes - 1)
        # HSV (hue, 0.85, 0.95) -> RGB
        i, f = divmod(hue * 6.0, 1.0)
        v, s = 0.95, 0.85
        p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
        rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v)]
        rgb.append((v, p, q))
        colours.append(tuple(255.0 * x for x in rgb[int(i) % 6]))
    return np.asarray(colours, np.float32)


def make_synthetic_segmentation_arrays(
    num_examples: int,
    image_size: int | tuple[int, int] = 32,
    num_classes: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Makes a learnable segmentation problem as NumPy arrays.

    Each image has a dark grey background (class 0) and one to three
    rectangles or discs; a shape's class (1..num_classes-1) decides its
    colour, so a per-pixel colour classifier can learn the task. Later shapes
    cover earlier ones. Pixel noise (±12) keeps it from being trivial.

    Args:
        num_examples: int > 0.
        image_size: int or (height, width), each > 0.
        num_classes: int > 0, including the background class 0.
        seed: int. Same seed, same arrays.

    Returns:
        `(images, masks)`: images float32 [N, H, W, 3] in 0..255 and masks
        int32 [N, H, W] with values in 0..num_classes-1.

    Raises:
        ValueError: for a non-positive `num_examples`, `image_size` or
            `num_classes`.
    """
    num_examples = check_positive_int(num_examples, "num_examples")
    num_classes = check_positive_int(num_classes, "num_classes")
    height, width = _standardize_image_size(image_size, allow_none=False)
    rng = np.random.default_rng(seed)
    colours = _class_colours(num_classes)
    yy, xx = np.mgrid[0:height, 0:width]
    masks = np.zeros((num_examples, height, width), np.int32)
    for n in range(num_examples):
        if num_classes == 1:
            continue
        for _ in range(rng.integers(1, 4)):
            cls = rng.integers(1, num_classes)
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry = rng.uniform(0.15, 0.35) * height
            rx = rng.uniform(0.15, 0.35) * width
            if rng.random() < 0.5:
                inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
            else:
                inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            masks[n][inside] = cls
    noise = rng.uniform(-12.0, 12.0, (num_examples, height, width, 3))
    images = np.clip(colours[masks] + noise, 0.0, 255.0).astype(np.float32)
    return images, masks


def make_synthetic_segmentation(
    num_examples: int,
    image_size: int | tuple[int, int] = 32,
    num_classes: int = 3,
    seed: int = 0,
    batch_size: int = 8,
    *,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Synthetic twin of the segmentation loaders, for tests and `--smoke`.

    The examples of `make_synthetic_segmentation_arrays`, batched in a fixed
    order in the loaders' output format.

    Args:
        num_examples: int > 0.
        image_size: int or (height, width).
        num_classes: int > 0, including the background class 0.
        seed: int.
        batch_size: int > 0; with `drop_remainder`, at most `num_examples`.
        drop_remainder: bool.

    Returns:
        A `tf.data.Dataset` of `(images, masks)`: images float32
        [B, H, W, 3] in 0..255 and masks int32 [B, H, W].

    Raises:
        ValueError: for non-positive arguments, or `batch_size` above
            `num_examples` with `drop_remainder=True` (an empty dataset).
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    images, masks = make_synthetic_segmentation_arrays(
        num_examples, image_size, num_classes, seed
    )
    if drop_remainder and batch_size > len(images):
        raise ValueError(
            f"Invalid value for argument `batch_size`: {batch_size} is more "
            f"than num_examples={len(images)}, so with `drop_remainder=True` "
            f"the dataset would be empty. Received: batch_size={batch_size}"
        )
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
