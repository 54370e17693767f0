"""Overfeat sliding-window detection of MNIST digits on 100x100 canvases.

Reproduces the detection pipeline of Sermanet et al., "OverFeat" (ICLR
2014) at laptop scale. A small CNN with two heads, a classifier (10 digits
+ background) and a box regressor (the digit's ink box relative to the
window), is trained with `model.fit` (XLA) on 28x28 windows holding
training-split digits with random shifts and scales (background windows:
empty, off-centre, too large or too small digits). Both heads are then
made fully convolutional (`models.convolutionalize`, weights copied) and
run by `models.OverfeatDetector` over a 3-scale pyramid of 100x100
canvases holding 2-4 test-pool digits (MNIST rows 50,000+) of varied
sizes; the per-position boxes are combined with Overfeat's greedy merge
(`ops.overfeat_merge`) and, for comparison, with per-class NMS. Reports
COCO box AP / AP50 (`metrics.evaluate_detections`), and writes TensorBoard logs,
the training history, `model.keras` (the two-headed window model),
`metrics.json` and PNGs: per-class score maps at each scale and the merged
boxes against the ground truth.

Examples:

    # Full run (a few minutes on 2 CPU cores)
    python examples/overfeat_digits.py --output-dir runs/overfeat_digits

    # Seconds-long end-to-end check on synthetic seven-segment digits
    python examples/overfeat_digits.py --smoke --output-dir /tmp/overfeat
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults

WINDOW = 28
NUM_DIGITS = 10
BACKGROUND = NUM_DIGITS  # class id of background windows
INK = 64  # pixel value (0..255) from which a pixel is ink (box targets)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data/mnist"),
        help="folder with mnist_train.npz (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=int, default=6, help="training epochs")
    parser.add_argument(
        "--batch-size", type=int, default=128, help="global batch size"
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=2e-3,
        help="peak Adam learning rate (cosine decay)",
    )
    parser.add_argument(
        "--num-windows",
        type=int,
        default=60000,
        help="28x28 training windows (default: %(default)s)",
    )
    parser.add_argument(
        "--num-canvases",
        type=int,
        default=500,
        help="100x100 test canvases of test-pool digits (default: %(default)s)",
    )
    parser.add_argument(
        "--canvas-size",
        type=int,
        default=100,
        help="side of the test canvases in pixels",
    )
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[1.0, 0.75, 0.5],
        help="image pyramid scales (default: %(default)s)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="lowest class probability kept as a detection",
    )
    parser.add_argument(
        "--merge-threshold",
        type=float,
        default=1.0,
        help="Overfeat merge: pairs merge while centre distance / 28 + "
        "(1 - IoU) is below this (default: %(default)s)",
    )
    parser.add_argument(
        "--iou-threshold",
        type=float,
        default=0.3,
        help="IoU from which boxes are merged or suppressed",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/overfeat_digits"),
        help="logs, history, plots, model.keras, metrics.json "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile the train step with XLA (default: on)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the data and weights"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few steps on synthetic digits, in seconds",
    )
    add_distribution_arguments(parser)
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn import layers  # noqa: E402
from keras_segattn import metrics  # noqa: E402
from keras_segattn import saving  # noqa: E402
from keras_segattn import visualization  # noqa: E402
from keras_segattn.data import synthetic_digits  # noqa: E402
from keras_segattn.data.mnist import load_mnist_arrays  # noqa: E402
from keras_segattn.models.overfeat import OverfeatDetector  # noqa: E402
from keras_segattn.models.overfeat import check_scales  # noqa: E402

from _common import backup_callbacks  # noqa: E402
from _common import check_compiled  # noqa: E402
from _common import cosine_decay  # noqa: E402
from _common import fit_context  # noqa: E402
from _common import global_batch_size  # noqa: E402
from _common import jit_compile_for  # noqa: E402
from _common import logging_callbacks  # noqa: E402
from _common import save_final_weights  # noqa: E402
from _common import setup_distribution  # noqa: E402
from _common import trim_to_replicas  # noqa: E402

# --------------------------------------------------------------------------
# Data: digits pasted at given sizes and places


def ink_boxes(digits: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) of the ink (>= INK) in each [28, 28] digit frame,
    end-exclusive pixels; an empty digit gets the whole frame."""
    ink = digits >= INK
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    size = digits.shape[1]
    y1, x1 = rows.argmax(axis=1), cols.argmax(axis=1)
    y2 = size - rows[:, ::-1].argmax(axis=1)
    x2 = size - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    empty = ~rows.any(axis=1)
    boxes[empty] = [0, 0, size, size]
    return boxes


