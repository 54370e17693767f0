"""Detection of MNIST digit scenes with YOLO v1.

The scenes of `examples/instance_segmentation.py`
(`keras_segattn.data.digit_scenes`: 128x128 canvases with 2-5 MNIST
digits of 22-45 pixels, disjoint boxes, the digit as class; same
generator, same splits and seeds): scenes built from MNIST training digits
train, scenes built from the MNIST test pool (rows 50,000+ of
`mnist_train.npz`) test. `YOLO` (a small VGG cut at stride 16, an 8x8
grid with 2 boxes per cell and 10 class probabilities per cell, the v1
sum-squared loss) is trained with `model.fit(jit_compile=True)` and
evaluated with pycocotools (box AP) through its exported TF Serving
signature.

Sub-commands:

    train     fit the model, keep the best validation epoch (model.keras)
    evaluate  COCO box AP on test scenes through the exported
              serving_default (<output-dir>/<version>/), a plot of
              detections and metrics.json

Examples:

    # Full run: about half an hour of training on 2 CPU cores
    python examples/yolo_digits.py train
    python examples/yolo_digits.py evaluate

    # Seconds-long check on seven-segment digits (no data files)
    python examples/yolo_digits.py train --smoke --output-dir /tmp/y
    python examples/yolo_digits.py evaluate --smoke --output-dir /tmp/y
"""

from __future__ import annotations

import json
import sys
import time

from _cli import ArgumentParser
from _cli import add_distribution_arguments
from _cli import set_process_defaults
from _detection import add_scene_commands

DIGIT_CLASSES = [str(d) for d in range(10)]
MODEL_FILE = "model.keras"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = add_scene_commands(
        parser,
        "saved_models/digits_yolo",
        "where the model, serving export, plots and metrics go",
    )
    train = commands["train"]
    train.add_argument(
        "--epochs", type=int, default=None, help="default: 8 (--smoke: 1)"
    )
    train.add_argument(
        "--batch-size", type=int, default=16, help="global batch size (16)"
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="peak Adam learning rate, cosine decay (1e-3)",
    )
    train.add_argument(
        "--num-train", type=int, default=10000, help="training scenes (10000)"
    )
    train.add_argument(
        "--num-val", type=int, default=320, help="validation scenes (320)"
    )
    train.add_argument(
        "--augment",
        choices=("auto", "none", "scale-crop", "flip-scale-crop"),
        default="auto",
        help="joint image/box/mask augmentation of the training batches "
        "(data.DetectionAugmenter: random scale jitter and crop, plus a "
        "horizontal flip); auto: none (generated scenes are better made "
        "in greater number; a mirrored digit is another digit)",
    )
    add_distribution_arguments(train)
    evaluate = commands["evaluate"]
    evaluate.add_argument(
        "--num-test", type=int, default=1000, help="test-pool scenes (1000)"
    )
    evaluate.add_argument(
        "--version", type=int, default=1, help="SavedModel version (1)"
    )
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402

from keras_segattn import distribute  # noqa: E402
from keras_segattn.data import digit_scenes  # noqa: E402
from keras_segattn.data import make_detection_augmenter  # noqa: E402
from keras_segattn.export import export_detector_for_serving  # noqa: E402
from keras_segattn.metrics import evaluate_detections  # noqa: E402
from keras_segattn.models.yolo import YOLO  # noqa: E402

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
from _detection import make_digit_scenes  # noqa: E402
from _detection import predict_served  # noqa: E402
from _detection import save_detection_plot  # noqa: E402


def model_kwargs(image_size: int, smoke: bool) -> dict:
    """The CPU-sized YOLO of this example (`smoke`: a tiny one); stride
    16, so a 128-pixel image has an 8x8 grid of 16-pixel cells."""
    common = {
        "image_shape": (image_size, image_size, 3),
        "grid_size": image_size // 16,
        "boxes_per_cell": 2,
        "lambda_coord": 5.0,
        "lambda_noobj": 0.5,
        "max_detections": 20,
    }
    if smoke:
        return {
            **common,
            "backbone_kwargs": {
                "filters": (8, 8, 16, 16, 16),
                "convs_per_stage": 1,
            },
            "head_filters": 16,
            "head_convs": 1,
        }
    return {
        **common,
        "backbone_kwargs": {
            "filters": (16, 32, 64, 128, 128),
            "convs_per_stage": (1, 1, 2, 2, 1),
        },
        "head_filters": 128,
        "head_convs": 2,
    }


