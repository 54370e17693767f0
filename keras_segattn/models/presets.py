"""Segmentation presets: dicts of constructor arguments, no weights.

`FCN(num_classes, **SEGMENTATION_PRESETS["fcn8s_small"])` and
`DeconvNet(num_classes, **SEGMENTATION_PRESETS["deconvnet_small"])` build
them directly; `build_segmentation_model(name, num_classes)` picks the
builder from the name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import keras

from keras_segattn.models.deconvnet import DeconvNet
from keras_segattn.models.deconvnet import SegNet
from keras_segattn.models.fcn import FCN

_TINY_VGG = {"filters": (4, 8, 8, 16, 16), "convs_per_stage": 1}

SEGMENTATION_PRESETS = {
    # vgg_small backbone (about 2.9M parameters) + fc6/fc7 of width 256.
    "fcn32s_small": {
        "backbone": "vgg_small",
        "variant": "32s",
        "head_filters": 256,
    },
    "fcn16s_small": {
        "backbone": "vgg_small",
        "variant": "16s",
        "head_filters": 256,
    },
    "fcn8s_small": {
        "backbone": "vgg_small",
        "variant": "8s",
        "head_filters": 256,
    },
    # resnet_small backbone (residual blocks, about 4.3M parameters).
    "fcn8s_resnet_small": {
        "backbone": "resnet_small",
        "variant": "8s",
        "head_filters": 256,
    },
    # For tests: a few thousand parameters, no fc6/fc7 (fast XLA compile).
    "fcn8s_tiny": {
        "backbone": "vgg_small",
        "variant": "8s",
        "backbone_kwargs": _TINY_VGG,
    },
    "deconvnet_small": {"filters": (32, 64, 128, 256), "convs_per_stage": 2},
    "deconvnet_tiny": {"filters": (4, 8), "convs_per_stage": 1},
}

# Architecture name -> (builder, fixed arguments).
_ARCHITECTURES: dict[str, tuple[Callable[..., keras.Model], dict]] = {
    "fcn32s": (FCN, {"variant": "32s"}),
    "fcn16s": (FCN, {"variant": "16s"}),
    "fcn8s": (FCN, {"variant": "8s"}),
    "deconvnet": (DeconvNet, {}),
    "segnet": (SegNet, {}),
}


def build_segmentation_model(
    name: str, num_classes: int, **overrides
) -> keras.Model:
    """Builds a segmentation model from a preset or an architecture name.

    Args:
        name: a key of `SEGMENTATION_PRESETS` (`"fcn8s_small"`,
            `"deconvnet_small"`, ...) or an architecture name (`"fcn32s"`,
            `"fcn16s"`, `"fcn8s"`, `"deconvnet"`, `"segnet"`) built with
            its defaults. A preset's architecture is the part of its name
            before the first underscore.
        num_classes: int >= 1.
        **overrides: constructor arguments replacing the preset's (e.g.
            `image_shape=(128, 128, 3)`, `dtype="mixed_float16"`).

    Returns:
        The functional `keras.Model` (`"images"` -> `"mask_probs"`).

    Raises:
        ValueError: if `name` is neither a preset nor an architecture, or
            the builder rejects the arguments.

    Example:

    >>> model = build_segmentation_model("fcn8s_small", num_classes=11)
    """
    if name in SEGMENTATION_PRESETS:
        architecture = name.split("_", 1)[0]
        kwargs = copy.deepcopy(SEGMENTATION_PRESETS[name])
    elif name in _ARCHITECTURES:
        architecture, kwargs = name, {}
    else:
        raise ValueError(
            "Invalid value for argument `name`. Expected a preset "
            f"{sorted(SEGMENTATION_PRESETS)} or an architecture "
            f"{sorted(_ARCHITECTURES)}. Received: name={name!r}."
        )
    builder, fixed = _ARCHITECTURES[architecture]
    return builder(num_classes, **{**kwargs, **fixed, **overrides})