def render(
    digits: np.ndarray,
    placements: dict,
    num_images: int,
    shape: tuple[int, int],
) -> np.ndarray:
    """Images [num_images, H, W] (0..255) with each placed digit resized to
    `size` x `size` and pasted (pixel-wise max) with its top-left corner at
    (top, left), clipped to the image.

    `placements`: dict of equal-length int arrays `image`, `digit`,
    `size`, `top`, `left`."""
    images = np.zeros((num_images, *shape), np.float32)
    height, width = shape
    frames = digits[..., None].astype(np.float32)
    for size in np.unique(placements["size"]):
        chosen = np.flatnonzero(placements["size"] == size)
        resized = tf.image.resize(
            frames[placements["digit"][chosen]],
            (int(size), int(size)),
            antialias=True,
        ).numpy()[..., 0]
        for k, p in enumerate(chosen):
            top, left = placements["top"][p], placements["left"][p]
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + size, height), min(left + size, width)
            if y1 <= y0 or x1 <= x0:
                continue
            image = images[placements["image"][p]]
            patch = resized[k, y0 - top : y1 - top, x0 - left : x1 - left]
            image[y0:y1, x0:x1] = np.maximum(image[y0:y1, x0:x1], patch)
    return np.clip(images, 0, 255)


def _placed_boxes(frame_boxes, size, top, left):
    """Ink boxes of placed digits, in image pixels."""
    scale = (size / WINDOW)[:, None]
    offset = np.stack([left, top, left, top], axis=1)
    return frame_boxes * scale + offset


def make_windows(digits, labels, num_windows: int, seed: int):
    """28x28 training windows with class and relative box targets.

    60 % positives: one digit frame of 22-34 px (ink about 16-25 px) whose
    centre is within 4 px of the window centre (what a window of the
    stride-4 grid sees at the best pyramid scale), label = its digit; 40 %
    background: empty, off-centre (9-20 px), too small (10-16 px) or too
    large (42-64 px) digits. A third of the windows get a second digit far
    enough out to be cut by the border, as neighbours in a canvas are.

    Returns:
        `(windows [N, 28, 28, 1] float32 0..255, classes [N] int32,
        boxes [N, 4] float32 (x1, y1, x2, y2) / 28, positive [N] float32)`.
    """
    rng = np.random.default_rng(seed)
    frame_boxes = ink_boxes(digits)
    n = num_windows
    kind = rng.choice(5, n, p=[0.6, 0.1, 0.15, 0.075, 0.075])
    positive = kind == 0
    size = np.where(
        positive,
        rng.integers(11, 18, n) * 2,
        np.select(
            [kind == 3, kind == 4],
            [rng.integers(5, 9, n) * 2, rng.integers(21, 33, n) * 2],
            rng.integers(10, 20, n) * 2,
        ),
    )
    shift = rng.uniform(-4, 4, (n, 2))
    far = rng.uniform(9, 20, (n, 2)) * rng.choice([-1, 1], (n, 2))
    # Off-centre: at least one axis far; the other anywhere in +-20.
    axis = rng.integers(0, 2, n)
    other = rng.uniform(-20, 20, n)
    far[np.arange(n), 1 - axis] = other
    centre = WINDOW / 2 + np.where((kind == 2)[:, None], far, shift)
    digit = rng.integers(0, len(digits), n)
    top = np.rint(centre[:, 1] - size / 2).astype(int)
    left = np.rint(centre[:, 0] - size / 2).astype(int)
    present = kind != 1
    placements = {
        "image": np.arange(n)[present],
        "digit": digit[present],
        "size": size[present],
        "top": top[present],
        "left": left[present],
    }
    # Neighbours cut by the border.
    extra = np.flatnonzero(rng.uniform(size=n) < 1 / 3)
    extra_size = rng.integers(11, 24, len(extra)) * 2
    angle = rng.uniform(0, 2 * np.pi, len(extra))
    radius = extra_size / 2 + rng.uniform(8, 14, len(extra))
    extra_top = np.rint(
        WINDOW / 2 + radius * np.sin(angle) - extra_size / 2
    ).astype(int)
    extra_left = np.rint(
        WINDOW / 2 + radius * np.cos(angle) - extra_size / 2
    ).astype(int)
    for key, values in (
        ("image", extra),
        ("digit", rng.integers(0, len(digits), len(extra))),
        ("size", extra_size),
        ("top", extra_top),
        ("left", extra_left),
    ):
        placements[key] = np.concatenate([placements[key], values])
    windows = render(digits, placements, n, (WINDOW, WINDOW))
    classes = np.where(positive, labels[digit], BACKGROUND).astype(np.int32)
    boxes = _placed_boxes(frame_boxes[digit], size, top, left)
    boxes = np.clip(boxes, 0, WINDOW) / WINDOW
    boxes[~positive] = 0.0
    return (
        windows[..., None],
        classes,
        boxes.astype(np.float32),
        positive.astype(np.float32),
    )


