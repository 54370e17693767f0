"""What the detection examples share: serving predictions and the plot of
ground truth beside detections (`instance_segmentation.py`,
`yolo_digits.py`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def predict_served(path: str, images: np.ndarray, batch_size: int = 50):
    """Runs the exported `serving_default` over `images` (uint8)."""
    import tensorflow as tf

    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    serve = reloaded.signatures["serving_default"]
    outputs: dict[str, list] = {}
    for start in range(0, len(images), batch_size):
        batch = serve(images=tf.constant(images[start : start + batch_size]))
        for key, value in batch.items():
            outputs.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(value) for key, value in outputs.items()}


def save_detection_plot(
    scenes,
    outputs,
    path: Path,
    title: str,
    count: int = 6,
    score_threshold: float = 0.5,
):
    """Ground truth beside predictions: boxes, class and score, plus masks
    where both the scenes and the outputs have them (`detection_masks`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_masks = "masks" in scenes and "detection_masks" in outputs
    colours = plt.get_cmap("tab10")
    figure, axes = plt.subplots(
        2, count, figsize=(2.4 * count, 5.0), squeeze=False
    )
    for column in range(count):
        image = scenes["images"][column]
        if image.shape[-1] == 1:
            image = image[..., 0]
        panels = (
            (
                "ground truth",
                scenes["boxes"][column],
                scenes["classes"][column],
                None,
                scenes["masks"][column] if with_masks else None,
                int(np.sum(scenes["classes"][column] >= 0)),
            ),
            (
                title,
                outputs["detection_boxes"][column],
                outputs["detection_classes"][column].astype(int),
                outputs["detection_scores"][column],
                outputs["detection_masks"][column] >= 0.5
                if with_masks
                else None,
                int(outputs["num_detections"][column]),
            ),
        )
        for row, (name, boxes, labels, scores, masks, num) in enumerate(panels):
            axis = axes[row, column]
            overlay = np.zeros((*image.shape[:2], 4))
            for i in range(num):
                if scores is not None and scores[i] < score_threshold:
                    continue
                colour = colours(int(labels[i]) % 10)
                if masks is not None:
                    overlay[masks[i].astype(bool)] = (*colour[:3], 0.55)
                y1, x1, y2, x2 = boxes[i]
                axis.add_patch(
                    plt.Rectangle(
                        (x1, y1),
                        x2 - x1,
                        y2 - y1,
                        fill=False,
                        edgecolor=colour,
                        linewidth=1.2,
                    )
                )
                text = str(labels[i]) + (
                    "" if scores is None else f" {scores[i]:.2f}"
                )
                axis.text(x1, y1 - 1, text, color=colour, fontsize=7)
            axis.imshow(image, cmap="gray")
            axis.imshow(overlay)
            axis.set_title(name, fontsize=8)
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
