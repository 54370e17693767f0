"""ONNX and LiteRT export of each model family: conversion time and the
largest difference from Keras at batch 1 and 3 (onnxruntime, LiteRT
interpreter), or the error that names the op that does not convert.

    python benchmarks/bench_portable_export.py [NAME_SUBSTRING]

Small randomly initialised models (the README's export table comes from
this run); needs the `onnx` and `litert` extras.
"""

from __future__ import annotations

import tempfile
import time

from _timing import set_process_defaults

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from keras_segattn.export import export_litert  # noqa: E402
from keras_segattn.export import export_onnx  # noqa: E402
from keras_segattn.layers import SpatialTransformer  # noqa: E402
from keras_segattn.layers import build_localization_head  # noqa: E402
from keras_segattn.models import FasterRCNN  # noqa: E402
from keras_segattn.models import build_segmentation_model  # noqa: E402

_TINY_VGG = {"filters": (4, 4, 8, 8, 8), "convs_per_stage": 1}
_DETECTOR = dict(
    rpn_pre_nms_top_n_test=24,
    rpn_post_nms_top_n_test=8,
    box_head_units=16,
    max_detections=4,
    mask_head=True,
    mask_roi_output_size=7,
    mask_head_filters=4,
    mask_head_convs=1,
)


def _st_classifier():
    images = keras.Input((40, 40, 1), name="images")
    localization = keras.Sequential(
        [keras.layers.Flatten(), build_localization_head("affine")]
    )
    transformed = SpatialTransformer(localization, 24, transform="affine")(
        images
    )
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(transformed))
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(images, outputs, name="st_classifier")


MODELS = {
    "FCN-8s (vgg_small, 64x64)": lambda: build_segmentation_model(
        "fcn8s_small", 3, image_shape=(64, 64, 3)
    ),
    "DeconvNet (45x45)": lambda: build_segmentation_model(
        "deconvnet_tiny", 3, image_shape=(45, 45, 3)
    ),
    "SegNet (64x64)": lambda: build_segmentation_model(
        "segnet", 3, image_shape=(64, 64, 3), filters=(8, 16)
    ),
    "STN classifier (40x40)": _st_classifier,
    "Mask R-CNN, FPN": lambda: FasterRCNN(
        2,
        image_shape=(64, 64, 3),
        backbone_kwargs=_TINY_VGG,
        fpn=True,
        fpn_filters=8,
        anchor_sizes=None,
        **_DETECTOR,
    ),
    "Mask R-CNN, one level, 8 x 2 into NMS": lambda: FasterRCNN(
        2,
        image_shape=(32, 32, 3),
        backbone_kwargs=_TINY_VGG,
        anchor_sizes=(8.0, 16.0),
        **_DETECTOR,
    ),
    "Mask R-CNN, one level, 16 x 3 into NMS": lambda: FasterRCNN(
        3,
        image_shape=(32, 32, 3),
        backbone_kwargs=_TINY_VGG,
        anchor_sizes=(8.0, 16.0),
        **{**_DETECTOR, "rpn_post_nms_top_n_test": 16},
    ),
    # tf2onnx 1.17 cannot wire this one's NMS control flow (README); the
    # test suite checks the refusal.
    "Faster R-CNN, one level, 16 x 3 into NMS": lambda: FasterRCNN(
        3,
        image_shape=(32, 32, 3),
        backbone_kwargs=_TINY_VGG,
        anchor_sizes=(8.0, 16.0),
        rpn_pre_nms_top_n_test=48,
        rpn_post_nms_top_n_test=16,
        box_head_units=16,
        max_detections=6,
    ),
}


def _perturb(model, scale=0.02):
    """Noise on the constant-initialised weights (FCN's score layers start
    at zero, the STN head at the identity), so outputs depend on images."""
    rng = np.random.default_rng(0)
    for weight in model.weights:
        value = np.asarray(weight)
        if "float" in str(weight.dtype) and np.ptp(value) == 0:
            fan_in = value.shape[0] if value.ndim > 1 else 1
            noise = rng.normal(0, scale / np.sqrt(fan_in), value.shape)
            weight.assign(value + noise)
    return model


def _keras(model, images) -> list:
    outputs = model(images)
    if isinstance(outputs, dict):
        return [np.asarray(outputs[k]) for k in sorted(outputs)]
    return [np.asarray(outputs)]


def _onnx(path, images) -> list:
    session = onnxruntime.InferenceSession(path)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(
        zip(names, session.run(None, {"images": images}), strict=True)
    )
    return [outputs[k] for k in sorted(outputs)]


def _litert(path, images) -> list:
    interpreter = Interpreter(model_path=path)
    (signature,) = interpreter.get_signature_list()
    outputs = interpreter.get_signature_runner(signature)(images=images)
    return [outputs[k] for k in sorted(outputs)]


def main(only: str = "") -> None:
    """Prints the table; `only`: a substring of the model names to run."""
    print(
        "| model | format | convert s | max abs diff (batch 1, 3) "
        "| output range |"
    )
    print("| --- | --- | ---: | --- | ---: |")
    for name, build in MODELS.items():
        if only and only not in name:
            continue
        keras.utils.set_random_seed(0)
        model = _perturb(build())
        shape = tuple(model.inputs[0].shape[1:])
        for fmt, export, run in (
            ("ONNX", export_onnx, _onnx),
            ("LiteRT", export_litert, _litert),
        ):
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                try:
                    path = export(model, folder)
                except ValueError as error:
                    print(f"| {name} | {fmt} | - | refused: {error} | |")
                    continue
                seconds = time.perf_counter() - start
                diffs = []
                for batch in (1, 3):
                    rng = np.random.default_rng(batch)
                    images = rng.uniform(0, 255, (batch, *shape))
                    images = images.astype("float32")
                    expected = _keras(model, images)
                    got = run(path, images)
                    diffs.append(
                        max(
                            float(np.max(np.abs(g - e)))
                            for g, e in zip(got, expected, strict=True)
                        )
                    )
                spread = max(float(np.ptp(e)) for e in expected)
                print(
                    f"| {name} | {fmt} | {seconds:.1f} | "
                    f"{diffs[0]:.1e}, {diffs[1]:.1e} | {spread:.3g} |"
                )


if __name__ == "__main__":
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else "")
