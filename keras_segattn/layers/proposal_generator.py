"""`ProposalGenerator`: anchors + RPN outputs -> region proposals."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.ops.anchors import generate_anchors
from keras_segattn.ops.anchors import num_anchors_per_location
from keras_segattn.ops.generate_proposals import _flatten_head_output
from keras_segattn.ops.generate_proposals import generate_proposals
from keras_segattn.validation import check_fraction
from keras_segattn.validation import check_non_negative_float


def _is_nested(anchor_sizes) -> bool:
    return isinstance(anchor_sizes, (list, tuple)) and any(
        isinstance(s, (list, tuple)) for s in anchor_sizes
    )


def _standardize_anchor_sizes(anchor_sizes, aspect_ratios) -> tuple:
    """Flat floats (one level) or one sequence of floats per level, each
    level with the same number of anchors per location (one shared RPN
    head); returns `(anchor_sizes, num_anchors)`."""
    if not _is_nested(anchor_sizes):
        num_anchors = num_anchors_per_location(anchor_sizes, aspect_ratios)
        return tuple(float(s) for s in anchor_sizes), num_anchors
    counts = [
        num_anchors_per_location(sizes, aspect_ratios) for sizes in anchor_sizes
    ]
    if len(set(counts)) != 1:
        raise ValueError(
            "Invalid value for argument `anchor_sizes`. Expected the same "
            "number of sizes on every pyramid level (one RPN head serves "
            f"all levels). Received: anchor_sizes={anchor_sizes!r}."
        )
    sizes = tuple(
        tuple(
            float(s)
            for s in (level if isinstance(level, (list, tuple)) else (level,))
        )
        for level in anchor_sizes
    )
    return sizes, counts[0]


def _one_level(value):
    """A list of one map (or one map's shape, or one feature size) as the
    map itself: the single-level form of the per-level lists."""
    if (
        isinstance(value, (list, tuple))
        and len(value) == 1
        and not isinstance(value[0], (int, float))
    ):
        return value[0]
    return value


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

    With one sequence of sizes per level (`anchor_sizes=((32,), (64,),
    (128,))`, torchvision's FPN `AnchorGenerator` style) the layer is
    called on lists of maps, one per level, finest first, and follows
    `filter_proposals` over a feature pyramid: the best `pre_nms_top_n`
    of each level, NMS within each level, the best `post_nms_top_n` of
    all levels (`generate_proposals` with `num_anchors_per_level`).

    Args:
        image_size: int or (height, width) of the model's input images.
        anchor_sizes: anchor sizes in pixels (square roots of the areas),
            or one sequence of sizes per pyramid level (each with as many
            sizes), finest level first.
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
            location (`len(anchor_sizes) * len(aspect_ratios)`), or a list
            of one such map; with per-level sizes a list of
            [B, H_l, W_l, A], one per level.
        deltas: float tensor [B, H, W, 4 A] of (dx, dy, dw, dh) per anchor,
            or a list of [B, H_l, W_l, 4 A] like `objectness`.
        training: bool, selects the `*_train` counts.

    Returns:
        Tuple `(proposals, scores)`: float32 [B, P, 4] of (x1, y1, x2, y2)
        pixels (padding rows four -1) and float32 [B, P] probabilities,
        with P = `post_nms_top_n_test` (or `_train` when training).

    Raises:
        ValueError: on invalid arguments in `__init__`; when called, on a
            non-static feature-map size, channels other than A and 4 A, or
            a number of maps other than the levels of `anchor_sizes`.
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
        self.anchor_sizes, self.num_anchors = _standardize_anchor_sizes(
            anchor_sizes, aspect_ratios
        )
        self.num_levels = (
            len(self.anchor_sizes) if _is_nested(self.anchor_sizes) else None
        )
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

    def anchors(self, feature_size: Sequence[int] | Sequence[Sequence[int]]):
        """float32 [H * W * A, 4] anchors of a feature map of this size;
        with per-level sizes, `feature_size` is one (H_l, W_l) per level
        and the anchors of the levels are concatenated, finest first."""
        if self.num_levels is None:
            return generate_anchors(
                self.image_size,
                _one_level(feature_size),
                self.anchor_sizes,
                self.aspect_ratios,
            )
        if len(feature_size) != self.num_levels:
            raise ValueError(
                "Invalid value for argument `feature_size`. Expected one "
                f"(height, width) per pyramid level ({self.num_levels}). "
                f"Received: feature_size={feature_size!r}."
            )
        return ops.concatenate(
            [
                generate_anchors(
                    self.image_size, size, sizes, self.aspect_ratios
                )
                for size, sizes in zip(
                    feature_size, self.anchor_sizes, strict=True
                )
            ],
            axis=0,
        )

    def _check_level(self, objectness_shape, deltas_shape, suffix="") -> tuple:
        objectness_name, deltas_name = f"objectness{suffix}", f"deltas{suffix}"
        shape = validation.check_rank(objectness_shape, 4, objectness_name)
        validation.check_rank(deltas_shape, 4, deltas_name)
        validation.check_static_dims(
            objectness_shape, {3: self.num_anchors}, objectness_name
        )
        validation.check_static_dims(
            deltas_shape,
            {1: shape[1], 2: shape[2], 3: 4 * self.num_anchors},
            deltas_name,
        )
        if shape[1] is None or shape[2] is None:
            raise ValueError(
                f"Invalid shape for argument `{objectness_name}`. Expected a "
                "static feature-map size [B, H, W, A] (the anchors are "
                f"constants). Received: {objectness_name}.shape={shape}."
            )
        return shape

    def _check_shapes(self, objectness_shape, deltas_shape) -> list[tuple]:
        """The [B, H_l, W_l, A] shapes of the levels (one without levels)."""
        if self.num_levels is None:
            return [
                self._check_level(
                    _one_level(objectness_shape), _one_level(deltas_shape)
                )
            ]
        for value, name in (
            (objectness_shape, "objectness"),
            (deltas_shape, "deltas"),
        ):
            if (
                not isinstance(value, (list, tuple))
                or len(value) != self.num_levels
                or not all(isinstance(s, (list, tuple)) for s in value)
            ):
                raise ValueError(
                    f"Invalid value for argument `{name}`. Expected a list of "
                    f"{self.num_levels} maps, one per level of "
                    f"`anchor_sizes`. Received: {name} of shape {value}."
                )
        return [
            self._check_level(o, d, f"[{i}]")
            for i, (o, d) in enumerate(
                zip(objectness_shape, deltas_shape, strict=True)
            )
        ]

    def flatten_head_outputs(self, objectness, deltas) -> tuple:
        """RPN head maps (one, or a list per level) -> float32 logits
        [B, N], deltas [B, N, 4] in the order of `anchors`, and the anchor
        count of each level (None for one map)."""
        if self.num_levels is None:
            objectness = [_one_level(objectness)]
            deltas = [_one_level(deltas)]
        logits = [
            _flatten_head_output(ops.cast(o, "float32"), "objectness", 1)
            for o in objectness
        ]
        flat_deltas = [
            _flatten_head_output(ops.cast(d, "float32"), "deltas", 4)
            for d in deltas
        ]
        if len(logits) == 1:
            return logits[0], flat_deltas[0], None
        counts = [x.shape[1] for x in logits]
        return (
            ops.concatenate(logits, axis=1),
            ops.concatenate(flat_deltas, axis=1),
            counts,
        )

    def call(self, objectness, deltas, training=None):
        if self.num_levels is None:
            objectness, deltas = _one_level(objectness), _one_level(deltas)
            objectness_shape, deltas_shape = objectness.shape, deltas.shape
        else:
            objectness_shape = [tuple(o.shape) for o in objectness]
            deltas_shape = [tuple(d.shape) for d in deltas]
        shapes = self._check_shapes(objectness_shape, deltas_shape)
        pre, post = (
            (self.pre_nms_top_n_train, self.post_nms_top_n_train)
            if training
            else (self.pre_nms_top_n_test, self.post_nms_top_n_test)
        )
        sizes = [tuple(shape[1:3]) for shape in shapes]
        objectness, deltas, num_anchors_per_level = self.flatten_head_outputs(
            objectness, deltas
        )
        return generate_proposals(
            objectness,
            deltas,
            self.anchors(sizes if self.num_levels else sizes[0]),
            self.image_size,
            pre_nms_top_n=pre,
            post_nms_top_n=post,
            nms_threshold=self.nms_threshold,
            min_size=self.min_size,
            score_threshold=self.score_threshold,
            num_anchors_per_level=num_anchors_per_level,
        )

    def compute_output_shape(self, objectness_shape, deltas_shape):
        batch = self._check_shapes(objectness_shape, deltas_shape)[0][0]
        post = self.post_nms_top_n_test
        return (batch, post, 4), (batch, post)

    def compute_output_spec(self, objectness, deltas, training=None):
        if self.num_levels is None:
            objectness, deltas = _one_level(objectness), _one_level(deltas)
            shapes = objectness.shape, deltas.shape
        else:
            shapes = (
                [tuple(o.shape) for o in objectness],
                [tuple(d.shape) for d in deltas],
            )
        boxes_shape, scores_shape = self.compute_output_shape(*shapes)
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
