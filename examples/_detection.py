"""What the detection examples share: their train/evaluate command line,
the digit scenes of each split, serving predictions and the plot of ground
truth beside detections (`instance_segmentation.py`, `yolo_digits.py`,
`sds_digits.py`, `rcnn_progression.py`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def add_scene_commands(parser, output_dir: str, output_help: str):
    """The `train` and `evaluate` sub-commands of a digit-scene example,
    with the flags both take (--data-dir, --output-dir, --image-size,
    --seed, --smoke); returns the sub-parsers' `choices` dict."""
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "evaluate"):
        command = commands.add_parser(name)
        command.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="folder with mnist_train.npz (default ../shared/data/mnist)",
        )
        command.add_argument(
            "--output-dir",
            type=Path,
            default=Path(output_dir),
            help=output_help,
        )
        command.add_argument(
            "--image-size", type=int, default=128, help="square scene size"
        )
        command.add_argument(
            "--seed", type=int, default=0, help="seed of the scenes and weights"
        )
        command.add_argument(
            "--smoke",
            action="store_true",
            help="seven-segment digits, tiny models, a few steps",
        )
    return commands.choices


def make_digit_scenes(args, split: str, count: int) -> dict:
    """The split's digit scenes, the same in every detection example (same
    seeds per split): seven-segment digits with `--smoke`, else MNIST
    digits from `args.data_dir` (`data.load_digit_scene_arrays`)."""
    from keras_segattn.data import digit_scenes

    seed = args.seed + {"train": 0, "validation": 1, "test": 2}[split]
    if args.smoke:
        return digit_scenes.make_synthetic_digit_scenes(
            count,
            seed=seed,
            image_size=args.image_size,
            max_digits=3,
            scale_range=(0.8, 1.0),
        )
    return digit_scenes.load_digit_scene_arrays(
        args.data_dir or Path("../shared/data/mnist"),
        split,
        count,
        seed=seed,
        image_size=args.image_size,
    )


def predict_served(path: str, images: np.ndarray, batch_size: int = 50):
    """Runs the exported `serving_default` over `images` (uint8), with a
    progress bar."""
    import keras
    import tensorflow as tf

    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    serve = reloaded.signatures["serving_default"]
    outputs: dict[str, list] = {}
    progress = keras.utils.Progbar(len(images), unit_name="image")
    for start in range(0, len(images), batch_size):
        batch = serve(images=tf.constant(images[start : start + batch_size]))
        for key, value in batch.items():
            outputs.setdefault(key, []).append(value.numpy())
        progress.add(len(images[start : start + batch_size]))
    return {key: np.concatenate(value) for key, value in outputs.items()}


def save_detection_plot(
    scenes,
    outputs,
    path: Path,
    title: str,
    count: int = 6,
    score_threshold: float = 0.5,
):
    """Ground truth above predictions (`visualization.plot_detections`):
    boxes, class and score, plus masks where the scenes or the outputs
    have them (`masks`, `detection_masks`)."""
    from keras_segattn import visualization

    figure = visualization.plot_detections(
        scenes["images"][:count],
        {key: value[:count] for key, value in outputs.items()},
        ground_truth={
            key: scenes[key][:count]
            for key in ("boxes", "classes", "masks")
            if key in scenes
        },
        score_threshold=score_threshold,
    )
    figure.suptitle(title, fontsize=9)
    figure.savefig(path, dpi=90)