def augmentation_name(args) -> str:
    """`--augment` resolved ("auto" is "none" on generated scenes)."""
    name = args.augment
    if name == "auto":
        name = "none"
    return name


def train(args) -> int:
    keras.utils.set_random_seed(args.seed)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    strategy = setup_distribution(args)
    train_scenes = make_digit_scenes(args, "train", args.num_train)
    val_scenes = make_digit_scenes(args, "validation", args.num_val)
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
    train_data = distribute.auto_shard(train_data, "data")
    val_data = distribute.auto_shard(val_data, "data")
    jit_compile = jit_compile_for(strategy, True)
    steps = len(train_scenes["images"]) // batch_size
    with strategy.scope():
        model = YOLO(
            len(DIGIT_CLASSES), **model_kwargs(args.image_size, args.smoke)
        )
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
            verbose=2,
            callbacks=[
                *logging_callbacks(out),
                best_checkpoint(out / MODEL_FILE, "val_loss"),
                *backup_callbacks(args),
            ],
        )
    save_final_weights(model, args)
    summary = {
        "command": "python examples/yolo_digits.py train "
        + " ".join(sys.argv[2:] if args.argv is None else args.argv[1:]),
        "train_scenes": len(train_scenes["images"]),
        "val_scenes": len(val_scenes["images"]),
        "epochs": args.epochs,
        "augment": augmentation_name(args),
        "batch_size": batch_size,
        "train_minutes": round((time.time() - started) / 60, 2),
        "parameters": int(model.count_params()),
        "best_val_loss": float(min(history.history["val_loss"])),
        "jit_compile": bool(model.jit_compile),
        "strategy": args.strategy,
    }
    with open(out / "training.json", "w") as file:
        json.dump(summary, file, indent=2)
    print(json.dumps(summary, indent=2))
    return 0


def evaluate(args) -> int:
    out = args.output_dir
    model_path = out / MODEL_FILE
    if not model_path.is_file():
        raise SystemExit(f"{model_path} not found: run `train` first")
    model = keras.saving.load_model(model_path)
    scenes = make_digit_scenes(args, "test", args.num_test)
    served_dir = export_detector_for_serving(
        model,
        out,
        version=args.version,
        warmup_images=scenes["images"][:3],
    )
    # The numbers are those of the exported signature, as TF Serving
    # would answer (same graph, no XLA).
    started = time.time()
    outputs = predict_served(served_dir, scenes["images"])
    seconds = time.time() - started
    coco = evaluate_detections(
        scenes,
        outputs,
        image_size=scenes["images"].shape[1:3],
        category_names=DIGIT_CLASSES,
        verbose=not args.smoke,
    )
    (out / "plots").mkdir(parents=True, exist_ok=True)
    save_detection_plot(
        scenes,
        outputs,
        out / "plots" / "detections.png",
        "YOLO",
        count=min(6, len(scenes["images"])),
        score_threshold=0.3,
    )
    training = {}
    if (out / "training.json").is_file():
        training = json.loads((out / "training.json").read_text())
    metrics = {
        "command": "python examples/yolo_digits.py evaluate "
        + " ".join(sys.argv[2:] if args.argv is None else args.argv[1:]),
        "data": "seven-segment digits (smoke)"
        if args.smoke
        else f"{args.data_dir or '../shared/data/mnist'} test pool "
        "(rows 50,000+)",
        "test_scenes": len(scenes["images"]),
        "test_instances": int((scenes["classes"] >= 0).sum()),
        "box": coco["bbox"],
        "serving_ms_per_image": round(
            1000 * seconds / len(scenes["images"]), 2
        ),
        "evaluated": "serving_default of " + served_dir,
        "training": training,
    }
    with open(out / "metrics.json", "w") as file:
        json.dump(metrics, file, indent=2)
    print(f"box AP50 {coco['bbox']['AP50']:.3f} AP {coco['bbox']['AP']:.3f}")
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
        args.epochs = args.epochs or (1 if args.smoke else 8)
    keras.utils.set_random_seed(args.seed)
    return {"train": train, "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
