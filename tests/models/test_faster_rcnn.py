"""Tests for `keras_segattn.models.faster_rcnn.FasterRCNN`."""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import FeaturePyramid
from keras_segattn.layers import MultiScaleRoIAlign
from keras_segattn.layers import RPNHead
from keras_segattn.layers.detection_postprocessor import DETECTION_KEYS
from keras_segattn.models.faster_rcnn import LOSS_NAMES
from keras_segattn.models.faster_rcnn import FasterRCNN
from keras_segattn.models.faster_rcnn import build_pyramid_backbone
from tests.models.helpers import spy_on_roi_pool_training
from tests.ops.detection_references import np_box_iou

NUM_CLASSES = 3
SIZE = 32
MAX_GT = 3
EPOCHS = 50
VGG_TINY = {"filters": (8, 8, 16, 16, 16), "convs_per_stage": 1}
TINY = {
    "image_shape": (SIZE, SIZE, 3),
    "anchor_sizes": (8.0, 16.0),
    "rpn_pre_nms_top_n_train": 64,
    "rpn_pre_nms_top_n_test": 48,
    "rpn_post_nms_top_n_train": 32,
    "rpn_post_nms_top_n_test": 16,
    "rpn_batch_size_per_image": 32,
    "box_batch_size_per_image": 16,
    "box_head_units": 32,
    "max_detections": 6,
    "seed": 1,
}


def plain_backbone():
    """Three conv + pool stages, stride 8, no batch norm: after a hundred
    steps BN's moving averages still lag the batch statistics, so the
    inference outputs would not reflect what the steps learned (torchvision
    freezes BN in its detection backbones for the same reason)."""
    images = keras.Input((SIZE, SIZE, 3), name="images")
    x = keras.layers.Rescaling(1 / 255)(images)
    for i, width in enumerate((16, 16, 32)):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    return keras.Model(images, x, name="plain_backbone")


def make_scene(batch=4, seed=0):
    """Black images with 1-2 non-overlapping squares whose colour channel
    is the class; targets in (ymin, xmin, ymax, xmax) padded with -1."""
    rng = np.random.default_rng(seed)
    images = np.zeros((batch, SIZE, SIZE, 3), "float32")
    boxes = np.full((batch, MAX_GT, 4), -1.0, "float32")
    classes = np.full((batch, MAX_GT), -1, "int32")
    for b in range(batch):
        corners = [(2, 2), (17, 17)] if b % 2 else [(3, 16)]
        for i, (y0, x0) in enumerate(corners):
            side = int(rng.integers(9, 13))
            label = int(rng.integers(0, NUM_CLASSES))
            images[b, y0 : y0 + side, x0 : x0 + side, label] = 255.0
            boxes[b, i] = [y0, x0, y0 + side, x0 + side]
            classes[b, i] = label
    return images, {"boxes": boxes, "classes": classes}


MASK_KWARGS = {
    "mask_head": True,
    "mask_roi_output_size": 7,
    "mask_head_filters": 8,
    "mask_head_convs": 1,
}


def box_masks(targets):
    """[B, M, SIZE, SIZE] masks filling each (square) ground-truth box."""
    boxes, classes = targets["boxes"].astype(int), targets["classes"]
    masks = np.zeros((*classes.shape, SIZE, SIZE), "float32")
    for b, m in zip(*np.nonzero(classes >= 0), strict=True):
        y0, x0, y1, x1 = boxes[b, m]
        masks[b, m, y0:y1, x0:x1] = 1.0
    return masks


