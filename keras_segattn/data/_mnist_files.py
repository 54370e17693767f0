"""Reading the `.npz` archives of the MNIST-family loaders.

Private helpers of `mnist` and `cluttered_mnist`: find the archive in
`data_dir`, read named arrays from it, and check that images and labels
agree, with errors that name the file.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike


def resolve_file(data_dir: PathLike, names: Sequence[str]) -> Path:
    """`data_dir` itself if it is a file, else the first of `names` in it."""
    path = Path(data_dir)
    if path.is_file():
        return path
    if path.is_dir():
        for name in names:
            if (path / name).is_file():
                return path / name
        raise ValueError(
            f"Invalid value for argument `data_dir`. Expected a folder "
            f"holding {' or '.join(names)}. Received: data_dir={str(path)!r}"
            f" (no such file in it: {str(path / names[0])!r})."
        )
    raise ValueError(
        f"Invalid value for argument `data_dir`. Expected an existing folder "
        f"(or .npz file) holding {names[0]}. Received: "
        f"data_dir={str(path)!r}, which does not exist."
    )


def read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Reads `keys` from an .npz archive, or raises a ValueError naming it."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise ValueError(
                    f"Corrupt or unexpected archive {str(path)!r}: missing "
                    f"arrays {missing}; it holds {sorted(archive.files)}."
                )
            return {k: np.asarray(archive[k]) for k in keys}
    except ValueError as error:
        if str(path) in str(error):
            raise
        raise ValueError(
            f"Could not read the archive {str(path)!r}: {error}"
        ) from error
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(
            f"Could not read the archive {str(path)!r} (missing, truncated "
            f"or not an .npz file): {type(error).__name__}: {error}"
        ) from error


def check_arrays(
    path, images, labels, image_key, label_key, pixels, num_classes=10
):
    """Raises a ValueError naming the archive unless there is one label in
    0..num_classes-1 per image of `pixels` finite values."""
    if images.ndim < 2 or images.shape[0] != len(labels):
        raise ValueError(
            f"Corrupt archive {str(path)!r}: `{image_key}` has shape "
            f"{images.shape} but `{label_key}` has {len(labels)} labels."
        )
    if int(np.prod(images.shape[1:])) != pixels:
        raise ValueError(
            f"Corrupt archive {str(path)!r}: expected {pixels} pixels per "
            f"image in `{image_key}`. Received shape {images.shape}."
        )
    labels = np.asarray(labels)
    integral = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating)
        and np.all(np.isfinite(labels))
        and np.all(labels == np.round(labels))
    )
    bad = (
        np.ones(labels.shape, bool)
        if not integral
        else (labels < 0) | (labels >= num_classes)
    )
    if labels.size and bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"Corrupt archive {str(path)!r}: `{label_key}` holds "
            f"{len(rows)} value(s) that are not class ids 0.."
            f"{num_classes - 1} (first at row {rows[0]}: "
            f"{labels.reshape(-1)[rows[0]]!r})."
        )
    if np.issubdtype(images.dtype, np.floating) and not np.all(
        np.isfinite(images)
    ):
        rows = np.flatnonzero(
            ~np.isfinite(images).reshape(len(images), -1).all(1)
        )
        raise ValueError(
            f"Corrupt archive {str(path)!r}: `{image_key}` has NaN or "
            f"infinite pixels in {len(rows)} image(s) (first: row {rows[0]})."
        )
