"""Tests for `keras_segattn.data.digit_scenes` (MNIST instance scenes)."""

import re

import numpy as np
import pytest

from keras_segattn.data import digit_scenes
from keras_segattn.data.mnist import MNIST_TEST_POOL_START


def _digits(count=20, seed=0):
    """Distinct, fully inked squares of random sizes inside 28x28 frames,
    labelled by their index mod 10: boxes and masks are known exactly."""
    rng = np.random.default_rng(seed)
    digits = np.zeros((count, 28, 28), np.uint8)
    for i in range(count):
        top, left = rng.integers(2, 10, size=2)
        digits[i, top : top + 12, left : left + 8] = 200 + i % 50
    return digits, np.arange(count) % 10


def _tight_box(mask):
    rows, cols = np.nonzero(mask)
    return [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]


def test_shapes_dtypes_and_padding():
    digits, labels = _digits()
    scenes = digit_scenes.make_digit_scene_arrays(
        digits, labels, 12, image_size=64, min_digits=1, max_digits=3, seed=1
    )
    assert scenes["images"].shape == (12, 64, 64, 3)
    assert scenes["images"].dtype == np.uint8
    assert scenes["boxes"].shape == (12, 3, 4)
    assert scenes["boxes"].dtype == np.float32
    assert scenes["classes"].shape == (12, 3)
    assert scenes["masks"].shape == (12, 3, 64, 64)
    assert scenes["masks"].dtype == np.uint8
    padding = scenes["classes"] < 0
    assert np.all(scenes["boxes"][padding] == -1)
    assert not scenes["masks"][padding].any()
    counts = np.sum(~padding, axis=1)
    assert counts.min() >= 1 and counts.max() <= 3
    # Grey replicated into RGB.
    np.testing.assert_array_equal(
        scenes["images"][..., 0], scenes["images"][..., 2]
    )


def test_boxes_are_tight_masks_disjoint_and_classes_right():
    digits, labels = _digits()
    scenes = digit_scenes.make_digit_scene_arrays(
        digits, labels, 16, image_size=96, scale_range=(1.0, 1.0), seed=2
    )
    for n in range(16):
        valid = scenes["classes"][n] >= 0
        masks = scenes["masks"][n][valid].astype(bool)
        # Masks never overlap, and each lies where its ink is.
        assert np.all(masks.sum(axis=0) <= 1)
        assert np.all(scenes["images"][n, ..., 0][masks.any(axis=0)] >= 96)
        for mask, box in zip(masks, scenes["boxes"][n][valid], strict=True):
            assert box.tolist() == _tight_box(mask)
            # Unscaled squares of 12 x 8 pixels, boxes disjoint.
            assert (box[2] - box[0], box[3] - box[1]) == (12, 8)
        boxes = scenes["boxes"][n][valid]
        for i in range(len(boxes)):
            for j in range(i):
                overlap = np.minimum(boxes[i, 2:], boxes[j, 2:]) - np.maximum(
                    boxes[i, :2], boxes[j, :2]
                )
                assert np.any(overlap <= 0)
    # The class is the label of the pasted digit: its ink value says which.
    for n, m in zip(*np.nonzero(scenes["classes"] >= 0), strict=True):
        value = scenes["images"][n, ..., 0][scenes["masks"][n, m] > 0][0]
        assert scenes["classes"][n, m] == (int(value) - 200) % 10


def test_controlled_overlap_occludes_earlier_masks():
    digits, labels = _digits()
    scenes = digit_scenes.make_digit_scene_arrays(
        digits,
        labels,
        40,
        image_size=40,
        min_digits=3,
        max_digits=3,
        scale_range=(1.0, 1.0),
        max_overlap=0.6,
        seed=3,
    )
    masks = scenes["masks"].astype(bool)
    assert np.all(masks.sum(axis=1) <= 1)
    # Some boxes now overlap, and boxes stay tight around what is visible.
    overlapping = 0
    for n, m in zip(*np.nonzero(scenes["classes"] >= 0), strict=True):
        assert scenes["boxes"][n, m].tolist() == _tight_box(masks[n, m])
        others = [
            k for k in range(3) if k != m and scenes["classes"][n, k] >= 0
        ]
        for k in others:
            a, b = scenes["boxes"][n, m], scenes["boxes"][n, k]
            if np.all(np.minimum(a[2:], b[2:]) > np.maximum(a[:2], b[:2])):
                overlapping += 1
    assert overlapping > 0


