"""Tests for `keras_segattn.models.yolo.YOLO`."""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_detector_for_serving
from keras_segattn.layers.detection_postprocessor import DETECTION_KEYS
from keras_segattn.layers.yolo_head import YOLOHead
from keras_segattn.losses.yolo import YOLO_LOSS_NAMES
from keras_segattn.models.yolo import YOLO

NUM_CLASSES = 3
SIZE = 32
MAX_GT = 3
TINY = {
    "image_shape": (SIZE, SIZE, 3),
    "grid_size": 4,
    "backbone_kwargs": {"filters": (8, 8, 16, 16, 16), "convs_per_stage": 1},
    "head_filters": 16,
    "max_detections": 6,
}


def make_scene(batch=4, seed=0):
    """Black images with 1-2 squares whose colour channel is the class;
    targets in (ymin, xmin, ymax, xmax) padded with -1, plus masks (which
    YOLO ignores)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((batch, SIZE, SIZE, 3), "float32")
    boxes = np.full((batch, MAX_GT, 4), -1.0, "float32")
    classes = np.full((batch, MAX_GT), -1, "int32")
    for b in range(batch):
        for m, (y, x) in enumerate([(2, 2), (18, 17)][: 1 + b % 2]):
            side = int(rng.integers(8, 13))
            label = int(rng.integers(0, NUM_CLASSES))
            images[b, y : y + side, x : x + side, label] = 255.0
            boxes[b, m] = (y, x, y + side, x + side)
            classes[b, m] = label
    masks = np.zeros((batch, MAX_GT, SIZE, SIZE), "float32")
    return images, {"boxes": boxes, "classes": classes, "masks": masks}


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = YOLO(NUM_CLASSES, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
    images, targets = make_scene()
    first = model.evaluate(images, targets, verbose=0, return_dict=True)
    history = model.fit(
        images, targets, batch_size=4, epochs=40, verbose=0
    ).history
    return model, images, targets, first, history


def test_layout_and_grid():
    model = YOLO(NUM_CLASSES, **TINY)
    assert isinstance(model.get_layer("yolo_head"), YOLOHead)
    assert model.backbone.output.shape == (None, 4, 4, 16)  # block3_pool
    assert sorted(model.output) == sorted(DETECTION_KEYS)
    images, _ = make_scene(2)
    grid = model(images, training=True)
    assert grid.shape == (2, 4, 4, 2 * 5 + NUM_CLASSES)
    out = model(images)
    assert out["detection_boxes"].shape == (2, 6, 4)
    assert out["num_detections"].shape == (2,)


def test_one_jit_fit_step_and_loss_decreases(trained):
    model, _, _, first, history = trained
    assert model.jit_compile is True
    assert sorted(history) == sorted(["loss", *YOLO_LOSS_NAMES])
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    np.testing.assert_allclose(
        history["loss"][0], first["loss"], rtol=0.3
    )  # first training step vs evaluate before training (BN modes differ)


def test_total_is_the_sum_of_the_terms():
    keras.utils.set_random_seed(1)
    model = YOLO(NUM_CLASSES, **TINY)
    images, targets = make_scene(2)
    losses = model.compute_yolo_losses(images, targets)
    total = model.compute_loss(
        images, targets, model(images, training=False), training=False
    )
    np.testing.assert_allclose(
        float(total), sum(float(v) for v in losses.values()), rtol=1e-5
    )


def test_keras_round_trip(trained, tmp_path):
    model, images, *_ = trained
    config = model.get_config()
    json.dumps(config)
    assert config["lambda_coord"] == 5.0 and config["grid_size"] == (4, 4)
    path = tmp_path / "yolo.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is YOLO
    assert json.dumps(restored.get_config(), sort_keys=True) == json.dumps(
        json.loads(json.dumps(config)), sort_keys=True
    )
    expected, got = model(images), restored(images)
    for key in DETECTION_KEYS:
        np.testing.assert_array_equal(np.asarray(got[key]), expected[key])


def test_export_for_serving(trained, tmp_path):
    model, images, *_ = trained
    path = export_detector_for_serving(
        model, tmp_path, version=1, warmup_images=[images[0].astype("uint8")]
    )
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    assert {"serving_default", "serving_image_bytes"} <= set(
        reloaded.signatures
    )
    served = reloaded.signatures["serving_default"](
        images=tf.constant(images.astype("uint8"))
    )
    expected = model(images, training=False)
    assert sorted(served) == sorted(DETECTION_KEYS)
    assert int(np.sum(expected["num_detections"])) > 0
    for key in DETECTION_KEYS:
        assert served[key].dtype == tf.float32
        np.testing.assert_allclose(served[key], expected[key], atol=1e-4)


def test_learned_the_batch(trained):
    model, images, targets, *_ = trained
    out = model.predict(images, verbose=0)
    for b in range(len(images)):
        valid = targets["classes"][b] >= 0
        top = out["detection_classes"][b, : int(valid.sum())]
        assert sorted(top.astype(int)) == sorted(targets["classes"][b][valid])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"grid_size": 5}, "Expected it to divide the image height 32"),
        ({"grid_size": (4, 3)}, "divide the image width 32"),
        ({"boxes_per_cell": 0}, "Received: boxes_per_cell=0"),
        ({"lambda_coord": -1.0}, "Received: lambda_coord=-1.0"),
        ({"lambda_noobj": -0.5}, "Received: lambda_noobj=-0.5"),
        ({"num_classes": 0}, "Received: num_classes=0"),
        ({"image_shape": (None, None, 3)}, "Expected a static"),
        ({"nms_threshold": 2.0}, "nms_threshold=2.0"),
    ],
)
def test_constructor_errors(kwargs, match):
    args = {**TINY, **kwargs}
    num_classes = args.pop("num_classes", NUM_CLASSES)
    with pytest.raises(ValueError, match=re.escape(match)):
        YOLO(num_classes, **args)


def test_grid_that_does_not_divide_the_features():
    # 32 / 2 = 16 divides the image, but vgg_small's deepest usable map is
    # chosen for it; a user backbone at stride 8 (4 x 4) cannot host 3 x 3.
    images = keras.Input((24, 24, 3))
    features = keras.layers.Conv2D(4, 3, strides=8, padding="same")(images)
    backbone = keras.Model(images, features)
    with pytest.raises(ValueError, match="divide the features"):
        YOLO(2, image_shape=(24, 24, 3), grid_size=2, backbone=backbone)


def test_target_errors():
    model = YOLO(NUM_CLASSES, **TINY)
    images, _ = make_scene(2)
    with pytest.raises(TypeError, match="Invalid type for argument `y`"):
        model.compute_loss(images, np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match='Expected the keys "boxes"'):
        model.compute_loss(images, {"boxes": np.zeros((2, 3, 4))})
    with pytest.raises(ValueError, match=re.escape('y["classes"].shape')):
        model.compute_loss(
            images, {"boxes": np.zeros((2, 3, 4)), "classes": np.zeros((2, 2))}
        )
