"""Selective-search region proposals (Uijlings et al., 2013) and their cache.

`selective_search_proposals` wraps OpenCV's implementation
(`cv2.ximgproc.segmentation.createSelectiveSearchSegmentation`, from the
`opencv-contrib-python-headless` wheel of the `proposals` extra); nothing
here re-implements the algorithm. OpenCV is imported lazily, so the package
works without it until proposals are requested.

Boxes use the detection box format of the package's data and detectors
(`digit_scenes`, `load_coco_instance_arrays`, `FasterRCNN`'s default
`bounding_box_format`): (ymin, xmin, ymax, xmax) in absolute pixels with
exclusive ends, float32; padding rows are four -1.

Selective search runs on the CPU in C++ and cannot be part of a TF graph, so
`cached_selective_search_proposals` computes it once per dataset and keeps
the padded result in an `.npz` file keyed by the images (their keys, e.g.
file names, and a SHA-1 of their pixels) and the parameters; a cache that
cannot be read or that belongs to other images or parameters is rebuilt
with a warning, never used.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence

import numpy as np

from keras_segattn.validation import check_int
from keras_segattn.validation import check_one_of
from keras_segattn.validation import check_positive_int

SELECTIVE_SEARCH_MODES = ("fast", "quality", "single")
PROPOSALS_EXTRA = "proposals"
CACHE_FORMAT_VERSION = 1
_CACHE_KEYS = ("boxes", "counts", "keys", "digests", "parameters")


def _cv2():
    """OpenCV with the contrib `ximgproc` module, or an ImportError naming
    the extra to install."""
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            "Selective-search proposals need OpenCV's contrib modules. "
            "Install the `proposals` extra: pip install "
            "'keras-segattn[proposals]' (opencv-contrib-python-headless). "
            f"Import failed with: {error}"
        ) from error
    if not hasattr(cv2, "ximgproc"):
        raise ImportError(
            "Selective-search proposals need cv2.ximgproc, which only "
            "opencv-contrib builds have. Install the `proposals` extra "
            "(opencv-contrib-python-headless) instead of "
            f"opencv-python. Found cv2 {cv2.__version__} without ximgproc."
        )
    return cv2


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            "Invalid value for argument `image`. Expected an array [H, W, 3] "
            "or [H, W, 1] (or [H, W]) of RGB or gray pixels. Received: "
            f"image.shape={image.shape}."
        )
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(
            "Invalid value for argument `image`. Expected at least 2x2 "
            f"pixels. Received: image.shape={image.shape}."
        )
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.number):
            raise TypeError(
                "Invalid dtype for argument `image`. Expected uint8 (or "
                f"numbers in 0..255). Received: image.dtype={image.dtype}."
            )
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


def _seed_c_rand(seed: int) -> None:
    """Seeds the C library's `rand`, which OpenCV's selective search draws
    its region ranking from (`std::rand`), so the order is reproducible.
    Where the C library cannot be loaded (ctypes), the order stays random
    (the boxes, as a set, do not depend on it)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.srand(ctypes.c_uint(seed))
    except (OSError, AttributeError):  # e.g. no global symbol table
        pass


def selective_search_proposals(
    image,
    mode: str = "fast",
    max_proposals: int = 2000,
    seed: int | None = 0,
) -> np.ndarray:
    """Selective-search region proposals of one image, best ranked first.

    Runs OpenCV's `SelectiveSearchSegmentation` (Uijlings et al., 2013, with
    the strategies of OpenCV's `switchToSelectiveSearchFast`,
    `...Quality` or `switchToSingleStrategy`) with one OpenCV thread, and
    keeps the first `max_proposals` boxes in OpenCV's order (the
    hierarchical grouping's pseudo-random ranking of the paper: each
    region's level times a random number). Identical boxes are dropped
    (the strategies find many regions twice). OpenCV draws that random
    number from C's `rand`, which `seed` seeds (through ctypes) so that
    the same image gives the same ranked boxes.

    Args:
        image: uint8 array [H, W, 3] (RGB) or [H, W, 1] / [H, W] (gray,
            repeated to three channels); other numbers are rounded and
            clipped to 0..255.
        mode: `"fast"` (the paper's fast mode: 2 colour spaces, 2
            similarity mixes, k in {50, 100}), `"quality"` (its quality
            mode, about 4x slower) or `"single"` (one strategy).
        max_proposals: int >= 1, boxes kept.
        seed: int >= 0 seeding the ranking, or None to leave C's `rand`
            as it is (a different order on every call).

    Returns:
        float32 array [n, 4], n <= `max_proposals`, of (ymin, xmin, ymax,
        xmax) boxes in pixels, exclusive ends, inside the image.

    Raises:
        ValueError: for a bad image, `mode` or `max_proposals`.
        ImportError: when OpenCV's contrib modules are missing (naming the
            `proposals` extra).

    Reference:
        - [Uijlings et al., "Selective Search for Object Recognition",
          IJCV 2013](https://doi.org/10.1007/s11263-013-0620-5)
        - OpenCV contrib: modules/ximgproc/src/selectivesearchsegmentation.cpp
    """
    mode = check_one_of(mode, SELECTIVE_SEARCH_MODES, "mode")
    max_proposals = check_positive_int(max_proposals, "max_proposals")
    if seed is not None:
        seed = check_int(seed, "seed", minimum=0)
    image = _check_image(image)
    cv2 = _cv2()
    cv2.setNumThreads(1)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[..., ::-1]))  # BGR
    {
        "fast": search.switchToSelectiveSearchFast,
        "quality": search.switchToSelectiveSearchQuality,
        "single": search.switchToSingleStrategy,
    }[mode]()
    if seed is not None:
        _seed_c_rand(seed)
    rects = np.asarray(search.process(), dtype=np.float32).reshape(-1, 4)
    # OpenCV rects are (x, y, width, height).
    x, y, width, height = rects.T
    boxes = np.stack([y, x, y + height, x + width], axis=-1)
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]
    return boxes[:max_proposals].astype(np.float32)


