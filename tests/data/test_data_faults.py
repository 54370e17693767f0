"""Data faults (issue 21): every loader that reads files, given a damaged
folder, raises naming the file, or with `on_error="skip"` leaves the
sample out with one warning that names the file and counts the skipped
ones. Never a silent garbage example.

The fixtures are small copies of `sample_data/` damaged in `tmp_path`.
"""

import csv
import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_segattn import data
from keras_segattn.data import coco

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
COUNT = 10  # samples per fixture folder: one per fault, plus two good


def _pets_folder(root: Path) -> Path:
    """The first COUNT JPEG samples of sample_data/oxford_pets."""
    source = SAMPLES / "oxford_pets"
    with open(source / "index.csv", newline="") as file:
        rows = [
            r
            for r in csv.DictReader(file)
            if (source / "images" / f"{r['name']}.jpg").is_file()
        ][:COUNT]
    for sub in ("images", "trimaps"):
        (root / sub).mkdir(parents=True)
    for row in rows:
        name = row["name"]
        shutil.copy(source / "images" / f"{name}.jpg", root / "images")
        shutil.copy(source / "trimaps" / f"{name}.png", root / "trimaps")
    with open(root / "index.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def _camvid_folder(root: Path) -> Path:
    """The 12 sample CamVid frames (train and val) as a "val" split of
    COUNT frames."""
    source = SAMPLES / "camvid"
    names = sorted(
        (split, path.name)
        for split in ("train", "val")
        for path in (source / split / "images").iterdir()
    )[:COUNT]
    for sub in ("images", "labels"):
        (root / "val" / sub).mkdir(parents=True)
        for split, name in names:
            shutil.copy(source / split / sub / name, root / "val" / sub)
    (root / "val" / "files.txt").write_text(
        "\n".join(name for _, name in names) + "\n"
    )
    return root


def _pets_sample(root, index):
    name = sorted(p.stem for p in (root / "images").iterdir())[index]
    return root / "images" / f"{name}.jpg", root / "trimaps" / f"{name}.png"


def _camvid_sample(root, index):
    name = sorted(p.name for p in (root / "val" / "images").iterdir())[index]
    return root / "val" / "images" / name, root / "val" / "labels" / name


# loader name: (make folder, (image, mask) of sample i, label value that is
# not a label, load(root, **kwargs) -> dataset of one example per batch)
LOADERS = {
    "oxford_pets": (
        _pets_folder,
        _pets_sample,
        7,
        lambda root, **kwargs: data.load_oxford_pets(
            root,
            "all",
            image_size=16,
            batch_size=1,
            training=False,
            drop_remainder=False,
            **kwargs,
        ),
    ),
    "pets_localization": (
        _pets_folder,
        _pets_sample,
        7,
        lambda root, **kwargs: data.load_pets_localization(
            root,
            image_size=16,
            split="all",
            batch_size=1,
            training=False,
            cache=False,
            drop_remainder=False,
            **kwargs,
        ),
    ),
    "camvid": (
        _camvid_folder,
        _camvid_sample,
        12,
        lambda root, **kwargs: data.load_camvid(
            root,
            "val",
            image_size=(16, 16),
            batch_size=1,
            training=False,
            drop_remainder=False,
            **kwargs,
        ),
    ),
}


def _truncate(path: Path, keep: float = 0.5) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])


def _damage(fault: str, image: Path, mask: Path, bad_label: int) -> Path:
    """Damages one sample; returns the file an error must name."""
    if fault == "truncated image":
        _truncate(image)
        return image
    if fault == "zero-byte image":
        image.write_bytes(b"")
        return image
    if fault == "truncated mask":
        _truncate(mask)
        return mask
    if fault == "zero-byte mask":
        mask.write_bytes(b"")
        return mask
    if fault == "mask of another size":
        values = np.array(Image.open(mask))
        Image.fromarray(values[:-3, :-5]).save(mask)
        return mask
    if fault == "label value":
        values = np.array(Image.open(mask))
        values[:2, :2] = bad_label
        Image.fromarray(values).save(mask)
        return mask
    if fault == "missing mask":
        mask.unlink()
        return mask
    if fault == "missing image":
        image.unlink()
        return image
    raise AssertionError(fault)


