"""`MaskHead`: the Mask R-CNN branch on pooled RoI features."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _roi_common


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaskHead(keras.layers.Layer):
    """Per-class mask logits at twice the pooled size for every RoI.

    torchvision's `MaskRCNNHeads` + `MaskRCNNPredictor` (He et al., 2017):
    `num_convs` 3x3 convolutions with ReLU (`filters` wide), a stride-2
    2x2 transposed convolution with ReLU, then a 1x1 convolution giving
    one logit map per class, background included (`num_classes + 1`
    channels; the loss and the postprocessor read the channel of the
    class). Each RoI is convolved on its own: the RoIs are folded into the
    batch ([B R, m, m, C]). Kernels start as torchvision's, He normal
    (`kaiming_normal_(mode="fan_out")` differs only in the fan used).

    Args:
        num_classes: int >= 1. Object classes, background excluded.
        filters: int > 0. Width of the convolutions (torchvision: 256).
        num_convs: int >= 0. 3x3 convolutions before the upsampling (4).
        **kwargs: base `Layer` arguments.

    Call arguments:
        features: float tensor [B, R, m, m', C] of pooled RoIs.

    Returns:
        float tensor [B, R, 2 m, 2 m', K + 1] of mask logits in the
        `compute_dtype`.

    Raises:
        ValueError: for invalid arguments or features that are not a static
            [B, R, m, m', C].

    Example:

    >>> head = MaskHead(num_classes=3, filters=8, num_convs=1)
    >>> tuple(head(keras.Input((10, 7, 7, 8))).shape)
    (None, 10, 14, 14, 4)

    Reference:
        - [He et al., "Mask R-CNN", ICCV 2017](
          https://arxiv.org/abs/1703.06870)
        - torchvision's `MaskRCNNHeads` and `MaskRCNNPredictor`
          (pytorch/vision: torchvision/models/detection/mask_rcnn.py)
    """

    def __init__(
        self,
        num_classes: int,
        filters: int = 256,
        num_convs: int = 4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = validation.check_num_classes(num_classes)
        self.filters = validation.check_positive_int(filters, "filters")
        self.num_convs = validation.check_int(num_convs, "num_convs", minimum=0)

    def build(self, features_shape):
        shape = _roi_common.check_pooled_shape(features_shape)
        common = {"kernel_initializer": "he_normal", "dtype": self.dtype_policy}
        self.convs = [
            keras.layers.Conv2D(
                self.filters,
                3,
                padding="same",
                activation="relu",
                name=f"mask_conv{i + 1}",
                **common,
            )
            for i in range(self.num_convs)
        ]
        self.deconv = keras.layers.Conv2DTranspose(
            self.filters,
            2,
            strides=2,
            activation="relu",
            name="mask_deconv",
            **common,
        )
        self.logits = keras.layers.Conv2D(
            self.num_classes + 1, 1, name="mask_logits", **common
        )
        channels = shape[-1]
        for conv in self.convs:
            conv.build((None, *shape[2:4], channels))
            channels = self.filters
        self.deconv.build((None, *shape[2:4], channels))
        self.logits.build((None, 2 * shape[2], 2 * shape[3], self.filters))

    def call(self, features):
        shape = _roi_common.check_pooled_shape(tuple(features.shape))
        x = ops.reshape(features, (-1, *shape[2:]))  # RoIs into the batch
        for conv in self.convs:
            x = conv(x)
        x = self.logits(self.deconv(x))
        return ops.reshape(x, (-1, shape[1], *x.shape[1:]))

    def compute_output_shape(self, features_shape):
        shape = _roi_common.check_pooled_shape(features_shape)
        return (*shape[:2], 2 * shape[2], 2 * shape[3], self.num_classes + 1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "filters": self.filters,
            "num_convs": self.num_convs,
        }