def pad_proposals(boxes: Sequence[np.ndarray], num_proposals: int) -> tuple:
    """Stacks per-image proposals into a padded batch.

    Args:
        boxes: sequence of float arrays [n_i, 4].
        num_proposals: int >= 1, rows N of the batch; longer lists are cut.

    Returns:
        Tuple `(proposals, counts)`: float32 [len(boxes), N, 4] with padding
        rows four -1 (the detectors' padding), and int32 [len(boxes)] real
        rows per image.
    """
    num_proposals = check_positive_int(num_proposals, "num_proposals")
    padded = np.full((len(boxes), num_proposals, 4), -1.0, np.float32)
    counts = np.zeros(len(boxes), np.int32)
    for row, image_boxes in enumerate(boxes):
        image_boxes = np.asarray(image_boxes, np.float32).reshape(-1, 4)
        count = min(len(image_boxes), num_proposals)
        padded[row, :count] = image_boxes[:count]
        counts[row] = count
    return padded, counts


def _digest(image: np.ndarray) -> str:
    image = np.ascontiguousarray(image)
    header = f"{image.shape}{image.dtype}".encode()
    return hashlib.sha1(header + image.tobytes()).hexdigest()


def _parameters(mode: str, max_proposals: int, seed) -> np.ndarray:
    cv2 = _cv2()
    return np.array(
        [
            f"format={CACHE_FORMAT_VERSION}",
            f"mode={mode}",
            f"max_proposals={max_proposals}",
            f"seed={seed}",
            f"opencv={cv2.__version__}",
        ]
    )


def _read_cache(path: str) -> dict | None:
    """The cache's arrays, or None (with a warning naming the file) when it
    cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            cache = {key: data[key] for key in _CACHE_KEYS}
    except Exception as error:  # noqa: BLE001 - any unreadable file
        warnings.warn(
            f"Proposal cache {path} is corrupt or unreadable "
            f"({type(error).__name__}: {error}); recomputing it.",
            stacklevel=3,
        )
        return None
    boxes, counts = cache["boxes"], cache["counts"]
    if (
        boxes.ndim != 3
        or boxes.shape[-1] != 4
        or counts.shape != boxes.shape[:1]
        or len(cache["keys"]) != len(boxes)
        or len(cache["digests"]) != len(boxes)
    ):
        warnings.warn(
            f"Proposal cache {path} is corrupt (boxes {boxes.shape}, counts "
            f"{counts.shape}, {len(cache['keys'])} keys); recomputing it.",
            stacklevel=3,
        )
        return None
    return cache


def cached_selective_search_proposals(
    images,
    cache_path: str | os.PathLike,
    *,
    keys: Sequence[str] | None = None,
    mode: str = "fast",
    max_proposals: int = 2000,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Selective-search proposals of a dataset, computed once and cached.

    The cache is an `.npz` file (put it next to the data, e.g.
    `<data_dir>/proposals_fast_2000.npz`, or in an output folder when the
    data folder is read-only) holding the padded boxes, the per-image
    counts, the images' `keys`, a SHA-1 of each image's pixels and the
    parameters (`mode`, `max_proposals`, `seed`, OpenCV's version). It is used
    only when all of them match; a file that cannot be read (corrupt,
    truncated, missing arrays) or that belongs to other images or
    parameters (stale) is recomputed and rewritten with a warning naming
    the file. The file is written atomically (temporary file, then
    rename).

    Args:
        images: sequence (or array [N, H, W, C]) of images accepted by
            `selective_search_proposals`.
        cache_path: path of the `.npz` file.
        keys: optional strings naming the images (file names); default:
            their row numbers. Part of the cache key with the pixels.
        mode, max_proposals, seed: as `selective_search_proposals`.

    Returns:
        Tuple `(proposals, counts)`: float32 [N, max_proposals, 4]
        (ymin, xmin, ymax, xmax pixels, padding rows four -1) and int32 [N]
        real proposals per image.

    Raises:
        ValueError: for bad arguments (`keys` of another length, a cache
            path that is not `.npz`, ...).
        ImportError: when OpenCV's contrib modules are missing and the
            cache must be (re)computed.
    """
    mode = check_one_of(mode, SELECTIVE_SEARCH_MODES, "mode")
    max_proposals = check_positive_int(max_proposals, "max_proposals")
    path = os.fspath(cache_path)
    if not path.endswith(".npz"):
        raise ValueError(
            "Invalid value for argument `cache_path`. Expected a path "
            f"ending in .npz. Received: cache_path={path!r}."
        )
    if keys is None:
        keys = [str(i) for i in range(len(images))]
    keys = np.array([str(k) for k in keys])
    if len(keys) != len(images):
        raise ValueError(
            "Invalid value for argument `keys`. Expected one key per image "
            f"({len(images)}). Received: {len(keys)} keys."
        )
    digests = np.array([_digest(np.asarray(image)) for image in images])
    parameters = _parameters(mode, max_proposals, seed)
    if os.path.exists(path):
        cache = _read_cache(path)
        if cache is not None:
            if (
                np.array_equal(cache["parameters"], parameters)
                and np.array_equal(cache["keys"], keys)
                and np.array_equal(cache["digests"], digests)
            ):
                return cache["boxes"].astype(np.float32), cache["counts"]
            warnings.warn(
                f"Proposal cache {path} is stale (other images, keys or "
                f"parameters than {', '.join(parameters)}); recomputing it.",
                stacklevel=2,
            )
    boxes, counts = pad_proposals(
        [
            selective_search_proposals(image, mode, max_proposals, seed)
            for image in images
        ],
        max_proposals,
    )
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}.npz"
    np.savez_compressed(
        temporary,
        boxes=boxes,
        counts=counts,
        keys=keys,
        digests=digests,
        parameters=parameters,
    )
    os.replace(temporary, path)
    return boxes, counts


