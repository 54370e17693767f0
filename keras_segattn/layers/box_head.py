"""`BoxHead`: the Fast R-CNN head on pooled RoI features."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _roi_common


@keras.saving.register_keras_serializable(package="keras_segattn")
class BoxHead(keras.layers.Layer):
    """Class logits and class-specific box deltas for every pooled RoI.

    torchvision's `TwoMLPHead` followed by its `FastRCNNPredictor` (Ren et
    al., 2015): each RoI's pooled [h, w, C] features are flattened, go
    through two fully connected layers with ReLU (`units` wide, `fc6` and
    `fc7`), then two sibling linear layers give `num_classes + 1` logits
    (class 0 is the background) and `4 * (num_classes + 1)` deltas. The
    predictor's kernels start from N(0, 0.01) and N(0, 0.001) with zero
    biases, as in torchvision.

    Args:
        num_classes: int >= 1. Object classes, background excluded.
        units: int > 0. Width of the two hidden layers (torchvision: 1024).
        **kwargs: base `Layer` arguments.

    Call arguments:
        features: float tensor [B, R, h, w, C] of pooled RoIs (the output
            of `RoIAlign`, `RoIPool` or `MultiScaleRoIAlign`).

    Returns:
        Tuple `(class_logits, box_deltas)`: [B, R, K + 1] and
        [B, R, 4 (K + 1)] in the `compute_dtype`, K = `num_classes`.

    Raises:
        ValueError: for invalid arguments or features that are not a static
            [B, R, h, w, C].

    Example:

    >>> head = BoxHead(num_classes=3, units=32)
    >>> logits, deltas = head(keras.Input((10, 7, 7, 8)))
    >>> tuple(logits.shape), tuple(deltas.shape)
    ((None, 10, 4), (None, 10, 16))

    Reference:
        - [Girshick, "Fast R-CNN", ICCV 2015](
          https://arxiv.org/abs/1504.08083)
        - torchvision's `TwoMLPHead` and `FastRCNNPredictor`
          (pytorch/vision: torchvision/models/detection/faster_rcnn.py)
    """

    def __init__(self, num_classes: int, units: int = 1024, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = validation.check_num_classes(num_classes)
        self.units = validation.check_positive_int(units, "units")

    def build(self, features_shape):
        shape = _roi_common.check_pooled_shape(features_shape)
        dtype = self.dtype_policy
        self.fc6 = keras.layers.Dense(
            self.units, activation="relu", dtype=dtype, name="box_fc6"
        )
        self.fc7 = keras.layers.Dense(
            self.units, activation="relu", dtype=dtype, name="box_fc7"
        )
        self.class_logits = keras.layers.Dense(
            self.num_classes + 1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            dtype=dtype,
            name="box_class_logits",
        )
        self.box_deltas = keras.layers.Dense(
            4 * (self.num_classes + 1),
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            dtype=dtype,
            name="box_deltas",
        )
        flat = shape[2] * shape[3] * shape[4]
        self.fc6.build((None, shape[1], flat))
        self.fc7.build((None, shape[1], self.units))
        self.class_logits.build((None, shape[1], self.units))
        self.box_deltas.build((None, shape[1], self.units))

    def call(self, features):
        shape = _roi_common.check_pooled_shape(tuple(features.shape))
        x = ops.reshape(
            features, (-1, shape[1], shape[2] * shape[3] * shape[4])
        )
        x = self.fc7(self.fc6(x))
        return self.class_logits(x), self.box_deltas(x)

    def compute_output_shape(self, features_shape):
        shape = _roi_common.check_pooled_shape(features_shape)
        return (
            (shape[0], shape[1], self.num_classes + 1),
            (shape[0], shape[1], 4 * (self.num_classes + 1)),
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "units": self.units,
        }
