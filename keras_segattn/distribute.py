"""Distribution strategies for `model.fit`: choosing one by name, checking
`TF_CONFIG` and global batch sizes, and sharding `tf.data` pipelines.

TF-only by design (`tf.distribute` has no `keras.ops` equivalent).

Keras builds the train step from the strategy that is current when the
model, optimizer and metrics are created, so callers do:

```python
strategy = distribute.make_strategy("mirrored")
batch_size = distribute.check_global_batch_size(64, strategy)
dataset = distribute.auto_shard(dataset, "data")
with strategy.scope():
    model = build_model()
    model.compile(optimizer=..., loss=..., metrics=...)
model.fit(dataset)  # batches of `batch_size` split over the replicas
```

`batch_size` is the *global* batch: each of the `num_replicas_in_sync`
replicas gets `batch_size // num_replicas_in_sync` examples.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from keras_segattn import validation

STRATEGIES = ("default", "mirrored", "multi-worker", "tpu")
# The task types whose addresses a TF_CONFIG cluster may list.
CLUSTER_TASK_TYPES = ("chief", "worker", "evaluator", "ps")
AUTO_SHARD_POLICIES = {
    "auto": tf.data.experimental.AutoShardPolicy.AUTO,
    "data": tf.data.experimental.AutoShardPolicy.DATA,
    "file": tf.data.experimental.AutoShardPolicy.FILE,
    "off": tf.data.experimental.AutoShardPolicy.OFF,
}


def _config_error(expectation: str, received) -> ValueError:
    return ValueError(
        f"Invalid value for `TF_CONFIG` (argument `tf_config`). "
        f"Expected {expectation}. Received: tf_config={received!r}"
    )


def parse_tf_config(value) -> dict:
    """Returns `value` (a JSON string or a dict) as a checked `TF_CONFIG`
    dict: `cluster` maps task types (`worker`, `chief`, ...) to non-empty
    lists of `"host:port"` strings, and `task` has a `type` listed in the
    cluster and an `index` within that type's list.

    Raises:
        ValueError: naming `TF_CONFIG`, the expectation and the value.
        TypeError: when `value` is neither a string nor a dict.
    """
    if isinstance(value, (str, bytes)):
        try:
            config = json.loads(value)
        except json.JSONDecodeError as error:
            raise _config_error(f"a JSON object ({error})", value) from None
    elif isinstance(value, dict):
        config = value
    else:
        raise TypeError(
            "Invalid type for `TF_CONFIG` (argument `tf_config`). Expected "
            f"a JSON string or a dict. Received: tf_config={value!r} of "
            f"type {type(value).__name__}"
        )
    if not isinstance(config, dict):
        raise _config_error("a JSON object", value)
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise _config_error(
            'a non-empty "cluster" dict, e.g. {"worker": ["host:port", ...]}',
            value,
        )
    for task_type, addresses in cluster.items():
        if task_type not in CLUSTER_TASK_TYPES:
            raise _config_error(
                f"cluster task types among {CLUSTER_TASK_TYPES}, "
                f"not {task_type!r}",
                value,
            )
        if (
            not isinstance(addresses, list)
            or not addresses
            or not all(isinstance(a, str) and ":" in a for a in addresses)
        ):
            raise _config_error(
                f'cluster["{task_type}"] to be a non-empty list of '
                '"host:port" strings',
                value,
            )
    if not any(t in cluster for t in ("worker", "chief")):
        raise _config_error('a cluster with a "worker" or "chief" list', value)
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise _config_error(
            'a "task" dict with "type" and "index", e.g. '
            '{"type": "worker", "index": 0}',
            value,
        )
    if task["type"] not in cluster:
        raise _config_error(
            f'task "type" among the cluster\'s {sorted(cluster)}, '
            f"not {task['type']!r}",
            value,
        )
    count = len(cluster[task["type"]])
    index = task["index"]
    if (
        isinstance(index, bool)
        or not isinstance(index, int)
        or not 0 <= index < count
    ):
        raise _config_error(
            f'task "index" an int in [0, {count}) (the cluster lists {count} '
            f"{task['type']!r} address(es)), not {index!r}",
            value,
        )
    return {
        **config,
        "cluster": {k: list(v) for k, v in cluster.items()},
        "task": {**task, "index": int(index)},
    }


def _mirrored_devices() -> list[str]:
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def make_strategy(name: str = "default", tf_config=None):
    """The `tf.distribute.Strategy` called `name`:

    - `"default"`: `tf.distribute.get_strategy()` (no distribution).
    - `"mirrored"`: `MirroredStrategy` over the visible GPUs, else over every
      logical CPU device with `ReductionToOneDevice` (split the CPU with
      `tf.config.set_logical_device_configuration` before TF initialises
      its devices to get several CPU replicas).
    - `"multi-worker"`: `MultiWorkerMirroredStrategy`; `tf_config` (JSON or
      dict, checked by `parse_tf_config`) is written to `os.environ
      ["TF_CONFIG"]`, otherwise that variable must hold a valid one.
    - `"tpu"`: `TPUStrategy` on the TPU that `TPUClusterResolver` finds.

    Raises:
        ValueError: for an unknown `name`, an invalid `TF_CONFIG`, or
            `name="tpu"` without a TPU.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"Invalid value for argument `strategy`. Expected one of "
            f"{STRATEGIES}. Received: strategy={name!r}"
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = _mirrored_devices()
        if "GPU" in devices[0]:
            return tf.distribute.MirroredStrategy(devices)
        # CPU replicas reduce on one device: the default collective ops
        # give every MirroredStrategy of a process the same instance keys,
        # so a second strategy's all-reduce fails ("Shape mismatch in the
        # collective instance 100").
        return tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    if name == "multi-worker":
        if tf_config is None:
            if not os.environ.get("TF_CONFIG"):
                raise ValueError(
                    "strategy='multi-worker' needs a cluster: pass "
                    "`tf_config` or set the `TF_CONFIG` environment "
                    "variable. Received: tf_config=None and no TF_CONFIG."
                )
            parse_tf_config(os.environ["TF_CONFIG"])
        else:
            os.environ["TF_CONFIG"] = json.dumps(parse_tf_config(tf_config))
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise ValueError(
            "strategy='tpu' found no TPU (TPUClusterResolver: "
            f"{type(error).__name__}: {error}). Use strategy='mirrored' "
            "or 'default' on this machine."
        ) from error
    return tf.distribute.TPUStrategy(resolver)