@pytest.fixture(scope="module")
def trained():
    """A tiny Mask R-CNN (the mask branch included, so one XLA compile
    covers all five losses): one fit step, then EPOCHS more on one batch."""
    keras.utils.set_random_seed(0)
    model = FasterRCNN(
        NUM_CLASSES, backbone=plain_backbone(), **MASK_KWARGS, **TINY
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
    images, targets = make_scene()
    targets["masks"] = box_masks(targets)
    first = model.fit(images, targets, batch_size=4, verbose=0).history
    rest = model.fit(images, targets, batch_size=4, epochs=EPOCHS, verbose=0)
    return model, images, targets, first, rest.history


def check_first_step_losses(history, names) -> dict:
    """The first epoch of a `fit` history: exactly `loss` and `names`,
    finite and >= 0, `loss` their sum, the RPN objectness near chance
    (log 2) as an untrained classifier's. Returns the values."""
    assert sorted(history) == sorted(("loss", *names))
    values = {name: history[name][0] for name in history}
    assert all(np.isfinite(v) and v >= 0 for v in values.values())
    np.testing.assert_allclose(
        values["loss"], sum(values[name] for name in names), rtol=1e-5
    )
    np.testing.assert_allclose(values["loss_objectness"], np.log(2), atol=0.05)
    return values


def test_one_jit_fit_step(trained):
    model, _, _, first, _ = trained
    assert model.jit_compile is True
    values = check_first_step_losses(first, (*LOSS_NAMES, "loss_mask"))
    np.testing.assert_allclose(values["loss_mask"], np.log(2), atol=0.1)


def test_losses_decrease(trained):
    *_, first, rest = trained
    # The mask loss (per-pixel BCE of soft RoIAlign targets) falls slowest.
    factors = {
        "loss_objectness": 0.6,
        "loss_classifier": 0.6,
        "loss_mask": 0.85,
    }
    for name, factor in {"loss": 0.6, **factors}.items():
        late = np.mean(rest[name][-5:])
        assert late < factor * first[name][0], (name, first[name][0], late)


def test_detections_contract_and_quality(trained):
    model, images, targets, *_ = trained
    outputs = model(images)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "detection_boxes": (4, 6, 4),
        "detection_scores": (4, 6),
        "detection_classes": (4, 6),
        "num_detections": (4,),
        "detection_masks": (4, 6, SIZE, SIZE),
    }
    assert all(v.dtype == "float32" for v in outputs.values())
    boxes = np.asarray(outputs["detection_boxes"])
    scores = np.asarray(outputs["detection_scores"])
    classes = np.asarray(outputs["detection_classes"])
    masks = np.asarray(outputs["detection_masks"])
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    correct = 0
    for b in range(4):
        n = int(outputs["num_detections"][b])
        assert 1 <= n <= 6
        assert np.all(np.diff(scores[b, :n]) <= 0)
        assert np.all(boxes[b, :n] >= 0) and np.all(boxes[b, :n] <= SIZE)
        assert set(classes[b, :n]) <= set(range(NUM_CLASSES))
        np.testing.assert_array_equal(boxes[b, n:], 0.0)
        np.testing.assert_array_equal(masks[b, n:], 0.0)
        # The best detection lies on a ground-truth object of its class,
        # and its pasted mask covers mostly that object's pixels (in at
        # least 3 of the 4 images: 50 epochs on 4 images leave a box a
        # few pixels off now and then, whatever the mask targets).
        gt = targets["boxes"][b][targets["classes"][b] >= 0]
        iou = np_box_iou(boxes[b, :1][:, [1, 0, 3, 2]], gt[:, [1, 0, 3, 2]])
        best = np.argmax(iou)
        truth = targets["masks"][b, best] > 0
        mask_iou = np.sum((masks[b, 0] > 0.5) & truth)
        mask_iou /= np.sum((masks[b, 0] > 0.5) | truth)
        correct += bool(
            iou.max() > 0.5
            and classes[b, 0] == targets["classes"][b][best]
            and mask_iou > 0.4
        )
    assert correct >= 3


def test_keras_round_trip(trained, tmp_path):
    model, images, *_ = trained
    config = model.get_config()
    json.dumps(config)
    path = tmp_path / "faster_rcnn.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is FasterRCNN
    restored_config = restored.get_config()
    # A user backbone's auto-generated layer names change on reload.
    assert restored_config.pop("backbone")["config"]["name"] == "plain_backbone"
    assert restored_config == {
        k: v for k, v in config.items() if k != "backbone"
    }
    expected, actual = model(images), restored(images)
    for key in (*DETECTION_KEYS, "detection_masks"):
        np.testing.assert_array_equal(expected[key], actual[key])


def test_faster_rcnn_without_mask_head():
    model = FasterRCNN(NUM_CLASSES, backbone_kwargs=VGG_TINY, **TINY)
    assert model.get_layer("backbone").output.shape[1:3] == (4, 4)  # stride 8
    assert model.get_layer("roi_align").spatial_scale == 1 / 8
    outputs = model(make_scene(2)[0])
    assert {k: (tuple(v.shape), v.dtype) for k, v in outputs.items()} == {
        "detection_boxes": ((2, 6, 4), "float32"),
        "detection_scores": ((2, 6), "float32"),
        "detection_classes": ((2, 6), "float32"),
        "num_detections": ((2,), "float32"),
    }
    assert model.metrics_names == ["loss", *LOSS_NAMES]


