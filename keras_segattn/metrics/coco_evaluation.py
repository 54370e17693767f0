"""COCO box and mask AP of padded detector outputs, through pycocotools.

The detectors of this package return TF OD API tensors with a fixed number
of slots (`detection_boxes` [B, D, 4] as (ymin, xmin, ymax, xmax) pixels,
`detection_scores`, `detection_classes`, `num_detections`, and
`detection_masks` [B, D, H, W] for instance models), and the data pipelines
give padded ground truth (rows of -1). These helpers turn both into what
pycocotools expects (a COCO dataset dict and a list of results, masks as
RLE from `pycocotools.mask.encode`) and run the official `COCOeval`, so the
numbers are the COCO benchmark's own.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

COCO_STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)
IOU_TYPES = ("bbox", "segm")


def _pycocotools():
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:  # pragma: no cover - install hint
        raise ImportError(
            "COCO evaluation needs pycocotools: `pip install pycocotools` "
            "(it is in the `examples` and `test` extras)."
        ) from error
    return mask_utils, COCO, COCOeval


def _encode(mask: np.ndarray) -> dict:
    mask_utils, _, _ = _pycocotools()
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")  # JSON-friendly
    return rle


def _check_batch(name: str, array: np.ndarray, rank: int, batch: int | None):
    if array.ndim != rank or (batch is not None and array.shape[0] != batch):
        expected = f"rank {rank}" + (f" with {batch} images" if batch else "")
        raise ValueError(
            f"Invalid shape for argument `{name}`. Expected {expected}. "
            f"Received: {name}.shape={array.shape}."
        )


def _xywh(yxyx: np.ndarray) -> list[float]:
    y1, x1, y2, x2 = (float(v) for v in yxyx)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_ground_truth(
    boxes,
    classes,
    masks=None,
    *,
    image_size: Sequence[int] | None = None,
    category_names: Sequence[str] | None = None,
    iscrowd=None,
) -> dict:
    """A COCO instances dict from padded ground truth.

    Args:
        boxes: float [N, M, 4] (ymin, xmin, ymax, xmax) pixels; rows of -1
            (or with class -1) are padding.
        classes: int [N, M], 0-based class ids, -1 for padding.
        masks: optional [N, M, H, W] binary instance masks.
        image_size: (height, width) of the images; taken from `masks` when
            given, required otherwise.
        category_names: names of the classes (default "0", "1", ...).
        iscrowd: optional int [N, M], 1 for crowd regions (the `iscrowd`
            of `data.load_coco_instances(..., crowd="keep")`). COCOeval
            counts a crowd region as neither an object to find nor a
            false positive: detections on it are ignored.

    Returns:
        dict with `images` (ids 0..N-1), `annotations` (ids from 1, `bbox`
        [x, y, w, h], `area` the mask's pixel count or the box area,
        `iscrowd` (0 unless `iscrowd` says 1), `segmentation` RLE when
        `masks` is given) and
        `categories` (ids 0..K-1).
    """
    boxes, classes = np.asarray(boxes, np.float32), np.asarray(classes)
    _check_batch("boxes", boxes, 3, None)
    _check_batch("classes", classes, 2, boxes.shape[0])
    if iscrowd is not None:
        iscrowd = np.asarray(iscrowd)
        _check_batch("iscrowd", iscrowd, 2, boxes.shape[0])
    if masks is not None:
        masks = np.asarray(masks)
        _check_batch("masks", masks, 4, boxes.shape[0])
        image_size = masks.shape[2:]
    if image_size is None:
        raise ValueError(
            "Invalid value for argument `image_size`. Expected (height, "
            "width) when `masks` is not given. Received: image_size=None."
        )
    height, width = (int(s) for s in image_size)
    if category_names is None:
        category_names = [
            str(i) for i in range(int(classes.max(initial=0)) + 1)
        ]
    annotations = []
    for n, m in zip(*np.nonzero(classes >= 0), strict=True):
        if np.all(boxes[n, m] == -1):
            continue
        annotation = {
            "id": len(annotations) + 1,
            "image_id": int(n),
            "category_id": int(classes[n, m]),
            "bbox": _xywh(boxes[n, m]),
            "iscrowd": 0 if iscrowd is None else int(iscrowd[n, m] > 0),
        }
        if masks is not None:
            annotation["segmentation"] = _encode(masks[n, m])
            annotation["area"] = float(masks[n, m].astype(bool).sum())
        else:
            annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
        annotations.append(annotation)
    return {
        "images": [
            {"id": n, "height": height, "width": width}
            for n in range(boxes.shape[0])
        ],
        "annotations": annotations,
        "categories": [
            {"id": i, "name": name} for i, name in enumerate(category_names)
        ],
    }


def coco_results(
    detection_boxes,
    detection_scores,
    detection_classes,
    num_detections,
    detection_masks=None,
    *,
    mask_threshold: float = 0.5,
    image_ids: Sequence[int] | None = None,
) -> list[dict]:
    """COCO result dicts from TF OD API outputs (one per valid slot).

    Args:
        detection_boxes: [N, D, 4] (ymin, xmin, ymax, xmax) pixels.
        detection_scores, detection_classes: [N, D] (0-based class ids).
        num_detections: [N], valid slots per image.
        detection_masks: optional [N, D, H, W] mask probabilities, binarised
            at `mask_threshold` and RLE-encoded.
        mask_threshold: float in (0, 1).
        image_ids: ids of the N images (default 0..N-1, as
            `coco_ground_truth` numbers them).

    Returns:
        list of `{"image_id", "category_id", "bbox", "score"}` dicts, with
        `"segmentation"` when masks are given.
    """
    boxes = np.asarray(detection_boxes, np.float32)
    _check_batch("detection_boxes", boxes, 3, None)
    scores = np.asarray(detection_scores, np.float32)
    labels = np.asarray(detection_classes)
    counts = np.asarray(num_detections).astype(np.int64).reshape(-1)
    _check_batch("detection_scores", scores, 2, boxes.shape[0])
    _check_batch("detection_classes", labels, 2, boxes.shape[0])
    _check_batch("num_detections", counts, 1, boxes.shape[0])
    if detection_masks is not None:
        detection_masks = np.asarray(detection_masks)
        _check_batch("detection_masks", detection_masks, 4, boxes.shape[0])
    if not 0.0 < mask_threshold < 1.0:
        raise ValueError(
            "Invalid value for argument `mask_threshold`. Expected a float "
            f"in (0, 1). Received: mask_threshold={mask_threshold!r}."
        )
    if image_ids is None:
        image_ids = range(boxes.shape[0])
    results = []
    for n, image_id in enumerate(image_ids):
        for d in range(min(int(counts[n]), boxes.shape[1])):
            result = {
                "image_id": int(image_id),
                "category_id": int(round(float(labels[n, d]))),
                "bbox": _xywh(boxes[n, d]),
                "score": float(scores[n, d]),
            }
            if detection_masks is not None:
                result["segmentation"] = _encode(
                    detection_masks[n, d] >= mask_threshold
                )
            results.append(result)
    return results


def evaluate_coco(
    ground_truth: dict,
    results: list[dict],
    iou_types: Sequence[str] = IOU_TYPES,
    verbose: bool = False,
) -> dict[str, dict[str, float]]:
    """Runs pycocotools' `COCOeval` for each IoU type.

    Args:
        ground_truth: a COCO instances dict (`coco_ground_truth`, or a
            loaded COCO json).
        results: COCO result dicts (`coco_results`).
        iou_types: subset of ("bbox", "segm"); "segm" needs segmentations
            in both.
        verbose: print pycocotools' summary tables.

    Returns:
        `{iou_type: {stat: value}}` with the 12 standard statistics
        (`COCO_STAT_NAMES`: AP, AP50, AP75, ..., AR100, ...). With no
        results at all every statistic is 0.

    Raises:
        ValueError: for an unknown IoU type.
    """
    _, COCO, COCOeval = _pycocotools()
    for iou_type in iou_types:
        if iou_type not in IOU_TYPES:
            raise ValueError(
                "Invalid value for argument `iou_types`. Expected a subset "
                f"of {IOU_TYPES}. Received: {iou_type!r}."
            )
    if not results:
        return {t: dict.fromkeys(COCO_STAT_NAMES, 0.0) for t in iou_types}
    quiet = (
        contextlib.nullcontext()
        if verbose
        else contextlib.redirect_stdout(io.StringIO())
    )
    metrics = {}
    with quiet:
        coco = COCO()
        coco.dataset = {"info": {}, **ground_truth}
        coco.createIndex()
        detections = coco.loadRes(list(results))
        for iou_type in iou_types:
            evaluator = COCOeval(coco, detections, iouType=iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            metrics[iou_type] = {
                name: float(value)
                for name, value in zip(
                    COCO_STAT_NAMES, evaluator.stats, strict=True
                )
            }
    return metrics


def evaluate_detections(
    ground_truth: dict,
    detections: dict,
    *,
    image_size: Sequence[int] | None = None,
    category_names: Sequence[str] | None = None,
    iou_types: Sequence[str] | None = None,
    verbose: bool = False,
) -> dict[str, dict[str, float]]:
    """COCO AP of TF OD API outputs against padded ground truth, in one
    call: `coco_ground_truth` + `coco_results` + `evaluate_coco`.

    Args:
        ground_truth: dict with `boxes` [N, M, 4], `classes` [N, M] and,
            optionally, `masks` [N, M, H, W] and `iscrowd` [N, M] (the
            padded targets of the data pipelines).
        detections: dict of OD API outputs (`detection_boxes`,
            `detection_scores`, `detection_classes`, `num_detections`, and
            `detection_masks` for instance models), e.g. what a
            `serving_default` signature returns.
        image_size: (height, width); needed when `ground_truth` has no
            masks.
        category_names: names of the classes (default "0", "1", ...).
        iou_types: subset of ("bbox", "segm"); default "bbox", plus
            "segm" when both sides have masks.
        verbose: print pycocotools' summary tables.

    Returns:
        `{iou_type: {stat: value}}`, as `evaluate_coco`.

    Raises:
        ValueError: naming the argument, for a key missing from
            `ground_truth` or `detections`, and as the three steps do.
    """
    for name, value, keys in (
        ("ground_truth", ground_truth, ("boxes", "classes")),
        (
            "detections",
            detections,
            (
                "detection_boxes",
                "detection_scores",
                "detection_classes",
                "num_detections",
            ),
        ),
    ):
        missing = [key for key in keys if key not in value]
        if missing:
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected a dict with "
                f"keys {list(keys)}. Missing: {missing}."
            )
    with_masks = "masks" in ground_truth and "detection_masks" in detections
    if iou_types is None:
        iou_types = ("bbox", "segm") if with_masks else ("bbox",)
    truth = coco_ground_truth(
        ground_truth["boxes"],
        ground_truth["classes"],
        ground_truth["masks"] if with_masks else None,
        image_size=image_size,
        category_names=category_names,
        iscrowd=ground_truth.get("iscrowd"),
    )
    results = coco_results(
        detections["detection_boxes"],
        detections["detection_scores"],
        detections["detection_classes"],
        detections["num_detections"],
        detections["detection_masks"] if with_masks else None,
    )
    return evaluate_coco(truth, results, iou_types=iou_types, verbose=verbose)
