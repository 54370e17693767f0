"""`RPNHead`: the Region Proposal Network's convolutional head."""

from __future__ import annotations

import keras

from keras_segattn import validation


def _check_level_shapes(features_shape) -> list[tuple]:
    """The static [B, H_l, W_l, C] shapes of a list of levels, or raises."""
    if (
        not isinstance(features_shape, (list, tuple))
        or not features_shape
        or not all(isinstance(s, (list, tuple)) for s in features_shape)
    ):
        raise ValueError(
            "Invalid value for argument `features`. Expected a non-empty "
            "list of feature maps [B, H_l, W_l, C], one per level (a list "
            f"of one without a pyramid). Received: features with shape "
            f"{features_shape}."
        )
    shapes = [
        validation.check_rank(shape, 4, f"features[{i}]")
        for i, shape in enumerate(features_shape)
    ]
    channels = {shape[-1] for shape in shapes}
    if len(channels) != 1 or None in channels:
        raise ValueError(
            "Invalid value for argument `features`. Expected the same static "
            "number of channels on every level (one head serves them all). "
            f"Received: shapes {shapes}."
        )
    return shapes


@keras.saving.register_keras_serializable(package="keras_segattn")
class RPNHead(keras.layers.Layer):
    """Objectness logits and box deltas at every anchor of every level.

    torchvision's `RPNHead` (Ren et al., 2015): a 3x3 convolution with
    ReLU, then two sibling 1x1 convolutions giving `num_anchors` objectness
    logits and `4 * num_anchors` (dx, dy, dw, dh) deltas per location. The
    same three convolutions run on every level of a feature pyramid (Lin et
    al., 2017), so the layer takes a list of maps and returns two lists;
    a single-map detector passes a list of one. Kernels start from N(0,
    0.01) and biases from zero, as torchvision's.

    Args:
        num_anchors: int > 0. Anchors per location
            (`len(anchor_sizes) * len(aspect_ratios)` of a level).
        filters: int > 0 or None. Width of the 3x3 convolution; None keeps
            the features' channel count (torchvision's choice).
        **kwargs: base `Layer` arguments.

    Call arguments:
        features: list of float tensors [B, H_l, W_l, C], one per level,
            with the same C.

    Returns:
        Tuple `(objectness, deltas)` of lists, one entry per level:
        [B, H_l, W_l, A] logits and [B, H_l, W_l, 4 A] deltas, in the
        `compute_dtype`.

    Raises:
        ValueError: for invalid arguments, or `features` that is not a
            list of rank-4 maps with one static channel count.

    Example:

    >>> head = RPNHead(num_anchors=3)
    >>> levels = [keras.Input((16, 16, 8)), keras.Input((8, 8, 8))]
    >>> objectness, deltas = head(levels)
    >>> [tuple(o.shape) for o in objectness]
    [(None, 16, 16, 3), (None, 8, 8, 3)]

    Reference:
        - [Ren et al., "Faster R-CNN", NeurIPS 2015](
          https://arxiv.org/abs/1506.01497)
        - torchvision's `RPNHead` (pytorch/vision:
          torchvision/models/detection/rpn.py)
    """

    def __init__(self, num_anchors: int, filters: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = validation.check_positive_int(
            num_anchors, "num_anchors"
        )
        self.filters = (
            None
            if filters is None
            else validation.check_positive_int(filters, "filters")
        )

    def build(self, features_shape):
        shapes = _check_level_shapes(features_shape)
        channels = shapes[0][-1]
        init = keras.initializers.RandomNormal(stddev=0.01)
        common = {"kernel_initializer": init, "dtype": self.dtype_policy}
        self.conv = keras.layers.Conv2D(
            self.filters or channels,
            3,
            padding="same",
            activation="relu",
            name="rpn_conv",
            **common,
        )
        self.objectness = keras.layers.Conv2D(
            self.num_anchors, 1, name="rpn_objectness", **common
        )
        self.box_deltas = keras.layers.Conv2D(
            4 * self.num_anchors, 1, name="rpn_box_deltas", **common
        )
        level_shape = (None, None, None, channels)
        self.conv.build(level_shape)
        hidden_shape = (None, None, None, self.filters or channels)
        self.objectness.build(hidden_shape)
        self.box_deltas.build(hidden_shape)

    def call(self, features):
        _check_level_shapes([tuple(f.shape) for f in features])
        objectness, deltas = [], []
        for level in features:  # a few static levels, not data
            x = self.conv(level)
            objectness.append(self.objectness(x))
            deltas.append(self.box_deltas(x))
        return objectness, deltas

    def compute_output_shape(self, features_shape):
        shapes = _check_level_shapes(features_shape)
        return (
            [(*s[:3], self.num_anchors) for s in shapes],
            [(*s[:3], 4 * self.num_anchors) for s in shapes],
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_anchors": self.num_anchors,
            "filters": self.filters,
        }
