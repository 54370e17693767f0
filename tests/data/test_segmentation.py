import dataclasses
import inspect
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_segattn import data

# Image value of each label in the alignment tests. Brightness (±25.5) and
# contrast (x0.8..1.2 around the mean) keep these strictly ordered in 0..255.
_LEVEL = 60
_STEP = 60


def _shapes_mask(height, width, seed, num_classes=3):
    """int mask [H, W] of rectangles and discs, every class present."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    mask = np.zeros((height, width), np.uint8)
    for cls in list(range(1, num_classes)) * 2:
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.15, 0.3) * height, rng.uniform(0.15, 0.3) * width
        if rng.random() < 0.5:
            inside = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        else:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        mask[inside] = cls
    return mask


def _image_for(mask):
    """RGB uint8 image whose every channel encodes the label."""
    value = (_LEVEL + _STEP * mask.astype(np.int32)).astype(np.uint8)
    return np.repeat(value[..., None], 3, axis=-1)


def _write_dataset(
    root, stems, size=(20, 28), image_ext=".png", raw_masks=None
):
    image_dir, mask_dir = root / "images", root / "masks"
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    masks = {}
    for i, stem in enumerate(stems):
        mask = _shapes_mask(*size, seed=i)
        if raw_masks is not None:
            mask = raw_masks[i]
        masks[stem] = mask
        Image.fromarray(_image_for(mask)).save(image_dir / (stem + image_ext))
        Image.fromarray(mask).save(mask_dir / (stem + ".png"))
    return image_dir, mask_dir, masks


def _eroded(mask, radius):
    """True where every pixel within `radius` (Chebyshev) has the label."""
    h, w = mask.shape
    padded = np.pad(mask, radius, constant_values=-1)
    out = np.ones_like(mask, bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out &= padded[dy : dy + h, dx : dx + w] == mask
    return out


def _collect(ds):
    return [(x.numpy(), m.numpy()) for x, m in ds]


def test_matches_by_stem_and_keeps_values(tmp_path):
    image_dir, mask_dir, masks = _write_dataset(tmp_path, ["b", "a", "c"])
    (image_dir / "notes.txt").write_text("ignored")
    (mask_dir / "README.md").write_text("ignored")
    ds = data.load_segmentation_directory(
        image_dir, mask_dir, image_size=None, batch_size=1
    )
    batches = _collect(ds)
    assert len(batches) == 3
    for (images, got), stem in zip(batches, ["a", "b", "c"], strict=True):
        np.testing.assert_array_equal(got[0], masks[stem])
        np.testing.assert_array_equal(images[0], _image_for(masks[stem]))


def test_shapes_and_dtypes(tmp_path):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a", "b", "c"])
    ds = data.load_segmentation_directory(
        image_dir, mask_dir, image_size=(16, 24), batch_size=2
    )
    image_spec, mask_spec = ds.element_spec
    assert image_spec.shape.as_list() == [2, 16, 24, 3]
    assert image_spec.dtype == tf.float32
    assert mask_spec.shape.as_list() == [2, 16, 24]
    assert mask_spec.dtype == tf.int32
    batches = _collect(ds)
    assert len(batches) == 1  # drop_remainder
    images, masks = batches[0]
    assert images.shape == (2, 16, 24, 3) and masks.shape == (2, 16, 24)
    assert 0.0 <= images.min() and images.max() <= 255.0
    assert set(np.unique(masks)) <= {0, 1, 2}
    ds = data.load_segmentation_directory(
        image_dir, mask_dir, image_size=8, batch_size=2, drop_remainder=False
    )
    assert [m.shape for _, m in _collect(ds)] == [(2, 8, 8), (1, 8, 8)]


def test_rgba_and_grey_images_give_rgb(tmp_path):
    image_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
    image_dir.mkdir()
    mask_dir.mkdir()
    rgba = np.zeros((6, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0
    Image.fromarray(rgba, "RGBA").save(image_dir / "a.png")
    Image.fromarray(np.full((6, 5), 77, np.uint8)).save(image_dir / "b.jpg")
    for stem in "ab":
        Image.fromarray(np.ones((6, 5), np.uint8)).save(
            mask_dir / f"{stem}.png"
        )
    (a_img, _), (b_img, _) = _collect(
        data.load_segmentation_directory(
            image_dir, mask_dir, image_size=None, batch_size=1
        )
    )
    np.testing.assert_array_equal(a_img[0, 0, 0], [10, 20, 30])
    assert b_img.shape == (1, 6, 5, 3)
    np.testing.assert_allclose(b_img, 77, atol=2)


def test_unmatched_files_are_named(tmp_path):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a", "b"])
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image_dir / "lone.jpg")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(mask_dir / "orphan.png")
    with pytest.raises(ValueError) as info:
        data.load_segmentation_directory(image_dir, mask_dir)
    message = str(info.value)
    assert "lone.jpg" in message and "orphan.png" in message
    assert str(image_dir) in message and str(mask_dir) in message


def test_duplicate_stems_are_named(tmp_path):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a"])
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image_dir / "a.jpg")
    with pytest.raises(ValueError, match=r"a\.jpg and a\.png"):
        data.load_segmentation_directory(image_dir, mask_dir)


@pytest.mark.parametrize("which", ["image", "mask"])
def test_corrupt_file_is_named(tmp_path, which):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a", "b"])
    bad = (image_dir if which == "image" else mask_dir) / "b.png"
    bad.write_bytes(b"this is not a PNG file at all" * 10)
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        data.load_segmentation_directory(image_dir, mask_dir, batch_size=1)


def test_truncated_png_is_named(tmp_path):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a"], size=(64, 64))
    path = image_dir / "a.png"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        data.load_segmentation_directory(image_dir, mask_dir, batch_size=1)


@pytest.mark.parametrize("verify", [True, "full"])
def test_truncated_jpeg_is_named(tmp_path, verify):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a"], size=(64, 64))
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    (image_dir / "a.png").unlink()
    path = image_dir / "a.jpg"
    Image.fromarray(noise).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:-2000])
    # `Image.verify` reads no JPEG scan data: a JPEG without its end marker
    # is decoded too, so the default check finds the truncation.
    with pytest.raises(ValueError, match=re.escape(str(path))):
        data.load_segmentation_directory(
            image_dir, mask_dir, batch_size=1, verify=verify
        )


def test_mask_must_be_8bit_grey(tmp_path):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a"])
    path = mask_dir / "a.png"
    Image.fromarray(np.zeros((20, 28, 3), np.uint8)).save(path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*mode RGB"):
        data.load_segmentation_directory(image_dir, mask_dir, batch_size=1)


def test_size_mismatch_is_named(tmp_path):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a"])
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask_dir / "a.png")
    with pytest.raises(ValueError, match="sizes differ.*a.png"):
        data.load_segmentation_directory(image_dir, mask_dir, batch_size=1)


def test_files_selects_and_orders(tmp_path):
    image_dir, mask_dir, masks = _write_dataset(tmp_path, ["a", "b", "c"])
    ds = data.load_segmentation_directory(
        image_dir,
        mask_dir,
        image_size=None,
        batch_size=1,
        files=["c.png", "a"],
    )
    got = [m[0] for _, m in _collect(ds)]
    np.testing.assert_array_equal(got[0], masks["c"])
    np.testing.assert_array_equal(got[1], masks["a"])
    assert len(got) == 2
    with pytest.raises(ValueError, match="no image file.*zzz"):
        data.load_segmentation_directory(
            image_dir, mask_dir, batch_size=1, files=["a", "zzz"]
        )


def test_label_map_dict_callable_and_void(tmp_path):
    raw = [np.array([[10, 20], [20, 30]], np.uint8)] * 2
    image_dir, mask_dir, _ = _write_dataset(
        tmp_path, ["a", "b"], size=(2, 2), raw_masks=raw
    )
    kwargs = dict(image_size=None, batch_size=2)
    ds = data.load_segmentation_directory(
        image_dir, mask_dir, label_map={10: 0, 20: 1, 30: 2}, **kwargs
    )
    np.testing.assert_array_equal(_collect(ds)[0][1][0], [[0, 1], [1, 2]])
    ds = data.load_segmentation_directory(
        image_dir, mask_dir, label_map=lambda m: m // 10 - 1, **kwargs
    )
    np.testing.assert_array_equal(_collect(ds)[0][1][0], [[0, 1], [1, 2]])
    ds = data.load_segmentation_directory(
        image_dir, mask_dir, label_map={10: 0, 20: 1}, void_label=9, **kwargs
    )
    np.testing.assert_array_equal(_collect(ds)[0][1][0], [[0, 1], [1, 9]])
    ds = data.load_segmentation_directory(
        image_dir, mask_dir, label_map={10: 0, 20: 1}, **kwargs
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"not keys of `label_map`.*a\.png"
    ):
        _collect(ds)


def test_native_size_needs_batch_size_one(tmp_path):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a"], size=(8, 8))
    _write_dataset(tmp_path, ["b"], size=(9, 8))
    with pytest.raises(ValueError, match="different sizes"):
        data.load_segmentation_directory(
            image_dir, mask_dir, image_size=None, batch_size=2
        )
    ds = data.load_segmentation_directory(
        image_dir, mask_dir, image_size=None, batch_size=1
    )
    assert [x.shape for x, _ in _collect(ds)] == [(1, 8, 8, 3), (1, 9, 8, 3)]


def test_deterministic_gives_identical_batches(tmp_path):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, list("abcdef"))

    def build(training):
        return data.load_segmentation_directory(
            image_dir,
            mask_dir,
            image_size=16,
            batch_size=2,
            training=training,
            seed=3,
            deterministic=True,
        )

    first, second = build(True), build(True)
    epochs_1 = [_collect(first), _collect(first)]
    epochs_2 = [_collect(second), _collect(second)]
    for epoch_1, epoch_2 in zip(epochs_1, epochs_2, strict=True):
        for (x1, m1), (x2, m2) in zip(epoch_1, epoch_2, strict=True):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(m1, m2)
    # Each epoch gets its own order and augmentation.
    assert any(
        not np.array_equal(a[0], b[0])
        for a, b in zip(epochs_1[0], epochs_1[1], strict=True)
    )
    # Without training the stream is the same every epoch.
    plain = build(False)
    for (x1, m1), (x2, m2) in zip(
        _collect(plain), _collect(plain), strict=True
    ):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(m1, m2)


def _check_aligned(images, masks, labels_in_order):
    """Each label's interior pixels have image values strictly between those
    of the labels before and after it (all channels equal the label)."""
    for image, mask in zip(images, masks, strict=True):
        interior = _eroded(mask, 2)
        ranges = []
        for label in labels_in_order:
            values = image[..., 0][interior & (mask == label)]
            if values.size:
                ranges.append((label, values.min(), values.max()))
        for (la, _, a_max), (lb, b_min, _) in zip(
            ranges, ranges[1:], strict=False
        ):
            assert a_max < b_min, (la, lb, a_max, b_min)
        np.testing.assert_array_equal(image[..., 0], image[..., 1])


@pytest.mark.parametrize("void_label", [None, 3])
def test_augmentation_keeps_image_and_mask_aligned(tmp_path, void_label):
    image_dir, mask_dir, _ = _write_dataset(
        tmp_path, [f"s{i}" for i in range(8)], size=(40, 40)
    )

    def build(augment):
        return data.load_segmentation_directory(
            image_dir,
            mask_dir,
            image_size=32,
            batch_size=4,
            augment=augment,
            seed=7,
            void_label=void_label,
        )

    plain = np.concatenate([m for _, m in _collect(build(False))])
    augmented = [_collect(build(True)) for _ in range(3)]
    masks = np.concatenate([m for epoch in augmented for _, m in epoch])
    allowed = {0, 1, 2} | ({void_label} if void_label is not None else set())
    assert set(np.unique(masks)) <= allowed  # no interpolated labels
    assert not np.array_equal(masks[: len(plain)], plain)  # it did augment
    # Void (filled black) sorts below every class.
    order = ([void_label] if void_label is not None else []) + [0, 1, 2]
    for epoch in augmented:
        for images, batch_masks in epoch:
            _check_aligned(images, batch_masks, order)
    if void_label is not None:
        assert (masks == void_label).any()  # zoom-out/translation filled


def test_prepare_segmentation_dataset_from_pairs():
    masks = [np.full((6 + i, 5, 1), i % 3 + 1, np.uint8) for i in range(3)]
    images = [np.zeros((6 + i, 5, 3), np.uint8) for i in range(3)]

    def gen():
        yield from zip(images, masks, strict=True)

    pairs = tf.data.Dataset.from_generator(
        gen,
        output_signature=(
            tf.TensorSpec([None, None, 3], tf.uint8),
            tf.TensorSpec([None, None, 1], tf.uint8),
        ),
    )
    ds = data.prepare_segmentation_dataset(
        pairs,
        image_size=(4, 4),
        batch_size=3,
        label_map=data.PETS_LABEL_MAP,
        training=True,
        seed=0,
    )
    images_out, masks_out = _collect(ds)[0]
    assert images_out.shape == (3, 4, 4, 3) and images_out.dtype == np.float32
    assert masks_out.dtype == np.int32
    assert sorted(np.unique(masks_out)) == [0, 1, 2]
    with pytest.raises(ValueError, match="element_spec"):
        data.prepare_segmentation_dataset(pairs.batch(2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 0}, "image_size=0"),
        ({"image_size": (16, -1)}, r"image_size=\(16, -1\)"),
        ({"image_size": (1, 2, 3)}, "image_size"),
        ({"image_size": "16"}, "image_size"),
        ({"image_size": 2.5}, "image_size=2.5"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": -2}, "batch_size=-2"),
        ({"batch_size": 1.5}, "batch_size=1.5"),
        ({"seed": "x"}, "seed="),
        ({"void_label": 1.5}, "void_label="),
        ({"label_map": {}}, "label_map"),
        ({"label_map": {-1: 0}}, "label_map"),
        ({"label_map": [1, 2]}, "label_map"),
        ({"verify": "yes"}, "verify="),
        ({"files": "a"}, "files="),
        ({"files": []}, "files="),
        ({"image_extensions": ()}, "image_extensions"),
        ({"batch_size": 5}, "fewer than batch_size=5"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a", "b"])
    kwargs = {"batch_size": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        data.load_segmentation_directory(image_dir, mask_dir, **kwargs)


def test_missing_and_empty_directories(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        data.load_segmentation_directory(missing, tmp_path)
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        data.load_segmentation_directory(tmp_path, missing)
    file_path = tmp_path / "file.txt"
    file_path.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        data.load_segmentation_directory(file_path, tmp_path)
    (tmp_path / "empty_images").mkdir()
    (tmp_path / "empty_masks").mkdir()
    with pytest.raises(ValueError, match="No image files"):
        data.load_segmentation_directory(
            tmp_path / "empty_images", tmp_path / "empty_masks"
        )


def test_synthetic_segmentation():
    images, masks = data.make_synthetic_segmentation_arrays(
        6, image_size=(12, 16), num_classes=4, seed=1
    )
    assert images.shape == (6, 12, 16, 3) and images.dtype == np.float32
    assert masks.shape == (6, 12, 16) and masks.dtype == np.int32
    assert 0 <= images.min() and images.max() <= 255
    assert set(np.unique(masks)) <= {0, 1, 2, 3} and masks.max() > 0
    # The class is readable from the colour: nearest class-mean colour.
    means = np.stack([images[masks == c].mean(0) for c in np.unique(masks)])
    distances = ((images[..., None, :] - means) ** 2).sum(-1)
    assert (np.unique(masks)[distances.argmin(-1)] == masks).mean() > 0.99
    again, _ = data.make_synthetic_segmentation_arrays(6, (12, 16), 4, seed=1)
    other, _ = data.make_synthetic_segmentation_arrays(6, (12, 16), 4, seed=2)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)

    ds = data.make_synthetic_segmentation(
        5, image_size=8, num_classes=2, seed=0, batch_size=2
    )
    shapes = [(x.shape, m.shape, m.dtype) for x, m in ds]
    assert shapes == [((2, 8, 8, 3), (2, 8, 8), tf.int32)] * 2
    with pytest.raises(ValueError, match="batch_size"):
        data.make_synthetic_segmentation(2, batch_size=4)
    with pytest.raises(ValueError, match="num_classes=0"):
        data.make_synthetic_segmentation_arrays(2, num_classes=0)
    with pytest.raises(ValueError, match="image_size"):
        data.make_synthetic_segmentation_arrays(2, image_size=None)


def test_options_give_the_same_pipeline_as_keywords(tmp_path):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, list("abcd"))
    keywords = dict(
        image_size=16, batch_size=2, training=True, seed=5, deterministic=True
    )
    options = data.SegmentationPipelineOptions(**keywords)
    assert options.image_size == (16, 16)  # standardised on construction
    from_keywords = _collect(
        data.load_segmentation_directory(image_dir, mask_dir, **keywords)
    )
    from_options = _collect(
        data.load_segmentation_directory(image_dir, mask_dir, options=options)
    )
    for (x1, m1), (x2, m2) in zip(from_keywords, from_options, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(m1, m2)
    pairs = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 6, 5, 3), np.uint8), np.ones((4, 6, 5), np.uint8))
    )
    evaluation = dataclasses.replace(options, training=False)
    (images, masks), _ = _collect(
        data.prepare_segmentation_dataset(pairs, options=evaluation)
    )
    assert images.shape == (2, 16, 16, 3) and masks.shape == (2, 16, 16)


def test_options_and_keywords_do_not_mix(tmp_path):
    image_dir, mask_dir, _ = _write_dataset(tmp_path, ["a", "b"])
    options = data.SegmentationPipelineOptions(batch_size=1)
    with pytest.raises(ValueError, match=r"not both.*image_size=\(8, 8\)"):
        data.load_segmentation_directory(
            image_dir, mask_dir, image_size=(8, 8), options=options
        )
    with pytest.raises(ValueError, match="training=True"):
        data.prepare_segmentation_dataset(
            tf.data.Dataset.range(1), training=True, options=options
        )
    with pytest.raises(ValueError, match="Received: options="):
        data.load_segmentation_directory(
            image_dir, mask_dir, options={"batch_size": 1}
        )
    # Keyword arguments left at their defaults are fine.
    data.load_segmentation_directory(
        image_dir, mask_dir, batch_size=8, options=options
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 0}, "image_size=0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"seed": "x"}, "seed="),
        ({"void_label": 1.5}, "void_label="),
    ],
)
def test_options_are_checked_on_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.SegmentationPipelineOptions(**kwargs)


@pytest.mark.parametrize(
    "loader",
    [data.load_segmentation_directory, data.prepare_segmentation_dataset],
)
def test_loader_defaults_match_the_options_defaults(loader):
    parameters = inspect.signature(loader).parameters
    for field in dataclasses.fields(data.SegmentationPipelineOptions):
        assert parameters[field.name].default == field.default, field.name
