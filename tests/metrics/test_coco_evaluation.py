"""Tests for `keras_segattn.metrics.coco_evaluation` (pycocotools AP)."""

import re

import numpy as np
import pytest

from keras_segattn.metrics import COCO_STAT_NAMES
from keras_segattn.metrics import coco_ground_truth
from keras_segattn.metrics import coco_results
from keras_segattn.metrics import evaluate_coco
from keras_segattn.metrics import evaluate_detections

SIZE = 40


def _ground_truth():
    """Two images: three 10x10 squares (two in image 0), padded to M=3."""
    boxes = np.full((2, 3, 4), -1.0, np.float32)
    classes = np.full((2, 3), -1, np.int32)
    masks = np.zeros((2, 3, SIZE, SIZE), np.uint8)
    for n, m, (y, x), label in (
        (0, 0, (2, 2), 0),
        (0, 1, (20, 25), 1),
        (1, 0, (10, 5), 1),
    ):
        boxes[n, m] = [y, x, y + 10, x + 10]
        classes[n, m] = label
        masks[n, m, y : y + 10, x : x + 10] = 1
    return boxes, classes, masks


def _detections(boxes, classes, masks, scores=None):
    """The ground truth as TF OD API outputs with D=4 slots."""
    valid = classes >= 0
    out_boxes = np.zeros((2, 4, 4), np.float32)
    out_classes = np.zeros((2, 4), np.float32)
    out_scores = np.zeros((2, 4), np.float32)
    out_masks = np.zeros((2, 4, SIZE, SIZE), np.float32)
    counts = valid.sum(axis=1)
    for n in range(2):
        k = counts[n]
        out_boxes[n, :k] = boxes[n, valid[n]]
        out_classes[n, :k] = classes[n, valid[n]]
        out_scores[n, :k] = 0.9 if scores is None else scores[n][:k]
        out_masks[n, :k] = masks[n, valid[n]] * 0.8
    return (
        out_boxes,
        out_scores,
        out_classes,
        counts.astype(np.float32),
        (out_masks),
    )


def test_ground_truth_dict():
    boxes, classes, masks = _ground_truth()
    gt = coco_ground_truth(boxes, classes, masks, category_names=["a", "b"])
    assert [image["id"] for image in gt["images"]] == [0, 1]
    assert gt["images"][0]["height"] == SIZE
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 3]  # ids from 1
    first = gt["annotations"][0]
    assert first["bbox"] == [2.0, 2.0, 10.0, 10.0]  # x, y, w, h
    assert first["area"] == 100.0 and first["iscrowd"] == 0
    assert set(first["segmentation"]) == {"size", "counts"}
    assert gt["categories"] == [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]
    no_masks = coco_ground_truth(boxes, classes, image_size=(SIZE, SIZE))
    assert "segmentation" not in no_masks["annotations"][0]


def test_perfect_detections_score_one():
    gt_arrays = _ground_truth()
    gt = coco_ground_truth(*gt_arrays)
    results = coco_results(*_detections(*gt_arrays))
    assert len(results) == 3  # only the valid slots
    metrics = evaluate_coco(gt, results)
    for iou_type in ("bbox", "segm"):
        assert set(metrics[iou_type]) == set(COCO_STAT_NAMES)
        assert metrics[iou_type]["AP"] == pytest.approx(1.0)
        assert metrics[iou_type]["AP50"] == pytest.approx(1.0)


def test_errors_lower_ap_as_coco_defines_it():
    boxes, classes, masks = _ground_truth()
    gt = coco_ground_truth(boxes, classes, masks)
    out = list(_detections(boxes, classes, masks))
    # Image 1's only detection gets the wrong class: class 1 has two gt
    # instances, one found (precision 1 up to recall 0.5), so its AP is
    # 0.5 (101-point interpolation: 51 of 101 recall points), class 0's 1.
    out[2] = out[2].copy()
    out[2][1, 0] = 0
    metrics = evaluate_coco(gt, coco_results(*out), iou_types=("bbox",))
    # Class 0: the true detection (0.9) plus a false positive with the same
    # score found after it, precision 1 at recall 1 -> AP 1.
    assert metrics["bbox"]["AP50"] == pytest.approx((1.0 + 51 / 101) / 2)
    # Boxes shifted by half their size: IoU 1/3, below 0.5 everywhere.
    shifted = list(_detections(boxes, classes, masks))
    shifted[0] = shifted[0] + np.array([0, 5, 0, 5], np.float32)
    metrics = evaluate_coco(gt, coco_results(*shifted), iou_types=("bbox",))
    assert metrics["bbox"]["AP50"] == pytest.approx(0.0)


