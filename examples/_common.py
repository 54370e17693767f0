"""Training scaffolding shared by the example scripts (not part of the
package): the learning-rate schedule, the XLA check and the logging and
checkpoint callbacks every example uses.

The scripts import it as a sibling module (`python examples/<name>.py`
puts examples/ first on `sys.path`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import keras

from keras_segattn import distribute
from keras_segattn import saving

# Test hook (tests/examples/test_distribution.py): with
# KERAS_SEGATTN_KILL_AT="<epoch>:<batch>" (1-based epoch, 0-based batch) the
# process SIGKILLs itself after that training batch, as a preempted job
# would die.
KILL_AT_ENV = "KERAS_SEGATTN_KILL_AT"


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
    """TensorBoard logs in `out/logs[/name]`, the epoch history in
    `out/history[_name].csv`, and `TerminateOnNaN`: a NaN or infinite
    training loss stops the run at once with a `RuntimeError` naming the
    batch (nothing trained on it is saved or exported; a `--backup-dir`
    keeps its last good state)."""
    logs = out / "logs" if name is None else out / "logs" / name
    history = out / ("history.csv" if name is None else f"history_{name}.csv")
    return [
        keras.callbacks.TerminateOnNaN(raise_error=True),
        keras.callbacks.TensorBoard(log_dir=str(logs)),
        keras.callbacks.CSVLogger(str(history)),
    ]


def best_checkpoint(
    path: Path, monitor: str, mode: str = "min", weights_only: bool = False
):
    """Saves the model (or its weights) at the best `monitor` epoch,
    atomically: a run killed while saving keeps the previous best file."""
    return saving.AtomicModelCheckpoint(
        str(path),
        monitor=monitor,
        mode=mode,
        save_best_only=True,
        save_weights_only=weights_only,
    )


def setup_distribution(args):
    """Splits the CPU (`--logical-cpus`) and returns the strategy of
    `--strategy`; raises `ValueError` naming the flag on bad values."""
    import tensorflow as tf

    if args.logical_cpus is not None:
        if args.logical_cpus < 1:
            raise ValueError(
                "Invalid value for --logical-cpus. Expected an integer >= 1. "
                f"Received: --logical-cpus={args.logical_cpus}"
            )
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu,
                [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus,
            )
        except RuntimeError as error:
            raise RuntimeError(
                "--logical-cpus must be applied before TensorFlow "
                f"initialises its devices: {error}"
            ) from None
    if args.tf_config is not None and args.strategy != "multi-worker":
        raise ValueError(
            "--tf-config applies to --strategy multi-worker only. "
            f"Received: --strategy {args.strategy}"
        )
    if args.strategy == "multi-worker" and args.tf_config is None:
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "--strategy multi-worker needs a cluster: pass --tf-config "
                "or set the TF_CONFIG environment variable."
            )
        try:
            distribute.parse_tf_config(os.environ["TF_CONFIG"])
        except ValueError as error:
            raise ValueError(
                f"TF_CONFIG environment variable: {error}"
            ) from None
    strategy = distribute.make_strategy(args.strategy, args.tf_config)
    if args.strategy != "default":
        print(
            f"strategy: {type(strategy).__name__}, "
            f"{strategy.num_replicas_in_sync} replica(s) in sync",
            flush=True,
        )
    return strategy


def global_batch_size(batch_size: int, strategy) -> int:
    """`--batch-size` checked against the strategy's replica count."""
    try:
        return distribute.check_global_batch_size(batch_size, strategy)
    except ValueError as error:
        raise ValueError(f"--batch-size: {error}") from None


def jit_compile_for(strategy, jit_compile: bool = True) -> bool:
    """XLA under `strategy`, announced when it has to be off.

    Keras 3.15 wraps the whole step, `strategy.run` over every local
    replica included, in one `tf.function(jit_compile=True)`. XLA compiles
    a cluster for one device, so with several local replicas (mirrored over
    2+ devices) the step fails ("Trying to access resource ... located in
    device CPU:1 from device CPU:0"); and XLA has no CPU collectives, so a
    multi-worker step on CPUs fails too ("Collectives are not yet
    implemented for CPU devices when compiling with XLA"). Such runs train
    without XLA and say so on stderr; one replica keeps XLA."""
    if strategy.num_replicas_in_sync == 1:
        return jit_compile  # the default strategy has no worker_devices
    devices = strategy.extended.worker_devices
    reason = None
    if len(devices) > 1:
        reason = (
            f"{len(devices)} local replicas, and Keras compiles the step "
            "over all of them as one XLA cluster, which cannot span devices"
        )
    elif strategy.num_replicas_in_sync > 1 and "GPU" not in devices[0]:
        reason = (
            f"{strategy.num_replicas_in_sync} replicas on CPUs, and XLA has "
            "no CPU collectives for the gradient all-reduce"
        )
    if jit_compile and reason:
        print(
            f"XLA off: {type(strategy).__name__} has {reason}; training "
            "with jit_compile=False.",
            file=sys.stderr,
            flush=True,
        )
        return False
    return jit_compile


