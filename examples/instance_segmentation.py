"""Instance segmentation of MNIST digit scenes with Mask R-CNN.

The task of `keras_segattn.data.digit_scenes`: 128x128 canvases with 2-5
MNIST digits at random scales and places (disjoint boxes); each digit is
an instance whose class is the digit and whose mask is its ink.
`FasterRCNN(mask_head=True)` (a small VGG cut at stride 8, RPN, RoIAlign,
two-layer box head and a per-class 28x28 mask head) is trained with
`model.fit` (custom `train_step`, XLA) on scenes built from MNIST training
digits, and evaluated with pycocotools (box AP and mask AP, RLE masks) on
scenes built from the MNIST test pool (rows 50,000+ of `mnist_train.npz`).

Sub-commands:

    train     fit the model, keep the best validation epoch (model.keras)
    evaluate  COCO box/mask AP on test scenes, plots of boxes and masks,
              TF-Serving export (serving/<version>/) and metrics.json

Examples:

    # Full run: about an hour of training on 2 CPU cores
    python examples/instance_segmentation.py train
    python examples/instance_segmentation.py evaluate

    # The same pipeline on real COCO images and masks (COCO-MINI: 80
    # images, 80 classes; far too few to learn from, the numbers only show
    # that loader, training and COCO evaluation fit together)
    python examples/instance_segmentation.py train --dataset coco \\
        --data-dir ../shared/data/coco_mini --output-dir runs/coco_mini
    python examples/instance_segmentation.py evaluate --dataset coco \\
        --data-dir ../shared/data/coco_mini --output-dir runs/coco_mini

    # With a Feature Pyramid Network (FasterRCNN(fpn=True))
    python examples/instance_segmentation.py train --fpn

    # Seconds-long check on seven-segment digits (no data files)
    python examples/instance_segmentation.py train --smoke --output-dir /tmp/i
    python examples/instance_segmentation.py evaluate --smoke \\
        --output-dir /tmp/i
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults

DIGIT_CLASSES = [str(d) for d in range(10)]
MODEL_FILE = "model.keras"
DATASETS = ("digits", "coco")
# COCO-MINI has no held-out split: its last images validate and test.
COCO_HELD_OUT_FRACTION = 0.2


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "evaluate"):
        command = commands.add_parser(name)
        command.add_argument(
            "--dataset",
            choices=DATASETS,
            default="digits",
            help="digit scenes (generated) or a COCO folder",
        )
        command.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="digits: folder with mnist_train.npz (default "
            "../shared/data/mnist); coco: a COCO-format folder with "
            "instances.json, images/ and masks/",
        )
        command.add_argument(
            "--output-dir",
            type=Path,
            default=Path("saved_models/digits_mask_rcnn"),
            help="where the model, serving export, plots and metrics go",
        )
        command.add_argument(
            "--image-size",
            type=int,
            default=128,
            help="square input size in pixels",
        )
        command.add_argument(
            "--seed", type=int, default=0, help="seed of the data and weights"
        )
        command.add_argument(
            "--smoke",
            action="store_true",
            help="seven-segment digits, tiny model, a few steps",
        )
    train = commands.choices["train"]
    train.add_argument(
        "--epochs", type=int, default=None, help="default: 5 (--smoke: 1)"
    )
    train.add_argument(
        "--batch-size", type=int, default=8, help="global batch size"
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="peak Adam learning rate (cosine decay)",
    )
    train.add_argument(
        "--num-train", type=int, default=6000, help="training scenes"
    )
    train.add_argument(
        "--num-val", type=int, default=320, help="validation scenes"
    )
    train.add_argument(
        "--fpn",
        action="store_true",
        help="add a Feature Pyramid Network (FasterRCNN(fpn=True): P2-P6, "
        "one anchor size per level, MultiScaleRoIAlign)",
    )
    train.add_argument(
        "--init-from",
        default=None,
        help="start from these weights instead of random ones: a committed "
        "model name (e.g. digits_mask_rcnn_fpn, see "
        "keras_segattn.models.list_pretrained()), a save_pretrained "
        "folder or a .keras file, of the same architecture (same --fpn and "
        "--image-size); a fine-tuning run",
    )
    train.add_argument(
        "--augment",
        choices=("auto", "none", "scale-crop", "flip-scale-crop"),
        default="auto",
        help="joint image/box/mask augmentation of the training batches "
        "(data.DetectionAugmenter: random scale jitter and crop, plus a "
        "horizontal flip); auto: flip-scale-crop for coco, none for "
        "digits (a mirrored digit is another digit; generated scenes are "
        "better made in greater number)",
    )
    add_distribution_arguments(train)
    evaluate = commands.choices["evaluate"]
    evaluate.add_argument(
        "--num-test", type=int, default=1000, help="test scenes"
    )
    evaluate.add_argument(
        "--version", type=int, default=1, help="SavedModel version to load"
    )
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402

from keras_segattn import distribute  # noqa: E402
from keras_segattn.data import digit_scenes  # noqa: E402
from keras_segattn.data import load_coco_instance_arrays  # noqa: E402
from keras_segattn.data import make_detection_augmenter  # noqa: E402
from keras_segattn.data import split_held_out  # noqa: E402
from keras_segattn.export import export_detector_for_serving  # noqa: E402
from keras_segattn.metrics import evaluate_detections  # noqa: E402
from keras_segattn.models import FasterRCNN  # noqa: E402

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
from _detection import make_digit_scenes  # noqa: E402
from _detection import predict_served  # noqa: E402
from _detection import save_detection_plot  # noqa: E402


def model_kwargs(image_size: int, smoke: bool, fpn: bool = False) -> dict:
    """The CPU-sized Mask R-CNN of this example (`smoke`: a tiny one);
    `fpn`: with a Feature Pyramid Network, whose anchors are one size per
    level (4 x the stride, 16 px on P2)."""
    kwargs = _base_model_kwargs(image_size, smoke)
    if fpn:
        kwargs.pop("anchor_sizes")
        kwargs.update(fpn=True, fpn_filters=8 if smoke else 64)
    return kwargs


def _base_model_kwargs(image_size: int, smoke: bool) -> dict:
    if smoke:
        return {
            "image_shape": (image_size, image_size, 3),
            "backbone_kwargs": {
                "filters": (8, 8, 16, 16, 16),
                "convs_per_stage": 1,
            },
            "anchor_sizes": (8.0, 16.0),
            "rpn_pre_nms_top_n_train": 64,
            "rpn_post_nms_top_n_train": 32,
            "rpn_pre_nms_top_n_test": 48,
            "rpn_post_nms_top_n_test": 16,
            "rpn_batch_size_per_image": 32,
            "box_batch_size_per_image": 16,
            "box_head_units": 32,
            "max_detections": 8,
            "mask_head": True,
            "mask_roi_output_size": 7,
            "mask_head_filters": 8,
            "mask_head_convs": 1,
        }
    return {
        "image_shape": (image_size, image_size, 3),
        "backbone_kwargs": {
            "filters": (32, 64, 128, 128, 128),
            "convs_per_stage": (1, 2, 2, 2, 2),
        },
        "anchor_sizes": (16.0, 32.0),
        "aspect_ratios": (0.5, 1.0, 2.0),
        "rpn_pre_nms_top_n_train": 600,
        "rpn_post_nms_top_n_train": 300,
        "rpn_pre_nms_top_n_test": 300,
        "rpn_post_nms_top_n_test": 100,
        "rpn_batch_size_per_image": 128,
        "box_batch_size_per_image": 64,
        "box_head_units": 256,
        "max_detections": 20,
        "mask_head": True,
        "mask_roi_output_size": 14,
        "mask_head_filters": 32,
        "mask_head_convs": 2,
    }


@functools.lru_cache(maxsize=1)
def _coco_arrays(data_dir: Path, image_size: int):
    """Read once: `train` asks for two splits of the same folder."""
    return load_coco_instance_arrays(data_dir, image_size)


def load_coco_split(args, split: str) -> tuple[dict, list[str]]:
    """COCO images resized to `image_size`: the first 80 % train, the rest
    validate and test (COCO-MINI has no other held-out images)."""
    data_dir = args.data_dir or Path("../shared/data/coco_mini")
    arrays, categories = _coco_arrays(data_dir, args.image_size)
    train_rows, held_out = split_held_out(
        len(arrays["images"]), COCO_HELD_OUT_FRACTION
    )
    rows = list(train_rows if split == "train" else held_out)
    names = [category["name"] for category in categories]
    return {key: value[rows] for key, value in arrays.items()}, names


def make_scenes(args, split: str, count: int) -> tuple[dict, list[str]]:
    """The split's scenes and the class names."""
    if args.dataset == "coco":
        return load_coco_split(args, split)
    return make_digit_scenes(args, split, count), DIGIT_CLASSES


