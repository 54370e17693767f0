"""Finding and checking the image/mask file pairs of a segmentation folder.

`find_image_mask_pairs` matches the files of an image folder and a mask
folder by stem (`images/cat_1.jpg` with `masks/cat_1.png`), optionally
restricted to and ordered by a list of names; `verify_pairs` opens every
pair with PIL before any TensorFlow op runs, so that a corrupt, unmatched
or mis-sized file fails early with an error that names it. With
`on_error="skip"` both drop the faulty pairs instead, with one warning that
names each file and counts them (`warn_skipped`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from keras_segattn.validation import check_one_of

PathLike = str | os.PathLike

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

ON_ERROR = ("raise", "skip")
"""Values of the loaders' `on_error` argument."""
_JPEG_FORMATS = ("JPEG", "MPO")
_JPEG_END = b"\xff\xd9"  # the EOI marker that ends a complete JPEG


def check_on_error(on_error) -> str:
    """Returns `on_error` or raises `ValueError` unless "raise" or "skip"."""
    return check_one_of(on_error, ON_ERROR, "on_error")


def warn_skipped(problems: Sequence[str], total: int, what: str) -> None:
    """One warning naming every skipped file (`problems`: one message per
    skipped item, each naming its file) and counting them."""
    if problems:
        warnings.warn(
            f"Skipped {len(problems)} of {total} {what} that cannot be "
            "used: " + "; ".join(problems),
            UserWarning,
            stacklevel=3,
        )


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


def _ends_like_a_jpeg(path: Path) -> bool:
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        file.seek(max(0, file.tell() - 64))
        tail = file.read().rstrip(b"\x00\r\n ")
    return tail.endswith(_JPEG_END)


def open_checked(
    path: Path,
    kind: str,
    full: bool,
    modes: tuple | None = None,
    label_values: Collection[int] | None = None,
) -> tuple[int, int]:
    """Opens `path` with PIL; returns (width, height) or raises ValueError.

    `Image.verify` checks the structure (and a PNG's checksums up to its
    end) but reads no JPEG scan data, so a JPEG that does not end with its
    EOI marker is decoded too (at 1/8 scale), which finds truncation. With
    `full` every file is decoded, and a mask's values must be in
    `label_values` (when given).
    """
    try:
        with Image.open(path) as im:
            im.verify()  # structure and, for PNG, checksums
        with Image.open(path) as im:  # `verify` leaves the file unusable
            size, fmt, mode = im.size, im.format, im.mode
            if full:
                im.load()
                values = np.unique(np.asarray(im)) if label_values else None
            elif fmt in _JPEG_FORMATS and not _ends_like_a_jpeg(path):
                im.draft(mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
                im.load()  # raises "image file is truncated"
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
    if full and label_values:
        unknown = np.setdiff1d(values, np.asarray(sorted(label_values)))
        if unknown.size:
            raise ValueError(
                f"Invalid {kind} file {path}: values "
                f"{_short_list([str(v) for v in unknown])} are not labels "
                f"(expected {sorted(int(v) for v in label_values)})."
            )
    return size


def find_image_mask_pairs(
    image_dir: PathLike,
    mask_dir: PathLike,
    image_extensions: Sequence[str],
    mask_extensions: Sequence[str],
    files: Sequence[str] | None,
    on_error: str = "raise",
) -> tuple[list[Path], list[Path]]:
    """Image and mask paths paired by stem: every pair in the folders
    (sorted by stem), or those named in `files`, in that order.

    With `on_error="skip"`, images without a mask, masks without an image
    and names in `files` missing either are left out, with one warning
    naming them (`warn_skipped`).

    Raises:
        ValueError: for a missing folder, no extensions, duplicate stems,
            no files, or no pair left; and, with `on_error="raise"`, for
            unmatched images or masks or names in `files` without an image
            or a mask (all named).
    """
    check_on_error(on_error)
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
        if problems and on_error == "raise":
            raise ValueError(
                "Images and masks are matched by file stem. "
                + "; ".join(problems)
                + "."
            )
        stems = sorted(images.keys() & masks.keys())
        warn_skipped(
            [f"{images[s]} has no mask in {mask_dir}" for s in no_mask]
            + [f"{masks[s]} has no image in {image_dir}" for s in no_image],
            len(images.keys() | masks.keys()),
            "images and masks (matched by file stem)",
        )
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
        if problems and on_error == "raise":
            raise ValueError(
                "Names in `files` not found. " + "; ".join(problems) + "."
            )
        missing = set(no_image) | set(no_mask)
        warn_skipped(
            [
                f"{s!r} has "
                + (
                    "no image file in " + str(image_dir)
                    if s in no_image
                    else ""
                )
                + (" and " if s in no_image and s in no_mask else "")
                + ("no mask file in " + str(mask_dir) if s in no_mask else "")
                for s in stems
                if s in missing
            ],
            len(stems),
            "names in `files`",
        )
        stems = [s for s in stems if s not in missing]
    if not stems:
        raise ValueError(
            f"No image/mask pair left in {image_dir} and {mask_dir}."
        )

    image_paths = [images[s] for s in stems]
    mask_paths = [masks[s] for s in stems]
    return image_paths, mask_paths


def _check_pair(
    image_path: Path,
    mask_path: Path,
    full: bool,
    label_values: Collection[int] | None,
) -> tuple[int, int]:
    image_size = open_checked(image_path, "image", full)
    mask_size = open_checked(mask_path, "mask", full, _MASK_MODES, label_values)
    if image_size != mask_size:
        raise ValueError(
            f"Image and mask sizes differ: {image_path} is "
            f"{image_size[0]}x{image_size[1]} (width x height) but "
            f"{mask_path} is {mask_size[0]}x{mask_size[1]}."
        )
    return image_size


def verify_pairs(
    image_paths: Sequence[Path],
    mask_paths: Sequence[Path],
    full: bool,
    label_values: Collection[int] | None = None,
    on_error: str = "raise",
) -> tuple[list[Path], list[Path], list[tuple[int, int]]]:
    """Checks every image/mask pair (`open_checked`, equal sizes).

    Args:
        image_paths, mask_paths: the pairs.
        full: bool. Decode every file and check the mask values against
            `label_values` (with `on_error="skip"` this is always done, so
            that no faulty pair is left to fail the iteration).
        label_values: optional raw mask values that are labels.
        on_error: "raise" or "skip" (drop faulty pairs, one warning).

    Returns:
        `(image_paths, mask_paths, sizes)` of the pairs kept, sizes as
        (width, height).

    Raises:
        ValueError: naming the file, for the first faulty pair with
            `on_error="raise"`; when no pair is left with "skip".
    """
    check_on_error(on_error)
    full = full or on_error == "skip"
    kept_images, kept_masks, sizes, problems = [], [], [], []
    for image_path, mask_path in zip(image_paths, mask_paths, strict=True):
        try:
            size = _check_pair(image_path, mask_path, full, label_values)
        except ValueError as error:
            if on_error == "raise":
                raise
            problems.append(str(error))
            continue
        kept_images.append(image_path)
        kept_masks.append(mask_path)
        sizes.append(size)
    warn_skipped(problems, len(image_paths), "image/mask pairs")
    if not kept_images:
        raise ValueError(
            f"None of the {len(image_paths)} image/mask pairs can be used "
            f"(the first: {problems[0]})."
        )
    return kept_images, kept_masks, sizes