def proposal_recall(
    proposals: np.ndarray,
    gt_boxes: np.ndarray,
    iou_threshold: float = 0.5,
    num_proposals: int | None = None,
) -> float:
    """The fraction of ground-truth boxes that some proposal covers.

    A ground-truth box is recalled when one of the first `num_proposals`
    proposals of its image has IoU >= `iou_threshold` with it (Hosang et
    al., 2016, "What makes for effective detection proposals?").

    Args:
        proposals: float [N, P, 4] (ymin, xmin, ymax, xmax), padding rows
            four -1.
        gt_boxes: float [N, M, 4] in the same format, padding rows -1.
        iou_threshold: float in (0, 1].
        num_proposals: None (all) or int >= 1, proposals per image used.

    Returns:
        Recall as a float in [0, 1] (NaN without ground truth).
    """
    proposals = np.asarray(proposals, np.float64)
    gt_boxes = np.asarray(gt_boxes, np.float64)
    for name, value in (("proposals", proposals), ("gt_boxes", gt_boxes)):
        if value.ndim != 3 or value.shape[-1] != 4:
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected [N, P, 4] "
                f"boxes. Received: {name}.shape={value.shape}."
            )
    if len(proposals) != len(gt_boxes):
        raise ValueError(
            "Invalid value for argument `gt_boxes`. Expected one row per "
            f"image of `proposals` ({len(proposals)}). Received: "
            f"gt_boxes.shape={gt_boxes.shape}."
        )
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(
            "Invalid value for argument `iou_threshold`. Expected a value "
            f"in (0, 1]. Received: iou_threshold={iou_threshold}."
        )
    if num_proposals is not None:
        num_proposals = check_positive_int(num_proposals, "num_proposals")
        proposals = proposals[:, :num_proposals]
    valid_gt = ~np.all(gt_boxes == -1, axis=-1)
    valid_proposals = ~np.all(proposals == -1, axis=-1)
    top_left = np.maximum(gt_boxes[:, :, None, :2], proposals[:, None, :, :2])
    bottom_right = np.minimum(
        gt_boxes[:, :, None, 2:], proposals[:, None, :, 2:]
    )
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    gt_area = np.prod(gt_boxes[..., 2:] - gt_boxes[..., :2], axis=-1)
    area = np.prod(proposals[..., 2:] - proposals[..., :2], axis=-1)
    union = gt_area[:, :, None] + area[:, None, :] - inter
    iou = np.where(
        valid_proposals[:, None, :], inter / np.maximum(union, 1e-12), 0.0
    )
    best = iou.max(axis=-1, initial=0.0)
    total = int(valid_gt.sum())
    if total == 0:
        return float("nan")
    return float(np.sum((best >= iou_threshold) & valid_gt) / total)
