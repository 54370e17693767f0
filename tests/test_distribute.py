"""keras_segattn.distribute: strategy names, TF_CONFIG checks, global batch
checks and tf.data shard options (the multi-device runs are in
tests/examples/test_distribution.py, in subprocesses)."""

import json
import re

import pytest
import tensorflow as tf

from keras_segattn import distribute

CLUSTER = {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]}


def test_strategies_tuple():
    assert distribute.STRATEGIES == (
        "default",
        "mirrored",
        "multi-worker",
        "tpu",
    )


def test_parse_tf_config_json_and_dict():
    config = {"cluster": CLUSTER, "task": {"type": "worker", "index": 1}}
    assert distribute.parse_tf_config(json.dumps(config)) == config
    assert distribute.parse_tf_config(config) == config
    chief = {
        "cluster": {"chief": ["h:1"], "worker": ["h:2"]},
        "task": {"type": "chief", "index": 0},
    }
    assert distribute.parse_tf_config(chief)["task"]["type"] == "chief"


@pytest.mark.parametrize(
    "value, match",
    [
        ("{not json", "Expected a JSON object"),
        ("[1, 2]", "Expected a JSON object"),
        ({"task": {"type": "worker", "index": 0}}, 'non-empty "cluster"'),
        ({"cluster": {}, "task": {}}, 'non-empty "cluster"'),
        ({"cluster": {"workers": ["h:1"]}, "task": {}}, "'workers'"),
        ({"cluster": {"worker": []}, "task": {}}, "non-empty list"),
        ({"cluster": {"worker": ["nohost"]}, "task": {}}, '"host:port"'),
        ({"cluster": {"ps": ["h:1"]}, "task": {}}, '"worker" or "chief"'),
        ({"cluster": CLUSTER}, 'a "task" dict'),
        ({"cluster": CLUSTER, "task": {"type": "worker"}}, 'a "task" dict'),
        (
            {"cluster": CLUSTER, "task": {"type": "chief", "index": 0}},
            "'chief'",
        ),
        (
            {"cluster": CLUSTER, "task": {"type": "worker", "index": 2}},
            re.escape("in [0, 2)"),
        ),
        (
            {"cluster": CLUSTER, "task": {"type": "worker", "index": -1}},
            re.escape("in [0, 2)"),
        ),
        (
            {"cluster": CLUSTER, "task": {"type": "worker", "index": "0"}},
            re.escape("in [0, 2)"),
        ),
    ],
)
def test_parse_tf_config_errors(value, match):
    with pytest.raises(ValueError, match=match) as info:
        distribute.parse_tf_config(value)
    assert "`TF_CONFIG`" in str(info.value)
    assert "Received: tf_config=" in str(info.value)


def test_parse_tf_config_type_error():
    with pytest.raises(TypeError, match="Received: tf_config=3"):
        distribute.parse_tf_config(3)


def test_unknown_strategy():
    with pytest.raises(
        ValueError,
        match=re.escape("argument `strategy`")
        + ".*'multi-worker'.*"
        + re.escape("Received: strategy='horovod'"),
    ):
        distribute.make_strategy("horovod")


def test_default_strategy():
    strategy = distribute.make_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_mirrored_strategy_over_visible_devices():
    strategy = distribute.make_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    devices = tf.config.list_logical_devices(
        "GPU"
    ) or tf.config.list_logical_devices("CPU")
    assert strategy.num_replicas_in_sync == len(devices)


def test_tpu_without_tpu():
    with pytest.raises(
        ValueError, match=re.escape("strategy='tpu' found no TPU")
    ):
        distribute.make_strategy("tpu")


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(
        ValueError, match="pass `tf_config` or set the `TF_CONFIG`"
    ):
        distribute.make_strategy("multi-worker")


def test_multi_worker_checks_tf_config_env(monkeypatch):
    bad = {"cluster": CLUSTER, "task": {"type": "worker", "index": 5}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(bad))
    with pytest.raises(ValueError, match=re.escape("in [0, 2)")):
        distribute.make_strategy("multi-worker")


def test_multi_worker_checks_tf_config_argument(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="Expected a JSON object"):
        distribute.make_strategy("multi-worker", tf_config="nope")


def test_check_global_batch_size():
    strategy = distribute.make_strategy("default")
    assert distribute.check_global_batch_size(6, strategy) == 6
    with pytest.raises(ValueError, match=re.escape("Received: batch_size=0")):
        distribute.check_global_batch_size(0, strategy)


def test_check_global_batch_size_not_divisible():
    class TwoReplicas:
        num_replicas_in_sync = 2

    with pytest.raises(
        ValueError,
        match=re.escape("multiple of the 2 replicas")
        + ".*"
        + re.escape("Received: batch_size=5"),
    ):
        distribute.check_global_batch_size(5, TwoReplicas())


def test_auto_shard_policies():
    dataset = tf.data.Dataset.range(4).batch(2)
    policy = tf.data.experimental.AutoShardPolicy
    for name, expected in (("data", policy.DATA), ("file", policy.FILE)):
        options = distribute.auto_shard(dataset, name).options()
        assert options.experimental_distribute.auto_shard_policy == expected
    with pytest.raises(ValueError, match="Received: policy='rows'"):
        distribute.distribute_dataset_options("rows")
