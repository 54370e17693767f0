"""FastRCNN and RCNN: detectors on given proposals (no RPN)."""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_detector_for_serving
from keras_segattn.export import export_proposal_detector_for_serving
from keras_segattn.metrics import coco_ground_truth
from keras_segattn.metrics import coco_results
from keras_segattn.metrics import evaluate_coco
from keras_segattn.models import RCNN
from keras_segattn.models import FasterRCNN
from keras_segattn.models import FastRCNN
from keras_segattn.ops import roi_align
from tests.models.helpers import spy_on_roi_pool_training

SIZE, NUM_PROPOSALS, NUM_CLASSES = 32, 4, 3
TINY = {
    "image_shape": (SIZE, SIZE, 3),
    "num_proposals": NUM_PROPOSALS,
    "backbone_kwargs": {"filters": (4, 8, 8, 8, 8), "convs_per_stage": 1},
    "box_head_units": 32,
    "box_batch_size_per_image": 8,
    "max_detections": 4,
    "seed": 0,
}


def tiny_scenes():
    """Two 32x32 images with one or two coloured squares (class = the
    colour channel) and their boxes (yxyx pixels, padding -1)."""
    images = np.zeros((2, SIZE, SIZE, 3), "float32")
    boxes = np.full((2, 2, 4), -1.0, "float32")
    classes = np.full((2, 2), -1, "int32")
    for b, squares in enumerate(
        [[(2, 3, 14, 0), (16, 18, 12, 2)], [(9, 14, 16, 1)]]
    ):
        for i, (y, x, side, label) in enumerate(squares):
            images[b, y : y + side, x : x + side, label] = 255.0
            boxes[b, i] = [y, x, y + side, x + side]
            classes[b, i] = label
    return images, {"boxes": boxes, "classes": classes}


def gt_proposals(targets):
    """The ground-truth boxes as proposals, padded to NUM_PROPOSALS."""
    proposals = np.full((2, NUM_PROPOSALS, 4), -1.0, "float32")
    proposals[:, :2] = targets["boxes"]
    return proposals


def predict(model, x):
    """The inference graph called eagerly (`predict` would XLA-compile it
    again for every model: the models are compiled with jit_compile)."""
    return {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}


def box_ap(outputs, targets):
    ground_truth = coco_ground_truth(
        targets["boxes"], targets["classes"], image_size=(SIZE, SIZE)
    )
    results = coco_results(
        outputs["detection_boxes"],
        outputs["detection_scores"],
        outputs["detection_classes"],
        outputs["num_detections"],
    )
    return evaluate_coco(ground_truth, results, iou_types=("bbox",))["bbox"]


@pytest.fixture(scope="module")
def overfit_fast_rcnn():
    """Fast R-CNN fitted (XLA) on the tiny scenes with the ground truth as
    proposals."""
    keras.utils.set_random_seed(0)
    images, targets = tiny_scenes()
    x = {"images": images, "proposals": gt_proposals(targets)}
    model = FastRCNN(NUM_CLASSES, roi_op="align", **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    assert model.jit_compile is True
    repeats = 20  # 20 steps per epoch: less per-epoch overhead
    history = model.fit(
        {
            key: np.tile(value, (repeats, 1, 1, 1)[: value.ndim])
            for key, value in x.items()
        },
        {
            key: np.tile(value, (repeats, 1, 1)[: value.ndim])
            for key, value in targets.items()
        },
        batch_size=2,
        epochs=4,
        verbose=0,
    )
    return model, x, targets, history.history


def test_fast_rcnn_overfits_to_near_perfect_ap(overfit_fast_rcnn):
    model, x, targets, history = overfit_fast_rcnn
    assert sorted(history) == ["loss", "loss_box_reg", "loss_classifier"]
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    outputs = predict(model, x)
    assert outputs["detection_boxes"].shape == (2, 4, 4)
    ap = box_ap(outputs, targets)
    assert ap["AP50"] > 0.99 and ap["AP"] > 0.9, ap


def test_fast_rcnn_keras_round_trip_and_serving(overfit_fast_rcnn, tmp_path):
    model, x, _, _ = overfit_fast_rcnn
    expected = predict(model, x)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is FastRCNN
    assert json.dumps(restored.get_config(), sort_keys=True) == json.dumps(
        model.get_config(), sort_keys=True
    )
    for key, value in predict(restored, x).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)

    path = export_proposal_detector_for_serving(model, tmp_path / "serve")
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    # Requests at twice the model's size: proposals and boxes scale back.
    request = np.repeat(np.repeat(x["images"], 2, 1), 2, 2).astype("uint8")
    proposals = np.where(x["proposals"] < 0, -1.0, 2.0 * x["proposals"])
    served = reloaded.signatures["serving_default"](
        images=tf.constant(request), proposals=tf.constant(proposals)
    )
    resized = tf.image.resize(request, (SIZE, SIZE)).numpy()
    eager = predict(model, {"images": resized, "proposals": x["proposals"]})
    np.testing.assert_allclose(
        served["detection_boxes"].numpy(),
        2.0 * eager["detection_boxes"],
        atol=1e-3,
    )
    for key in ("detection_scores", "detection_classes", "num_detections"):
        np.testing.assert_allclose(served[key].numpy(), eager[key], atol=1e-5)


@pytest.fixture(scope="module")
def rcnn():
    keras.utils.set_random_seed(0)
    return RCNN(NUM_CLASSES, warp_size=16, **TINY)