def test_roi_pool_variant_losses_and_gradients():
    model = FasterRCNN(
        NUM_CLASSES, roi_op="pool", backbone_kwargs=VGG_TINY, **TINY
    )
    assert model.get_layer("roi_pool").spatial_scale == 1 / 8
    images, targets = make_scene(2, seed=1)
    with tf.GradientTape() as tape:
        losses = model.compute_detection_losses(images, targets, training=True)
        total = sum(losses.values())
    gradients = tape.gradient(total, model.trainable_variables)
    assert sorted(losses) == sorted(LOSS_NAMES)
    assert all(g is not None for g in gradients)
    assert all(np.all(np.isfinite(g)) for g in gradients)
    # All-padding targets: only background, no box losses.
    empty = {
        "boxes": -np.ones((2, MAX_GT, 4), "float32"),
        "classes": -np.ones((2, MAX_GT), "int32"),
    }
    losses = model.compute_detection_losses(images, empty)
    assert float(losses["loss_rpn_box_reg"]) == 0.0
    assert float(losses["loss_box_reg"]) == 0.0


def test_user_backbone_and_xyxy_format():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="s8")(x)
    backbone = keras.Model(inputs, x, name="user_backbone")
    model = FasterRCNN(2, backbone=backbone, bounding_box_format="xyxy", **TINY)
    outputs = model(make_scene(1)[0])
    assert tuple(outputs["detection_boxes"].shape) == (1, 6, 4)
    clone = FasterRCNN.from_config(model.get_config())
    assert clone.backbone.name == "user_backbone"
    assert clone.count_params() == model.count_params()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_classes": 0}, ValueError, "Received: num_classes=0"),
        (
            {"image_shape": (None, None, 3)},
            ValueError,
            "Received: image_shape=(None, None, 3)",
        ),
        ({"roi_op": "crop"}, ValueError, "Received: roi_op='crop'"),
        (
            {"bounding_box_format": "rel_yxyx"},
            ValueError,
            "Received: bounding_box_format='rel_yxyx'",
        ),
        (
            {"rpn_bg_iou_threshold": 0.8},
            ValueError,
            "Received: rpn_bg_iou_threshold=0.8 and rpn_fg_iou_threshold=0.7",
        ),
        (
            {"box_positive_fraction": 2.0},
            ValueError,
            "Received: box_positive_fraction=2.0",
        ),
        (
            {"bbox_reg_weights": (10, 10, 5)},
            ValueError,
            "Received: bbox_reg_weights=(10, 10, 5)",
        ),
        (
            {"feature_layer_name": "nope"},
            ValueError,
            "Received: feature_layer_name='nope'",
        ),
        ({"backbone": 3}, TypeError, "Received: type(backbone)=int"),
        (
            {"fpn": True, "roi_op": "pool"},
            ValueError,
            "Received: roi_op='pool'",
        ),
        (
            {"fpn": True, "fpn_filters": 0},
            ValueError,
            "Received: fpn_filters=0",
        ),
        (
            {"fpn": True, "feature_layer_name": "block3_pool"},
            ValueError,
            "Received: feature_layer_name='block3_pool'",
        ),
        (
            {"feature_layer_names": ["block2_pool"]},
            ValueError,
            "Received: feature_layer_names=['block2_pool']",
        ),
        (
            {"anchor_sizes": ((8.0,), (16.0,))},
            ValueError,
            "Received: anchor_sizes=((8.0,), (16.0,))",
        ),
        (
            {"fpn": True},  # TINY's two sizes for five RPN levels
            ValueError,
            "(5: P2-P6). Received: anchor_sizes=(8.0, 16.0)",
        ),
        (
            {"fpn": True, "anchor_sizes": None, "feature_layer_names": ["x"]},
            ValueError,
            "Received: feature_layer_names=('x',)",
        ),
        (
            {
                "fpn": True,
                "anchor_sizes": None,
                "feature_layer_names": ["block2_pool", "block4_pool"],
            },
            ValueError,
            "at consecutive strides 2**k",
        ),
    ],
)
def test_constructor_errors(kwargs, error, match):
    arguments = {"num_classes": NUM_CLASSES, **TINY, **kwargs}
    if "backbone" not in kwargs:
        arguments["backbone_kwargs"] = VGG_TINY
    with pytest.raises(error, match=re.escape(match)):
        FasterRCNN(**arguments)


