"""Classification + localisation of Oxford-IIIT pets: breed and pet box.

One small vgg_small backbone with two heads (`build_classifier_localizer`):
breed probabilities (softmax) and the pet's box (4 sigmoids, normalised
ymin, xmin, ymax, xmax), trained jointly with `model.fit` (XLA) on
`loss={"classes": sparse cross-entropy, "boxes": smooth-L1 or L2}` and
`loss_weights`. The data are the three breeds of ../shared/data/oxford_pets
(Abyssinian, american_bulldog, Bengal; 288 train / 72 validation images,
the breed-stratified split of `list_oxford_pets`); the box is the tight
box of the trimap's pet and border pixels, flipped and scale-cropped with
the image during training.

`train` fits and keeps the best validation epoch (`model.keras`,
`history.csv`, `logs/`, `training.json`). `evaluate` exports the
SavedModel (`<output-dir>/<version>/`: `serving_default` takes uint8
images of any size and returns `probabilities`, `classes` and
`detection_boxes` in request pixels), sends it every validation image at
its native size, and writes the accuracy and mean IoU (in the image's own
pixels) to `metrics.json` and predicted (red) vs true (green) boxes to
`plots/boxes.png`.

Examples:

    # Full run (about 7 minutes on 2 CPU cores) into
    # saved_models/pets_localization/ (--data-dir defaults to
    # ../shared/data/oxford_pets)
    python examples/localization.py train --epochs 50 \
        --learning-rate 1e-3 --box-weight 50
    python examples/localization.py evaluate

    # Seconds-long check on synthetic "pets" (coloured ellipses)
    python examples/localization.py train --smoke --output-dir /tmp/loc
    python examples/localization.py evaluate --smoke --output-dir /tmp/loc
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

MODEL_FILE = "model.keras"
DEFAULT_DATA_DIR = Path("../shared/data/oxford_pets")
SMOKE_CLASSES = ("red", "green", "blue")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "evaluate"):
        command = commands.add_parser(name)
        command.add_argument(
            "--data-dir",
            type=Path,
            default=DEFAULT_DATA_DIR,
            help="pets folder with images/, trimaps/, index.csv "
            "(default: %(default)s)",
        )
        command.add_argument(
            "--output-dir",
            type=Path,
            default=Path("saved_models/pets_localization"),
            help="default: %(default)s",
        )
        command.add_argument(
            "--image-size", type=int, default=128, help="model input side"
        )
        command.add_argument(
            "--validation-fraction",
            type=float,
            default=0.2,
            help="share of each breed held out (default: %(default)s)",
        )
        command.add_argument(
            "--seed", type=int, default=0, help="seed of the data and weights"
        )
        command.add_argument(
            "--smoke",
            action="store_true",
            help="synthetic 32x32 data, tiny model, one epoch",
        )
    train = commands.choices["train"]
    train.add_argument("--epochs", type=int, default=None, help="default 50")
    train.add_argument(
        "--batch-size", type=int, default=16, help="global batch (16)"
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="peak Adam learning rate (cosine decay)",
    )
    train.add_argument(
        "--box-loss",
        choices=("smooth_l1", "l2"),
        default="smooth_l1",
        help="box regression loss (default: %(default)s)",
    )
    train.add_argument(
        "--box-weight",
        type=float,
        default=50.0,
        help="loss weight of the boxes (the classes' is 1; "
        "default: %(default)s)",
    )
    train.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile the train step with XLA (default: on)",
    )
    add_distribution_arguments(train)
    evaluate = commands.choices["evaluate"]
    evaluate.add_argument(
        "--version", type=int, default=1, help="SavedModel version to load"
    )
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn import distribute  # noqa: E402
from keras_segattn import visualization  # noqa: E402
from keras_segattn.data import pets_localization as pl  # noqa: E402
from keras_segattn.export.localization import export_localizer_for_serving  # noqa: E402
from keras_segattn.models.localization import box_iou  # noqa: E402
from keras_segattn.models.localization import box_loss  # noqa: E402
from keras_segattn.models.localization import build_classifier_localizer  # noqa: E402

from _common import backup_callbacks  # noqa: E402
from _common import best_checkpoint  # noqa: E402
from _common import check_compiled  # noqa: E402
from _common import cosine_decay  # noqa: E402
from _common import fit_context  # noqa: E402
from _common import global_batch_size  # noqa: E402
from _common import jit_compile_for  # noqa: E402
from _common import logging_callbacks  # noqa: E402
from _common import save_final_weights  # noqa: E402
from _common import setup_distribution  # noqa: E402


def model_kwargs(image_size: int, smoke: bool) -> dict:
    """The CPU-sized model of this example (`smoke`: a tiny one)."""
    if smoke:
        return {
            "image_shape": (image_size, image_size, 3),
            "backbone_kwargs": {
                "filters": (8, 8, 16, 16, 16),
                "convs_per_stage": 1,
            },
            "head_units": 16,
        }
    return {
        "image_shape": (image_size, image_size, 3),
        "backbone_kwargs": {
            "filters": (16, 32, 64, 128, 128),
            "convs_per_stage": (1, 1, 2, 2, 2),
        },
        "head_units": 128,
        "dropout": 0.3,
    }


def _datasets(args, batch_size: int):
    if args.smoke:
        train = pl.make_synthetic_pets_localization(
            32, args.image_size, args.seed, batch_size, training=True
        )
        val = pl.make_synthetic_pets_localization(
            16, args.image_size, args.seed + 1, batch_size
        )
        return train, val, SMOKE_CLASSES
    common = dict(
        image_size=args.image_size,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        batch_size=batch_size,
    )
    train = pl.load_pets_localization(args.data_dir, split="train", **common)
    val = pl.load_pets_localization(
        args.data_dir, split="validation", drop_remainder=False, **common
    )
    return train, val, pl.pets_breeds(args.data_dir)[0]


def _command(args) -> str:
    argv = sys.argv[1:] if args.argv is None else args.argv
    return "python examples/localization.py " + " ".join(map(str, argv))


def train(args) -> int:
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    strategy = setup_distribution(args)
    batch_size = global_batch_size(args.batch_size, strategy)
    train_data, val_data, class_names = _datasets(args, batch_size)
    train_data = distribute.auto_shard(train_data, "data")
    val_data = distribute.auto_shard(val_data, "data")
    steps = int(train_data.cardinality())
    jit_compile = jit_compile_for(strategy, args.jit_compile)
    with strategy.scope():
        model = build_classifier_localizer(
            len(class_names), **model_kwargs(args.image_size, args.smoke)
        )
        model.compile(
            optimizer=keras.optimizers.Adam(
                cosine_decay(args.learning_rate, steps, args.epochs, 0.02)
            ),
            loss={
                "classes": "sparse_categorical_crossentropy",
                "boxes": box_loss(args.box_loss),
            },
            loss_weights={"classes": 1.0, "boxes": args.box_weight},
            metrics={"classes": ["accuracy"], "boxes": [box_iou]},
            jit_compile=jit_compile,
        )
    check_compiled(model, jit_compile, steps)
    started = time.time()
    with fit_context(model, strategy, lambda: next(iter(train_data))):
        history = model.fit(
            train_data,
            validation_data=val_data,
            epochs=args.epochs,
            verbose=2,
            callbacks=[
                *backup_callbacks(args),
                *logging_callbacks(out),
                best_checkpoint(out / MODEL_FILE, "val_loss"),
            ],
        )
    save_final_weights(model, args)
    h = history.history
    best = int(np.argmin(h["val_loss"]))
    summary = {
        "command": _command(args),
        "data": "synthetic (smoke)" if args.smoke else str(args.data_dir),
        "class_names": list(class_names),
        "box": "tight box of trimap pet (1) + border (3) pixels",
        "epochs": args.epochs,
        "batch_size": batch_size,
        "steps_per_epoch": steps,
        "box_loss": args.box_loss,
        "loss_weights": {"classes": 1.0, "boxes": args.box_weight},
        "parameters": int(model.count_params()),
        "train_minutes": round((time.time() - started) / 60, 2),
        "best_epoch": best + 1,
        "best_val_loss": float(h["val_loss"][best]),
        "best_val_accuracy": float(h["val_classes_accuracy"][best]),
        "best_val_box_iou": float(h["val_boxes_box_iou"][best]),
        "jit_compile": bool(model.jit_compile),
        "strategy": args.strategy,
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def _validation_examples(args):
    """Validation images at their native sizes (uint8), class ids and
    true boxes in their pixels."""
    if args.smoke:
        arrays = pl.make_synthetic_pets_localization_arrays(
            16, args.image_size, args.seed + 1
        )
        images = [np.rint(i).astype(np.uint8) for i in arrays["images"]]
        size = np.array(images[0].shape[:2] * 2, np.float32)
        return images, arrays["classes"], arrays["boxes"] * size
    records = pl.list_pets_localization(
        args.data_dir, "validation", args.validation_fraction
    )
    images, classes, boxes = [], [], []
    for _, image_path, trimap_path, label in records:
        image = tf.io.decode_image(
            tf.io.read_file(image_path), channels=3, expand_animations=False
        ).numpy()
        trimap = tf.io.decode_png(tf.io.read_file(trimap_path), channels=1)
        box = pl.box_from_trimap(trimap).numpy()
        images.append(image)
        classes.append(label)
        boxes.append(box * np.array(image.shape[:2] * 2, np.float32))
    return images, np.array(classes), np.stack(boxes)


def iou(a, b) -> np.ndarray:
    """IoU of paired [N, 4] (ymin, xmin, ymax, xmax) boxes."""
    return np.asarray(box_iou(a, b))


def save_box_plot(images, true, pred, labels, names, path: Path, count=8):
    """PNG of validation images with true (green) and predicted (red)
    boxes and classes (`visualization.plot_detections`), titled with the
    IoU."""
    count = min(count, len(images))
    figure = visualization.plot_detections(
        images[:count],
        {
            "detection_boxes": pred["boxes"][:count, None],
            "detection_classes": pred["classes"][:count, None],
        },
        ground_truth={
            "boxes": true[:count, None],
            "classes": labels[:count, None],
        },
        class_names=names,
        layout="overlay",
        titles=[f"IoU {iou:.2f}" for iou in pred["iou"][:count]],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


def evaluate(args) -> int:
    out = args.output_dir
    model_path = out / MODEL_FILE
    if not model_path.is_file():
        raise SystemExit(f"{model_path} not found: run `train` first")
    model = keras.saving.load_model(model_path)
    images, labels, true_boxes = _validation_examples(args)
    served_dir = export_localizer_for_serving(
        model, out, version=args.version, warmup_images=images[:2]
    )
    # The numbers are those of the exported signature, as TF Serving
    # would answer: each validation image at its own size.
    serve = tf.saved_model.load(served_dir).signatures["serving_default"]
    started = time.time()
    classes, boxes = [], []
    for image in images:
        answer = serve(images=tf.constant(image[None]))
        classes.append(int(answer["classes"].numpy()[0]))
        boxes.append(answer["detection_boxes"].numpy()[0])
    seconds = time.time() - started
    classes, boxes = np.array(classes), np.stack(boxes)
    ious = iou(true_boxes, boxes)
    if args.smoke:
        names = SMOKE_CLASSES
    else:
        names = pl.pets_breeds(args.data_dir)[0]
    save_box_plot(
        images,
        true_boxes,
        {"boxes": boxes, "classes": classes, "iou": ious},
        labels,
        names,
        out / "plots" / "boxes.png",
    )
    training = {}
    if (out / "training.json").is_file():
        training = json.loads((out / "training.json").read_text())
    metrics = {
        "command": _command(args),
        "data": "synthetic (smoke)" if args.smoke else str(args.data_dir),
        "split": f"validation ({args.validation_fraction} of each breed)",
        "examples": len(images),
        "accuracy": float(np.mean(classes == labels)),
        "mean_iou": float(np.mean(ious)),
        "iou_at_0.5": float(np.mean(ious >= 0.5)),
        "per_class_accuracy": {
            names[k]: float(np.mean(classes[labels == k] == k))
            for k in range(len(names))
            if np.any(labels == k)
        },
        "evaluated": "serving_default of "
        + str(served_dir)
        + " at each image's native size, IoU in its pixels",
        "serving_ms_per_image": round(1000 * seconds / len(images), 2),
        "training": training,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"validation accuracy {metrics['accuracy']:.3f}, "
        f"mean IoU {metrics['mean_iou']:.3f}"
    )
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.smoke:
        args.image_size = min(args.image_size, 32)
        if args.command == "train":
            args.batch_size = min(args.batch_size, 8)
    if args.command == "train":
        args.epochs = args.epochs or (1 if args.smoke else 50)
    keras.utils.set_random_seed(args.seed)
    return {"train": train, "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
