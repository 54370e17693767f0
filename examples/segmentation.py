"""Semantic segmentation with FCN-32s/16s/8s or DeconvNet: train and evaluate.

The first complete path through keras_segattn: data -> fully convolutional
model -> `model.fit` (XLA) -> mean IoU -> PNG plots -> SavedModel -> reload.

Examples:

    # Oxford-IIIT pets trimaps, FCN-8s, on the full shared data
    python examples/segmentation.py train --dataset pets \\
        --data-dir ../shared/data/oxford_pets --model fcn8s --epochs 60

    # CamVid (11 classes, void 11 ignored)
    python examples/segmentation.py train --dataset camvid \\
        --data-dir ../shared/data/camvid --image-size 192x256

    # Evaluate an exported SavedModel at the images' own resolution
    python examples/segmentation.py evaluate --dataset pets \\
        --data-dir ../shared/data/oxford_pets \\
        --saved-model saved_models/pets_fcn/1

    # Seconds-long end-to-end check on synthetic data
    python examples/segmentation.py train --smoke --output-dir /tmp/seg
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults

MODELS = ("fcn32s", "fcn16s", "fcn8s", "deconvnet")
DATASET_NAMES = ("pets", "camvid")  # the keys of DATASETS below


def _image_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(
            f"--image-size expects N or HxW with positive ints, got {text!r}"
        )
    return parts[0], parts[1]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument(
            "--dataset",
            choices=DATASET_NAMES,
            default="pets",
            help="Oxford-IIIT pets trimaps or CamVid",
        )
        p.add_argument(
            "--data-dir",
            type=Path,
            default=Path("sample_data/oxford_pets"),
            help="dataset folder (layout of ../shared/data)",
        )
        p.add_argument(
            "--image-size",
            type=_image_size,
            default=(128, 128),
            help="N or HxW, model input size",
        )
        p.add_argument(
            "--batch-size", type=int, default=8, help="global batch size"
        )
        p.add_argument(
            "--output-dir",
            type=Path,
            default=None,
            help="where the model, logs and plots go (default: "
            "saved_models/<dataset>_<model>)",
        )
        p.add_argument(
            "--smoke",
            action="store_true",
            help="a few steps on synthetic data, in seconds",
        )

    train = sub.add_parser("train", help="train, plot, export")
    common(train)
    train.add_argument(
        "--model", choices=MODELS, default="fcn8s", help="architecture"
    )
    train.add_argument(
        "--epochs", type=int, default=None, help="default: 30 (--smoke: 1)"
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        default=2e-3,
        help="peak AdamW learning rate (cosine decay)",
    )
    train.add_argument(
        "--weight-decay", type=float, default=1e-4, help="AdamW weight decay"
    )
    train.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile the train step with XLA",
    )
    train.add_argument(
        "--filters",
        type=str,
        default=None,
        help="comma-separated encoder widths overriding the preset's: 5 "
        "for FCN's backbone (one per stride-2 stage), 4 for DeconvNet",
    )
    train.add_argument(
        "--seed", type=int, default=0, help="seed of weights and shuffling"
    )
    train.add_argument(
        "--backbone",
        choices=("vgg_small", "resnet_small"),
        default="vgg_small",
        help="FCN encoder: the small VGG with batch norm, or the small "
        "ResNet (basic residual blocks); DeconvNet has its own encoder",
    )
    train.add_argument(
        "--class-weights",
        choices=("none", "median-frequency"),
        default="none",
        help="per-class loss weights: none, or SegNet's median frequency "
        "balancing computed on the unaugmented training masks (rare CamVid "
        "classes such as pole, sign and pedestrian weigh more)",
    )
    train.add_argument(
        "--test-time-scales",
        type=float,
        nargs="+",
        default=[1.0],
        help="multiples of --image-size that the exported model runs each "
        "image at, probabilities averaged (multi-scale inference), e.g. "
        "0.8 1 1.2",
    )
    train.add_argument(
        "--test-time-flip",
        action="store_true",
        help="the exported model also averages over horizontally flipped "
        "images",
    )
    train.add_argument(
        "--init-from",
        default=None,
        help="start from these weights instead of random ones: a committed "
        "model name (e.g. pets_fcn, see keras_segattn.models."
        "list_pretrained()), a save_pretrained folder or a .keras file, of "
        "the same architecture (same --model, --backbone, --filters and "
        "class count; the input size may differ, the model is fully "
        "convolutional); a fine-tuning run, e.g. at a larger --image-size",
    )
    add_distribution_arguments(train)

    evaluate = sub.add_parser(
        "evaluate", help="mean IoU of a SavedModel at native resolution"
    )
    common(evaluate)
    evaluate.add_argument(
        "--saved-model",
        type=Path,
        required=True,
        help="SavedModel version dir (…/serving/1)",
    )
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn import data  # noqa: E402
from keras_segattn import distribute  # noqa: E402
from keras_segattn import export  # noqa: E402
from keras_segattn import losses  # noqa: E402
from keras_segattn import metrics  # noqa: E402
from keras_segattn import models  # noqa: E402
from keras_segattn import validation  # noqa: E402
from keras_segattn import visualization  # noqa: E402

from _common import backup_callbacks  # noqa: E402
from _common import best_checkpoint  # noqa: E402
from _common import check_compiled  # noqa: E402
from _common import cosine_decay  # noqa: E402
from _common import fit_context  # noqa: E402
from _common import global_batch_size  # noqa: E402
from _common import jit_compile_for  # noqa: E402
from _common import load_initial_weights  # noqa: E402
from _common import logging_callbacks  # noqa: E402
from _common import save_final_weights  # noqa: E402
from _common import setup_distribution  # noqa: E402

DATASETS = {
    # name: loader, class count, void label, offset back to the dataset's
    # own numbering, the two splits, class names.
    "pets": {
        "loader": data.load_oxford_pets,
        "num_classes": data.PETS_NUM_CLASSES,
        "void_label": None,
        "label_offset": data.PETS_LABEL_OFFSET,
        "splits": ("train", "validation"),
        "class_names": data.PETS_CLASS_NAMES,
    },
    "camvid": {
        "loader": data.load_camvid,
        "num_classes": data.CAMVID_NUM_CLASSES,
        "void_label": data.CAMVID_VOID_LABEL,
        "label_offset": 0,
        "splits": ("train", "val"),
        "class_names": data.CAMVID_CLASS_NAMES,
    },
}


def _datasets(args, spec):
    """(train, validation) datasets of float images 0..255 and int masks."""
    if args.smoke:
        train = data.make_synthetic_segmentation(
            16,
            image_size=32,
            num_classes=spec["num_classes"],
            seed=0,
            batch_size=args.batch_size,
        )
        val = data.make_synthetic_segmentation(
            8,
            image_size=32,
            num_classes=spec["num_classes"],
            seed=1,
            batch_size=args.batch_size,
        )
        return train, val
    train_split, val_split = spec["splits"]
    load = spec["loader"]
    train = load(
        args.data_dir,
        train_split,
        image_size=args.image_size,
        batch_size=args.batch_size,
        training=True,
        seed=getattr(args, "seed", 0),
    )
    val = load(
        args.data_dir,
        val_split,
        image_size=args.image_size,
        batch_size=args.batch_size,
        training=False,
        drop_remainder=False,
    )
    return train, val


def _class_weights(args, spec):
    """None, or median frequency weights of the training split's masks."""
    if args.class_weights == "none":
        return None
    if args.smoke:
        masks = _datasets(args, spec)[0]
    else:
        masks = spec["loader"](
            args.data_dir,
            spec["splits"][0],
            image_size=args.image_size,
            batch_size=args.batch_size,
            training=False,
            drop_remainder=False,
        )
    weights = losses.median_frequency_weights(
        masks, spec["num_classes"], void_label=spec["void_label"]
    )
    print(
        "median frequency class weights: "
        + ", ".join(
            f"{name} {weight:.3f}"
            for name, weight in zip(spec["class_names"], weights, strict=True)
        )
    )
    return weights


