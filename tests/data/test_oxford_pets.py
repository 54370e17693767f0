import csv
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from keras_segattn import data

PETS_DIR = Path(__file__).resolve().parents[2] / "sample_data" / "oxford_pets"


def _index():
    with open(PETS_DIR / "index.csv", newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def test_constants():
    assert data.PETS_NUM_CLASSES == len(data.PETS_CLASS_NAMES) == 3
    assert data.PETS_CLASS_NAMES[0] == "pet"
    for raw, cls in data.PETS_LABEL_MAP.items():
        assert raw == cls + data.PETS_LABEL_OFFSET


def test_splits_disjoint_deterministic_and_stratified():
    index = _index()
    train = data.list_oxford_pets(PETS_DIR, "train")
    val = data.list_oxford_pets(PETS_DIR, "validation")
    assert not set(train) & set(val)
    assert (
        sorted(train + val)
        == sorted(index)
        == data.list_oxford_pets(PETS_DIR, "all")
    )
    assert train == data.list_oxford_pets(PETS_DIR, "train")
    assert val == data.list_oxford_pets(PETS_DIR, "validation")
    # 20 per breed in the sample: 4 of each held out.
    breeds = [index[name]["breed"] for name in val]
    assert sorted(breeds) == sorted(
        ["Abyssinian", "Bengal", "american_bulldog"] * 4
    )
    more = data.list_oxford_pets(
        PETS_DIR, "validation", validation_fraction=0.5
    )
    assert len(more) == 30 and set(val) <= set(more)


def test_split_without_index_csv(tmp_path):
    for name in ["cat_a_1", "cat_a_2", "cat_a_3", "dog_9", "dog_10"]:
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / f"{name}.jpg").write_bytes(b"")
    val = data.list_oxford_pets(tmp_path, "validation", validation_fraction=0.4)
    train = data.list_oxford_pets(tmp_path, "train", validation_fraction=0.4)
    assert len(val) == 2 and len(train) == 3  # one per breed held out
    assert {name.rsplit("_", 1)[0] for name in val} == {"cat_a", "dog"}


def test_load_train_and_validation():
    train = data.load_oxford_pets(
        PETS_DIR, "train", image_size=64, batch_size=8, seed=0
    )
    assert [spec.shape.as_list() for spec in train.element_spec] == [
        [8, 64, 64, 3],
        [8, 64, 64],
    ]
    images, masks = next(iter(train))
    assert images.shape == (8, 64, 64, 3) and images.dtype == tf.float32
    assert masks.shape == (8, 64, 64) and masks.dtype == tf.int32
    val = data.load_oxford_pets(
        PETS_DIR, "validation", image_size=(48, 64), batch_size=4
    )
    batches = [(x.numpy(), m.numpy()) for x, m in val]
    assert len(batches) == 3  # 12 validation pairs
    labels = np.unique(np.concatenate([m for _, m in batches]))
    assert labels.tolist() == [0, 1, 2]
    assert all(0 <= x.min() and x.max() <= 255 for x, _ in batches)


def test_native_size_validation_matches_files():
    index = _index()
    names = data.list_oxford_pets(PETS_DIR, "validation")
    ds = data.load_oxford_pets(
        PETS_DIR,
        "validation",
        image_size=None,
        batch_size=1,
        drop_remainder=False,
    )
    for name, (image, mask) in zip(names, ds, strict=True):
        row = index[name]
        assert image.shape == (1, int(row["height"]), int(row["width"]), 3)
        trimap = np.array(Image.open(PETS_DIR / row["trimap"]))
        np.testing.assert_array_equal(mask[0], trimap.astype(np.int32) - 1)