def make_canvases(
    digits, labels, num_canvases: int, canvas_size: int, seed: int
):
    """Canvases with 2-4 digit frames of 24-56 px whose ink boxes do not
    overlap (rejection sampling), and their ground truth.

    Returns:
        `(canvases [N, S, S, 1] float32 0..255, boxes [N, 4, 4] (ymin, xmin,
        ymax, xmax) pixels, -1 padded, classes [N, 4] int32, -1 padded)`.
    """
    rng = np.random.default_rng(seed)
    frame_boxes = ink_boxes(digits)
    placements = {k: [] for k in ("image", "digit", "size", "top", "left")}
    gt_boxes = -np.ones((num_canvases, 4, 4), np.float32)
    gt_classes = -np.ones((num_canvases, 4), np.int32)
    for image in range(num_canvases):
        wanted = rng.integers(2, 5)
        placed = []
        for _ in range(50):
            if len(placed) == wanted:
                break
            size = int(rng.integers(12, 29)) * 2
            top, left = rng.integers(0, canvas_size - size + 1, 2)
            digit = int(rng.integers(0, len(digits)))
            box = _placed_boxes(
                frame_boxes[digit][None], np.array([size]), [top], [left]
            )[0]
            if any(
                box[0] < b[2] + 2
                and b[0] < box[2] + 2
                and box[1] < b[3] + 2
                and b[1] < box[3] + 2
                for b, _ in placed
            ):
                continue
            for key, value in zip(
                placements, (image, digit, size, top, left), strict=True
            ):
                placements[key].append(value)
            placed.append((box, digit))
        for m, (box, digit) in enumerate(placed):
            gt_boxes[image, m] = box[[1, 0, 3, 2]]
            gt_classes[image, m] = labels[digit]
    placements = {k: np.asarray(v, int) for k, v in placements.items()}
    canvases = render(
        digits, placements, num_canvases, (canvas_size, canvas_size)
    )
    return canvases[..., None], gt_boxes, gt_classes


def load_digits(args):
    """`(train, validation, test)` (digits [N, 28, 28], labels [N]): MNIST
    training rows, validation rows and the test pool (rows 50,000+); with
    --smoke, synthetic seven-segment digits."""
    if args.smoke:
        make = synthetic_digits.make_synthetic_digits
        return tuple(
            make(n, seed=args.seed + s) for s, n in enumerate((200, 50, 50))
        )
    return tuple(
        load_mnist_arrays(args.data_dir, split, validation_size=5000)
        for split in ("train", "validation", "test")
    )


# --------------------------------------------------------------------------
# Models