def _model(args, spec):
    num_classes = spec["num_classes"]
    filters = None
    if args.filters:
        try:
            filters = tuple(int(width) for width in args.filters.split(","))
        except ValueError:
            raise ValueError(
                "Invalid value for argument `--filters`. Expected "
                "comma-separated ints, e.g. 32,64,128,192,256. Received: "
                f"--filters {args.filters}."
            ) from None
    if args.model == "deconvnet":
        if args.backbone != "vgg_small":
            raise ValueError(
                "Invalid value for argument `--backbone`. Expected vgg_small "
                "(DeconvNet's own encoder with pooling switches) for "
                f"--model deconvnet. Received: --backbone {args.backbone}."
            )
        preset = "deconvnet_tiny" if args.smoke else "deconvnet_small"
        overrides = {"filters": filters} if filters else {}
        return models.build_segmentation_model(preset, num_classes, **overrides)
    preset = "fcn8s_tiny" if args.smoke else f"{args.model}_small"
    overrides = {"variant": args.model.removeprefix("fcn")}
    backbone_kwargs = dict(
        models.SEGMENTATION_PRESETS[preset].get("backbone_kwargs", {})
    )
    if args.backbone == "resnet_small":
        overrides["backbone"] = "resnet_small"
        backbone_kwargs = (
            {"filters": (4, 8, 8, 16, 16), "blocks_per_stage": 1}
            if args.smoke
            else {}
        )
    if filters:
        backbone_kwargs["filters"] = filters
    overrides["backbone_kwargs"] = backbone_kwargs
    return models.build_segmentation_model(preset, num_classes, **overrides)