def augmentation_name(args) -> str:
    """`--augment` resolved ("auto" depends on the data)."""
    name = args.augment
    if name == "auto":
        name = "flip-scale-crop" if args.dataset == "coco" else "none"
    return name


def train(args) -> int:
    strategy = setup_distribution(args)
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    train_scenes, class_names = make_scenes(args, "train", args.num_train)
    val_scenes, _ = make_scenes(args, "validation", args.num_val)
    batch_size = min(args.batch_size, len(val_scenes["images"]))
    global_batch_size(batch_size, strategy)
    train_data = digit_scenes.make_digit_scene_dataset(
        train_scenes, batch_size, shuffle=True, seed=args.seed
    )
    val_data = digit_scenes.make_digit_scene_dataset(val_scenes, batch_size)
    augment = make_detection_augmenter(
        augmentation_name(args), "yxyx", seed=args.seed
    )
    if augment is not None:
        train_data = train_data.map(augment)
    # In-memory scenes: every worker keeps its share of each global batch.
    train_data = distribute.auto_shard(train_data, "data")
    val_data = distribute.auto_shard(val_data, "data")
    jit_compile = jit_compile_for(strategy, True)
    with strategy.scope():
        model = FasterRCNN(
            len(class_names),
            seed=args.seed,
            **model_kwargs(args.image_size, args.smoke, fpn=args.fpn),
        )
        if args.init_from:
            load_initial_weights(
                model,
                args.init_from,
                "same --fpn, --image-size and class count",
            )
        steps = len(train_scenes["images"]) // batch_size
        schedule = cosine_decay(
            args.learning_rate, steps, args.epochs, alpha=0.01
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule, clipnorm=10.0),
            jit_compile=jit_compile,
        )
    check_compiled(model, jit_compile, steps_per_epoch=steps)
    started = time.time()
    with fit_context(model, strategy, lambda: next(iter(train_data))):
        history = model.fit(
            train_data,
            validation_data=val_data,
            epochs=args.epochs,
            verbose=2 if args.smoke else 1,
            callbacks=[
                *backup_callbacks(args),
                *logging_callbacks(out),
                best_checkpoint(out / MODEL_FILE, "val_loss"),
            ],
        )
    save_final_weights(model, args)
    summary = {
        "command": "python examples/instance_segmentation.py train "
        + " ".join(sys.argv[2:] if args.argv is None else args.argv[1:]),
        "dataset": args.dataset,
        "fpn": args.fpn,
        "train_scenes": len(train_scenes["images"]),
        "val_scenes": len(val_scenes["images"]),
        "epochs": args.epochs,
        "augment": augmentation_name(args),
        "train_minutes": round((time.time() - started) / 60, 2),
        "parameters": int(model.count_params()),
        "best_val_loss": float(min(history.history["val_loss"])),
        "jit_compile": jit_compile,
        "strategy": args.strategy,
    }
    with open(out / "training.json", "w") as file:
        json.dump(summary, file, indent=2)
    print(json.dumps(summary, indent=2))
    return 0


