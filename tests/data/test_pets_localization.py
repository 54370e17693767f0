"""Tests for `keras_segattn.data.pets_localization`."""

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data import pets_localization as pl


def _hand_trimap():
    # 10 x 20: pet rows 2..5, cols 4..9; border ring one pixel wider.
    trimap = np.full((10, 20), 2, np.uint8)
    trimap[1:7, 3:11] = 3
    trimap[2:6, 4:10] = 1
    return trimap


def test_box_from_hand_made_trimap():
    trimap = _hand_trimap()
    with_border = pl.box_from_trimap(trimap).numpy()
    np.testing.assert_allclose(with_border, [0.1, 0.15, 0.7, 0.55])
    pet_only = pl.box_from_trimap(trimap, include_border=False).numpy()
    np.testing.assert_allclose(pet_only, [0.2, 0.2, 0.6, 0.5])
    empty = pl.box_from_trimap(np.full((4, 4, 1), 2, np.uint8)).numpy()
    np.testing.assert_array_equal(empty, [0, 0, 0, 0])


def test_flip_and_crop_keep_the_box_on_the_mask():
    trimap = _hand_trimap()
    box = pl.box_from_trimap(trimap)
    # The mask travels as the image: the transformed box must be the box
    # of the transformed mask.
    image = tf.constant(np.repeat(trimap[..., None], 3, -1))
    checked = 0
    for s in range(40):
        out_image, out_box = pl.augment_image_and_box(
            image, box, tf.constant([s, 7]), min_scale=0.6
        )
        expected = pl.box_from_trimap(out_image[..., 0]).numpy()
        if not expected.any():
            continue  # the crop missed the pet
        np.testing.assert_allclose(out_box.numpy(), expected, atol=1e-5)
        assert np.all((out_box.numpy() >= 0) & (out_box.numpy() <= 1))
        checked += 1
    assert checked > 30


def test_flip_box_left_right():
    box = tf.constant([0.1, 0.2, 0.5, 0.3])
    np.testing.assert_allclose(
        pl.flip_box_left_right(box).numpy(), [0.1, 0.7, 0.5, 0.8]
    )


def test_synthetic_twin_format_and_boxes_match_trimaps():
    arrays = pl.make_synthetic_pets_localization_arrays(6, 24, seed=3)
    assert arrays["images"].shape == (6, 24, 24, 3)
    for trimap, box in zip(arrays["trimaps"], arrays["boxes"], strict=True):
        np.testing.assert_allclose(pl.box_from_trimap(trimap).numpy(), box)
    dataset = pl.make_synthetic_pets_localization(
        8, 32, seed=0, batch_size=4, training=True
    )
    images, targets = next(iter(dataset))
    assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
    assert targets["classes"].dtype == tf.int32
    assert targets["classes"].shape == (4,)
    assert targets["boxes"].shape == (4, 4)
    boxes = targets["boxes"].numpy()
    assert np.all((boxes >= 0) & (boxes <= 1))
    assert np.all(boxes[:, 2:] >= boxes[:, :2])
    assert int(dataset.cardinality()) == 2


@pytest.mark.parametrize(
    "bad", [[0.0, 0.0, 1.2, 1.0], [-0.1, 0.0, 0.5, 0.5], [0.6, 0.0, 0.5, 1.0]]
)
def test_out_of_range_boxes_raise_naming_boxes(bad):
    images = np.zeros((2, 8, 8, 3), np.float32)
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], bad], np.float32)
    with pytest.raises(ValueError, match="`boxes`"):
        pl.make_localization_dataset(images, [0, 1], boxes, batch_size=1)


def test_loader_reads_a_folder(tmp_path):
    from PIL import Image

    for d in ("images", "trimaps"):
        (tmp_path / d).mkdir()
    rows = ["name,image,trimap,breed,class_id"]
    for breed, cid in (("cat_b", 2), ("dog_a", 1)):
        for i in range(3):
            name = f"{breed}_{i}"
            Image.fromarray(np.full((10, 20, 3), 40 * cid, np.uint8)).save(
                tmp_path / "images" / f"{name}.jpg"
            )
            Image.fromarray(_hand_trimap()).save(
                tmp_path / "trimaps" / f"{name}.png"
            )
            rows.append(
                f"{name},images/{name}.jpg,trimaps/{name}.png,{breed},{cid}"
            )
    (tmp_path / "index.csv").write_text("\n".join(rows) + "\n")
    names, _ = pl.pets_breeds(tmp_path)
    assert names == ("dog_a", "cat_b")
    val = pl.load_pets_localization(
        tmp_path, 16, "validation", 0.34, batch_size=2, augment=False
    )
    images, targets = next(iter(val))
    assert images.shape == (2, 16, 16, 3)
    assert sorted(targets["classes"].numpy().tolist()) == [0, 1]
    np.testing.assert_allclose(
        targets["boxes"].numpy(), [[0.1, 0.15, 0.7, 0.55]] * 2, atol=1e-6
    )
    train = pl.load_pets_localization(tmp_path, 16, "train", 0.34, batch_size=2)
    _, targets = next(iter(train))
    assert np.all(
        (targets["boxes"].numpy() >= 0) & (targets["boxes"].numpy() <= 1)
    )
