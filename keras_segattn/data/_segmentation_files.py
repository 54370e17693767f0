"""Finding and checking the image/mask file pairs of a segmentation folder.

`find_image_mask_pairs` matches the files of an image folder and a mask
folder by stem (`images/cat_1.jpg` with `masks/cat_1.png`), optionally
restricted to and ordered by a list of names; `verify_pairs` opens every
pair with PIL before any TensorFlow op runs, so that a corrupt, unmatched
or mis-sized file fails early with an error that names it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

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


def find_image_mask_pairs(
    image_dir: PathLike,
    mask_dir: PathLike,
    image_extensions: Sequence[str],
    mask_extensions: Sequence[str],
    files: Sequence[str] | None,
) -> tuple[list[Path], list[Path]]:
    """Image and mask paths paired by stem: every pair in the folders
    (sorted by stem), or those named in `files`, in that order.

    Raises:
        ValueError: for a missing folder, no extensions, duplicate stems,
            no files, unmatched images or masks, or names in `files`
            without an image or a mask (all named).
    """
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
    return image_paths, mask_paths


def verify_pairs(
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