FAULTS = [
    "truncated image",
    "zero-byte image",
    "truncated mask",
    "zero-byte mask",
    "mask of another size",
    "label value",
    "missing mask",
    "missing image",
]


def _named(path: Path) -> str:
    """A pattern for messages that name the file (or, for a listed sample
    that is missing, its name)."""
    return re.escape(path.stem)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_fault_raises_naming_the_file(tmp_path, loader, fault):
    make, sample, bad_label, load = LOADERS[loader]
    root = make(tmp_path / "data")
    named = _damage(fault, *sample(root, 1), bad_label)
    if fault != "label value":
        with pytest.raises(ValueError, match=_named(named)):
            load(root)
        return
    # Label values are checked as the masks are decoded: at the iteration
    # by default, when the dataset is built with verify="full".
    dataset = load(root)
    with pytest.raises(tf.errors.InvalidArgumentError, match=named.name):
        for _ in dataset:
            pass
    with pytest.raises(ValueError, match=f"{re.escape(str(named))}.*values"):
        load(root, verify="full")


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_skip_leaves_every_faulty_sample_out_with_warnings(tmp_path, loader):
    # One folder with every fault, each in its own sample.
    make, sample, bad_label, load = LOADERS[loader]
    root = make(tmp_path / "data")
    named = [
        _damage(fault, *sample(root, index), bad_label)
        for index, fault in enumerate(FAULTS)
    ]
    with pytest.warns(UserWarning, match="Skipped ") as record:
        dataset = load(root, on_error="skip")
    messages = " ".join(str(warning.message) for warning in record)
    for path in named:
        assert path.stem in messages, path
    # Missing files are found while pairing, the others by the checks: the
    # warnings' counts add up to the faulty samples.
    counts = re.findall(r"Skipped (\d+) of", messages)
    assert sum(int(count) for count in counts) == len(FAULTS)
    assert int(dataset.cardinality()) == COUNT - len(FAULTS)
    for images, _ in dataset:  # the samples kept read without error
        assert np.all(np.isfinite(images.numpy()))


def test_skip_with_every_sample_damaged_raises(tmp_path):
    root = _camvid_folder(tmp_path / "data")
    for label in (root / "val" / "labels").iterdir():
        label.write_bytes(b"")
    with pytest.warns(UserWarning, match=f"Skipped {COUNT} of {COUNT}"):
        with pytest.raises(ValueError, match=f"None of the {COUNT} image"):
            LOADERS["camvid"][3](root, on_error="skip")


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_on_error_is_checked(tmp_path, loader):
    make, _, _, load = LOADERS[loader]
    root = make(tmp_path / "data")
    with pytest.raises(ValueError, match="Received: on_error='ignore'"):
        load(root, on_error="ignore")


# --------------------------------------------------------------------------
# MNIST-family archives (mnist, cluttered_mnist)


def _write_mnist(path, x, y):
    np.savez_compressed(path, x=x, y=y)
    return path


def _write_cluttered(path, x, y):
    np.savez_compressed(path, X_train=x, y_train=y, X_valid=x, y_valid=y)
    return path


ARCHIVES = {
    "mnist": (
        lambda tmp: _write_mnist(
            tmp / "mnist_train.npz",
            np.zeros((60001, 28, 28), np.uint8),
            np.zeros(60001, np.uint8),
        ),
        lambda path: data.load_mnist_arrays(path, "test"),
        (28, 28),
        _write_mnist,
    ),
    "cluttered_mnist": (
        lambda tmp: _write_cluttered(
            tmp / "sample.npz",
            np.zeros((8, 1600), np.float32),
            np.zeros(8, np.int64),
        ),
        lambda path: data.load_cluttered_mnist_arrays(
            path, "test", validation_size=1
        ),
        (1600,),
        _write_cluttered,
    ),
}


