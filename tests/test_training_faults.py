"""Training faults: a NaN loss stops the examples' training with a clear
error, and no custom loss of the package hides a NaN input or target.

The custom losses are called eagerly (`compute_loss`, what Keras's
`train_step` differentiates): a NaN in the batch must give a NaN loss,
which `TerminateOnNaN` then stops on. (By hand, the same NaN batches
through `fit(jit_compile=True)` with `TerminateOnNaN(raise_error=True)`
stop at batch 0 for DRAW, the soft and hard captioners, YOLO and
Faster R-CNN; each XLA compile costs 20-50 s here, too slow for the
suite.)
"""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_segattn.models import ShowAttendTellCaptioner
from keras_segattn.models.draw import DRAW
from keras_segattn.models.faster_rcnn import FasterRCNN
from keras_segattn.models.yolo import YOLO
from tests.models import test_captioning
from tests.models import test_faster_rcnn
from tests.models import test_yolo

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _with_nan(array, index=(0, 0, 0, 0)):
    array = np.array(array, copy=True)
    array[index] = np.nan
    return array


def test_examples_stop_on_a_nan_loss(tmp_path):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import _common
    finally:
        sys.path.remove(str(EXAMPLES))
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    assert model.jit_compile is True
    x = np.ones((8, 3), "float32")
    x[5] = np.nan  # in the second batch of 4
    weights = [w.numpy() for w in model.weights]
    with pytest.raises(RuntimeError, match="NaN or Inf loss .* at batch 1"):
        model.fit(
            x,
            np.zeros((8, 1)),
            batch_size=4,
            epochs=3,
            verbose=0,
            callbacks=_common.logging_callbacks(tmp_path),
        )
    # One good step was taken, then the run stopped: no epoch completed.
    assert not np.array_equal(model.weights[0].numpy(), weights[0])
    assert model.optimizer.iterations.numpy() == 2


def test_draw_loss_is_nan_for_a_nan_image():
    model = DRAW(
        image_shape=(8, 8, 1), steps=2, units=4, latent_dim=2, write_size=2
    )
    x = np.full((2, 8, 8, 1), 0.5, "float32")
    assert np.isfinite(model.compute_loss(x=x, y_pred=model(x)))
    x = _with_nan(x)
    assert np.isnan(model.compute_loss(x=x, y_pred=model(x)))


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_captioner_loss_is_nan_for_a_nan_image(attention):
    model = ShowAttendTellCaptioner(
        12, attention=attention, **test_captioning.SMALL
    )
    x, y = test_captioning._data()
    loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    assert np.isfinite(loss)
    x["images"] = _with_nan(x["images"])
    loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    assert np.isnan(loss)


def _strided_backbone():
    """Stride-8 convolutions without max pooling: TensorFlow's CPU
    `MaxPool` kernel (outside XLA) turns a NaN into 3.4e38, a huge but
    finite value that would hide the NaN before any loss code runs. XLA's
    max pooling propagates NaN (the examples train with XLA)."""
    images = keras.Input((test_faster_rcnn.SIZE, test_faster_rcnn.SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(images)
    for width in (8, 16, 16):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same")(x)
    return keras.Model(images, x)


@pytest.fixture(scope="module")
def detectors():
    keras.utils.set_random_seed(0)
    yolo = YOLO(test_yolo.NUM_CLASSES, **test_yolo.TINY)
    faster_rcnn = FasterRCNN(
        test_faster_rcnn.NUM_CLASSES,
        backbone=_strided_backbone(),
        **test_faster_rcnn.TINY,
    )
    return {"yolo": yolo, "faster_rcnn": faster_rcnn}


def _detector_loss(model, images, targets):
    return float(model.compute_loss(x=images, y=targets, y_pred=None))


@pytest.mark.parametrize("name", ["yolo", "faster_rcnn"])
@pytest.mark.parametrize("fault", ["image", "box", "inf box"])
def test_detector_loss_is_nan_for_a_nan_image_or_box(detectors, name, fault):
    model = detectors[name]
    scene = test_yolo if name == "yolo" else test_faster_rcnn
    images, targets = scene.make_scene(batch=2)
    assert np.isfinite(_detector_loss(model, images, targets))
    if fault == "image":
        images = _with_nan(images)
    else:
        value = np.nan if fault == "box" else np.inf
        targets = {**targets, "boxes": _with_nan(targets["boxes"], (1, 0, 2))}
        targets["boxes"][1, 0, 2] = value
    assert np.isnan(_detector_loss(model, images, targets))


def test_nan_in_a_padding_row_is_ignored(detectors):
    # Padding rows (class -1) carry no box: their coordinates never count.
    images, targets = test_faster_rcnn.make_scene(batch=2)
    targets = {key: np.array(value) for key, value in targets.items()}
    padding = np.argwhere(targets["classes"] < 0)[0]
    targets["boxes"][tuple(padding)] = np.nan
    loss = _detector_loss(detectors["faster_rcnn"], images, targets)
    assert np.isfinite(loss)