def build_models(width: int = 32):
    """`(trunk, classifier_head, box_head, training model)`.

    trunk: 28x28 window -> [3, 3, 2 * width] features (valid convolutions
    and 2x2 poolings: stride 4); classifier_head: Flatten + Dense + softmax
    over 10 digits + background; box_head: Flatten + Dense -> (x1, y1, x2,
    y2) / 28. The training model has outputs `class_probs` and `boxes`.
    """
    trunk = keras.Sequential(
        [
            keras.Input((WINDOW, WINDOW, 1)),
            keras.layers.Rescaling(1 / 255, name="rescale"),
            keras.layers.Conv2D(width, 3, activation="relu", name="conv0"),
            keras.layers.MaxPooling2D(2, name="pool0"),
            keras.layers.Conv2D(2 * width, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            keras.layers.Conv2D(2 * width, 3, activation="relu", name="conv2"),
        ],
        name="trunk",
    )
    features = trunk.output_shape[1:]
    classifier_head = keras.Sequential(
        [
            keras.Input(features),
            keras.layers.Flatten(name="cls_flatten"),
            keras.layers.Dense(4 * width, activation="relu", name="cls_fc"),
            layers.Dropout(0.3, name="cls_dropout"),
            keras.layers.Dense(
                NUM_DIGITS + 1, activation="softmax", name="cls_out"
            ),
        ],
        name="classifier_head",
    )
    box_head = keras.Sequential(
        [
            keras.Input(features),
            keras.layers.Flatten(name="box_flatten"),
            keras.layers.Dense(4 * width, activation="relu", name="box_fc"),
            keras.layers.Dense(4, name="box_out"),
        ],
        name="box_head",
    )
    windows = keras.Input((WINDOW, WINDOW, 1), name="windows")
    x = trunk(windows)
    outputs = {
        "class_probs": keras.layers.Identity(name="class_probs")(
            classifier_head(x)
        ),
        "boxes": keras.layers.Identity(name="boxes")(box_head(x)),
    }
    model = keras.Model(windows, outputs, name="overfeat_windows")
    return trunk, classifier_head, box_head, model


def window_models(trunk, classifier_head, box_head):
    """The window classifier and regressor as single-path models (shared
    layers), as `OverfeatDetector` takes them."""
    classifier = keras.Sequential(
        [keras.Input((WINDOW, WINDOW, 1)), trunk, classifier_head],
        name="classifier",
    )
    regressor = keras.Sequential(
        [keras.Input((WINDOW, WINDOW, 1)), trunk, box_head], name="regressor"
    )
    return classifier, regressor


# --------------------------------------------------------------------------
# Evaluation and plots


def run_detector(detector, canvases, batch_size: int = 50) -> dict:
    outputs = [
        detector.detect(canvases[i : i + batch_size])
        for i in range(0, len(canvases), batch_size)
    ]
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}


def coco_box_metrics(detections, gt_boxes, gt_classes, canvas_size) -> dict:
    return metrics.evaluate_detections(
        {"boxes": gt_boxes, "classes": gt_classes},
        detections,
        image_size=(canvas_size, canvas_size),
        category_names=[str(d) for d in range(NUM_DIGITS)],
    )["bbox"]


