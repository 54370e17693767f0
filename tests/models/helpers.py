"""Data and checks shared by the segmentation model tests."""

import keras
import numpy as np

from keras_segattn.models import build_segmentation_model
from tests.testing import run_model_checks

NUM_CLASSES = 3
VOID = 3


def random_images(batch, height, width, seed=0):
    """float32 [batch, height, width, 3] uniform in 0..255."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, height, width, 3)).astype("float32")


def check_tiny_preset(preset: str, max_params: int, tmp_path) -> None:
    """`run_model_checks` on a tiny preset with void-labelled masks."""
    model = build_segmentation_model(preset, NUM_CLASSES)
    assert model.count_params() < max_params
    rng = np.random.default_rng(0)
    images = random_images(2, 32, 32)
    masks = rng.integers(0, NUM_CLASSES + 1, (2, 32, 32)).astype("int32")
    run_model_checks(
        model,
        images,
        masks,
        tmp_path=tmp_path,
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=VOID),
    )


def spy_on_roi_pool_training(monkeypatch) -> list:
    """The `training` flags `layers.RoIPool` passes to its op, recorded
    (in call order) into the returned list while the test runs."""
    import keras_segattn.layers.roi_pool as roi_pool_layer

    calls = []
    op = roi_pool_layer.roi_pool_op

    def spy(*args, **kwargs):
        calls.append(kwargs["training"])
        return op(*args, **kwargs)

    monkeypatch.setattr(roi_pool_layer, "roi_pool_op", spy)
    return calls