def train(args) -> int:
    spec = DATASETS[args.dataset]
    # Checked now rather than by the export after training.
    validation.check_positive_floats(
        args.test_time_scales, "--test-time-scales"
    )
    strategy = setup_distribution(args)
    global_batch_size(args.batch_size, strategy)
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir or Path("saved_models") / (
        f"{args.dataset}_{args.model}"
    )
    out.mkdir(parents=True, exist_ok=True)
    # In-memory or file-list pipelines: every worker keeps its share of
    # each global batch.
    train_ds, val_ds = (
        distribute.auto_shard(ds, "data") for ds in _datasets(args, spec)
    )
    steps = int(train_ds.cardinality())
    epochs = args.epochs or (1 if args.smoke else 30)
    jit_compile = jit_compile_for(strategy, args.jit_compile)
    with strategy.scope():
        model = _model(args, spec)
        if args.init_from:
            load_initial_weights(
                model,
                args.init_from,
                "same --model, --backbone, --filters and class count",
            )
        schedule = cosine_decay(args.learning_rate, steps, epochs, alpha=0.02)
        model.compile(
            optimizer=keras.optimizers.AdamW(
                schedule, weight_decay=args.weight_decay
            ),
            loss=losses.segmentation_loss(
                void_label=spec["void_label"],
                class_weights=_class_weights(args, spec),
            ),
            metrics=metrics.segmentation_metrics(
                spec["num_classes"], void_label=spec["void_label"]
            ),
            jit_compile=jit_compile,
        )
    check_compiled(model, jit_compile, steps)
    callbacks = [
        *backup_callbacks(args),
        *logging_callbacks(out),
        best_checkpoint(out / "model.keras", "val_mean_iou", "max"),
    ]
    start = time.time()
    with fit_context(model, strategy, lambda: next(iter(train_ds))):
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            callbacks=callbacks,
            verbose=2 if args.smoke else 1,
        )
    minutes = (time.time() - start) / 60
    save_final_weights(model, args)
    model = keras.saving.load_model(out / "model.keras")
    results = model.evaluate(val_ds, return_dict=True, verbose=0)
    images, masks = next(iter(val_ds))
    predictions = np.argmax(model.predict(images, verbose=0), axis=-1)
    figure = visualization.plot_segmentation(
        np.asarray(images[:4]).astype("uint8"),
        np.asarray(masks[:4]).astype("int32"),
        spec["class_names"],
        predictions=predictions[:4],
        ignore_index=spec["void_label"],
    )
    (out / "plots").mkdir(parents=True, exist_ok=True)
    figure.savefig(out / "plots" / "predictions.png", dpi=80)
    # TF Serving warmup requests from real validation images, when the
    # optional tensorflow-serving-api is installed (`make` installs it).
    has_serving_api = importlib.util.find_spec("tensorflow_serving")
    warmup = np.round(np.asarray(images[:2])).astype("uint8")
    serving_dir = export.export_for_serving(
        model,
        out / "serving",
        version=1,
        label_offset=spec["label_offset"],
        inference_size=None if args.smoke else args.image_size,
        warmup_images=list(warmup) if has_serving_api else None,
        test_time_scales=args.test_time_scales,
        test_time_flip=args.test_time_flip,
    )
    summary = {
        "dataset": args.dataset,
        "model": args.model,
        "backbone": args.backbone,
        "class_weights": args.class_weights,
        "parameters": model.count_params(),
        "image_size": list(args.image_size),
        "epochs": epochs,
        "init_from": args.init_from,
        "test_time_augmentation": {
            "scales": list(args.test_time_scales),
            "flip": args.test_time_flip,
        },
        "train_minutes": round(minutes, 2),
        **{f"val_{k}": float(v) for k, v in results.items()},
        "serving_dir": str(serving_dir),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts [num_classes, num_classes]; labels outside [0, n) are dropped."""
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred).reshape(-1).astype(np.int64)
    keep = (y_true >= 0) & (y_true < num_classes)
    return np.bincount(
        num_classes * y_true[keep] + y_pred[keep], minlength=num_classes**2
    ).reshape(num_classes, num_classes)


def mean_iou(confusion: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over classes present in truth or prediction of TP/(TP+FP+FN)."""
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)), iou


def evaluate(args) -> int:
    """Runs the SavedModel's `serving_default` on uint8 images at their own
    resolution and scores the masks in the dataset's own numbering."""
    spec = DATASETS[args.dataset]
    reloaded = tf.saved_model.load(str(args.saved_model))
    serve = reloaded.signatures["serving_default"]
    n = spec["num_classes"]
    if args.smoke:
        ds = data.make_synthetic_segmentation(
            4, image_size=32, num_classes=n, seed=1, batch_size=1
        )
    else:
        ds = spec["loader"](
            args.data_dir,
            spec["splits"][1],
            image_size=None,
            batch_size=1,
            training=False,
            drop_remainder=False,
        )
    confusion = np.zeros((n, n), np.int64)
    count = int(ds.cardinality())
    progress = keras.utils.Progbar(
        count if count >= 0 else None, unit_name="image"
    )
    for images, masks in ds:
        out = serve(images=tf.cast(tf.round(images), tf.uint8))
        predicted = out["masks"].numpy() - spec["label_offset"]
        confusion += confusion_matrix(masks.numpy(), predicted, n)
        progress.add(len(images))
    miou, iou = mean_iou(confusion)
    accuracy = float(np.trace(confusion) / max(1, confusion.sum()))
    for name, value in zip(spec["class_names"], iou, strict=False):
        print(f"  IoU {name:>12s}: {value:.3f}")
    print(f"pixel accuracy: {accuracy:.4f}")
    print(f"mean IoU: {miou:.4f}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
