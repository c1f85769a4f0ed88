"""The convergence rule's running accuracy is the mean of batch accuracies.

The original code (and the paper's step counts) stop an experiment when the
epoch's mean of per-batch accuracies reaches the threshold; with a short final
batch that differs from counting examples, so the epoch's figure is checked
against a replay of the epoch that keeps each batch's accuracy.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dash_jax import models, optim, train

N, BATCH = 9, 4  # batches of 4, 4 and 1: the last example weighs a quarter


def _setup():
  model = models.MLP(num_classes=3, width=8, depth=1)
  state = train.create_state(model, optim.sgd(0.05), jax.random.PRNGKey(0), (2, 2, 1), False)
  rng = np.random.default_rng(5)
  data = {'train_x': jnp.asarray(rng.integers(0, 256, (12, 2, 2, 1), dtype=np.uint8)),
          'train_y': jnp.asarray(rng.integers(0, 3, 12, dtype=np.int32)),
          'mean': jnp.asarray([128.0]), 'std': jnp.asarray([70.0])}
  return state, data, jnp.arange(12, dtype=jnp.int32)


def _replay(key):
  """Batch accuracies (before each step, as the step reports them) and sizes
  of the first epoch, drawn as the loop draws it."""
  state, data, buffer_idx = _setup()
  _, epoch_key = jax.random.split(key)
  order = np.asarray(train.epoch_order(epoch_key, buffer_idx, N, BATCH))[:N]
  accs, sizes = [], []
  for start in range(0, N, BATCH):
    idx = order[start:start + BATCH]
    pad = BATCH - len(idx)
    x = train.normalise(data['train_x'][np.concatenate([idx, idx[:1].repeat(pad)])],
                        data['mean'], data['std'])
    y = data['train_y'][np.concatenate([idx, idx[:1].repeat(pad)])]
    mask = jnp.asarray([1.0] * len(idx) + [0.0] * pad)
    logits, _ = train.forward(state, state.params, state.batch_stats, x, True, mask)
    correct = np.asarray(jnp.argmax(logits, -1) == y)[:len(idx)]
    accs.append(correct.mean())  # this batch's accuracy, counted here
    state, _ = train.train_step(state, x, y, mask, train.StepConfig())
    sizes.append(len(idx))
  return np.array(accs), np.array(sizes)


def _first_epoch_acc(mode, num_seeds=1):
  """The first epoch's running accuracy the loop records, for a group of
  `num_seeds` copies of the same seed (one: the plain program; two: vmap)."""
  state, data, buffer_idx = _setup()
  stack = lambda x: jnp.stack([x] * num_seeds)
  data = dict(data, train_y=stack(data['train_y']))
  seen = []
  train.train_until_converged(
      jax.tree.map(stack, state), stack(jax.random.PRNGKey(7)),
      train.ExperimentData(data, stack(buffer_idx), N),
      train.TrainOptions(train.StepConfig(), batch_size=BATCH, max_epoch=1,
                         converge_acc=1.0, mode=mode),
      train.EpochHooks(on_epoch=lambda i, e, acc, loss, s: seen.append(acc)))
  assert len(seen) == num_seeds
  return seen[0]


@pytest.mark.slow
@pytest.mark.parametrize('how', ['loop', 'scan', 'seeds'])
def test_running_accuracy_is_the_mean_of_batch_accuracies(how):
  accs, sizes = _replay(jax.random.PRNGKey(7))
  mean_of_batches = accs.mean()
  per_example = (accs * sizes).sum() / N
  assert list(sizes) == [4, 4, 1]
  assert abs(mean_of_batches - per_example) > 0.05  # the case tells them apart
  got = _first_epoch_acc('scan', 2) if how == 'seeds' else _first_epoch_acc(how)
  assert got == pytest.approx(mean_of_batches, abs=1e-6)