def test_seeded_and_synthetic():
    first = digit_scenes.make_synthetic_digit_scenes(4, seed=5)
    second = digit_scenes.make_synthetic_digit_scenes(4, seed=5)
    for key in digit_scenes.SCENE_KEYS:
        np.testing.assert_array_equal(first[key], second[key])
    assert first["images"].shape == (4, 128, 128, 3)
    assert np.all(first["classes"][:, :2] >= 0)  # min_digits=2 fit easily


def test_loader_uses_the_split_digits(tmp_path):
    rng = np.random.default_rng(0)
    x = np.zeros((MNIST_TEST_POOL_START + 100, 28, 28), np.uint8)
    y = np.zeros(len(x), np.uint8)
    x[:, 10:18, 10:18] = 255
    y[MNIST_TEST_POOL_START:] = 7  # only the test pool holds sevens
    y[:MNIST_TEST_POOL_START] = rng.integers(0, 7, MNIST_TEST_POOL_START)
    np.savez_compressed(tmp_path / "mnist_train.npz", x=x, y=y)
    test = digit_scenes.load_digit_scene_arrays(tmp_path, "test", 6)
    train = digit_scenes.load_digit_scene_arrays(tmp_path, "train", 6)
    assert set(test["classes"][test["classes"] >= 0].tolist()) == {7}
    assert 7 not in train["classes"]


def test_dataset_batches_for_fit():
    scenes = digit_scenes.make_synthetic_digit_scenes(
        6, image_size=48, max_digits=2, scale_range=(0.8, 1.0)
    )
    dataset = digit_scenes.make_digit_scene_dataset(scenes, 4, shuffle=True)
    batches = list(dataset)
    assert len(batches) == 1  # drop_remainder: static shapes for XLA
    images, targets = batches[0]
    assert images.shape == (4, 48, 48, 3) and images.dtype == "float32"
    assert targets["boxes"].shape == (4, 2, 4)
    assert targets["classes"].dtype == "int32"
    assert targets["masks"].shape == (4, 2, 48, 48)
    assert targets["masks"].dtype == "float32"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_examples": 0}, "Received: num_examples=0"),
        ({"image_size": 16}, "Received: image_size=16"),
        ({"min_digits": 3, "max_digits": 2}, "Received: max_digits=2"),
        ({"scale_range": (1.0, 5.0)}, "Received: scale_range=(1.0, 5.0)"),
        ({"scale_range": (0.0, 1.0)}, "Received: scale_range=(0.0, 1.0)"),
        ({"max_overlap": 1.0}, "Received: max_overlap=1.0"),
        ({"channels": 2}, "Received: channels=2"),
        ({"ink_threshold": 0}, "Received: ink_threshold=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    digits, labels = _digits()
    arguments = {"num_examples": 2, **kwargs}
    with pytest.raises(ValueError, match=re.escape(match)):
        digit_scenes.make_digit_scene_arrays(digits, labels, **arguments)


def test_bad_digits_and_scenes():
    digits, labels = _digits()
    with pytest.raises(ValueError, match=r"digit_images.shape=\(20, 28, 20\)"):
        digit_scenes.make_digit_scene_arrays(digits[:, :, :20], labels, 2)
    with pytest.raises(ValueError, match="3 labels for 20 images"):
        digit_scenes.make_digit_scene_arrays(digits, labels[:3], 2)
    with pytest.raises(ValueError, match=r"Missing: \['masks'\]"):
        digit_scenes.make_digit_scene_dataset(
            {"images": 0, "boxes": 0, "classes": 0}
        )
