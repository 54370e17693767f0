"""Tests for `keras_segattn.models.SDSRefiner`."""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_instance_refiner_for_serving
from keras_segattn.layers import Hypercolumn
from keras_segattn.layers import HypercolumnMaskHead
from keras_segattn.models import SDSRefiner
from tests.ops.test_roi_align import np_roi_align

F32 = np.float32
TINY = {"filters": (4, 4, 8, 8, 8), "convs_per_stage": 1}
PAD = [-1.0, -1.0, -1.0, -1.0]


def _tiny(**kwargs):
    arguments = {
        "image_shape": (32, 32, 3),
        "backbone_kwargs": TINY,
        "pool_size": 8,
        "head_filters": 4,
        "head_convs": 1,
        "cascade_units": 8,
        **kwargs,
    }
    return SDSRefiner(**arguments)


def _json(config):
    return json.loads(json.dumps(config))


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = {
        "images": rng.uniform(0, 255, (2, 32, 32, 3)).astype(F32),
        "boxes": np.array(
            [
                [[2, 3, 20, 25], [5.5, 5, 30, 31], PAD],
                [[1, 1, 10, 12], PAD, PAD],
            ],
            F32,
        ),
    }
    y = {
        "masks": (rng.uniform(size=(2, 3, 32, 32)) > 0.5).astype(F32),
        "classes": np.array([[0, 2, -1], [1, -1, -1]], "int32"),
    }
    return x, y


def np_sds_losses(logits, class_logits, boxes, masks, classes, sampling_ratio):
    """torchvision-normalised losses, box by box: the instance mask cropped
    to its box by the RoIAlign reference, binary cross-entropy averaged
    over the valid boxes' pixels; softmax cross-entropy averaged over the
    valid boxes."""
    size = logits.shape[2:]
    mask_sum, pixels, class_sum, count = 0.0, 0, 0.0, 0
    for b in range(boxes.shape[0]):
        for n in range(boxes.shape[1]):
            if np.all(boxes[b, n] == -1):
                continue
            target = np_roi_align(
                masks[b, n][None, :, :, None],
                boxes[b, n][None, None],
                size,
                sampling_ratio=sampling_ratio,
                aligned=True,
            )[0, 0, ..., 0]
            z = logits[b, n].astype("float64")
            bce = np.maximum(z, 0) - z * target + np.log1p(np.exp(-abs(z)))
            mask_sum += bce.sum()
            pixels += bce.size
            if class_logits is not None and classes[b, n] >= 0:
                c = class_logits[b, n].astype("float64")
                log_softmax = c - c.max() - np.log(np.exp(c - c.max()).sum())
                class_sum -= log_softmax[classes[b, n]]
                count += 1
    losses = {"loss_mask": mask_sum / pixels}
    if class_logits is not None:
        losses["loss_classifier"] = class_sum / count
    return losses


