"""Overfeat multi-scale sliding-window detection (Sermanet et al., 2014).

Sermanet et al., "OverFeat: Integrated Recognition, Localization and
Detection using Convolutional Networks" (ICLR 2014), secs. 3.3-4.6: a
classifier and a box regressor trained on fixed-size windows are run fully
convolutionally (`convolutionalize`) over an image pyramid, giving per
scale a map of class scores and a box prediction at every window
position; each position's box is mapped back to image pixels through the
scale, the window and the network's stride, and the boxes of all scales
are combined by Overfeat's greedy merge (`ops.overfeat_merge`) or by
per-class NMS (`ops.batched_nms`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_segattn import validation
from keras_segattn.models.convolutionalize import convolutionalize
from keras_segattn.models.convolutionalize import sliding_window_geometry
from keras_segattn.ops.batched_nms import batched_nms
from keras_segattn.ops.overfeat_merge import overfeat_merge

MERGE_METHODS = ("overfeat", "nms")


def check_scales(scales) -> tuple[float, ...]:
    """`scales` as a non-empty tuple of finite positive floats."""
    try:
        values = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        values = ()
    if not values or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(
            "Invalid value for argument `scales`. Expected a non-empty "
            "sequence of strictly positive pyramid scales. Received: "
            f"scales={scales!r}."
        )
    return values


class OverfeatDetector:
    """Multi-scale sliding-window detector from a window classifier.

    An inference pipeline (not a trainable Keras model): the classifier
    and the box regressor are trained on windows of their input size;
    this class converts them with `convolutionalize` (weights copied) and
    runs them over a pyramid of resized images. Everything is `keras.ops`
    with static shapes per image size; the pyramid loop is over the few
    static scales.

    Args:
        classifier: model on windows [B, h, w, C] returning class
            probabilities [B, K] (see `convolutionalize` for the layers it
            may use).
        box_regressor: None or a model on the same windows returning
            [B, 4] boxes (x1, y1, x2, y2) as fractions of the window
            (0..1). None: each detection is its window.
        scales: pyramid scales (> 0); scale s resizes the image to
            round(s * H) x round(s * W), which must be at least a window.
        background_class: None or the class id that is never detected.
        score_threshold: float in [0, 1]: positions whose best
            (non-background) class probability is below it are dropped.
        max_candidates: int > 0: the top positions over all scales that
            go to the merge (a static count).
        merge: "overfeat" (greedy merge) or "nms".
        merge_threshold: float: pairs merge while their match score is
            below it (merge="overfeat").
        distance_scale: float > 0 or None: unit of the centre distance in
            the match score (default: the window height in image pixels
            at scale 1).
        weighting: "score" or "mean", see `ops.overfeat_merge`.
        iou_threshold: float in [0, 1] (merge="nms").
        max_detections: int > 0: detections returned per image.

    Raises:
        ValueError: for pyramid scales that are not positive (naming
            `scales`), an unknown `merge`, a regressor whose window or
            stride differ from the classifier's, or layers that cannot be
            convolutionalized (naming the layer).
    """

    def __init__(
        self,
        classifier: keras.Model,
        box_regressor: keras.Model | None = None,
        *,
        scales: Sequence[float] = (1.0,),
        background_class: int | None = None,
        score_threshold: float = 0.5,
        max_candidates: int = 256,
        merge: str = "overfeat",
        merge_threshold: float = 1.0,
        distance_scale: float | None = None,
        weighting: str = "score",
        iou_threshold: float = 0.5,
        max_detections: int = 100,
    ):
        self.scales = check_scales(scales)
        self.merge = validation.check_one_of(merge, MERGE_METHODS, "merge")
        self.score_threshold = validation.check_fraction(
            score_threshold, "score_threshold"
        )
        self.iou_threshold = validation.check_fraction(
            iou_threshold, "iou_threshold"
        )
        self.max_candidates = validation.check_positive_int(
            max_candidates, "max_candidates"
        )
        self.max_detections = validation.check_positive_int(
            max_detections, "max_detections"
        )
        self.merge_threshold = float(merge_threshold)
        self.weighting = validation.check_one_of(
            weighting, ("score", "mean"), "weighting"
        )
        self.background_class = (
            None if background_class is None else int(background_class)
        )
        geometry = sliding_window_geometry(classifier)
        self.window, self.stride = geometry["window"], geometry["stride"]
        if box_regressor is not None:
            other = sliding_window_geometry(box_regressor)
            if other != geometry:
                raise ValueError(
                    "Invalid value for argument `box_regressor`. Expected "
                    f"the classifier's window and stride {geometry}. "
                    f"Received: {other}."
                )
        self.distance_scale = (
            float(self.window[0])
            if distance_scale is None
            else validation.check_positive_float(
                distance_scale, "distance_scale"
            )
        )
        self.classifier = convolutionalize(classifier)
        self.box_regressor = (
            None if box_regressor is None else convolutionalize(box_regressor)
        )

    def pyramid_sizes(self, image_size) -> list[tuple[int, int]]:
        """(height, width) of each pyramid level of an image size."""
        height, width = (int(s) for s in image_size)
        sizes = []
        for scale in self.scales:
            size = (int(round(scale * height)), int(round(scale * width)))
            if size[0] < self.window[0] or size[1] < self.window[1]:
                raise ValueError(
                    "Invalid value for argument `scales`. Expected scales "
                    f"that keep the {height}x{width} image at least one "
                    f"{self.window} window. Received: scale {scale} gives "
                    f"{size}."
                )
            sizes.append(size)
        return sizes

    def score_maps(self, images) -> list[dict]:
        """Class score maps and image-pixel boxes, per pyramid scale.

        Args:
            images: float [B, H, W, C], as the classifier takes them.

        Returns:
            list (one per scale) of dicts: `scale`, `size` (resized
            (height, width)), `scores` [B, h, w, K] class probabilities and
            `boxes` [B, h, w, 4] (x1, y1, x2, y2) in pixels of the input
            images, for each window position.
        """
        images = ops.convert_to_tensor(images, "float32")
        height, width = images.shape[1], images.shape[2]
        levels = []
        wh, ww = self.window
        sy, sx = self.stride
        for scale, size in zip(
            self.scales, self.pyramid_sizes((height, width)), strict=True
        ):
            if size == (height, width):
                resized = images
            else:
                resized = ops.image.resize(
                    images, size, interpolation="bilinear", antialias=True
                )
            scores = self.classifier(resized, training=False)
            rows, cols = scores.shape[1], scores.shape[2]
            y0 = ops.cast(ops.arange(rows) * sy, "float32")[:, None]
            x0 = ops.cast(ops.arange(cols) * sx, "float32")[None, :]
            y0 = ops.broadcast_to(y0, (rows, cols))
            x0 = ops.broadcast_to(x0, (rows, cols))
            if self.box_regressor is None:
                relative = ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0])
                relative = ops.broadcast_to(relative, (1, rows, cols, 4))
            else:
                relative = self.box_regressor(resized, training=False)
            # Back to input pixels: resized size -> input size.
            ry, rx = height / size[0], width / size[1]
            boxes = ops.stack(
                [
                    (x0 + relative[..., 0] * ww) * rx,
                    (y0 + relative[..., 1] * wh) * ry,
                    (x0 + relative[..., 2] * ww) * rx,
                    (y0 + relative[..., 3] * wh) * ry,
                ],
                axis=-1,
            )
            boxes = ops.broadcast_to(boxes, (scores.shape[0], rows, cols, 4))
            levels.append(
                {"scale": scale, "size": size, "scores": scores, "boxes": boxes}
            )
        return levels

    def candidates(self, images, levels=None):
        """The top window detections of all scales, before merging.

        Returns:
            `(boxes, scores, classes, valid)`: [B, N, 4] (x1, y1, x2, y2)
            pixels, [B, N], [B, N] int32, [B, N] bool, N =
            min(max_candidates, number of positions): each position's best
            non-background class and its probability, valid where it
            reaches `score_threshold`.
        """
        levels = self.score_maps(images) if levels is None else levels
        all_boxes, all_scores, all_classes = [], [], []
        for level in levels:
            scores = level["scores"]
            num_classes = scores.shape[-1]
            flat = ops.reshape(scores, (scores.shape[0], -1, num_classes))
            if self.background_class is not None:
                keep = ops.arange(num_classes) != self.background_class
                flat = ops.where(keep[None, None], flat, -1.0)
            all_scores.append(ops.max(flat, axis=-1))
            all_classes.append(ops.cast(ops.argmax(flat, axis=-1), "int32"))
            all_boxes.append(
                ops.reshape(level["boxes"], (scores.shape[0], -1, 4))
            )
        boxes = ops.concatenate(all_boxes, axis=1)
        scores = ops.concatenate(all_scores, axis=1)
        classes = ops.concatenate(all_classes, axis=1)
        k = min(self.max_candidates, scores.shape[1])
        scores, order = ops.top_k(scores, k)
        boxes = ops.take_along_axis(boxes, order[..., None], axis=1)
        classes = ops.take_along_axis(classes, order, axis=1)
        return boxes, scores, classes, scores >= self.score_threshold

    def detect(self, images, levels=None) -> dict:
        """Detections as TF OD API tensors (for `metrics.coco_results`).

        Args:
            images: float [B, H, W, C].
            levels: optional `score_maps(images)` output, to reuse.

        Returns:
            dict of NumPy arrays: `detection_boxes` [B, D, 4] (ymin, xmin,
            ymax, xmax) pixels, `detection_scores` [B, D] (merged: summed
            window probabilities; NMS: the kept window's),
            `detection_classes` [B, D] int32, `num_detections` [B] int32,
            D = max_detections.
        """
        boxes, scores, classes, valid = self.candidates(images, levels)
        if self.merge == "overfeat":
            boxes, scores, classes, valid = overfeat_merge(
                boxes,
                scores,
                classes,
                valid,
                threshold=self.merge_threshold,
                distance_scale=self.distance_scale,
                weighting=self.weighting,
                max_output_size=self.max_detections,
            )
        else:
            index, valid = batched_nms(
                boxes,
                scores,
                self.max_detections,
                self.iou_threshold,
                idxs=classes,
                valid=valid,
            )
            boxes = ops.take_along_axis(boxes, index[..., None], axis=1)
            scores = ops.take_along_axis(scores, index, axis=1)
            classes = ops.take_along_axis(classes, index, axis=1)
        boxes = np.asarray(boxes)
        valid = np.asarray(valid)
        yxyx = boxes[..., [1, 0, 3, 2]] * valid[..., None]
        return {
            "detection_boxes": yxyx.astype(np.float32),
            "detection_scores": np.asarray(scores, np.float32) * valid,
            "detection_classes": np.asarray(classes, np.int32) * valid,
            "num_detections": valid.sum(axis=1).astype(np.int32),
        }
