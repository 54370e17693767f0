"""Selective-search proposals (OpenCV's implementation), their cache and
recall."""

import importlib.util
import re
import sys
import warnings

import numpy as np
import pytest

from keras_segattn.data import selective_search as ss

HAS_CV2 = importlib.util.find_spec("cv2") is not None
if HAS_CV2:
    import cv2

    HAS_CV2 = hasattr(cv2, "ximgproc")
needs_cv2 = pytest.mark.skipif(
    not HAS_CV2,
    reason="OpenCV contrib (cv2.ximgproc) is missing: install the "
    "`proposals` extra (opencv-contrib-python-headless)",
)

# Two flat, non-square rectangles on grey: (ymin, xmin, ymax, xmax),
# exclusive ends. A y/x swap or an (x, y, w, h) box misses both.
RECTANGLES = np.array([[6, 4, 22, 30], [34, 40, 60, 52]], np.float32)


def known_image():
    image = np.full((64, 64, 3), 128, np.uint8)
    (a0, a1, a2, a3), (b0, b1, b2, b3) = RECTANGLES.astype(int)
    image[a0:a2, a1:a3] = (230, 20, 20)
    image[b0:b2, b1:b3] = (20, 200, 40)
    return image


def iou(a, b):
    inter = np.prod(
        np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None)
    )
    area = lambda box: np.prod(box[2:] - box[:2])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@needs_cv2
@pytest.mark.parametrize(
    "mode, min_iou", [("fast", 1.0), ("quality", 1.0), ("single", 0.7)]
)
def test_proposals_find_the_known_regions(mode, min_iou):
    boxes = ss.selective_search_proposals(known_image(), mode, 200)
    assert boxes.dtype == np.float32 and boxes.ndim == 2
    assert boxes.shape[1] == 4 and 1 <= len(boxes) <= 200
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 64)
    assert np.all(boxes[:, 2:] > boxes[:, :2])
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    for rectangle in RECTANGLES:
        best = max(iou(rectangle, box) for box in boxes)
        assert best >= min_iou - 1e-6, (rectangle, best)


@needs_cv2
def test_max_proposals_keeps_the_first_boxes():
    image = known_image()
    image[40:60, 5:20] = (20, 20, 220)
    image[5:15, 45:60] = (200, 200, 0)
    every = ss.selective_search_proposals(image, "fast", 10_000)
    first = ss.selective_search_proposals(image, "fast", 5)
    assert len(every) > 5
    np.testing.assert_array_equal(first, every[:5])
    gray = ss.selective_search_proposals(image[..., :1], "fast", 3)
    assert gray.shape == (3, 4)


@needs_cv2
def test_seed_makes_the_ranking_reproducible():
    image = known_image()
    image[40:60, 5:20] = (20, 20, 220)
    image[5:15, 45:60] = (200, 200, 0)
    runs = [ss.selective_search_proposals(image, seed=s) for s in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])  # the order, not the set
    same_set = [np.unique(r, axis=0) for r in runs]
    np.testing.assert_array_equal(same_set[0], same_set[2])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "slow"}, "Received: mode='slow'"),
        ({"seed": -1}, "seed"),
        ({"max_proposals": 0}, "Received: max_proposals=0"),
        ({"max_proposals": 2.5}, "max_proposals"),
        ({"image": np.zeros((4, 4, 4), np.uint8)}, "Received: image.shape"),
        ({"image": np.zeros((2, 8, 8, 3), np.uint8)}, "argument `image`"),
        ({"image": np.zeros((1, 8, 3), np.uint8)}, "at least 2x2"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"image": np.zeros((8, 8, 3), np.uint8), **kwargs}
    with pytest.raises(ValueError, match=re.escape(match)):
        ss.selective_search_proposals(**arguments)


def test_missing_opencv_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 fails
    with pytest.raises(ImportError, match=r"`proposals` extra"):
        ss.selective_search_proposals(np.zeros((8, 8, 3), np.uint8))


def test_opencv_without_contrib_names_the_extra(monkeypatch):
    class PlainOpenCV:  # opencv-python has no ximgproc
        __version__ = "4.x"

    monkeypatch.setitem(sys.modules, "cv2", PlainOpenCV)
    with pytest.raises(ImportError, match=r"`proposals` extra"):
        ss.selective_search_proposals(np.zeros((8, 8, 3), np.uint8))


def test_pad_proposals():
    boxes, counts = ss.pad_proposals(
        [np.ones((3, 4)), np.zeros((0, 4)), np.full((5, 4), 2.0)], 4
    )
    assert boxes.shape == (3, 4, 4) and boxes.dtype == np.float32
    np.testing.assert_array_equal(counts, [3, 0, 4])
    np.testing.assert_array_equal(boxes[0, 3], [-1] * 4)
    np.testing.assert_array_equal(boxes[1], -np.ones((4, 4)))
    np.testing.assert_array_equal(boxes[2], np.full((4, 4), 2.0))


