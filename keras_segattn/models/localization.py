"""Classification plus localisation: one backbone, two heads.

The OverFeat/"classification + localization" setting of one object per
image (Sermanet et al., 2014; the ILSVRC localisation task): a shared
convolutional backbone feeds a class head (global average pooling, a
dense layer, softmax) and a box head (a 1x1 convolution, the flattened
map, a dense layer, 4 sigmoid outputs: the normalised box `(ymin, xmin,
ymax, xmax)` in [0, 1], starting at (0.25, 0.25, 0.75, 0.75)). The two
are trained jointly with `loss={"classes": ..., "boxes": box_loss(...)}`
and `loss_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_segattn.layers.dropout import Dropout
from keras_segattn.models.backbones import VGG_SMALL
from keras_segattn.models.backbones import get_backbone
from keras_segattn.validation import check_num_classes
from keras_segattn.validation import check_one_of
from keras_segattn.validation import check_positive_float
from keras_segattn.validation import check_positive_int
from keras_segattn.validation import check_rate

BOX_LOSSES = ("smooth_l1", "l2")


def build_classifier_localizer(
    num_classes: int,
    image_shape: Sequence[int] = (128, 128, 3),
    backbone: str | keras.Model = VGG_SMALL,
    backbone_kwargs: dict[str, Any] | None = None,
    head_units: int = 128,
    dropout: float = 0.3,
    box_channels: int = 32,
    dtype=None,
) -> keras.Model:
    """Builds a functional classifier + box regressor on one backbone.

    Args:
        num_classes: int > 0.
        image_shape: static (H, W, C) of the float images (0..255).
        backbone: as `backbones.get_backbone` (`"vgg_small"`, a
            `keras.applications` name or a `keras.Model`).
        backbone_kwargs: e.g. `{"filters": (16, 32, 64, 128, 128)}`.
        head_units: int > 0, width of each head's hidden dense layer.
        dropout: float in [0, 1) before the class head's output layer.
        box_channels: int > 0, channels of the box head's 1x1 reduction
            before it flattens the feature map.
        dtype: dtype or dtype policy of the layers; the outputs are float32.

    Returns:
        A functional `keras.Model` named `classifier_localizer`, input
        `"images"` [B, H, W, C], outputs the dict `{"classes": softmax
        float32 [B, num_classes], "boxes": sigmoid float32 [B, 4]
        normalised (ymin, xmin, ymax, xmax)}`.

    Raises:
        ValueError: for bad arguments or an image shape that is not static.
    """
    num_classes = check_num_classes(num_classes)
    head_units = check_positive_int(head_units, "head_units")
    dropout = check_rate(dropout, "dropout")
    box_channels = check_positive_int(box_channels, "box_channels")
    image_shape = tuple(image_shape)
    if len(image_shape) != 3 or any(d is None for d in image_shape):
        raise ValueError(
            "Invalid value for argument `image_shape`. Expected a static "
            f"(H, W, C) (the box head flattens the feature map). Received: "
            f"image_shape={image_shape!r}."
        )
    features_model, _ = get_backbone(
        backbone,
        image_shape,
        backbone_kwargs=backbone_kwargs,
        dtype=dtype,
    )
    images = keras.Input(image_shape, name="images")
    features = features_model(images)

    x = keras.layers.GlobalAveragePooling2D(name="class_pool", dtype=dtype)(
        features
    )
    x = keras.layers.Dense(
        head_units, activation="relu", name="class_dense", dtype=dtype
    )(x)
    x = Dropout(dropout, name="class_dropout", dtype=dtype)(x)
    x = keras.layers.Dense(num_classes, name="class_logits", dtype=dtype)(x)
    classes = keras.layers.Activation(
        "softmax", dtype="float32", name="classes"
    )(x)

    # Boxes need the layout, so the box head flattens the feature map
    # (after a 1x1 reduction) instead of pooling it. Its logits start at
    # zero (every box at the image's centre half): a sigmoid pushed to
    # 0 or 1 early has no gradient left, and the head would stay there.
    y = keras.layers.Conv2D(
        box_channels,
        1,
        activation="relu",
        name="box_reduce",
        dtype=dtype,
    )(features)
    y = keras.layers.Flatten(name="box_flatten", dtype=dtype)(y)
    y = keras.layers.Dense(
        head_units, activation="relu", name="box_dense", dtype=dtype
    )(y)
    y = keras.layers.Dense(
        4,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(
            [-1.0986, -1.0986, 1.0986, 1.0986]
        ),
        name="box_logits",
        dtype=dtype,
    )(y)
    boxes = keras.layers.Activation("sigmoid", dtype="float32", name="boxes")(y)
    return keras.Model(
        images,
        {"classes": classes, "boxes": boxes},
        name="classifier_localizer",
    )


def box_loss(kind: str = "smooth_l1", beta: float = 0.1) -> keras.losses.Loss:
    """The box regression loss, averaged over the 4 coordinates.

    Args:
        kind: `"smooth_l1"`: `keras.losses.Huber(delta=beta)`, which is
            `beta` times Girshick's smooth-L1 with threshold `beta`
            (quadratic below `beta`, linear above); or `"l2"`: the mean
            squared error.
        beta: float > 0, the smooth-L1 threshold in normalised units
            (0.1 = a tenth of the image side).

    Returns:
        A built-in (serialisable) Keras loss named `kind`.

    Raises:
        ValueError: for an unknown `kind` or a bad `beta`.
    """
    check_one_of(kind, BOX_LOSSES, "kind")
    if kind == "l2":
        return keras.losses.MeanSquaredError(name="l2")
    return keras.losses.Huber(
        delta=check_positive_float(beta, "beta"), name="smooth_l1"
    )


def _box_iou(y_true, y_pred):
    ymin = ops.maximum(y_true[..., 0], y_pred[..., 0])
    xmin = ops.maximum(y_true[..., 1], y_pred[..., 1])
    ymax = ops.minimum(y_true[..., 2], y_pred[..., 2])
    xmax = ops.minimum(y_true[..., 3], y_pred[..., 3])
    inter = ops.maximum(ymax - ymin, 0.0) * ops.maximum(xmax - xmin, 0.0)

    def area(b):
        return ops.maximum(b[..., 2] - b[..., 0], 0.0) * ops.maximum(
            b[..., 3] - b[..., 1], 0.0
        )

    union = area(y_true) + area(y_pred) - inter
    return ops.where(union > 0, inter / ops.maximum(union, 1e-12), 0.0)


@keras.saving.register_keras_serializable(package="keras_segattn")
def box_iou(y_true, y_pred):
    """Per-example IoU of (ymin, xmin, ymax, xmax) boxes, a metric
    (`metrics={"boxes": [box_iou]}` reports its mean)."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    return _box_iou(y_true, y_pred)
