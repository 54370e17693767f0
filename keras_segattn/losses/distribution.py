"""Loss scaling under `tf.distribute`, for the models' own `compute_loss`.

Keras's TensorFlow `train_step` runs `compute_loss` in every replica, and
the optimizer sums the replicas' gradients. A hand-written loss must
therefore be this replica's *share* of the global-batch loss (the sum
over its examples divided by the global count), so that the replicas'
shares add up to the loss one device computes on the whole batch; a bare
`ops.mean` over the replica's examples counts every example
`num_replicas_in_sync` times too much. `keras.losses.Loss` scales the
same way (`keras.losses` `scale_loss_for_distribution`), and Keras's
`train_step` reports `loss` unscaled again.

- `scale_loss_for_distribution(value)`: a replica mean over an equal
  share of the global batch, divided by the number of replicas (as
  Keras's own losses do).
- `replica_share_of_mean(values, weights)`: exact for unequal shares
  (captions of different lengths, masked tokens): the replica's weighted
  sum divided by the global sum of the weights.
- `sum_over_replicas(value)` and `global_mean(values, weights)`: the
  global statistics themselves, identical on every replica and not
  differentiated, for metrics and stateful baselines.

On one device (or outside a replica context) every function is the plain
single-device computation, so the same `compute_loss` serves both.
"""

from __future__ import annotations

import keras
from keras import ops


def _tf():
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf


def num_replicas_in_sync() -> int:
    """Replicas of the current `tf.distribute` strategy (1 without one
    and on backends other than TensorFlow)."""
    tf = _tf()
    if tf is None:
        return 1
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_loss_for_distribution(value):
    """`value / num_replicas_in_sync`: a replica's share of the global loss
    when `value` is the mean over its (equal) share of the global batch."""
    replicas = num_replicas_in_sync()
    if replicas == 1:
        return value
    return value * ops.cast(1.0 / replicas, value.dtype)


def unscale_loss_for_distribution(value):
    """`value * num_replicas_in_sync`, the inverse of
    `scale_loss_for_distribution` (what Keras's `train_step` reports)."""
    replicas = num_replicas_in_sync()
    if replicas == 1:
        return value
    return value * ops.cast(replicas, value.dtype)


def sum_over_replicas(value):
    """The sum of `value` over the replicas in sync, on every replica.

    An all-reduce inside a replica context (`strategy.run`, hence
    `fit`); `value` itself on one replica or in the cross-replica
    context, where a value already covers the global batch. Not
    differentiated: for counts and statistics, never for a loss term.
    """
    value = ops.stop_gradient(value)
    tf = _tf()
    if tf is None or num_replicas_in_sync() == 1:
        return value
    context = tf.distribute.get_replica_context()
    if context is None:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def _weighted_sums(values, weights):
    values = ops.convert_to_tensor(values)
    if weights is None:
        weights = ops.ones_like(values)
    weights = ops.cast(weights, values.dtype)
    return ops.sum(values * weights), ops.sum(weights)


def global_mean(values, weights=None):
    """The (weighted) mean of `values` over the global batch, the same on
    every replica; 0 when the weights sum to 0. Not differentiated."""
    total, count = _weighted_sums(values, weights)
    return ops.divide_no_nan(sum_over_replicas(total), sum_over_replicas(count))


def replica_share_of_mean(values, weights=None):
    """This replica's share of the global batch's weighted mean of
    `values`: `sum(weights * values) / (sum of weights over all
    replicas)`, differentiable in `values`. The replicas' shares sum to
    the weighted mean one device computes on the global batch (the
    mean itself on one device); 0 when the weights sum to 0."""
    total, count = _weighted_sums(values, weights)
    return ops.divide_no_nan(total, sum_over_replicas(count))