@pytest.mark.parametrize("loader", sorted(ARCHIVES))
def test_intact_archive_loads(tmp_path, loader):
    make, load, _, _ = ARCHIVES[loader]
    images, labels = load(make(tmp_path))
    assert len(images) == len(labels) > 0


ARCHIVE_FAULTS = [
    "truncated",
    "zero-byte",
    "wrong size",
    "label value",
    "missing labels",
]


@pytest.mark.parametrize(
    "loader, fault",
    [(loader, fault) for loader in sorted(ARCHIVES) for fault in ARCHIVE_FAULTS]
    + [("cluttered_mnist", "nan pixel")],  # MNIST digits are uint8
)
def test_archive_faults_raise_naming_the_file(tmp_path, loader, fault):
    make, load, pixel_shape, write = ARCHIVES[loader]
    path = make(tmp_path)  # loads intact (test_intact_archive_loads)
    # Ten rows: the checks run before MNIST's 60,000-row check.
    dtype = np.uint8 if loader == "mnist" else np.float32
    x = np.zeros((10, *pixel_shape), dtype)
    y = np.zeros(10, np.int64)
    if fault == "truncated":
        _truncate(path)
    elif fault == "zero-byte":
        path.write_bytes(b"")
    elif fault == "wrong size":
        write(path, np.zeros((10, 5, 5), dtype), y)
    elif fault == "label value":
        y[3] = 10
        write(path, x, y)
    elif fault == "missing labels":
        write(path, x, y[:-1])
    elif fault == "nan pixel":
        x[2, 5] = np.nan
        write(path, x, y)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


# --------------------------------------------------------------------------
# Translation pairs (spa_eng)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "No sentence pairs"),
        (b"\xff\xfe\x00garbage", "UTF-8"),
        (b"Hello.\tHola.\nno tab here\n", "Invalid line 2"),
        (b"Hello.\t\n", "Invalid line 1"),
    ],
)
def test_spa_eng_faults_name_the_file(tmp_path, content, match):
    (tmp_path / "spa.txt").write_bytes(content)
    with pytest.raises(ValueError, match=f"{match}.*spa.txt|spa.txt.*{match}"):
        data.load_spa_eng_pairs(tmp_path)


def test_spa_eng_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / data.SPA_ENG_FILE
    path.write_bytes(gzip.compress(b"Hello.\tHola.\n" * 200))
    _truncate(path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        data.load_spa_eng_pairs(tmp_path)


# --------------------------------------------------------------------------
# COCO (per-annotation mask PNG layout of sample_data/coco_mini)


def _coco_folder(root):
    shutil.copytree(SAMPLES / "coco_mini", root)
    records, _ = coco.list_coco_instances(root)
    return records[0]


@pytest.mark.parametrize(
    "fault",
    [
        "truncated image",
        "zero-byte image",
        "missing image",
        "zero-byte mask",
        "missing mask",
        "mask of another size",
        "image of another size",
    ],
)
def test_coco_instance_faults_name_the_file(tmp_path, fault):
    root = tmp_path / "coco"
    record = _coco_folder(root)
    image, mask = Path(record["image_path"]), Path(record["mask_paths"][0])
    if fault.endswith("another size"):
        path = image if fault.startswith("image") else mask
        with Image.open(path) as opened:
            opened.resize((9, 7)).save(path, format=opened.format)
    else:
        path = _damage(fault, image, mask, 0)
    with pytest.raises(ValueError, match=re.escape(path.name)):
        coco.load_coco_instance_arrays(root, image_size=16)


@pytest.mark.parametrize("fault", ["truncated image", "zero-byte image"])
def test_coco_caption_faults_name_the_file(tmp_path, fault):
    root = tmp_path / "coco"
    record = _coco_folder(root)
    image = Path(record["image_path"])
    _damage(fault, image, image, 0)
    with pytest.raises(ValueError, match=re.escape(image.name)):
        coco.load_coco_captions(root, image_size=16)
