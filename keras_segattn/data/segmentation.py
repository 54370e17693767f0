"""`tf.data` pipelines for semantic segmentation.

`load_segmentation_directory` reads an image folder and a mask folder whose
files pair up by stem (`images/cat_1.jpg` with `masks/cat_1.png`).
`prepare_segmentation_dataset` runs the same preprocessing and augmentation on
any dataset of `(image, mask)` pairs (the TFDS loaders use it). Their
synthetic twin, `make_synthetic_segmentation`, is in `synthetic_segmentation`.

Every pipeline yields `(images, masks)`: images float32 [B, H, W, 3] with
values in 0..255 (no normalisation: the models and serving signatures do it in
the graph) and masks int32 [B, H, W] of class ids.

The data flow, and where each step lives:

    files  --find_image_mask_pairs, verify_pairs-->  (image, mask) paths
           (`_segmentation_files`)
    pairs  --make_standardize-->  RGB float32 image, int32 class-id mask,
           resized (`_segmentation_preprocess`, per example)
    batch  --make_augmenter-->  joint flip/zoom/translation, then
           brightness/contrast (`_segmentation_augment`, per batch)

`SegmentationPipelineOptions` carries the options both loaders share
(resizing, batching, shuffling, augmentation, seeds, labels) from the
loaders to `_build_pipeline`, which wires the steps above.

The data pipeline is TensorFlow-only by design (`tf.data`, `tf.io`,
`tf.image`); augmentation uses Keras 3 preprocessing layers, which run inside
`tf.data` whatever the Keras backend.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import tensorflow as tf

from keras_segattn.data._segmentation_augment import make_augmenter
from keras_segattn.data._segmentation_files import IMAGE_EXTENSIONS
from keras_segattn.data._segmentation_files import MASK_EXTENSIONS
from keras_segattn.data._segmentation_files import check_on_error
from keras_segattn.data._segmentation_files import find_image_mask_pairs
from keras_segattn.data._segmentation_files import verify_pairs
from keras_segattn.data._segmentation_preprocess import LabelMap
from keras_segattn.data._segmentation_preprocess import label_values_of
from keras_segattn.data._segmentation_preprocess import make_standardize
from keras_segattn.data._segmentation_preprocess import standardize_image_size
from keras_segattn.validation import check_optional_int
from keras_segattn.validation import check_positive_int

Tensor = tf.Tensor
PathLike = str | os.PathLike

_DEFAULT_SHUFFLE_BUFFER = 1024


# --------------------------------------------------------------------------
# Pipeline options
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SegmentationPipelineOptions:
    """How a segmentation pipeline resizes, maps, augments and batches.

    The options that `load_segmentation_directory` and
    `prepare_segmentation_dataset` share, as one value. The loaders build
    it from their keyword arguments of the same names; build it yourself
    to pass the same options to the loaders of several splits as
    `options=` (with `dataclasses.replace(options, training=False)` for
    evaluation). See `load_segmentation_directory` for what each option
    does. Arguments are checked on construction, and `image_size` is
    stored as None or a (height, width) pair.

    Args:
        image_size: int or (height, width) to resize to, or None to keep
            each image's own size.
        batch_size: int > 0.
        training: bool. Default for `shuffle` and `augment`.
        shuffle: bool. Reshuffle every epoch; defaults to `training`.
        augment: bool. Joint image/mask augmentation; defaults to
            `training`.
        seed: int or None. Seeds the shuffle and the augmentation.
        deterministic: bool. A reproducible stream (`seed` defaults to 0).
        label_map: None, a dict {raw mask value: class id} or a callable
            on int32 masks [H, W]. Checked when a pipeline is built.
        void_label: int or None, the class id of pixels to ignore.
        strict_labels: bool. With a dict `label_map`, raw values that are
            not keys are errors even when `void_label` is set.
        cache: bool. Cache the decoded, resized examples in memory.
        drop_remainder: bool. Drop a last, smaller batch.

    Raises:
        ValueError: for a bad `image_size`, `batch_size`, `seed` or
            `void_label`.

    Example:

    ```python
    options = keras_segattn.data.SegmentationPipelineOptions(
        image_size=(128, 128), batch_size=16, training=True, seed=0
    )
    train = keras_segattn.data.load_segmentation_directory(
        "train/images", "train/masks", options=options
    )
    validation = keras_segattn.data.load_segmentation_directory(
        "val/images",
        "val/masks",
        options=dataclasses.replace(options, training=False),
    )
    ```
    """

    image_size: int | tuple[int, int] | None = (256, 256)
    batch_size: int = 8
    training: bool = False
    shuffle: bool | None = None
    augment: bool | None = None
    seed: int | None = None
    deterministic: bool = False
    label_map: LabelMap | None = None
    void_label: int | None = None
    strict_labels: bool = False
    cache: bool = False
    drop_remainder: bool = True

    def __post_init__(self):
        checked = {
            "image_size": standardize_image_size(self.image_size),
            "batch_size": check_positive_int(self.batch_size, "batch_size"),
            "seed": check_optional_int(self.seed, "seed"),
            "void_label": check_optional_int(self.void_label, "void_label"),
        }
        for name, value in checked.items():  # frozen: set through object
            object.__setattr__(self, name, value)


_OPTION_DEFAULTS = {
    field.name: field.default
    for field in dataclasses.fields(SegmentationPipelineOptions)
}


def _is_default(value, default) -> bool:
    return value is default or (
        type(value) is type(default) and value == default
    )


def _pipeline_options(
    options: SegmentationPipelineOptions | None, **keywords
) -> SegmentationPipelineOptions:
    """`options`, or options built (and checked) from a loader's keyword
    arguments; with `options`, those must keep their defaults."""
    if options is None:
        return SegmentationPipelineOptions(**keywords)
    if not isinstance(options, SegmentationPipelineOptions):
        raise ValueError(
            "Invalid value for argument `options`. Expected None or a "
            f"`SegmentationPipelineOptions`. Received: options={options!r}"
        )
    passed = [
        f"{name}={value!r}"
        for name, value in keywords.items()
        if not _is_default(value, _OPTION_DEFAULTS[name])
    ]
    if passed:
        raise ValueError(
            "Invalid value for argument `options`: pass the pipeline "
            "options either as `options` or as keyword arguments, not "
            f"both. Received: options={options!r} and {', '.join(passed)}"
        )
    return options


def _build_pipeline(
    elements: tf.data.Dataset,
    standardize: Callable[..., tuple[Tensor, Tensor]],
    options: SegmentationPipelineOptions,
    shuffle_buffer_size: int,
) -> tf.data.Dataset:
    """elements -> [shuffle] -> standardize -> [cache, shuffle] -> batch ->
    [augment] -> prefetch. `shuffle` and `augment` default to `training`."""
    training = bool(options.training)
    shuffle = training if options.shuffle is None else bool(options.shuffle)
    augment = training if options.augment is None else bool(options.augment)
    deterministic, cache = bool(options.deterministic), bool(options.cache)
    drop_remainder, seed = bool(options.drop_remainder), options.seed
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
        options.batch_size,
        drop_remainder=drop_remainder,
        num_parallel_calls=autotune,
    )
    if augment:
        # The Keras layers draw from `SeedGenerator` variables: parallel
        # calls would race on them, so the map is serial when deterministic
        # (it works on whole batches, so the cost is small).
        ds = ds.map(
            make_augmenter(seed, options.void_label),
            num_parallel_calls=None if deterministic else autotune,
        )
    ds = ds.prefetch(autotune)
    if deterministic:
        tf_options = tf.data.Options()
        tf_options.deterministic = True
        ds = ds.with_options(tf_options)
    return ds


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
    strict_labels: bool = False,
    image_extensions: Sequence[str] = IMAGE_EXTENSIONS,
    mask_extensions: Sequence[str] = MASK_EXTENSIONS,
    files: Sequence[str] | None = None,
    cache: bool = False,
    drop_remainder: bool = True,
    verify: bool | Literal["full"] = True,
    on_error: Literal["raise", "skip"] = "raise",
    options: SegmentationPipelineOptions | None = None,
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
            become `void_label`, or (when `void_label` is None or
            `strict_labels`) fail the iteration with an error naming the
            mask file; `verify="full"` and `on_error="skip"` find them when
            the dataset is built.
        void_label: int or None. The class id (after `label_map`) of pixels
            to ignore in losses and metrics (e.g. 11 for CamVid). The loader
            keeps such pixels; it only uses the value to fill pixels that
            augmentation brings in from outside the image and for dict
            `label_map` misses.
        strict_labels: bool. With a dict `label_map`, values that are not
            keys are errors even when `void_label` is set (CamVid: a value
            above 11 is a damaged label file, not void).
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
            TensorFlow error that does not name it). A JPEG that does not
            end with its end-of-image marker is decoded too (at 1/8 scale),
            so a truncated one is found by True as well.
        on_error: `"raise"` (default) or `"skip"`. With `"skip"`, the
            pairs that would raise (an unreadable, truncated or empty file,
            image and mask of different sizes, a mask value that is not a
            label, an image without a mask or a mask without an image) are
            left out with one `UserWarning` that names each file and counts
            them; every file is then decoded when the dataset is built (as
            `verify="full"`, whatever `verify` says).
        options: optional `SegmentationPipelineOptions` holding
            `image_size` ... `drop_remainder` (the arguments above that
            `prepare_segmentation_dataset` shares); those keyword
            arguments must then keep their defaults.

    Returns:
        A `tf.data.Dataset` of `(images, masks)`: images float32
        [B, H, W, 3] in 0..255 and masks int32 [B, H, W].

    Raises:
        ValueError: for a bad `image_size`, `batch_size`, `seed`,
            `void_label` or `label_map`; a missing folder (named); no files
            found; images without masks or masks without images (named);
            names in `files` without an image or a mask; a file PIL cannot
            read, a mask that is not 8-bit greyscale, or an image and mask
            of different sizes (named), a mask value that is not a label
            with `verify="full"` (named); no pair left with
            `on_error="skip"`; images of different sizes with
            `image_size=None` and `batch_size > 1`; `options` together
            with pipeline keyword arguments.
    """
    options = _pipeline_options(
        options,
        image_size=image_size,
        batch_size=batch_size,
        training=training,
        shuffle=shuffle,
        augment=augment,
        seed=seed,
        deterministic=deterministic,
        label_map=label_map,
        void_label=void_label,
        strict_labels=strict_labels,
        cache=cache,
        drop_remainder=drop_remainder,
    )
    if verify not in (True, False, "full"):
        raise ValueError(
            "Invalid value for argument `verify`. Expected True, False or "
            f"'full'. Received: verify={verify!r}"
        )
    check_on_error(on_error)
    image_paths, mask_paths = find_image_mask_pairs(
        image_dir, mask_dir, image_extensions, mask_extensions, files, on_error
    )
    if verify or on_error == "skip":
        image_paths, mask_paths, sizes = verify_pairs(
            image_paths,
            mask_paths,
            full=verify == "full",
            label_values=label_values_of(
                options.label_map, options.void_label, options.strict_labels
            ),
            on_error=on_error,
        )
        if (
            options.image_size is None
            and options.batch_size > 1
            and len(set(sizes)) > 1
        ):
            raise ValueError(
                "With `image_size=None` every image keeps its own size, so "
                "a batch can only hold same-sized images, but the images "
                f"in {Path(image_dir)} have {len(set(sizes))} different "
                "sizes. Pass an `image_size` or `batch_size=1`."
            )
    if options.drop_remainder and len(image_paths) < options.batch_size:
        raise ValueError(
            f"Only {len(image_paths)} image/mask pairs in {Path(image_dir)}, "
            f"fewer than batch_size={options.batch_size}: with "
            "`drop_remainder=True` the dataset would be empty. Lower "
            "`batch_size` or pass `drop_remainder=False`."
        )

    standardize = make_standardize(
        options.image_size,
        options.label_map,
        options.void_label,
        options.strict_labels,
    )

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
        elements, read, options, shuffle_buffer_size=len(image_paths)
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
    strict_labels: bool = False,
    cache: bool = False,
    drop_remainder: bool = True,
    shuffle_buffer_size: int | None = None,
    options: SegmentationPipelineOptions | None = None,
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
        strict_labels: bool.
        cache: bool. Cache the resized examples in memory.
        drop_remainder: bool.
        shuffle_buffer_size: int > 0. Defaults to the dataset's cardinality
            when known and at most 1024, else 1024. The buffer holds
            decoded examples at their input size.
        options: optional `SegmentationPipelineOptions` holding
            `image_size` ... `drop_remainder`; those keyword arguments
            must then keep their defaults.

    Returns:
        A `tf.data.Dataset` of `(images, masks)`: images float32
        [B, H, W, 3] in 0..255 and masks int32 [B, H, W].

    Raises:
        ValueError: for a bad `image_size`, `batch_size`, `seed`,
            `void_label`, `label_map` or `shuffle_buffer_size`, a
            `dataset` whose elements are not `(image, mask)` pairs, or
            `options` together with pipeline keyword arguments.
    """
    options = _pipeline_options(
        options,
        image_size=image_size,
        batch_size=batch_size,
        training=training,
        shuffle=shuffle,
        augment=augment,
        seed=seed,
        deterministic=deterministic,
        label_map=label_map,
        void_label=void_label,
        strict_labels=strict_labels,
        cache=cache,
        drop_remainder=drop_remainder,
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
    standardize = make_standardize(
        options.image_size,
        options.label_map,
        options.void_label,
        options.strict_labels,
    )
    name = tf.constant("(example)")
    return _build_pipeline(
        dataset,
        lambda image, mask: standardize(image, mask, name),
        options,
        shuffle_buffer_size,
    )
