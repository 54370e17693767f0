import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_segattn import data

CAMVID_DIR = Path(__file__).resolve().parents[2] / "sample_data" / "camvid"


def _names(split):
    return (CAMVID_DIR / split / "files.txt").read_text().split()


def test_constants():
    assert data.CAMVID_NUM_CLASSES == len(data.CAMVID_CLASS_NAMES) == 11
    assert data.CAMVID_VOID_LABEL == 11
    assert data.CAMVID_PALETTE.shape == (12, 3)
    assert data.CAMVID_PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in data.CAMVID_PALETTE}) == 12


@pytest.mark.parametrize("split", ["train", "val"])
def test_native_size_keeps_labels_and_void(split):
    ds = data.load_camvid(
        CAMVID_DIR,
        split,
        image_size=None,
        batch_size=1,
        training=False,
        drop_remainder=False,
    )
    seen = set()
    for name, (image, mask) in zip(_names(split), ds, strict=True):
        assert image.shape == (1, 180, 240, 3) and image.dtype == tf.float32
        expected = np.array(Image.open(CAMVID_DIR / split / "labels" / name))
        np.testing.assert_array_equal(mask[0], expected)
        seen |= set(np.unique(mask).tolist())
    assert seen == set(range(12))  # every class and the void label 11


def test_resized_and_augmented_labels_stay_valid():
    ds = data.load_camvid(
        CAMVID_DIR, "train", image_size=(48, 64), batch_size=4, seed=1
    )
    masks = np.concatenate([m for _ in range(2) for _, m in ds])
    images = np.concatenate([x for x, _ in ds])
    assert masks.shape == (16, 48, 64) and masks.dtype == np.int32
    assert images.shape == (8, 48, 64, 3)
    assert set(np.unique(masks)) <= set(range(12))
    assert data.CAMVID_VOID_LABEL in masks


def test_out_of_range_values_are_named_errors(tmp_path):
    # A value above 11 is a damaged or differently encoded label file, not
    # void: it fails the iteration naming the file (it used to become 11).
    shutil.copytree(CAMVID_DIR / "val", tmp_path / "val")
    name = _names("val")[0]
    label_path = tmp_path / "val" / "labels" / name
    label = np.array(Image.open(label_path))
    label[:2, :2] = 200
    Image.fromarray(label).save(label_path)
    ds = data.load_camvid(tmp_path, "val", image_size=None, batch_size=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=name):
        for _ in ds:
            pass


def test_files_txt_selects(tmp_path):
    shutil.copytree(CAMVID_DIR / "val", tmp_path / "val")
    names = _names("val")
    (tmp_path / "val" / "files.txt").write_text(f"{names[2]}\n{names[0]}\n")
    ds = data.load_camvid(tmp_path, "val", image_size=None, batch_size=1)
    masks = [m[0].numpy() for _, m in ds]
    assert len(masks) == 2
    expected = np.array(Image.open(tmp_path / "val" / "labels" / names[2]))
    np.testing.assert_array_equal(masks[0], expected)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split='validation'"):
        data.load_camvid(CAMVID_DIR, "validation")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "train"))):
        data.load_camvid(tmp_path, "train")
    with pytest.raises(ValueError, match=r"image_size=\(0, 4\)"):
        data.load_camvid(CAMVID_DIR, "val", image_size=(0, 4))
