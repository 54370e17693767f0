"""Independent NumPy references of the detection ops (torchvision formulas).

Written from torchvision's Python sources (torchvision/models/detection/
_utils.py, anchor_utils.py, rpn.py, roi_heads.py and torchvision/ops/
boxes.py), with loops over images, boxes and classes; they never call the
ops under test.
"""

import math

import numpy as np

BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def random_boxes(rng, shape, low=0.0, high=64.0, min_size=2.0, max_size=30.0):
    """float32 (x1, y1, x2, y2) boxes of the given leading shape."""
    xy = rng.uniform(low, high, (*shape, 2))
    wh = rng.uniform(min_size, max_size, (*shape, 2))
    return np.concatenate([xy, xy + wh], -1).astype("float32")


def np_encode(boxes, anchors, weights):
    """torchvision `encode_boxes(reference_boxes=boxes, proposals=anchors)`."""
    boxes = np.asarray(boxes, "float64")
    anchors = np.asarray(anchors, "float64")
    wx, wy, ww, wh = weights
    aw = anchors[..., 2] - anchors[..., 0]
    ah = anchors[..., 3] - anchors[..., 1]
    ax = anchors[..., 0] + 0.5 * aw
    ay = anchors[..., 1] + 0.5 * ah
    gw = boxes[..., 2] - boxes[..., 0]
    gh = boxes[..., 3] - boxes[..., 1]
    gx = boxes[..., 0] + 0.5 * gw
    gy = boxes[..., 1] + 0.5 * gh
    return np.stack(
        [
            wx * (gx - ax) / aw,
            wy * (gy - ay) / ah,
            ww * np.log(gw / aw),
            wh * np.log(gh / ah),
        ],
        -1,
    )


def np_decode(deltas, anchors, weights, clip=BBOX_XFORM_CLIP):
    """torchvision `BoxCoder.decode_single`."""
    deltas = np.asarray(deltas, "float64")
    anchors = np.asarray(anchors, "float64")
    wx, wy, ww, wh = weights
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    cx = anchors[..., 0] + 0.5 * widths
    cy = anchors[..., 1] + 0.5 * heights
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw = np.minimum(deltas[..., 2] / ww, clip)
    dh = np.minimum(deltas[..., 3] / wh, clip)
    px, py = dx * widths + cx, dy * heights + cy
    pw, ph = np.exp(dw) * widths, np.exp(dh) * heights
    return np.stack(
        [px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], -1
    )


def np_box_iou(a, b):
    """IoU matrix [len(a), len(b)] of (x1, y1, x2, y2) boxes."""
    a = np.asarray(a, "float64")
    b = np.asarray(b, "float64")
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(min(p[2], q[2]) - max(p[0], q[0]), 0.0)
            ih = max(min(p[3], q[3]) - max(p[1], q[1]), 0.0)
            inter = iw * ih
            union = (
                (p[2] - p[0]) * (p[3] - p[1])
                + (q[2] - q[0]) * (q[3] - q[1])
                - inter
            )
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def np_match(boxes, gt_boxes, high, low, allow_low_quality):
    """torchvision `Matcher` for one image; padding gt (-1) rows skipped and
    a ground truth with best IoU 0 making no low-quality match."""
    gt_rows = [
        j for j, g in enumerate(gt_boxes) if not np.all(np.asarray(g) == -1)
    ]
    matches = -np.ones(len(boxes), "int64")
    if not gt_rows:
        return matches
    iou = np_box_iou(boxes, np.asarray(gt_boxes)[gt_rows])  # [N, G]
    for i in range(len(boxes)):
        best = int(np.argmax(iou[i]))
        value = iou[i, best]
        if value >= high:
            matches[i] = gt_rows[best]
        elif value >= low:
            matches[i] = -2
    if allow_low_quality:
        for g in range(len(gt_rows)):
            highest = iou[:, g].max()
            if highest <= 0:
                continue
            for i in range(len(boxes)):
                if iou[i, g] == highest:
                    matches[i] = gt_rows[int(np.argmax(iou[i]))]
    return matches


def np_nms(boxes, scores, iou_threshold):
    """Greedy NMS (torchvision `nms`): kept indices by decreasing score."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(
            np_box_iou([boxes[i]], [boxes[k]])[0, 0] <= iou_threshold
            for k in keep
        ):
            keep.append(i)
    return keep


def np_batched_nms(boxes, scores, idxs, iou_threshold):
    """torchvision `batched_nms`: NMS per category, merged by score."""
    keep = []
    for category in sorted(set(idxs)):
        members = [i for i in range(len(scores)) if idxs[i] == category]
        kept = np_nms(
            [boxes[i] for i in members],
            [scores[i] for i in members],
            iou_threshold,
        )
        keep.extend(members[k] for k in kept)
    return sorted(keep, key=lambda i: -scores[i])


def np_clip(boxes, height, width):
    boxes = np.array(boxes, "float64")
    boxes[..., 0::2] = np.clip(boxes[..., 0::2], 0, width)
    boxes[..., 1::2] = np.clip(boxes[..., 1::2], 0, height)
    return boxes
