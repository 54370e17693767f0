"""`ProposalGenerator`: anchors + RPN outputs -> region proposals."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn.ops import validation
from keras_segattn.ops._boxes import check_fraction
from keras_segattn.ops._boxes import check_non_negative_float
from keras_segattn.ops.anchors import generate_anchors
from keras_segattn.ops.anchors import num_anchors_per_location
from keras_segattn.ops.generate_proposals import generate_proposals


@keras.saving.register_keras_serializable(package="keras_segattn")
class ProposalGenerator(keras.layers.Layer):
    """Decodes an RPN head's outputs at its anchors into region proposals.

    The proposal stage of Faster R-CNN's Region Proposal Network (Ren et
    al., 2015), a thin wrapper over `keras_segattn.ops.generate_anchors`
    and `generate_proposals`, matching torchvision's `AnchorGenerator` and
    `RegionProposalNetwork.filter_proposals` for one feature map: best
    `pre_nms_top_n` anchors by objectness, decoded, clipped to the image,
    tiny boxes removed, NMS, best `post_nms_top_n` kept, padded with four
    -1. As in torchvision the counts differ in training (`training=True`)
    and inference. Weightless; coordinates stay float32 (`autocast=False`).

    Args:
        image_size: int or (height, width) of the model's input images.
        anchor_sizes: anchor sizes in pixels (square roots of the areas).
        aspect_ratios: anchor height / width ratios.
        pre_nms_top_n_train, pre_nms_top_n_test: int > 0. Boxes kept
            before NMS in training and inference.
        post_nms_top_n_train, post_nms_top_n_test: int > 0. Proposals
            returned per image in training and inference.
        nms_threshold: float in [0, 1].
        min_size: float >= 0. Smallest proposal width and height, pixels.
        score_threshold: float in [0, 1]. Smallest objectness probability.
        **kwargs: base `Layer` arguments.

    Call arguments:
        objectness: float tensor [B, H, W, A] of logits, A anchors per
            location (`len(anchor_sizes) * len(aspect_ratios)`).
        deltas: float tensor [B, H, W, 4 A] of (dx, dy, dw, dh) per anchor.
        training: bool, selects the `*_train` counts.

    Returns:
        Tuple `(proposals, scores)`: float32 [B, P, 4] of (x1, y1, x2, y2)
        pixels (padding rows four -1) and float32 [B, P] probabilities,
        with P = `post_nms_top_n_test` (or `_train` when training).

    Raises:
        ValueError: on invalid arguments in `__init__`; when called, on a
            non-static feature-map size or channels other than A and 4 A.
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        anchor_sizes: Sequence[float] = (32.0, 64.0, 128.0),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        pre_nms_top_n_train: int = 2000,
        pre_nms_top_n_test: int = 1000,
        post_nms_top_n_train: int = 2000,
        post_nms_top_n_test: int = 1000,
        nms_threshold: float = 0.7,
        min_size: float = 1e-3,
        score_threshold: float = 0.0,
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)
        self.image_size = validation.standardize_size(image_size, "image_size")
        self.num_anchors = num_anchors_per_location(anchor_sizes, aspect_ratios)
        self.anchor_sizes = tuple(float(s) for s in anchor_sizes)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        check = validation.check_positive_int
        self.pre_nms_top_n_train = check(
            pre_nms_top_n_train, "pre_nms_top_n_train"
        )
        self.pre_nms_top_n_test = check(
            pre_nms_top_n_test, "pre_nms_top_n_test"
        )
        self.post_nms_top_n_train = check(
            post_nms_top_n_train, "post_nms_top_n_train"
        )
        self.post_nms_top_n_test = check(
            post_nms_top_n_test, "post_nms_top_n_test"
        )
        self.nms_threshold = check_fraction(nms_threshold, "nms_threshold")
        self.min_size = check_non_negative_float(min_size, "min_size")
        self.score_threshold = check_fraction(
            score_threshold, "score_threshold"
        )

    def anchors(self, feature_size: Sequence[int]):
        """float32 [H * W * A, 4] anchors of a feature map of this size."""
        return generate_anchors(
            self.image_size, feature_size, self.anchor_sizes, self.aspect_ratios
        )

    def _check_shapes(self, objectness_shape, deltas_shape) -> tuple:
        shape = validation.check_rank(objectness_shape, 4, "objectness")
        validation.check_rank(deltas_shape, 4, "deltas")
        validation.check_static_dims(
            objectness_shape, {3: self.num_anchors}, "objectness"
        )
        validation.check_static_dims(
            deltas_shape,
            {1: shape[1], 2: shape[2], 3: 4 * self.num_anchors},
            "deltas",
        )
        if shape[1] is None or shape[2] is None:
            raise ValueError(
                "Invalid shape for argument `objectness`. Expected a static "
                "feature-map size [B, H, W, A] (the anchors are constants). "
                f"Received: objectness.shape={shape}."
            )
        return shape

    def call(self, objectness, deltas, training=None):
        shape = self._check_shapes(objectness.shape, deltas.shape)
        pre, post = (
            (self.pre_nms_top_n_train, self.post_nms_top_n_train)
            if training
            else (self.pre_nms_top_n_test, self.post_nms_top_n_test)
        )
        return generate_proposals(
            ops.cast(objectness, "float32"),
            ops.cast(deltas, "float32"),
            self.anchors(tuple(shape[1:3])),
            self.image_size,
            pre_nms_top_n=pre,
            post_nms_top_n=post,
            nms_threshold=self.nms_threshold,
            min_size=self.min_size,
            score_threshold=self.score_threshold,
        )

    def compute_output_shape(self, objectness_shape, deltas_shape):
        shape = self._check_shapes(objectness_shape, deltas_shape)
        post = self.post_nms_top_n_test
        return (shape[0], post, 4), (shape[0], post)

    def compute_output_spec(self, objectness, deltas, training=None):
        boxes_shape, scores_shape = self.compute_output_shape(
            objectness.shape, deltas.shape
        )
        return (
            keras.KerasTensor(boxes_shape, dtype="float32"),
            keras.KerasTensor(scores_shape, dtype="float32"),
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "anchor_sizes": self.anchor_sizes,
            "aspect_ratios": self.aspect_ratios,
            "pre_nms_top_n_train": self.pre_nms_top_n_train,
            "pre_nms_top_n_test": self.pre_nms_top_n_test,
            "post_nms_top_n_train": self.post_nms_top_n_train,
            "post_nms_top_n_test": self.post_nms_top_n_test,
            "nms_threshold": self.nms_threshold,
            "min_size": self.min_size,
            "score_threshold": self.score_threshold,
        }
