"""Tests for the TFDS loaders, offline with `tfds.testing.mock_data`."""

import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_segattn import data


def _coco_examples(builder, split, **kwargs):
    """Two known `coco/2017` examples (TFDS's feature layout)."""
    del builder, split, kwargs
    images = np.zeros((2, 20, 40, 3), np.uint8)
    images[1] = 255
    examples = {
        "image": images,
        "image/filename": np.array([b"a.jpg", b"b.jpg"]),
        "image/id": np.array([7, 9], np.int64),
        "objects": {
            # Relative (ymin, xmin, ymax, xmax); the third box of the
            # first image is degenerate, the fourth a crowd region.
            "bbox": np.array(
                [
                    [
                        [0.1, 0.1, 0.5, 0.2],
                        [0.0, 0.5, 1.0, 1.0],
                        [0.6, 0.6, 0.6, 0.9],
                        [0.5, 0.0, 0.9, 0.4],
                    ],
                    [[0.2, 0.2, 0.4, 0.4]] + [[0, 0, 0, 0]] * 3,
                ],
                np.float32,
            ),
            "label": np.array([[3, 7, 1, 2], [5, 0, 0, 0]], np.int64),
            "is_crowd": np.array([[False, False, False, True], [False] * 4]),
            "area": np.ones((2, 4), np.int64),
            "id": np.arange(8, dtype=np.int64).reshape(2, 4),
        },
    }
    return tf.data.Dataset.from_tensor_slices(examples)


@pytest.mark.parametrize("crowd", ["drop", "keep"])
def test_tfds_coco_examples(crowd):
    with tfds.testing.mock_data(as_dataset_fn=_coco_examples):
        dataset, names = data.load_tfds_coco(
            "validation", image_size=(10, 20), max_instances=3, crowd=crowd
        )
        examples = list(dataset)
    assert len(names) == 80  # the names come with prepared data
    (image, first), (second_image, second) = examples
    assert image.shape == (10, 20, 3) and image.dtype == tf.float32
    np.testing.assert_array_equal(second_image, np.full((10, 20, 3), 255.0))
    assert int(first["image_id"]) == 7
    # Largest first: the right half (10 x 10 px), then the crowd region
    # (4 x 8) if kept, then the small box (4 x 2); the degenerate one never.
    scale = np.array([10, 20, 10, 20], np.float32)
    if crowd == "keep":
        expected_boxes = [
            [0, 0.5, 1, 1],
            [0.5, 0, 0.9, 0.4],
            [0.1, 0.1, 0.5, 0.2],
        ]
        expected_classes, expected_crowd = [7, 2, 3], [0, 1, 0]
    else:
        expected_boxes = [[0, 0.5, 1, 1], [0.1, 0.1, 0.5, 0.2]]
        expected_classes, expected_crowd = [7, 3, -1], [0, 0, 0]
    boxes = np.full((3, 4), -1.0, np.float32)
    boxes[: len(expected_boxes)] = np.array(expected_boxes) * scale
    np.testing.assert_allclose(first["boxes"], boxes, rtol=1e-6)
    np.testing.assert_array_equal(first["classes"], expected_classes)
    np.testing.assert_array_equal(first["iscrowd"], expected_crowd)
    # Fewer boxes than rows: padded with -1.
    np.testing.assert_allclose(
        second["boxes"], [[2, 4, 4, 8], [-1] * 4, [-1] * 4], rtol=1e-6
    )
    np.testing.assert_array_equal(second["classes"], [5, -1, -1])


def test_tfds_coco_checks_its_arguments_and_objects():
    with pytest.raises(ValueError, match=re.escape("Received: crowd='all'")):
        data.load_tfds_coco(crowd="all")
    # TFDS's random mock data gives objects fields of different lengths,
    # which real `coco/2017` examples never have: refused, not misread.
    with tfds.testing.mock_data(num_examples=2):
        dataset, _ = data.load_tfds_coco(image_size=16, max_instances=4)
        with pytest.raises(
            tf.errors.InvalidArgumentError, match="different lengths"
        ):
            list(dataset)


def test_tfds_mnist_batches():
    with tfds.testing.mock_data(num_examples=10):
        dataset = data.load_tfds_mnist("train", batch_size=4)
        batches = list(dataset)
    assert len(batches) == 2  # 10 examples, drop_remainder
    images, labels = batches[0]
    assert images.shape == (4, 28, 28, 1) and images.dtype == tf.float32
    assert labels.shape == (4,) and labels.dtype == tf.int32
    assert float(tf.reduce_max(images)) <= 255.0
    assert np.all((labels.numpy() >= 0) & (labels.numpy() < 10))
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        data.load_tfds_mnist(batch_size=0)