def test_rcnn_crops_equal_roi_align_on_the_image(rcnn):
    images, targets = tiny_scenes()
    proposals = gt_proposals(targets)
    proposals[1, 2] = [0.5, 1.25, 30.0, 20.5]  # fractional, any aspect
    crops = keras.ops.convert_to_numpy(rcnn.crop_proposals(images, proposals))
    assert crops.shape == (2, NUM_PROPOSALS, 16, 16, 3)
    xyxy = np.where(proposals < 0, -1.0, proposals[..., [1, 0, 3, 2]])
    expected = roi_align(images, xyxy, 16, 1.0, 2, aligned=True)
    np.testing.assert_allclose(crops, expected, atol=1e-4)
    np.testing.assert_array_equal(crops[0, 2:], 0.0)  # padding rows
    # Inside, a crop of a flat square is the square's colour (the border
    # samples blend in the black around it).
    np.testing.assert_allclose(crops[0, 0, 2:-2, 2:-2, 0], 255.0, atol=1e-3)
    np.testing.assert_allclose(crops[0, 0, ..., 1:], 0.0, atol=1e-3)
    # The region features are the CNN on exactly these crops.
    features = RCNN._region_pool(rcnn, images)(xyxy)
    flat = rcnn.backbone(crops.reshape(-1, 16, 16, 3))
    np.testing.assert_allclose(
        features, np.reshape(flat, features.shape), atol=1e-4
    )


def test_rcnn_fit_round_trip_and_serving(rcnn, tmp_path):
    images, targets = tiny_scenes()
    x = {"images": images, "proposals": gt_proposals(targets)}
    rcnn.compile(optimizer="adam", jit_compile=True)
    assert rcnn.jit_compile is True
    history = rcnn.fit(x, targets, batch_size=2, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert sorted(history.history) == [
        "loss",
        "loss_box_reg",
        "loss_classifier",
    ]
    expected = predict(rcnn, x)
    rcnn.save(tmp_path / "r.keras")
    restored = keras.saving.load_model(tmp_path / "r.keras")
    assert type(restored) is RCNN and restored.backbone.input_shape[1:3] == (
        16,
        16,
    )
    for key, value in predict(restored, x).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    path = export_proposal_detector_for_serving(rcnn, tmp_path / "serve")
    reloaded = tf.saved_model.load(path)
    served = reloaded.signatures["serving_default"](
        images=tf.constant(images.astype("uint8")),
        proposals=tf.constant(x["proposals"]),
    )
    for key, value in expected.items():
        np.testing.assert_allclose(served[key].numpy(), value, atol=1e-4)


# === Bad input ===


def test_bad_proposals_are_named(rcnn):
    images, targets = tiny_scenes()
    proposals = gt_proposals(targets)
    cases = [
        (proposals[0], "Received: proposals.shape=(4, 4)"),
        (proposals[..., :3], "Received: proposals.shape=(2, 4, 3)"),
        (proposals[:, :3], "Expected [B, 4, 4]"),
    ]
    for bad, match in cases:
        # Keras's input check of the functional graph, or ours, fires
        # first; either names the input and its shape.
        with pytest.raises(ValueError, match="proposals"):
            rcnn({"images": images, "proposals": bad})
        with pytest.raises(ValueError, match=re.escape(match)):
            rcnn.compute_detection_losses(
                {"images": images, "proposals": bad}, targets
            )
    with pytest.raises(ValueError, match="proposals"):
        rcnn({"images": images})
    for bad_x in ({"images": images}, images):
        with pytest.raises(ValueError, match="argument `x`"):
            rcnn.compute_detection_losses(bad_x, targets)
    with pytest.raises(ValueError, match=re.escape('x["images"]')):
        rcnn.compute_detection_losses(
            {"images": images[:, :16], "proposals": proposals}, targets
        )
    with pytest.raises(ValueError, match=re.escape("proposals.shape")):
        rcnn.crop_proposals(images, proposals[..., :2])


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (FastRCNN, {"num_proposals": 0}, "Received: num_proposals=0"),
        (RCNN, {"num_proposals": -3}, "num_proposals"),
        (RCNN, {"warp_size": 0}, "warp_size"),
        (FastRCNN, {"roi_op": "warp"}, "Received: roi_op='warp'"),
        (FastRCNN, {"num_classes": 0}, "num_classes"),
        (FastRCNN, {"image_shape": (None, None, 3)}, "image_shape"),
        (RCNN, {"box_fg_iou_threshold": 1.5}, "box_fg_iou_threshold"),
    ],
)
def test_constructor_errors(cls, kwargs, match):
    arguments = {"num_classes": NUM_CLASSES, **TINY, **kwargs}
    with pytest.raises(ValueError, match=re.escape(match)):
        cls(**arguments)


def test_serving_exports_need_the_matching_inputs(rcnn, tmp_path):
    faster = FasterRCNN(
        NUM_CLASSES,
        image_shape=(SIZE, SIZE, 3),
        backbone_kwargs=TINY["backbone_kwargs"],
        anchor_sizes=(8.0,),
        box_head_units=8,
    )
    with pytest.raises(ValueError, match='"proposals" input'):
        export_proposal_detector_for_serving(faster, tmp_path / "a")
    with pytest.raises(ValueError, match="argument `model`"):
        export_detector_for_serving(rcnn, tmp_path / "b")


def test_fast_rcnn_roi_pool_gets_the_training_flag(monkeypatch):
    # As in Faster R-CNN: the loss path asks RoIPool for its argmax in the
    # forward pass (`training=True`), inference does not.
    calls = spy_on_roi_pool_training(monkeypatch)
    images, targets = tiny_scenes()
    x = {"images": images, "proposals": gt_proposals(targets)}
    model = FastRCNN(NUM_CLASSES, roi_op="pool", **TINY)
    model(x)
    model.compute_detection_losses(x, targets, training=True)
    assert calls == [False, True]
