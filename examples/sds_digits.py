"""SDS-style mask refinement of MNIST digit scenes, against Mask R-CNN.

`SDSRefiner` (Hariharan et al. 2014/2015: hypercolumns of the image and of
four backbone levels pooled inside each box with RoIAlign, a small
convolutional figure-ground head) is trained on the ground-truth boxes of
the training digit scenes (`keras_segattn.data.digit_scenes`, the scenes
of examples/instance_segmentation.py; boxes jittered a little so that
detector boxes are not a surprise). `evaluate` then measures COCO mask AP
(pycocotools, 0.5:0.95 and AP50) on the held-out test scenes (the MNIST
test pool, the same 1,000 scenes as the committed detector's
metrics.json) for:

  (a) the boxes of the committed `saved_models/digits_mask_rcnn_fpn`
      detector: its own Mask R-CNN masks, then SDS masks on the same boxes
      with the same classes and scores;
  (b) the ground-truth boxes (score 1, true class): the detector's Mask
      R-CNN mask head on them, then SDS masks.

With `--cascade`, the model also re-scores each box's class from
mask-pooled hypercolumns (the MNC cascade, Dai et al. 2016), and (a) is
repeated with the detector's classes replaced by the cascade's.

Sub-commands:

    train     fit the refiner, keep the best validation epoch (model.keras)
    evaluate  the mask AP table (metrics.json, table.md) and plots

Examples:

    # About 20 minutes of training on 2 shared CPU cores
    python examples/sds_digits.py train --cascade
    python examples/sds_digits.py evaluate

    # Seconds-long check on seven-segment digits (an untrained tiny
    # detector stands in for the committed one)
    python examples/sds_digits.py train --smoke --output-dir /tmp/sds
    python examples/sds_digits.py evaluate --smoke --output-dir /tmp/sds
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import set_process_defaults
from _detection import add_scene_commands

DIGIT_CLASSES = [str(d) for d in range(10)]
MODEL_FILE = "model.keras"
DETECTOR = "digits_mask_rcnn_fpn"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = add_scene_commands(
        parser,
        "saved_models/sds_digits",
        "where the model, metrics and plots go",
    )
    train = commands["train"]
    train.add_argument(
        "--epochs", type=int, default=None, help="default: 3 (--smoke: 1)"
    )
    train.add_argument("--batch-size", type=int, default=16, help="scenes")
    train.add_argument(
        "--learning-rate",
        type=float,
        default=2e-3,
        help="peak Adam learning rate (cosine decay)",
    )
    train.add_argument(
        "--num-train", type=int, default=3000, help="training scenes"
    )
    train.add_argument(
        "--num-val", type=int, default=320, help="validation scenes"
    )
    train.add_argument(
        "--box-jitter",
        type=float,
        default=0.05,
        help="std of the random shift of each box edge, as a fraction of "
        "the box's width or height (0: exact ground-truth boxes)",
    )
    train.add_argument(
        "--pool-size",
        type=int,
        default=32,
        help="RoIAlign grid and mask size per box",
    )
    train.add_argument(
        "--cascade",
        action="store_true",
        help="add the MNC class cascade (SDSRefiner(num_classes=10))",
    )
    evaluate = commands["evaluate"]
    evaluate.add_argument(
        "--num-test", type=int, default=1000, help="test scenes"
    )
    evaluate.add_argument(
        "--version",
        type=int,
        default=1,
        help="the refiner is exported to <output-dir>/<version>/ "
        "(export_instance_refiner_for_serving, one box slot per detector "
        "slot) and evaluated through that SavedModel",
    )
    evaluate.add_argument(
        "--detector",
        default=DETECTOR,
        help="committed model name or directory of the box detector "
        "(keras_segattn.models.load_pretrained)",
    )
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn.export import export_instance_refiner_for_serving  # noqa: E402
from keras_segattn.metrics import evaluate_detections  # noqa: E402
from keras_segattn.models import FasterRCNN  # noqa: E402
from keras_segattn.models import SDSRefiner  # noqa: E402
from keras_segattn.models import load_pretrained  # noqa: E402

from _common import best_checkpoint  # noqa: E402
from _common import check_compiled  # noqa: E402
from _common import cosine_decay  # noqa: E402
from _common import logging_callbacks  # noqa: E402
from _detection import make_digit_scenes  # noqa: E402


def model_kwargs(args) -> dict:
    """The CPU-sized refiner (`--smoke`: a tiny one)."""
    kwargs = {
        "image_shape": (args.image_size, args.image_size, 3),
        "num_classes": len(DIGIT_CLASSES) if args.cascade else None,
    }
    if args.smoke:
        return {
            **kwargs,
            "backbone_kwargs": {"filters": (4, 8, 8, 8, 8)},
            "layer_names": ("preprocess_rescaling", "block2_pool"),
            "pool_size": 4,
            "head_filters": 4,
            "head_convs": 1,
            "cascade_units": 8,
        }
    return {
        **kwargs,
        "backbone_kwargs": {
            "filters": (16, 32, 64, 64, 64),
            "convs_per_stage": 1,
        },
        "pool_size": args.pool_size,
        # About one bin per pixel of a digit's box: one sample per bin.
        "sampling_ratio": 1,
        "head_filters": 32,
        "head_convs": 2,
    }


def xyxy(boxes_yxyx: np.ndarray) -> np.ndarray:
    """(ymin, xmin, ymax, xmax) -> (x1, y1, x2, y2); -1 padding stays."""
    return np.asarray(boxes_yxyx, "float32")[..., [1, 0, 3, 2]]


def refiner_dataset(scenes, batch_size, *, cascade, jitter=0.0, seed=0):
    """`({"images", "boxes"}, {"masks"[, "classes"]})` batches; boxes
    (x1, y1, x2, y2), each non-padding edge shifted by N(0, jitter) times
    the box's size, clipped to the image."""
    size = scenes["images"].shape[1]
    data = tf.data.Dataset.from_tensor_slices(
        {
            "images": scenes["images"],
            "boxes": xyxy(scenes["boxes"]),
            "masks": scenes["masks"],
            "classes": scenes["classes"].astype("int32"),
        }
    )
    if jitter:
        data = data.shuffle(len(scenes["images"]), seed=seed)
    generator = tf.random.Generator.from_seed(seed)

    def to_example(scene):
        boxes = scene["boxes"]
        if jitter:
            sizes = tf.tile(boxes[:, 2:] - boxes[:, :2], [1, 2])
            noise = generator.normal(tf.shape(boxes)) * jitter * sizes
            moved = tf.clip_by_value(boxes + noise, 0.0, float(size))
            padding = tf.reduce_all(boxes == -1.0, axis=-1, keepdims=True)
            boxes = tf.where(padding, -1.0, moved)
        x = {"images": tf.cast(scene["images"], tf.float32), "boxes": boxes}
        y = {"masks": tf.cast(scene["masks"], tf.float32)}
        if cascade:
            y["classes"] = scene["classes"]
        return x, y

    return data.map(to_example).batch(batch_size, drop_remainder=True)