@pytest.mark.parametrize(
    "targets, error, match",
    [
        (np.zeros((2, 3, 4)), TypeError, "Received: type(y)=ndarray"),
        ({"boxes": np.zeros((2, 3, 4))}, ValueError, "Received: keys"),
        (
            {"boxes": np.zeros((2, 3, 5)), "classes": np.zeros((2, 3))},
            ValueError,
            'Received: y["boxes"].shape=(2, 3, 5)',
        ),
        (
            {"boxes": np.zeros((2, 3, 4)), "classes": np.zeros((2, 2))},
            ValueError,
            'Received: y["classes"].shape=(2, 2)',
        ),
    ],
)
def test_target_errors(targets, error, match):
    model = FasterRCNN(NUM_CLASSES, backbone=plain_backbone(), **TINY)
    images = np.zeros((2, SIZE, SIZE, 3), "float32")
    with pytest.raises(error, match=re.escape(match)):
        model.compute_detection_losses(images, targets)


def test_saved_model_serves_without_xla(trained, tmp_path):
    model, images, *_ = trained
    path = str(tmp_path / "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    served = reloaded.signatures["serving_default"](images=tf.constant(images))
    expected = model(images)
    assert sorted(served) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(served[key], expected[key], atol=1e-4)


@pytest.mark.parametrize(
    "masks, match",
    [
        (None, 'Expected a "masks" key'),
        (
            np.zeros((2, 3, SIZE, 16)),
            'Received: y["masks"].shape=(2, 3, 32, 16)',
        ),
    ],
)
def test_mask_target_errors(masks, match):
    model = FasterRCNN(
        NUM_CLASSES, backbone=plain_backbone(), **MASK_KWARGS, **TINY
    )
    images, targets = make_scene(2)
    if masks is not None:
        targets["masks"] = masks
    with pytest.raises(ValueError, match=re.escape(match)):
        model.compute_detection_losses(images, targets)


# === Feature Pyramid Network (fpn=True) ===

FPN_SIZE = 64
FPN = {
    **TINY,
    "image_shape": (FPN_SIZE, FPN_SIZE, 3),
    "anchor_sizes": None,  # 16, 32, ..., 256 px on P2-P6
    "backbone_kwargs": VGG_TINY,
    "fpn": True,
    "fpn_filters": 8,
}


def fpn_scene(batch=2, seed=0):
    """`make_scene` and `box_masks` at twice the size (64 x 64)."""
    images, targets = make_scene(batch, seed)
    masks = box_masks(targets)
    return images.repeat(2, axis=1).repeat(2, axis=2), {
        "boxes": np.where(targets["boxes"] >= 0, 2 * targets["boxes"], -1.0),
        "classes": targets["classes"],
        "masks": masks.repeat(2, axis=2).repeat(2, axis=3),
    }


@pytest.fixture(scope="module")
def fpn_mask_rcnn():
    keras.utils.set_random_seed(0)
    return FasterRCNN(NUM_CLASSES, **FPN, **MASK_KWARGS)


def test_fpn_layout(fpn_mask_rcnn):
    model = fpn_mask_rcnn
    assert [tuple(o.shape) for o in model.backbone.outputs] == [
        (None, 16, 16, 8),  # block2_pool, stride 4
        (None, 8, 8, 16),
        (None, 4, 4, 16),
        (None, 2, 2, 16),  # block5_pool, stride 32
    ]
    pyramid = model.get_layer("feature_pyramid")
    assert isinstance(pyramid, FeaturePyramid) and pyramid.extra_max_pool
    assert model.anchor_sizes == tuple((16.0 * 2**i,) for i in range(5))
    for pooler in (
        model.get_layer("roi_align"),
        model.mask_roi_pooler,  # training only
        model.get_layer("mask_detection_roi_align"),
    ):
        assert isinstance(pooler, MultiScaleRoIAlign)
        assert pooler.spatial_scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32]
        assert not pooler.aligned and pooler.sampling_ratio == 2
        assert (pooler.canonical_scale, pooler.canonical_level) == (224, 4)
    # One RPN head shared by the five levels (torchvision's RPNHead).
    rpn = [layer for layer in model.layers if isinstance(layer, RPNHead)]
    assert rpn == [model.rpn_head]
    assert sorted(layer.name for layer in model.rpn_head._layers) == [
        "rpn_box_deltas",
        "rpn_conv",
        "rpn_objectness",
    ]
    assert model.rpn_head.conv.kernel.shape == (3, 3, 8, 8)
    assert model.rpn_head.objectness.kernel.shape == (1, 1, 8, 3)
    anchors = model.proposal_generator.anchors(
        [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    )
    assert tuple(anchors.shape) == (3 * (256 + 64 + 16 + 4 + 1), 4)


def test_fpn_losses_and_gradients_with_mask_head(fpn_mask_rcnn):
    model = fpn_mask_rcnn
    images, targets = fpn_scene(2, seed=1)
    with tf.GradientTape() as tape:
        losses = model.compute_detection_losses(images, targets, training=True)
        total = sum(losses.values())
    gradients = tape.gradient(total, model.trainable_variables)
    assert sorted(losses) == sorted((*LOSS_NAMES, "loss_mask"))
    assert all(np.isfinite(float(v)) and float(v) >= 0 for v in losses.values())
    names = [
        v.path
        for v, g in zip(model.trainable_variables, gradients, strict=True)
        if g is None
    ]
    assert not names, names
    assert all(np.all(np.isfinite(g)) for g in gradients)


def test_fpn_one_jit_fit_step():
    keras.utils.set_random_seed(0)
    model = FasterRCNN(NUM_CLASSES, **FPN)
    model.compile(optimizer="adam", jit_compile=True)
    assert model.jit_compile is True
    images, targets = fpn_scene()
    targets.pop("masks")
    history = model.fit(images, targets, batch_size=2, verbose=0).history
    check_first_step_losses(history, LOSS_NAMES)


def test_fpn_predict_keras_round_trip_and_saved_model(fpn_mask_rcnn, tmp_path):
    model = fpn_mask_rcnn
    images, _ = fpn_scene()
    outputs = model.predict(images, verbose=0)
    assert {k: (v.shape, v.dtype) for k, v in outputs.items()} == {
        "detection_boxes": ((2, 6, 4), "float32"),
        "detection_scores": ((2, 6), "float32"),
        "detection_classes": ((2, 6), "float32"),
        "num_detections": ((2,), "float32"),
        "detection_masks": ((2, 6, FPN_SIZE, FPN_SIZE), "float32"),
    }
    config = model.get_config()
    json.dumps(config)
    assert config["fpn"] is True and config["fpn_filters"] == 8
    path = tmp_path / "fpn.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is FasterRCNN
    # JSON turns the tuples of backbone_kwargs into lists.
    assert json.dumps(restored.get_config(), sort_keys=True) == json.dumps(
        config, sort_keys=True
    )
    expected, actual = model(images), restored(images)
    for key in (*DETECTION_KEYS, "detection_masks"):
        np.testing.assert_array_equal(expected[key], actual[key])

    export_path = str(tmp_path / "saved_model")
    model.export(export_path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(export_path)  # keep referenced (tf#34253)
    served = reloaded.signatures["serving_default"](images=tf.constant(images))
    assert sorted(served) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(served[key], expected[key], atol=1e-4)


def test_fpn_user_backbone_and_application_defaults():
    inputs = keras.Input((FPN_SIZE, FPN_SIZE, 3))
    c3 = keras.layers.Conv2D(4, 3, strides=8, padding="same")(inputs)
    c4 = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c4")(c3)
    one_output = keras.Model(inputs, c4, name="user_backbone")
    with pytest.raises(
        ValueError, match=re.escape("Received: feature_layer_names=None")
    ):
        FasterRCNN(2, backbone=one_output, **{**FPN, "backbone_kwargs": None})
    backbone = keras.Model(inputs, [c3, c4], name="user_pyramid")
    model = FasterRCNN(2, backbone=backbone, **{**FPN, "backbone_kwargs": None})
    assert model.spatial_scale == [1 / 8, 1 / 16]  # C3, C4 -> P3, P4, P5
    assert model.anchor_sizes == ((32.0,), (64.0,), (128.0,))
    clone = FasterRCNN.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    # A keras.applications name: its stride-8/16 skips and its output.
    _, levels = build_pyramid_backbone(
        "MobileNet", (FPN_SIZE, FPN_SIZE, 3), backbone_kwargs={"alpha": 0.25}
    )
    assert levels == [3, 4, 5]


def test_roi_pool_finds_the_argmax_in_the_forward_only_when_training(
    monkeypatch,
):
    # The loss path (what `fit` differentiates) calls the op with
    # `training=True`, inference with False: same numbers, faster step.
    calls = spy_on_roi_pool_training(monkeypatch)
    model = FasterRCNN(
        NUM_CLASSES, roi_op="pool", backbone_kwargs=VGG_TINY, **TINY
    )
    images, targets = make_scene(2, seed=1)
    model(images)
    assert calls == [False]
    model.compute_detection_losses(images, targets, training=True)
    model.compute_detection_losses(images, targets, training=False)
    assert calls == [False, True, False]