def test_fit_xla_round_trips_and_saved_model(tmp_path):
    # Two levels and a 4x4 grid keep the XLA compile of the RoIAlign
    # gradients short; the layers' own tests cover the larger settings.
    model = _tiny(
        layer_names=("preprocess_rescaling", "block2_pool"),
        pool_size=4,
        mask_size=6,
        grid_size=2,
        num_classes=3,
    )
    assert isinstance(model.get_layer("hypercolumn"), Hypercolumn)
    assert isinstance(model.get_layer("mask_head"), HypercolumnMaskHead)
    # The image (3 channels) and the stride-4 pool (4).
    assert model.get_layer("hypercolumn").output.shape == (None, None, 4, 4, 7)
    x, y = _batch()
    outputs = model(x)
    assert tuple(outputs["mask_logits"].shape) == (2, 3, 6, 6)
    assert tuple(outputs["class_logits"].shape) == (2, 3, 3)
    # Padding boxes: probability 0 everywhere.
    logits = np.asarray(outputs["mask_logits"])
    np.testing.assert_array_equal(logits[1, 1:], -1e4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    assert model.jit_compile is True, "XLA was silently disabled"
    history = model.fit(x, y, batch_size=2, epochs=3, verbose=0)
    assert set(history.history) == {"loss", "loss_mask", "loss_classifier"}
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    expected = {k: np.asarray(v) for k, v in model(x).items()}

    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(restored, SDSRefiner)
    assert _json(restored.get_config()) == _json(model.get_config())
    for key, value in restored(x).items():
        np.testing.assert_array_equal(np.asarray(value), expected[key])

    path = str(tmp_path / "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    served = reloaded.serve({k: tf.constant(v) for k, v in x.items()})
    signature = reloaded.signatures["serving_default"]
    signed = signature(**{k: tf.constant(v) for k, v in x.items()})
    for key, value in expected.items():
        np.testing.assert_allclose(served[key], value, atol=1e-5)
        np.testing.assert_allclose(signed[key], value, atol=1e-5)

    pasted = np.asarray(model.paste_masks(expected["mask_logits"], x["boxes"]))
    assert pasted.shape == (2, 3, 32, 32)
    assert np.all(pasted[1, 1:] == 0) and np.all(pasted[0, 0, 29:] == 0)


def _request(x, factor=2):
    """The batch as a serving request at `factor` times the model's size:
    uint8 images and (ymin, xmin, ymax, xmax) boxes in their pixels."""
    images = np.repeat(np.repeat(x["images"], factor, 1), factor, 2)
    yxyx = x["boxes"][..., [1, 0, 3, 2]]
    boxes = np.where(x["boxes"] < 0, -1.0, factor * yxyx)
    return images.astype("uint8"), boxes.astype(F32)


@pytest.mark.parametrize("num_classes", [None, 3])
def test_serving_export_masks_in_request_pixels(num_classes, tmp_path):
    model = _tiny(
        layer_names=("preprocess_rescaling", "block2_pool"),
        pool_size=4,
        num_classes=num_classes,
    )
    x, _ = _batch()
    path = export_instance_refiner_for_serving(
        model, tmp_path / "serve", num_boxes=3, label_offset=1
    )
    assert path == str(tmp_path / "serve" / "1")
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    signature = reloaded.signatures["serving_default"]
    images, boxes = _request(x)
    served = {
        k: v.numpy()
        for k, v in signature(
            images=tf.constant(images), boxes=tf.constant(boxes)
        ).items()
    }
    # The model on the request resized to its input, with the boxes in its
    # pixels; masks pasted there and resized to the request's 64 x 64.
    resized = tf.image.resize(images.astype(F32), (32, 32)).numpy()
    outputs = model({"images": resized, "boxes": x["boxes"]})
    pasted = np.asarray(model.paste_masks(outputs["mask_logits"], x["boxes"]))
    expected = tf.image.resize(pasted.transpose(0, 2, 3, 1), (64, 64))
    expected = np.transpose(expected, (0, 3, 1, 2))
    assert served["detection_masks"].shape == (2, 3, 64, 64)
    np.testing.assert_allclose(served["detection_masks"], expected, atol=1e-5)
    np.testing.assert_array_equal(served["detection_masks"][1, 1:], 0.0)
    assert served["detection_masks"][0, 0].max() > 0.0
    if num_classes is None:
        assert set(served) == {"detection_masks"}
    else:
        assert set(served) == {
            "detection_masks",
            "detection_classes",
            "detection_scores",
        }
        probs = np.asarray(keras.ops.softmax(outputs["class_logits"]))
        valid = np.array([[1, 1, 0], [1, 0, 0]], F32)
        np.testing.assert_array_equal(
            served["detection_classes"], (probs.argmax(-1) + 1) * valid
        )
        np.testing.assert_allclose(
            served["detection_scores"], probs.max(-1) * valid, rtol=1e-5
        )
    empty = signature(
        images=tf.zeros((0, 40, 50, 3), tf.uint8), boxes=tf.zeros((0, 3, 4))
    )
    assert tuple(empty["detection_masks"].shape) == (0, 3, 40, 50)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch"):
        signature(images=tf.constant(images), boxes=tf.constant(boxes[:1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="boxes"):
        signature(images=tf.constant(images), boxes=tf.constant(boxes[:, :2]))


def test_serving_export_bad_arguments(tmp_path):
    model = _tiny()
    for kwargs, match in [
        ({"num_boxes": 0}, "Received: num_boxes=0"),
        ({"label_offset": -1}, "Received: label_offset=-1"),
        ({"version": 0}, "version"),
    ]:
        with pytest.raises(ValueError, match=re.escape(match)):
            export_instance_refiner_for_serving(model, tmp_path, **kwargs)
    images = keras.Input((32, 32, 3), name="images")
    plain = keras.Model(images, {"mask_logits": images})
    with pytest.raises(ValueError, match='inputs "images" and "boxes"'):
        export_instance_refiner_for_serving(plain, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("num_classes", [None, 3])
def test_losses_against_numpy(num_classes):
    model = _tiny(num_classes=num_classes, sampling_ratio=2)
    x, y = _batch(seed=1)
    if num_classes is None:
        y = {"masks": y["masks"]}
    outputs = model(x)
    losses = model.compute_sds_losses(x, y, outputs)
    class_logits = outputs.get("class_logits")
    expected = np_sds_losses(
        np.asarray(outputs["mask_logits"]),
        None if class_logits is None else np.asarray(class_logits),
        x["boxes"],
        y["masks"],
        y["classes"] if "classes" in y else None,
        sampling_ratio=2,
    )
    assert set(losses) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(float(losses[name]), value, rtol=1e-5)
    # Padding boxes are ignored, whatever their masks.
    y2 = {**y, "masks": y["masks"].copy()}
    y2["masks"][1, 1:] = 1.0 - y2["masks"][1, 1:]
    again = model.compute_sds_losses(x, y2, outputs)
    for name in expected:
        assert float(again[name]) == float(losses[name])


def test_a_non_finite_box_makes_the_loss_nan():
    model = _tiny()
    x, y = _batch()
    y = {"masks": y["masks"]}
    assert np.isfinite(float(model.compute_loss(x, y, model(x))))
    x["boxes"][0, 1, 2] = np.nan
    assert np.isnan(float(model.compute_loss(x, y, model(x))))


def test_user_backbone_layer_names():
    images = keras.Input((24, 24, 3))
    a = keras.layers.Conv2D(2, 3, strides=2, padding="same", name="s2")(images)
    b = keras.layers.Conv2D(3, 3, strides=2, padding="same", name="s4")(a)
    user = keras.Model(images, b, name="user")
    model = SDSRefiner(
        image_shape=(24, 24, 3),
        backbone=user,
        layer_names=("s2", "s4"),
        pool_size=6,
        head_convs=0,
    )
    assert model.get_layer("hypercolumn").output.shape[-1] == 5
    boxes = np.array([[[0, 0, 12, 12]]], F32)
    images = np.zeros((1, 24, 24, 3), F32)
    out = model({"images": images, "boxes": boxes})
    assert tuple(out["mask_logits"].shape) == (1, 1, 6, 6)
    clone = SDSRefiner.from_config(model.get_config())
    assert clone.get_layer("backbone_features").input.shape == (None, 24, 24, 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"image_shape": (None, None, 3)}, ValueError, "Expected a static"),
        ({"layer_names": ("block2_pool", "pool9")}, ValueError, "missing"),
        ({"layer_names": ()}, ValueError, "Received: layer_names=()"),
        ({"num_classes": 0}, ValueError, "Received: num_classes=0"),
        ({"cascade_units": 0}, ValueError, "Received: cascade_units=0"),
        ({"pool_size": 0}, ValueError, "pool_size"),
        ({"grid_size": 9}, ValueError, "Received: grid_size=9"),
        ({"head_convs": -1}, ValueError, "Received: num_convs=-1"),
        ({"sampling_ratio": 0}, ValueError, "Received: sampling_ratio=0"),
        ({"backbone": 3}, TypeError, "type(backbone)=int"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=re.escape(match)):
        _tiny(**kwargs)


def test_bad_training_inputs():
    model = _tiny(num_classes=3)
    x, y = _batch()
    outputs = model(x)
    losses = model.compute_sds_losses
    with pytest.raises(TypeError, match=re.escape("Received: ndarray.")):
        losses(x["images"], y, outputs)
    with pytest.raises(TypeError, match=re.escape("keys ['images']")):
        losses({"images": x["images"]}, y, outputs)
    with pytest.raises(ValueError, match=re.escape('x["boxes"]')):
        losses({**x, "boxes": x["boxes"][..., :3]}, y, outputs)
    with pytest.raises(TypeError, match=re.escape("keys ['classes']")):
        losses(x, {"classes": y["classes"]}, outputs)
    with pytest.raises(ValueError, match=re.escape('y["masks"].shape=(2, 3,')):
        losses(x, {**y, "masks": y["masks"][:, :, :16]}, outputs)
    with pytest.raises(ValueError, match=re.escape('a "classes" key')):
        losses(x, {"masks": y["masks"]}, outputs)