def describe_data(args) -> str:
    if args.dataset == "coco":
        return (
            f"{args.data_dir or '../shared/data/coco_mini'}: last "
            f"{COCO_HELD_OUT_FRACTION:.0%} of the images (pipeline check)"
        )
    if args.smoke:
        return "seven-segment digits (smoke)"
    return f"{args.data_dir or '../shared/data/mnist'} test pool (rows 50,000+)"


def evaluate(args) -> int:
    out = args.output_dir
    model_path = out / MODEL_FILE
    if not model_path.is_file():
        raise SystemExit(f"{model_path} not found: run `train` first")
    model = keras.saving.load_model(model_path)
    scenes, class_names = make_scenes(args, "test", args.num_test)
    served_dir = export_detector_for_serving(
        model,
        out,
        version=args.version,
        warmup_images=scenes["images"][:3],
    )
    # The numbers are those of the exported signature, as TF Serving
    # would answer (same graph, no XLA).
    outputs = predict_served(served_dir, scenes["images"])
    coco = evaluate_detections(
        {key: scenes[key] for key in ("boxes", "classes", "masks")},
        outputs,
        category_names=class_names,
        verbose=not args.smoke,
    )
    (out / "plots").mkdir(parents=True, exist_ok=True)
    save_detection_plot(
        scenes,
        outputs,
        out / "plots" / "detections.png",
        "Mask R-CNN",
        count=min(6, len(scenes["images"])),
    )
    training = {}
    if (out / "training.json").is_file():
        training = json.loads((out / "training.json").read_text())
    metrics = {
        "command": "python examples/instance_segmentation.py evaluate "
        + " ".join(sys.argv[2:] if args.argv is None else args.argv[1:]),
        "data": describe_data(args),
        "test_scenes": len(scenes["images"]),
        "test_instances": int((scenes["classes"] >= 0).sum()),
        "box": coco["bbox"],
        "mask": coco["segm"],
        "evaluated": "serving_default of " + served_dir,
        "training": training,
    }
    with open(out / "metrics.json", "w") as file:
        json.dump(metrics, file, indent=2)
    print(
        f"box AP50 {coco['bbox']['AP50']:.3f} AP {coco['bbox']['AP']:.3f}; "
        f"mask AP50 {coco['segm']['AP50']:.3f} AP {coco['segm']['AP']:.3f}"
    )
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.smoke:
        args.image_size = min(args.image_size, 64)
        if args.command == "train":
            args.num_train, args.num_val = 16, 8
            args.batch_size = 4
        else:
            args.num_test = 8
    if args.command == "train":
        args.epochs = args.epochs or (1 if args.smoke else 5)
    keras.utils.set_random_seed(args.seed)
    return {"train": train, "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