def test_proposal_recall_counts_covered_boxes():
    gt = np.array(
        [[[0, 0, 10, 10], [20, 20, 30, 30]], [[0, 0, 4, 4], [-1] * 4]],
        np.float32,
    )
    proposals = np.array(
        [
            [[0, 0, 10, 12], [50, 50, 60, 60], [20, 20, 30, 30]],
            [[-1] * 4, [0, 0, 4, 4], [-1] * 4],
        ],
        np.float32,
    )
    # IoU of [0, 0, 10, 12] with [0, 0, 10, 10]: 100 / 120.
    assert ss.proposal_recall(proposals, gt, 0.5) == 1.0
    assert ss.proposal_recall(proposals, gt, 0.9) == pytest.approx(2 / 3)
    assert ss.proposal_recall(proposals, gt, 0.5, 1) == pytest.approx(1 / 3)
    assert ss.proposal_recall(proposals, gt, 0.5, 2) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="iou_threshold"):
        ss.proposal_recall(proposals, gt, 0.0)
    with pytest.raises(ValueError, match=re.escape("proposals.shape")):
        ss.proposal_recall(proposals[0], gt)


# === Cache ===


@pytest.fixture
def counted(monkeypatch):
    """Replaces OpenCV by a deterministic stand-in that counts its calls:
    the cache logic does not depend on the segmentation."""
    calls = []

    def fake(image, mode="fast", max_proposals=2000, seed=0):
        calls.append(mode)
        value = float(np.asarray(image).mean())
        return np.array([[0, 0, 4, 4], [value, 1, 9, 9]], np.float32)[
            :max_proposals
        ]

    class FakeOpenCV:
        __version__ = "fake"
        ximgproc = None

    monkeypatch.setattr(ss, "selective_search_proposals", fake)
    monkeypatch.setitem(sys.modules, "cv2", FakeOpenCV)
    return calls


def images(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (3, 8, 8, 3), np.uint8)


def test_cache_computes_once(counted, tmp_path):
    path = tmp_path / "data" / "proposals.npz"
    boxes, counts = ss.cached_selective_search_proposals(
        images(), path, max_proposals=4
    )
    assert len(counted) == 3 and path.is_file()
    assert boxes.shape == (3, 4, 4) and counts.tolist() == [2, 2, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _ = ss.cached_selective_search_proposals(
            images(), path, max_proposals=4
        )
    assert len(counted) == 3  # read, not recomputed
    np.testing.assert_array_equal(again, boxes)


@pytest.mark.parametrize(
    "change",
    [
        {"max_proposals": 3},
        {"mode": "quality"},
        {"seed": 1},
        {"images": images(seed=1)},
        {"keys": ["a.jpg", "b.jpg", "c.jpg"]},
    ],
)
def test_stale_cache_is_rebuilt_with_a_warning(counted, tmp_path, change):
    path = tmp_path / "proposals.npz"
    ss.cached_selective_search_proposals(images(), path, max_proposals=4)
    arguments = {"images": images(), "max_proposals": 4, **change}
    with pytest.warns(UserWarning, match=re.escape(f"{path} is stale")):
        boxes, _ = ss.cached_selective_search_proposals(
            cache_path=path, **arguments
        )
    assert len(counted) == 6
    assert boxes.shape[1] == arguments["max_proposals"]
    with warnings.catch_warnings():  # the rebuilt cache is used
        warnings.simplefilter("error")
        ss.cached_selective_search_proposals(cache_path=path, **arguments)
    assert len(counted) == 6


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda path: path.write_bytes(b"not a zip archive"),
        lambda path: path.write_bytes(path.read_bytes()[:40]),
        lambda path: np.savez(path, boxes=np.zeros((2, 4, 4))),
        lambda path: np.savez(
            path,
            boxes=np.zeros((2, 4)),
            counts=np.zeros(2),
            keys=np.array(["0", "1"]),
            digests=np.array(["x", "y"]),
            parameters=np.array(["p"]),
        ),
    ],
)
def test_corrupt_cache_is_rebuilt_with_a_warning(counted, tmp_path, corrupt):
    path = tmp_path / "proposals.npz"
    ss.cached_selective_search_proposals(images(), path, max_proposals=4)
    expected = np.load(path)["boxes"]
    corrupt(path)
    with pytest.warns(UserWarning, match=re.escape(f"{path} is corrupt")):
        boxes, _ = ss.cached_selective_search_proposals(
            images(), path, max_proposals=4
        )
    np.testing.assert_array_equal(boxes, expected)
    assert len(counted) == 6
    np.testing.assert_array_equal(np.load(path)["boxes"], expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cache_path": "proposals.json"}, "cache_path"),
        ({"keys": ["a"]}, "argument `keys`"),
        ({"mode": "best"}, "Received: mode='best'"),
        ({"max_proposals": 0}, "Received: max_proposals=0"),
    ],
)
def test_cache_bad_arguments(counted, tmp_path, kwargs, match):
    arguments = {"cache_path": tmp_path / "p.npz", **kwargs}
    with pytest.raises(ValueError, match=re.escape(match)):
        ss.cached_selective_search_proposals(images(), **arguments)
    assert not counted
