"""Training scaffolding shared by the example scripts (not part of the
package): the learning-rate schedule, the XLA check and the logging and
checkpoint callbacks every example uses.

The scripts import it as a sibling module (`python examples/<name>.py`
puts examples/ first on `sys.path`).
"""

from __future__ import annotations

from pathlib import Path

import keras


def cosine_decay(
    learning_rate: float, steps_per_epoch: int, epochs: int, alpha: float
):
    """Cosine decay from `learning_rate` to `alpha` times it over the run."""
    return keras.optimizers.schedules.CosineDecay(
        learning_rate,
        decay_steps=max(1, steps_per_epoch * epochs),
        alpha=alpha,
    )


def check_compiled(
    model, jit_compile: bool = True, steps_per_epoch: int | None = None
) -> None:
    """Raises if XLA was requested but Keras turned it off (`"auto"` and
    some models fall back silently), then prints the model's size."""
    if jit_compile and model.jit_compile is not True:
        raise RuntimeError(
            f"XLA was requested for {model.name!r} but Keras disabled it "
            f"(model.jit_compile={model.jit_compile!r})."
        )
    steps = (
        "" if steps_per_epoch is None else f", {steps_per_epoch} steps/epoch"
    )
    print(
        f"{model.name}: {model.count_params():,} parameters{steps}, "
        f"jit_compile={model.jit_compile}",
        flush=True,
    )


def logging_callbacks(out: Path, name: str | None = None) -> list:
    """TensorBoard logs in `out/logs[/name]` and the epoch history in
    `out/history[_name].csv`."""
    logs = out / "logs" if name is None else out / "logs" / name
    history = out / ("history.csv" if name is None else f"history_{name}.csv")
    return [
        keras.callbacks.TensorBoard(log_dir=str(logs)),
        keras.callbacks.CSVLogger(str(history)),
    ]


def best_checkpoint(
    path: Path, monitor: str, mode: str = "min", weights_only: bool = False
):
    """Saves the model (or its weights) at the best `monitor` epoch."""
    return keras.callbacks.ModelCheckpoint(
        str(path),
        monitor=monitor,
        mode=mode,
        save_best_only=True,
        save_weights_only=weights_only,
    )
