"""Data that cannot train as asked: BatchNorm over one example is refused
before compute, and a last batch of exactly one is left out."""
import os

import pytest

from dash_jax import models
from dash_jax.errors import UserError


def test_batch_size_one_with_batchnorm_is_refused_before_compute(tiny_config, tmp_path):
  from dash_jax.launch import runs
  tiny_config.batch_size = 1
  with pytest.raises(UserError, match=r'^config.batch_size=1: BatchNorm in model mlp would '
                     r'normalise one value per channel') as e:
    runs.run(tiny_config, str(tmp_path))
  assert '\n' not in str(e.value)
  assert not os.path.exists(tmp_path / 'warm-sgd-seed0')  # nothing trained or written


def test_which_models_see_one_value_per_channel_for_one_example():
  assert models.batchnorm_values_per_channel(models.MLP(10, width=8), (8, 8, 1)) == 1
  assert models.batchnorm_values_per_channel(models.ResNet18(10), (32, 32, 3)) == 4
  assert models.batchnorm_values_per_channel(models.MLP(10, width=8, depth=1), (8, 8, 1)) is None


def test_only_a_last_batch_of_exactly_one_is_left_out():
  from dash_jax.batches import num_batches
  assert num_batches(129, 128, drop_single=True) == 1
  assert num_batches(129, 128) == 2  # no BatchNorm that needs it: kept
  for n in (1, 127, 128, 130, 255, 256, 62 * 20):  # every other n: as before
    assert num_batches(n, 128, drop_single=True) == -(-n // 128), n


@pytest.mark.slow
def test_a_last_batch_of_one_is_dropped_in_training(tiny_config, tmp_path):
  import dash_jax
  tiny_config.num_chunks = 2  # digits: 1258 training examples, chunks of 629
  tiny_config.batch_size = 628  # experiment 1: 629 = 628 + 1; experiment 2: 1258 = 2 * 628 + 2
  tiny_config.max_epoch = 2
  res = dash_jax.run(tiny_config, str(tmp_path), lambda *a: None)['warm-sgd-seed0']
  first, second = res['experiments']
  assert first['steps'] == first['epochs'] * 1  # the batch of one left out
  assert second['steps'] == second['epochs'] * 3  # 628 + 628 + 2: all kept