def save_score_maps(detector, canvas, path: Path) -> None:
    """PNG (`visualization.plot_class_maps`): for each pyramid scale, the
    resized canvas and the per-class probability maps (10 digits and
    background)."""
    levels = detector.score_maps(canvas[None])
    figure = visualization.plot_class_maps(
        [
            np.asarray(tf.image.resize(canvas, level["size"], antialias=True))
            for level in levels
        ],
        [np.asarray(level["scores"][0]) for level in levels],
        class_names=[str(k) for k in range(NUM_DIGITS)] + ["bg"],
        row_titles=[f"scale {level['scale']:g}" for level in levels],
    )
    figure.suptitle("per-class window probabilities at each scale", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


def save_detections(canvases, detections, gt_boxes, gt_classes, path, n=6):
    """PNG: canvases with ground truth (green) and the first 8 merged boxes
    (red, with class and merged score), by `visualization.plot_detections`."""
    n = min(n, len(canvases))
    figure = visualization.plot_detections(
        canvases[:n],
        {key: np.asarray(value)[:n] for key, value in detections.items()},
        ground_truth={"boxes": gt_boxes[:n], "classes": gt_classes[:n]},
        score_threshold=0.0,
        max_detections=8,
        layout="overlay",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


# --------------------------------------------------------------------------


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.scales = list(check_scales(args.scales))  # before any training
    if args.smoke:
        args.num_windows, args.num_canvases = 256, 6
        args.batch_size, args.epochs = 32, 1
    strategy = setup_distribution(args)
    global_batch_size(args.batch_size, strategy)
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    (out / "plots").mkdir(parents=True, exist_ok=True)
    started = time.time()
    (train_digits, train_labels), val_split, test_split = load_digits(args)
    windows, classes, boxes, positive = make_windows(
        train_digits, train_labels, args.num_windows, args.seed
    )
    val = make_windows(
        *val_split, max(args.num_windows // 10, 64), args.seed + 1
    )
    train_data = trim_to_replicas(
        (
            windows,
            {"class_probs": classes, "boxes": boxes},
            {"class_probs": np.ones_like(positive), "boxes": positive},
        ),
        strategy,
    )
    data_seconds = time.time() - started

    jit_compile = jit_compile_for(strategy, args.jit_compile)
    width = 8 if args.smoke else 32
    steps = max(1, len(train_data[0]) // args.batch_size)
    with strategy.scope():
        trunk, classifier_head, box_head, model = build_models(width)
        model.compile(
            optimizer=keras.optimizers.Adam(
                cosine_decay(args.learning_rate, steps, args.epochs, 0.02)
            ),
            loss={
                "class_probs": "sparse_categorical_crossentropy",
                "boxes": keras.losses.Huber(delta=0.1),
            },
            loss_weights={"class_probs": 1.0, "boxes": 20.0},
            metrics={"class_probs": ["accuracy"]},
            jit_compile=jit_compile,
        )
    check_compiled(model, jit_compile, steps)
    train_started = time.time()
    with fit_context(
        model,
        strategy,
        lambda: tuple(
            tf.nest.map_structure(lambda a: a[: args.batch_size], train_data)
        ),
    ):
        model.fit(
            train_data[0],
            train_data[1],
            sample_weight=train_data[2],
            validation_data=(
                val[0],
                {"class_probs": val[1], "boxes": val[2]},
                {"class_probs": np.ones_like(val[3]), "boxes": val[3]},
            ),
            batch_size=args.batch_size,
            epochs=args.epochs,
            shuffle=True,
            verbose=2 if args.smoke else 1,
            callbacks=[*backup_callbacks(args), *logging_callbacks(out)],
        )
    train_minutes = (time.time() - train_started) / 60
    save_final_weights(model, args)
    saving.save_model_atomic(model, out / "model.keras")

    # Detection on canvases of test-pool digits.
    canvases, gt_boxes, gt_classes = make_canvases(
        *test_split, args.num_canvases, args.canvas_size, args.seed + 2
    )
    classifier, regressor = window_models(trunk, classifier_head, box_head)
    common = dict(
        scales=args.scales,
        background_class=BACKGROUND,
        score_threshold=args.score_threshold,
        max_candidates=256,
        max_detections=20,
    )
    detect_started = time.time()
    results = {}
    detections = {}
    for merge in ("overfeat", "nms"):
        detector = OverfeatDetector(
            classifier,
            regressor,
            merge=merge,
            merge_threshold=args.merge_threshold,
            iou_threshold=args.iou_threshold,
            **common,
        )
        detections[merge] = run_detector(detector, canvases)
        stats = coco_box_metrics(
            detections[merge], gt_boxes, gt_classes, args.canvas_size
        )
        results[merge] = {
            k: round(stats[k], 4) for k in ("AP", "AP50", "AP75", "AR10")
        }
        if merge == "overfeat":
            save_score_maps(
                detector, canvases[0], out / "plots" / "score_maps.png"
            )
    save_detections(
        canvases,
        detections["overfeat"],
        gt_boxes,
        gt_classes,
        out / "plots" / "detections.png",
    )
    summary = {
        "command": "python examples/overfeat_digits.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "data": "synthetic seven-segment digits (smoke)"
        if args.smoke
        else "MNIST: windows from rows < 45,000, canvases from the test pool "
        "(rows 50,000+)",
        "train_windows": int(len(train_data[0])),
        "test_canvases": int(len(canvases)),
        "test_digits": int((gt_classes >= 0).sum()),
        "scales": list(args.scales),
        "window": WINDOW,
        "stride": list(detector.stride),
        "jit_compile": jit_compile,
        "val_accuracy": float(
            model.evaluate(
                val[0],
                {"class_probs": val[1], "boxes": val[2]},
                verbose=0,
                return_dict=True,
            )["class_probs_accuracy"]
        ),
        "box_ap_overfeat_merge": results["overfeat"],
        "box_ap_nms": results["nms"],
        "data_seconds": round(data_seconds, 1),
        "train_minutes": round(train_minutes, 2),
        "detect_seconds": round(time.time() - detect_started, 1),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
