"""Tests for `keras_segattn.data.coco_instances` (COCO json via pycocotools)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from keras_segattn import data
from keras_segattn.data import coco_instances

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data" / "coco_mini"
HEIGHT, WIDTH = 8, 10


def _hand_drawn():
    """The expected masks, drawn pixel by pixel ([row, column])."""
    square = np.zeros((HEIGHT, WIDTH), np.uint8)
    square[1:4, 2:6] = 1  # polygon (2, 1) (6, 1) (6, 4) (2, 4)
    ell = np.zeros((HEIGHT, WIDTH), np.uint8)
    ell[1:3, 1:5] = 1  # polygon (1,1) (5,1) (5,3) (3,3) (3,6) (1,6)
    ell[3:6, 1:3] = 1
    crowd = np.zeros((HEIGHT, WIDTH), np.uint8)
    crowd[5:8, 6:10] = 1
    blob = np.zeros((HEIGHT, WIDTH), np.uint8)
    blob[0:2, 7:9] = 1
    blob[2, 8] = 1
    return square, ell, crowd, blob


def _uncompressed_rle(mask):
    """COCO's uncompressed RLE, counted by hand in column-major order."""
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return {"counts": [int(c) for c in counts], "size": list(mask.shape)}


def _write_coco(tmp_path, annotations=None, categories=None):
    square, ell, crowd, blob = _hand_drawn()
    compressed = mask_utils.encode(np.asfortranarray(blob))
    compressed["counts"] = compressed["counts"].decode("ascii")
    images_dir = tmp_path / "images"
    images_dir.mkdir(exist_ok=True)
    for name, value in (("a.png", 50), ("b.png", 200)):
        pixels = np.full((HEIGHT, WIDTH, 3), value, np.uint8)
        Image.fromarray(pixels).save(images_dir / name)
    if annotations is None:
        annotations = [
            {
                "id": 1,
                "image_id": 10,
                "category_id": 3,
                "bbox": [2, 1, 4, 3],
                "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]],
                "iscrowd": 0,
                "area": 12,
            },
            {
                "id": 2,
                "image_id": 10,
                "category_id": 7,
                "bbox": [6, 5, 4, 3],
                "segmentation": _uncompressed_rle(crowd),
                "iscrowd": 1,
                "area": 12,
            },
            {
                "id": 3,
                "image_id": 20,
                "category_id": 7,
                "bbox": [1, 1, 4, 5],
                "segmentation": [[1, 1, 5, 1, 5, 3, 3, 3, 3, 6, 1, 6]],
                "iscrowd": 0,
                "area": 14,
            },
            {
                "id": 4,
                "image_id": 20,
                "category_id": 3,
                "bbox": [7, 0, 2, 3],
                "segmentation": compressed,
                "iscrowd": 0,
                "area": 5,
            },
        ]
    payload = {
        "images": [
            {"id": 10, "file_name": "a.png", "height": HEIGHT, "width": WIDTH},
            {"id": 20, "file_name": "b.png", "height": HEIGHT, "width": WIDTH},
            {"id": 30, "file_name": "none.png", "height": 4, "width": 4},
        ],
        "annotations": annotations,
        "categories": categories
        or [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
    }
    path = tmp_path / "instances_test.json"
    path.write_text(json.dumps(payload))
    return path, images_dir


def _examples(dataset):
    return [
        (images.numpy(), {k: v.numpy() for k, v in targets.items()})
        for images, targets in dataset
    ]


@pytest.mark.parametrize("crowd", ["drop", "keep"])
def test_polygon_and_rle_masks_match_pycocotools_and_drawing(tmp_path, crowd):
    path, images_dir = _write_coco(tmp_path)
    dataset, categories = data.load_coco_instances(
        path,
        images_dir,
        image_size=(HEIGHT, WIDTH),
        max_instances=3,
        crowd=crowd,
    )
    assert [c["id"] for c in categories] == [3, 7]  # contiguous 0, 1
    examples = _examples(dataset)
    # Image 30 has no annotation: left out.
    assert [t["image_id"] for _, t in examples] == [10, 20]
    reference = COCO(str(path))
    square, ell, crowd_mask, blob = _hand_drawn()

    images, first = examples[0]
    np.testing.assert_array_equal(images, np.full((HEIGHT, WIDTH, 3), 50.0))
    expected_rows = 2 if crowd == "keep" else 1
    # The crowd region (box 12 px) ties the square (12 px): stable order.
    np.testing.assert_array_equal(first["masks"][0], square)
    np.testing.assert_array_equal(
        first["masks"][0], reference.annToMask(reference.anns[1])
    )
    np.testing.assert_allclose(first["boxes"][0], [1, 2, 4, 6])
    assert first["classes"][0] == 0
    if crowd == "keep":
        np.testing.assert_array_equal(first["masks"][1], crowd_mask)
        np.testing.assert_array_equal(
            first["masks"][1], reference.annToMask(reference.anns[2])
        )
        np.testing.assert_array_equal(first["iscrowd"], [0, 1, 0])
        np.testing.assert_array_equal(first["classes"], [0, 1, -1])
    else:
        np.testing.assert_array_equal(first["iscrowd"], [0, 0, 0])
        np.testing.assert_array_equal(first["classes"], [0, -1, -1])
    assert np.all(first["boxes"][expected_rows:] == -1)
    assert not first["masks"][expected_rows:].any()

    _, second = examples[1]
    # Largest box first: the L polygon (20 px box), then the RLE blob.
    np.testing.assert_array_equal(second["masks"][0], ell)
    np.testing.assert_array_equal(second["masks"][1], blob)
    for row, ann_id in ((0, 3), (1, 4)):
        np.testing.assert_array_equal(
            second["masks"][row],
            reference.annToMask(reference.anns[ann_id]),
        )
    np.testing.assert_array_equal(second["classes"], [1, 0, -1])
    np.testing.assert_allclose(second["boxes"][1], [0, 7, 3, 9])


def test_resized_examples_are_static_and_scaled(tmp_path):
    path, images_dir = _write_coco(tmp_path)
    dataset, _ = data.load_coco_instances(
        path, images_dir, image_size=16, max_instances=2
    )
    images, targets = next(iter(dataset.batch(2, drop_remainder=True)))
    assert images.shape == (2, 16, 16, 3)
    assert targets["masks"].shape == (2, 2, 16, 16)
    assert targets["masks"].dtype == "uint8"
    # The square (rows 1..4, columns 2..6 of 8 x 10) scaled by (2, 1.6).
    np.testing.assert_allclose(
        targets["boxes"][0, 0], [2, 3.2, 8, 9.6], rtol=1e-6
    )
    # Nearest neighbour with half-pixel centres, in NumPy.
    rows = np.floor((np.arange(16) + 0.5) * HEIGHT / 16).astype(int)
    columns = np.floor((np.arange(16) + 0.5) * WIDTH / 16).astype(int)
    square = _hand_drawn()[0]
    np.testing.assert_array_equal(
        targets["masks"][0, 0], square[rows][:, columns]
    )


def test_shared_sample_masks_equal_its_pngs():
    """COCO-MINI's json decoded by pycocotools gives its per-annotation PNGs
    (through the existing PNG loader), boxes and classes included."""
    dataset, categories = data.load_coco_instances(
        SAMPLE / "instances.json",
        SAMPLE / "images",
        image_size=48,
        max_instances=12,
    )
    arrays, png_categories = data.load_coco_instance_arrays(SAMPLE, 48, 12)
    records, _ = data.list_coco_instances(SAMPLE)
    assert categories == png_categories
    row_of = {r["image_id"]: n for n, r in enumerate(records)}
    examples = _examples(dataset)
    assert sorted(t["image_id"] for _, t in examples) == sorted(row_of)
    for images, targets in examples:
        n = row_of[targets["image_id"]]
        np.testing.assert_array_equal(images, arrays["images"][n])
        np.testing.assert_allclose(targets["boxes"], arrays["boxes"][n])
        np.testing.assert_array_equal(targets["classes"], arrays["classes"][n])
        np.testing.assert_array_equal(targets["masks"], arrays["masks"][n])


def test_errors_name_the_file(tmp_path):
    path, images_dir = _write_coco(tmp_path)
    with pytest.raises(FileNotFoundError, match="cocodataset.org"):
        data.load_coco_instances(tmp_path / "missing.json", images_dir)
    with pytest.raises(FileNotFoundError, match="cocodataset.org"):
        data.load_coco_instances(path, tmp_path / "no_images")
    # An annotated image missing on disk.
    payload = json.loads(path.read_text())
    payload["annotations"][0]["image_id"] = 30
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=re.escape("none.png")):
        data.load_coco_instances(path, images_dir)
    payload["annotations"][0]["image_id"] = 99
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="unknown image 99"):
        data.load_coco_instances(path, images_dir)
    payload["annotations"][0]["image_id"] = 10
    payload["annotations"][0]["category_id"] = 42
    path.write_text(json.dumps(payload))
    with pytest.raises(
        ValueError, match=r"instances_test\.json.*unknown category 42"
    ):
        data.load_coco_instances(path, images_dir)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="instances_test.json"):
        data.load_coco_instances(path, images_dir)
    with pytest.raises(ValueError, match="Received: crowd='ignore'"):
        data.load_coco_instances(path, images_dir, crowd="ignore")
    with pytest.raises(ValueError, match="Received: max_instances=0"):
        data.load_coco_instances(path, images_dir, max_instances=0)


