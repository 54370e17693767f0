"""Tests for `keras_segattn.data.DetectionAugmenter`."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data import DetectionAugmenter

H, W = 24, 32


def _scene(batch=8):
    """Two filled rectangles per image (pixels 255 = their masks), one
    padding row; boxes (ymin, xmin, ymax, xmax) exclusive ends."""
    boxes = np.array(
        [[4, 3, 10, 9], [12, 18, 20, 29], [-1, -1, -1, -1]], np.float32
    )
    images = np.zeros((batch, H, W, 3), np.float32)
    masks = np.zeros((batch, 3, H, W), np.uint8)
    for row, (y1, x1, y2, x2) in enumerate(boxes[:2].astype(int)):
        images[:, y1:y2, x1:x2] = 255.0
        masks[:, row, y1:y2, x1:x2] = 1
    targets = {
        "boxes": np.repeat(boxes[None], batch, 0),
        "classes": np.repeat(np.array([[2, 5, -1]], np.int32), batch, 0),
        "masks": masks,
        "iscrowd": np.zeros((batch, 3), np.int32),
    }
    return images, targets


def _tight_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


def test_flip_moves_boxes_masks_and_pixels_together():
    images, targets = _scene()
    augment = DetectionAugmenter(
        "yxyx", scale_range=(1, 1), max_shift=0, seed=3
    )
    out_images, out = augment(tf.constant(images), targets)
    out_images = out_images.numpy()
    flipped = 0
    for n in range(len(images)):
        was_flipped = not np.array_equal(out_images[n], images[n])
        flipped += was_flipped
        expected_image = images[n, :, ::-1] if was_flipped else images[n]
        np.testing.assert_array_equal(out_images[n], expected_image)
        for row in range(2):
            y1, x1, y2, x2 = targets["boxes"][n, row]
            expected = (
                [y1, W - x2, y2, W - x1] if was_flipped else [y1, x1, y2, x2]
            )
            np.testing.assert_allclose(out["boxes"][n, row], expected)
            mask = targets["masks"][n, row]
            np.testing.assert_array_equal(
                out["masks"][n, row], mask[:, ::-1] if was_flipped else mask
            )
            np.testing.assert_array_equal(
                _tight_box(out["masks"][n, row]), out["boxes"][n, row]
            )
        np.testing.assert_array_equal(out["boxes"][n, 2], [-1] * 4)
        np.testing.assert_array_equal(out["classes"][n], [2, 5, -1])
    assert 0 < flipped < len(images)  # both outcomes drawn


@pytest.mark.parametrize("box_format", ["yxyx", "xyxy", "xywh"])
def test_scale_and_crop_keep_boxes_on_their_masks(box_format):
    images, targets = _scene()
    yxyx = targets["boxes"]
    targets["boxes"] = np.where(
        yxyx == -1,
        -1.0,
        tf.keras.utils.bounding_boxes.convert_format(
            yxyx, source="yxyx", target=box_format
        ).numpy(),
    ).astype(np.float32)
    augment = DetectionAugmenter(
        box_format, scale_range=(0.7, 1.4), max_shift=0.15, seed=0
    )
    out_images, out = augment(tf.constant(images), targets)
    assert out_images.shape == images.shape
    assert out["masks"].shape == targets["masks"].shape
    assert out["masks"].dtype == tf.uint8
    boxes = tf.keras.utils.bounding_boxes.convert_format(
        out["boxes"], source=box_format, target="yxyx"
    ).numpy()
    moved = 0
    for n in range(len(images)):
        for row in range(2):
            if out["classes"][n, row] < 0:  # left the image
                assert not out["masks"][n, row].numpy().any()
                continue
            mask = out["masks"][n, row].numpy()
            # The box is the mask's extent (1 px of resampling slack) ...
            np.testing.assert_allclose(boxes[n, row], _tight_box(mask), atol=1)
            moved += not np.allclose(boxes[n, row], yxyx[n, row], atol=0.5)
            # ... and the mask lies on the moved (bilinear) pixels.
            assert np.all(out_images[n, ..., 0].numpy()[mask > 0] > 0)
        # Every pixel fully inside a moved rectangle is in a kept mask.
        solid = out_images[n, ..., 0].numpy() > 254.5
        union = out["masks"][n].numpy().max(axis=0) > 0
        assert solid.any() and np.all(union[solid])
        assert out["classes"][n, 2] == -1
        np.testing.assert_array_equal(out["boxes"][n, 2], [-1] * 4)
    assert moved > 0


def test_boxes_pushed_out_of_the_image_become_padding():
    images, targets = _scene(batch=1)
    # Zoom in 2x about the centre: the first box (rows 4..10, columns
    # 3..9) leaves the 24 x 32 image, the second stays partly.
    augment = DetectionAugmenter(
        "yxyx", flip=False, scale_range=(4, 4), max_shift=0, seed=0
    )
    _, out = augment(tf.constant(images), targets)
    np.testing.assert_array_equal(out["classes"][0], [-1, 5, -1])
    np.testing.assert_array_equal(out["boxes"][0, 0], [-1] * 4)
    assert not out["masks"][0, 0].numpy().any()
    assert out["masks"][0, 1].numpy().any()
    np.testing.assert_array_equal(out["iscrowd"][0], [0, 0, 0])


def test_labels_key_unbatched_and_inference():
    images, targets = _scene(batch=1)
    example = {
        "boxes": targets["boxes"][0],
        "labels": targets["classes"][0],
        "masks": targets["masks"][0],
    }
    augment = DetectionAugmenter("yxyx", seed=1)
    out_image, out = augment(tf.constant(images[0]), example)
    assert sorted(out) == ["boxes", "labels", "masks"]
    assert out_image.shape == (H, W, 3) and out["masks"].shape == (3, H, W)
    image = images[0]
    same_image, same = augment(image, example, training=False)
    assert same is example and same_image is image


def test_static_shapes_in_a_batched_dataset():
    images, targets = _scene(batch=4)
    dataset = (
        tf.data.Dataset.from_tensor_slices((images, targets))
        .batch(2, drop_remainder=True)
        .map(DetectionAugmenter("yxyx", seed=0))
    )
    image_spec, target_spec = dataset.element_spec
    assert image_spec.shape == (2, H, W, 3)
    assert target_spec["boxes"].shape == (2, 3, 4)
    assert target_spec["masks"].shape == (2, 3, H, W)
    assert len(list(dataset)) == 2


def test_bad_arguments():
    with pytest.raises(
        ValueError, match=re.escape("Received: bounding_box_format='xyzw'")
    ):
        DetectionAugmenter("xyzw")
    with pytest.raises(ValueError, match="Relative formats"):
        DetectionAugmenter("rel_xyxy")
    with pytest.raises(ValueError, match="scale_range"):
        DetectionAugmenter(scale_range=(2, 1))
    with pytest.raises(ValueError, match="max_shift=1"):
        DetectionAugmenter(max_shift=1)
    augment = DetectionAugmenter()
    with pytest.raises(ValueError, match='"classes" or "labels"'):
        augment(np.zeros((H, W, 3)), {"boxes": np.zeros((1, 4))})
