"""Tests for `keras_segattn.losses.distribution` on one device (two
replicas: tests/distribute/)."""

import numpy as np
import tensorflow as tf

from keras_segattn.losses import distribution


def test_one_device_is_the_plain_computation():
    values = tf.constant([[1.0, 2.0], [3.0, 5.0]])
    weights = tf.constant([[1.0, 0.0], [1.0, 2.0]])
    expected = (1.0 + 3.0 + 10.0) / 4.0
    assert distribution.num_replicas_in_sync() == 1
    np.testing.assert_allclose(
        distribution.replica_share_of_mean(values, weights), expected
    )
    np.testing.assert_allclose(
        distribution.global_mean(values, weights), expected
    )
    np.testing.assert_allclose(
        distribution.replica_share_of_mean(values), np.mean(values)
    )
    assert float(distribution.scale_loss_for_distribution(values[0, 1])) == 2.0
    assert (
        float(distribution.unscale_loss_for_distribution(values[0, 1])) == 2.0
    )
    assert float(distribution.sum_over_replicas(values[1, 1])) == 5.0


def test_zero_weights_give_zero_not_nan():
    values = tf.constant([1.0, 2.0])
    zeros = tf.zeros(2)
    assert float(distribution.replica_share_of_mean(values, zeros)) == 0.0
    assert float(distribution.global_mean(values, zeros)) == 0.0


def test_share_is_differentiated_and_statistics_are_not():
    values = tf.Variable([1.0, 2.0, 4.0])
    weights = tf.constant([1.0, 1.0, 2.0])
    with tf.GradientTape(persistent=True) as tape:
        share = distribution.replica_share_of_mean(values, weights)
        mean = distribution.global_mean(values, weights)
        total = distribution.sum_over_replicas(tf.reduce_sum(values))
    np.testing.assert_allclose(tape.gradient(share, values), [0.25, 0.25, 0.5])
    assert tape.gradient(mean, values) is None
    assert tape.gradient(total, values) is None