def test_mask_threshold_and_empty_results():
    boxes, classes, masks = _ground_truth()
    gt = coco_ground_truth(boxes, classes, masks)
    out = _detections(boxes, classes, masks)
    # Mask probabilities of 0.8 vanish at a 0.9 threshold: mask AP 0, box
    # AP still 1.
    metrics = evaluate_coco(gt, coco_results(*out, mask_threshold=0.9))
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)
    assert metrics["segm"]["AP"] == pytest.approx(0.0)
    empty = evaluate_coco(gt, [])
    assert empty["bbox"]["AP50"] == 0.0 and empty["segm"]["AR100"] == 0.0


def test_bad_arguments():
    boxes, classes, masks = _ground_truth()
    with pytest.raises(ValueError, match=re.escape("classes.shape=(2,)")):
        coco_ground_truth(boxes, classes[:, 0])
    with pytest.raises(ValueError, match="`image_size`"):
        coco_ground_truth(boxes, classes)
    out = list(_detections(boxes, classes, masks))
    with pytest.raises(ValueError, match="num_detections.shape=\\(1,\\)"):
        coco_results(*out[:3], out[3][:1])
    with pytest.raises(ValueError, match="Received: mask_threshold=1.0"):
        coco_results(*out, mask_threshold=1.0)
    with pytest.raises(ValueError, match="'keypoints'"):
        evaluate_coco(
            coco_ground_truth(boxes, classes, masks), [], ["keypoints"]
        )


def test_crowd_regions_are_ignored_as_cocoeval_does():
    # One object (rows 2..12) and one crowd region (rows 20..40); the
    # highest-scored detection covers a quarter of the crowd region.
    boxes = np.array([[[2, 2, 12, 12], [20, 20, 40, 40]]], np.float32)
    classes = np.array([[0, 0]], np.int32)
    detections = (
        np.array([[[20, 20, 30, 30], [2, 2, 12, 12]]], np.float32),
        np.array([[0.95, 0.9]], np.float32),
        np.array([[0, 0]], np.int32),
        np.array([2], np.int32),
    )
    results = coco_results(*detections)
    crowd = coco_ground_truth(
        boxes, classes, image_size=(48, 48), iscrowd=np.array([[0, 1]])
    )
    assert [a["iscrowd"] for a in crowd["annotations"]] == [0, 1]
    metrics = evaluate_coco(crowd, results, iou_types=("bbox",))
    assert metrics["bbox"]["AP50"] == pytest.approx(1.0)
    # The same region as an ordinary object: a false positive above the
    # true detection and an object never found.
    plain = coco_ground_truth(boxes, classes, image_size=(48, 48))
    metrics = evaluate_coco(plain, results, iou_types=("bbox",))
    assert metrics["bbox"]["AP50"] < 0.5
    with pytest.raises(ValueError, match="iscrowd.shape"):
        coco_ground_truth(
            boxes, classes, image_size=(48, 48), iscrowd=np.zeros((2, 2))
        )


def test_evaluate_detections_equals_the_three_steps():
    boxes, classes, masks = _ground_truth()
    scores = [[0.9, 0.2, 0.0], [0.6, 0.0, 0.0]]
    out = _detections(boxes, classes, masks, scores)
    out_boxes = out[0].copy()
    out_boxes[0, 1, 1::2] += 2.0  # IoU 2/3: a hit at 0.5, a miss at 0.75
    keys = ("detection_boxes", "detection_scores", "detection_classes")
    detections = dict(zip(keys, (out_boxes, out[1], out[2]), strict=True))
    detections["num_detections"] = out[3]
    detections["detection_masks"] = out[4]
    # With masks on both sides: bbox and segm, as evaluate_coco's default.
    expected = evaluate_coco(
        coco_ground_truth(boxes, classes, masks),
        coco_results(out_boxes, *out[1:]),
    )
    truth = {"boxes": boxes, "classes": classes, "masks": masks}
    assert evaluate_detections(truth, detections) == expected
    assert expected["bbox"]["AP75"] < expected["bbox"]["AP50"]
    # Without detection masks: bbox only, areas from the boxes.
    del detections["detection_masks"]
    expected = evaluate_coco(
        coco_ground_truth(boxes, classes, image_size=(SIZE, SIZE)),
        coco_results(out_boxes, *out[1:4]),
        iou_types=("bbox",),
    )
    assert expected.keys() == {"bbox"}
    result = evaluate_detections(truth, detections, image_size=(SIZE, SIZE))
    assert result == expected


def test_evaluate_detections_names_missing_keys():
    boxes, classes, masks = _ground_truth()
    out = _detections(boxes, classes, masks)
    with pytest.raises(ValueError, match=r"`ground_truth`.*\['classes'\]"):
        evaluate_detections({"boxes": boxes}, {})
    with pytest.raises(ValueError, match=r"`detections`.*'num_detections'"):
        evaluate_detections(
            {"boxes": boxes, "classes": classes},
            {"detection_boxes": out[0], "detection_scores": out[1]},
        )