def check_global_batch_size(batch_size, strategy) -> int:
    """Returns `batch_size` (the global batch) or raises `ValueError`
    unless it is a positive int divisible by the strategy's
    `num_replicas_in_sync`."""
    batch_size = validation.check_positive_int(batch_size, "batch_size")
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size % replicas:
        raise ValueError(
            "Invalid value for argument `batch_size` (the global batch). "
            f"Expected a multiple of the {replicas} replicas in sync of "
            f"{type(strategy).__name__}. Received: batch_size={batch_size}"
        )
    return batch_size


def distribute_dataset_options(policy: str = "data") -> tf.data.Options:
    """`tf.data.Options` with `experimental_distribute.auto_shard_policy`
    set: `"data"` for in-memory pipelines (`from_tensor_slices`: every
    worker builds the whole dataset and keeps its share of each global
    batch), `"file"` for pipelines that read several files (each worker
    reads its own), `"auto"` or `"off"`."""
    if policy not in AUTO_SHARD_POLICIES:
        raise ValueError(
            "Invalid value for argument `policy`. Expected one of "
            f"{tuple(AUTO_SHARD_POLICIES)}. Received: policy={policy!r}"
        )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = AUTO_SHARD_POLICIES[
        policy
    ]
    return options


def auto_shard(dataset: tf.data.Dataset, policy: str = "data"):
    """`dataset.with_options(distribute_dataset_options(policy))`."""
    return dataset.with_options(distribute_dataset_options(policy))