def test_png_rgba_image_is_loaded_as_rgb():
    path = PETS_DIR / "images" / "Abyssinian_5.png"
    assert Image.open(path).mode == "RGBA"
    ds = data.load_segmentation_directory(
        PETS_DIR / "images",
        PETS_DIR / "trimaps",
        image_size=None,
        batch_size=1,
        files=["Abyssinian_5"],
        label_map=data.PETS_LABEL_MAP,
    )
    (image, mask), *_ = list(ds)
    expected = np.array(Image.open(path).convert("RGB"), np.float32)
    np.testing.assert_array_equal(image[0], expected)
    assert set(np.unique(mask)) <= {0, 1, 2}


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split='test'"):
        data.list_oxford_pets(PETS_DIR, "test")
    with pytest.raises(ValueError, match="validation_fraction=1.0"):
        data.load_oxford_pets(PETS_DIR, validation_fraction=1.0)
    with pytest.raises(ValueError, match="split of .* is empty"):
        data.load_oxford_pets(PETS_DIR, "validation", validation_fraction=0)
    with pytest.raises(ValueError, match=str(tmp_path)):
        data.load_oxford_pets(tmp_path)
    with pytest.raises(ValueError, match="batch_size=0"):
        data.load_oxford_pets(PETS_DIR, batch_size=0)


# TFDS is tested offline with `tfds.testing.mock_data`. Its default random
# examples have an image and a mask of unrelated sizes and mask values
# 0..255 (see `test_tfds_default_mock_is_rejected`), so the tests replace the
# builder's `_as_dataset` with consistent trimap examples.


def _trimap(height, width, seed):
    rng = np.random.default_rng(seed)
    mask = np.full((height, width), 2, np.uint8)  # background
    top, left = rng.integers(2, height // 3), rng.integers(2, width // 3)
    mask[top - 2 : height - top + 2, left - 2 : width - left + 2] = 3  # border
    mask[top : height - top, left : width - left] = 1  # pet
    return mask


def _mock_examples(num_examples=4):
    examples = []
    for i in range(num_examples):
        mask = _trimap(30 + 3 * i, 40 - 2 * i, seed=i)
        image = np.repeat((mask * 70)[..., None], 3, axis=-1).astype(np.uint8)
        examples.append({"image": image, "segmentation_mask": mask[..., None]})
    return examples


def _mock_as_dataset(examples):
    def as_dataset(self, split, **kwargs):
        del self, split, kwargs
        return tf.data.Dataset.from_generator(
            lambda: iter(examples),
            output_signature={
                "image": tf.TensorSpec([None, None, 3], tf.uint8),
                "segmentation_mask": tf.TensorSpec([None, None, 1], tf.uint8),
            },
        )

    return as_dataset


def test_tfds_loader_matches_directory_loader(tmp_path):
    examples = _mock_examples()
    for sub in ("images", "trimaps"):
        (tmp_path / sub).mkdir()
    for i, example in enumerate(examples):
        Image.fromarray(example["image"]).save(tmp_path / f"images/p_{i}.png")
        Image.fromarray(example["segmentation_mask"][..., 0]).save(
            tmp_path / f"trimaps/p_{i}.png"
        )
    from_files = data.load_oxford_pets(
        tmp_path, "all", image_size=(24, 32), batch_size=2, training=False
    )
    with tfds.testing.mock_data(as_dataset_fn=_mock_as_dataset(examples)):
        from_tfds = data.load_tfds_oxford_pets(
            "test", image_size=(24, 32), batch_size=2
        )
        assert from_tfds.element_spec == from_files.element_spec
        pairs = list(zip(from_files, from_tfds, strict=True))
    assert len(pairs) == 2
    for (x1, m1), (x2, m2) in pairs:
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(m1, m2)
        assert set(np.unique(m2)) == {0, 1, 2}


def test_tfds_loader_training():
    examples = _mock_examples()
    with tfds.testing.mock_data(as_dataset_fn=_mock_as_dataset(examples)):
        ds = data.load_tfds_oxford_pets(
            "train", image_size=32, batch_size=2, seed=0, deterministic=True
        )
        batches = [(x.numpy(), m.numpy()) for x, m in ds]
    assert len(batches) == 2
    for images, masks in batches:
        assert images.shape == (2, 32, 32, 3) and masks.shape == (2, 32, 32)
        assert set(np.unique(masks)) <= {0, 1, 2}


def test_tfds_default_mock_is_rejected():
    with tfds.testing.mock_data(num_examples=2):
        ds = data.load_tfds_oxford_pets("train", image_size=16, batch_size=1)
        with pytest.raises(
            tf.errors.InvalidArgumentError, match="sizes differ"
        ):
            list(ds)
