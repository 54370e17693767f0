"""Tests for `keras_segattn.data.coco` on the embedded COCO-MINI sample."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_segattn.data import coco

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data" / "coco_mini"


def test_captions_sample():
    images, captions, ids = coco.load_coco_captions(SAMPLE, image_size=32)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert [len(c) for c in captions] == [5, 5]
    raw = json.loads((SAMPLE / "captions.json").read_text())
    by_image = {}
    for annotation in raw["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(
            annotation["caption"].strip()
        )
    assert [sorted(c) for c in captions] == [sorted(by_image[i]) for i in ids]


def test_instances_sample_boxes_classes_and_masks():
    records, categories = coco.list_coco_instances(SAMPLE)
    raw = json.loads((SAMPLE / "instances.json").read_text())
    assert len(categories) == 80
    assert [c["id"] for c in categories] == sorted(c["id"] for c in categories)
    annotations = {a["id"]: a for a in raw["annotations"]}
    for record in records:
        assert record["boxes"].shape == (len(record["classes"]), 4)
        for box, cls, ann_id, mask_path in zip(
            record["boxes"],
            record["classes"],
            record["annotation_ids"],
            record["mask_paths"],
            strict=True,
        ):
            x, y, w, h = annotations[ann_id]["bbox"]
            np.testing.assert_allclose(box, [y, x, y + h, x + w], rtol=1e-6)
            assert categories[cls]["id"] == annotations[ann_id]["category_id"]
            mask = np.asarray(Image.open(mask_path))
            assert mask.shape == (record["height"], record["width"])
            ys, xs = np.nonzero(mask)
            # The mask lies inside its box (1 px of rasterisation slack).
            assert ys.min() >= y - 1 and ys.max() <= y + h + 1
            assert xs.min() >= x - 1 and xs.max() <= x + w + 1


def test_errors_name_the_file(tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "coco")
    (tmp_path / "coco" / "captions.json").write_text("{not json")
    with pytest.raises(ValueError, match="captions.json"):
        coco.load_coco_captions(tmp_path / "coco")
    (tmp_path / "coco" / "captions.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match="missing \\['annotations'\\]"):
        coco.load_coco_captions(tmp_path / "coco")
    instances = json.loads((SAMPLE / "instances.json").read_text())
    instances["annotations"][0]["image_id"] = 123
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(instances))
    with pytest.raises(ValueError, match="unknown image 123"):
        coco.list_coco_instances(tmp_path / "coco")
    captions = json.loads((SAMPLE / "captions.json").read_text())
    (tmp_path / "coco" / "captions.json").write_text(json.dumps(captions))
    image = captions["images"][0]["file_name"]
    (tmp_path / "coco" / "images" / image).write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=image):
        coco.load_coco_captions(tmp_path / "coco")


def test_instance_arrays_are_padded_resized_targets(tmp_path):
    arrays, categories = coco.load_coco_instance_arrays(SAMPLE, 64, 4)
    records, _ = coco.list_coco_instances(SAMPLE)
    assert arrays["images"].shape == (len(records), 64, 64, 3)
    assert arrays["masks"].shape == (len(records), 4, 64, 64)
    for n, record in enumerate(records):
        scale = np.array(
            [64 / record["height"], 64 / record["width"]] * 2, np.float32
        )
        kept = min(4, len(record["classes"]))
        areas = np.prod(record["boxes"][:, 2:] - record["boxes"][:, :2], -1)
        largest = np.argsort(-areas, kind="stable")[:kept]
        np.testing.assert_allclose(
            arrays["boxes"][n, :kept], record["boxes"][largest] * scale
        )
        np.testing.assert_array_equal(
            arrays["classes"][n, :kept], record["classes"][largest]
        )
        assert np.all(arrays["classes"][n, kept:] == -1)
        for box, mask in zip(
            arrays["boxes"][n, :kept], arrays["masks"][n, :kept], strict=True
        ):
            ys, xs = np.nonzero(mask)
            assert len(ys) > 0  # the nearest resize keeps every instance
            assert ys.min() >= box[0] - 1 and ys.max() <= box[2] + 1
            assert xs.min() >= box[1] - 1 and xs.max() <= box[3] + 1
    assert len(categories) == 80
    with pytest.raises(ValueError, match="Received: max_instances=0"):
        coco.load_coco_instance_arrays(SAMPLE, 64, 0)
    shutil.copytree(SAMPLE, tmp_path / "coco")
    broken = sorted((tmp_path / "coco" / "masks").iterdir())[0]
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=re.escape(broken.name)):
        coco.load_coco_instance_arrays(tmp_path / "coco", 64, 20)


def test_split_held_out():
    assert coco.split_held_out(80) == (range(64), range(64, 80))
    assert coco.split_held_out(2) == (range(1), range(1, 2))
    assert coco.split_held_out(3, 0.1) == (range(2), range(2, 3))
    assert coco.split_held_out(1) == (range(1), range(1))
    with pytest.raises(ValueError, match="held_out_fraction=1.0"):
        coco.split_held_out(10, 1.0)