def train(args) -> int:
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    train_scenes = make_digit_scenes(args, "train", args.num_train)
    val_scenes = make_digit_scenes(args, "validation", args.num_val)
    batch_size = min(args.batch_size, len(val_scenes["images"]))
    train_data = refiner_dataset(
        train_scenes,
        batch_size,
        cascade=args.cascade,
        jitter=args.box_jitter,
        seed=args.seed,
    )
    val_data = refiner_dataset(val_scenes, batch_size, cascade=args.cascade)
    model = SDSRefiner(**model_kwargs(args))
    steps = len(train_scenes["images"]) // batch_size
    model.compile(
        optimizer=keras.optimizers.Adam(
            cosine_decay(args.learning_rate, steps, args.epochs, alpha=0.01),
            clipnorm=10.0,
        ),
        jit_compile=True,
    )
    check_compiled(model, True, steps_per_epoch=steps)
    started = time.time()
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=args.epochs,
        verbose=2 if args.smoke else 1,
        callbacks=[
            *logging_callbacks(out),
            best_checkpoint(out / MODEL_FILE, "val_loss"),
        ],
    )
    summary = {
        "command": "python examples/sds_digits.py train "
        + " ".join(sys.argv[2:] if args.argv is None else args.argv[1:]),
        "train_scenes": len(train_scenes["images"]),
        "val_scenes": len(val_scenes["images"]),
        "epochs": args.epochs,
        "box_jitter": args.box_jitter,
        "cascade": args.cascade,
        "train_minutes": round((time.time() - started) / 60, 2),
        "parameters": int(model.count_params()),
        "best_val_loss": float(min(history.history["val_loss"])),
        "jit_compile": model.jit_compile,
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def load_detector(args) -> keras.Model:
    """The committed detector, or with `--smoke` an untrained tiny Mask
    R-CNN with a feature pyramid (the pipeline, not the numbers)."""
    if not args.smoke:
        return load_pretrained(args.detector)
    return FasterRCNN(
        len(DIGIT_CLASSES),
        image_shape=(args.image_size, args.image_size, 3),
        backbone_kwargs={"filters": (8, 8, 16, 16, 16), "convs_per_stage": 1},
        fpn=True,
        fpn_filters=8,
        rpn_pre_nms_top_n_test=48,
        rpn_post_nms_top_n_test=16,
        box_head_units=16,
        box_score_threshold=0.0,
        max_detections=8,
        mask_head=True,
        mask_roi_output_size=7,
        mask_head_filters=8,
        mask_head_convs=1,
    )


def mask_rcnn_masks_on_boxes(detector, images, boxes_yxyx, classes, batch):
    """The detector's Mask R-CNN mask branch (pooler, head, paste) on given
    boxes and classes: float32 [N, M, H, W] probabilities."""

    @tf.function
    def masks_of(images, boxes, classes, count):
        levels = detector.backbone(images)
        levels = list(levels) if isinstance(levels, (list, tuple)) else [levels]
        if detector.feature_pyramid is not None:
            levels = detector.feature_pyramid(levels)
        levels = levels[: detector.roi_pooler.num_levels]
        logits = detector.mask_head(
            detector.mask_detection_pooler(levels, boxes)
        )
        return detector.mask_postprocessor(logits, boxes, classes, count)

    counts = (classes >= 0).sum(axis=1).astype("float32")
    return np.concatenate(
        [
            masks_of(
                tf.constant(images[i : i + batch], tf.float32),
                tf.constant(boxes_yxyx[i : i + batch], tf.float32),
                tf.constant(np.maximum(classes[i : i + batch], 0), tf.float32),
                tf.constant(counts[i : i + batch]),
            ).numpy()
            for i in range(0, len(images), batch)
        ]
    )


def served_refiner(path: str, images, boxes_yxyx, batch):
    """The exported refiner's `serving_default` on given boxes: pasted mask
    probabilities [N, M, H, W] and, with the cascade, the class ids and
    probabilities [N, M] (else None). The boxes (yxyx, -1 padding) are
    padded to the signature's static count and the outputs cut back."""
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    serve = reloaded.signatures["serving_default"]
    slots = serve.structured_input_signature[1]["boxes"].shape[1]
    count = boxes_yxyx.shape[1]
    padded = np.full((len(images), slots, 4), -1.0, "float32")
    padded[:, :count] = boxes_yxyx
    outputs: dict[str, list] = {}
    for i in range(0, len(images), batch):
        answer = serve(
            images=tf.constant(images[i : i + batch], tf.uint8),
            boxes=tf.constant(padded[i : i + batch]),
        )
        for key, value in answer.items():
            outputs.setdefault(key, []).append(value.numpy()[:, :count])
    outputs = {key: np.concatenate(value) for key, value in outputs.items()}
    classes = outputs.get("detection_classes")
    if classes is None:
        return outputs["detection_masks"], None
    return outputs["detection_masks"], (classes, outputs["detection_scores"])


def detector_outputs(detector, images, batch) -> dict:
    outputs = detector.predict(images.astype("float32"), batch_size=batch)
    return {key: np.asarray(value) for key, value in outputs.items()}


def evaluate(args) -> int:
    out = args.output_dir
    model_path = out / MODEL_FILE
    if not model_path.is_file():
        raise SystemExit(f"{model_path} not found: run `train` first")
    model = keras.saving.load_model(model_path)
    scenes = make_digit_scenes(args, "test", args.num_test)
    images = scenes["images"]
    truth = {key: scenes[key] for key in ("boxes", "classes", "masks")}
    batch = 8 if args.smoke else 50
    started = time.time()

    def mask_ap(detections):
        coco = evaluate_detections(
            truth, detections, category_names=DIGIT_CLASSES, verbose=False
        )
        return {
            "mask_AP": round(coco["segm"]["AP"], 4),
            "mask_AP50": round(coco["segm"]["AP50"], 4),
            "mask_AP75": round(coco["segm"]["AP75"], 4),
            "box_AP": round(coco["bbox"]["AP"], 4),
        }

    rows = []
    # (a) The detector's boxes, classes and scores.
    detector = load_detector(args)
    detections = detector_outputs(detector, images, batch)
    slots = np.arange(detections["detection_boxes"].shape[1])
    valid = slots[None, :] < detections["num_detections"][:, None]
    rows.append(
        {"boxes": "detector", "masks": "Mask R-CNN", **mask_ap(detections)}
    )
    # The refiner's numbers are those of its exported signature, as TF
    # Serving would answer (same graph, no XLA), with one box slot per
    # detector slot: the detector's `detection_boxes` go in unchanged.
    served_dir = export_instance_refiner_for_serving(
        model,
        out,
        num_boxes=detections["detection_boxes"].shape[1],
        version=args.version,
    )
    det_yxyx = np.where(valid[..., None], detections["detection_boxes"], -1.0)
    sds_masks, cascade = served_refiner(served_dir, images, det_yxyx, batch)
    rows.append(
        {
            "boxes": "detector",
            "masks": "SDS",
            **mask_ap({**detections, "detection_masks": sds_masks}),
        }
    )
    if cascade is not None:
        classes, probabilities = cascade
        rescored = {
            **detections,
            "detection_masks": sds_masks,
            "detection_classes": classes,
            "detection_scores": detections["detection_scores"] * probabilities,
        }
        rows.append(
            {
                "boxes": "detector",
                "masks": "SDS + MNC class cascade",
                **mask_ap(rescored),
            }
        )
    # (b) Ground-truth boxes, true classes, score 1.
    gt_valid = scenes["classes"] >= 0
    truth_as_detections = {
        "detection_boxes": scenes["boxes"].astype("float32"),
        "detection_classes": np.maximum(scenes["classes"], 0).astype("float32"),
        "detection_scores": gt_valid.astype("float32"),
        "num_detections": gt_valid.sum(axis=1).astype("float32"),
    }
    rcnn_masks = mask_rcnn_masks_on_boxes(
        detector, images, scenes["boxes"], scenes["classes"], batch
    )
    rows.append(
        {
            "boxes": "ground truth",
            "masks": "Mask R-CNN",
            **mask_ap({**truth_as_detections, "detection_masks": rcnn_masks}),
        }
    )
    gt_yxyx = np.where(gt_valid[..., None], scenes["boxes"], -1.0)
    gt_masks, _ = served_refiner(served_dir, images, gt_yxyx, batch)
    rows.append(
        {
            "boxes": "ground truth",
            "masks": "SDS",
            **mask_ap({**truth_as_detections, "detection_masks": gt_masks}),
        }
    )
    table = [
        "| boxes | masks | mask AP | mask AP50 | mask AP75 |",
        "| --- | --- | --- | --- | --- |",
    ] + [
        f"| {r['boxes']} | {r['masks']} | {r['mask_AP']:.3f} | "
        f"{r['mask_AP50']:.3f} | {r['mask_AP75']:.3f} |"
        for r in rows
    ]
    training = {}
    if (out / "training.json").is_file():
        training = json.loads((out / "training.json").read_text())
    metrics = {
        "command": "python examples/sds_digits.py evaluate "
        + " ".join(sys.argv[2:] if args.argv is None else args.argv[1:]),
        "test_scenes": len(images),
        "test_instances": int(gt_valid.sum()),
        "detector": "untrained tiny (smoke)" if args.smoke else args.detector,
        "rows": rows,
        "evaluate_minutes": round((time.time() - started) / 60, 2),
        "training": training,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "table.md").write_text("\n".join(table) + "\n")
    save_plot(scenes, rcnn_masks, gt_masks, out / "plots" / "masks.png")
    print("\n".join(table))
    return 0


def save_plot(scenes, rcnn_masks, sds_masks, path: Path, count: int = 4):
    """Scenes with the ground-truth, Mask R-CNN and SDS masks (on the
    ground-truth boxes), each instance in its own colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    count = min(count, len(scenes["images"]))
    figure, axes = plt.subplots(count, 4, figsize=(8, 2 * count), squeeze=False)
    titles = ("image", "ground truth", "Mask R-CNN", "SDS")
    for row in range(count):
        valid = scenes["classes"][row] >= 0
        for col, masks in enumerate(
            (None, scenes["masks"][row], rcnn_masks[row], sds_masks[row])
        ):
            axis = axes[row, col]
            if masks is None:
                axis.imshow(scenes["images"][row].astype("uint8"))
            else:
                labels = np.zeros(masks.shape[1:], "int32")
                for i in np.flatnonzero(valid):
                    labels[masks[i] >= 0.5] = i + 1
                axis.set_facecolor("black")  # the unlabelled pixels
                axis.imshow(
                    np.ma.masked_equal(labels, 0), cmap="tab10", vmin=1, vmax=10
                )
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(titles[col], fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.smoke:
        args.image_size = min(args.image_size, 64)
        if args.command == "train":
            args.num_train, args.num_val, args.batch_size = 8, 4, 4
        else:
            args.num_test = 4
    if args.command == "train":
        args.epochs = args.epochs or (1 if args.smoke else 3)
    else:
        args.cascade = False
    keras.utils.set_random_seed(args.seed)
    return {"train": train, "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