def test_image_of_the_wrong_size_names_the_image(tmp_path):
    path, images_dir = _write_coco(tmp_path)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(images_dir / "b.png")
    # Checked when the dataset is built (verify=True, the default) ...
    with pytest.raises(ValueError, match=r"b\.png' is 5x5 .* gives 10x8"):
        data.load_coco_instances(path, images_dir)
    # ... or, unchecked, when the image is read.
    dataset, _ = data.load_coco_instances(path, images_dir, verify=False)
    with pytest.raises(Exception, match=re.escape("b.png")):
        _examples(dataset)


@pytest.mark.parametrize("fault", ["truncated", "empty"])
@pytest.mark.parametrize("verify", [True, "full"])
def test_damaged_image_fails_at_load_time_naming_it(tmp_path, fault, verify):
    path, images_dir = _write_coco(tmp_path)
    image = images_dir / "b.png"
    content = image.read_bytes()
    image.write_bytes(
        content[: len(content) // 2] if fault == "truncated" else b""
    )
    with pytest.raises(ValueError, match=r"Cannot read image file .*b\.png"):
        data.load_coco_instances(path, images_dir, verify=verify)


def test_verify_is_checked(tmp_path):
    path, images_dir = _write_coco(tmp_path)
    with pytest.raises(ValueError, match="Received: verify='yes'"):
        data.load_coco_instances(path, images_dir, verify="yes")


def test_index_keeps_the_largest_instances(tmp_path):
    path, images_dir = _write_coco(tmp_path)
    _, records, _ = coco_instances.index_coco_instances(
        path, images_dir, crowd="keep", max_instances=1
    )
    assert [r["annotation_ids"] for r in records] == [[1], [3]]