def trim_to_replicas(arrays, strategy):
    """`arrays` (a structure of equal-length arrays) cut to a multiple of
    the replica count, so that every batch, the last partial one included,
    splits evenly over the replicas (`fit` with in-memory arrays; nothing
    is cut without distribution)."""
    import tensorflow as tf

    replicas = int(strategy.num_replicas_in_sync)
    length = len(tf.nest.flatten(arrays)[0])
    keep = length - length % replicas
    return tf.nest.map_structure(lambda array: array[:keep], arrays)


class _KillAt(keras.callbacks.Callback):
    """SIGKILLs the process after batch `batch` of epoch `epoch` (1-based)."""

    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.kill_epoch, self.kill_batch, self.epoch = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.kill_epoch and batch == self.kill_batch:
            print(f"killed at epoch {self.epoch}, batch {batch}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


def backup_callbacks(args, name: str | None = None) -> list:
    """`[BackupAndRestore(args.backup_dir[/name])]` with `--backup-dir`,
    else `[]` (plus the kill hook of the tests when its variable is set).
    Put it first: it restores the state in `on_train_begin`."""
    callbacks = []
    if getattr(args, "backup_dir", None) is not None:
        backup_dir = args.backup_dir if name is None else args.backup_dir / name
        callbacks.append(
            keras.callbacks.BackupAndRestore(
                str(backup_dir), save_freq=args.backup_freq
            )
        )
    if os.environ.get(KILL_AT_ENV):
        epoch, batch = map(int, os.environ[KILL_AT_ENV].split(":"))
        callbacks.append(_KillAt(epoch, batch))
    return callbacks


def load_initial_weights(model, source: str, architecture: str) -> None:
    """`--init-from`: copies every weight of `source` (a .keras file, a
    committed model name or a `save_pretrained` folder) into `model`, which
    must have the same architecture; `architecture` names the flags that
    decide it, for the error message."""
    from keras_segattn.models import load_pretrained

    if source.endswith(".keras"):
        loaded = keras.saving.load_model(source)
    else:
        loaded = load_pretrained(source)
    weights = loaded.get_weights()
    shapes = [tuple(w.shape) for w in weights]
    expected = [tuple(w.shape) for w in model.get_weights()]
    if shapes != expected:
        raise ValueError(
            "Invalid value for argument `--init-from`. Expected a model of "
            f"this run's architecture ({architecture}: {len(expected)} "
            f"weights). Received: --init-from {source} with {len(shapes)} "
            "weights of other shapes."
        )
    model.set_weights(weights)


def save_final_weights(model, args, name: str | None = None) -> None:
    """With `KERAS_SEGATTN_FINAL_WEIGHTS=<dir>` (tests), saves the weights
    fit ended with as `<dir>/<name or model.name>.weights.h5` and the
    epoch count in `<dir>/<name>.json`."""
    folder = os.environ.get("KERAS_SEGATTN_FINAL_WEIGHTS")
    if not folder:
        return
    name = name or model.name
    os.makedirs(folder, exist_ok=True)
    model.save_weights(os.path.join(folder, f"{name}.weights.h5"))
    history = getattr(model, "history", None)
    record = {
        "epochs_run": None if history is None else list(history.epoch),
        "optimizer_iterations": int(model.optimizer.iterations.numpy()),
    }
    with open(os.path.join(folder, f"{name}.json"), "w") as file:
        json.dump(record, file)


def _in_multi_worker_mode(strategy) -> bool:
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1


def _multi_worker_function(model, strategy, step, jit_compile: bool):
    import tensorflow as tf

    replica_step = tf.function(step, jit_compile=jit_compile)

    @tf.function(reduce_retracing=True)
    def run(data):
        outputs = strategy.run(replica_step, args=(data,))
        return tf.nest.map_structure(
            lambda value: strategy.reduce("MEAN", value, axis=None), outputs
        )

    def function(iterator):
        optional = iterator.get_next_as_optional()
        if not optional.has_value():
            raise StopIteration
        return run(optional.get_value())

    return function


def fit_context(model, strategy, sample_batch):
    """The context to call `model.fit` in.

    Keras 3.15's `fit` fails under a multi-worker
    `MultiWorkerMirroredStrategy` (keras-team/keras#20585): it reduces the
    first distributed batch eagerly with `strategy.reduce` (PerReplica
    "unsupported type") and the scalar logs with `axis=0`. There, this
    builds the model's optimizer and metrics on `sample_batch()` (one
    local batch) under the strategy, installs train and test functions that run
    the step on each replica (XLA per replica when `model.jit_compile`) and
    average the logs over replicas, and returns `strategy.scope()` (fit
    then reads the strategy from the scope). Elsewhere a no-op context.

    `sample_batch` is a callable returning that batch, called only in
    multi-worker mode (elsewhere the data pipelines stay untouched)."""
    import contextlib

    if not _in_multi_worker_mode(strategy):
        return contextlib.nullcontext()
    with strategy.scope():
        model._symbolic_build(data_batch=sample_batch())
    model._distribute_strategy = None
    jit_compile = bool(model.jit_compile)
    model.train_function = _multi_worker_function(
        model, strategy, model.train_step, jit_compile
    )
    model.test_function = _multi_worker_function(
        model, strategy, model.test_step, jit_compile
    )
    return strategy.scope()
