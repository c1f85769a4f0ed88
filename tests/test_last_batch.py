"""config.last_batch: how an epoch's batches are cut, which experiments end
their epochs in a small batch, and what the launch says before training."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dash_jax import batches, train
from tests.test_train import _converge, _setup


def test_batch_sizes_of_each_mode():
  assert batches.batch_sizes(3330, 128) == [128] * 26 + [2]
  assert batches.batch_sizes(3330, 128, 'drop_small') == [128] * 26
  assert batches.batch_sizes(3330, 128, 'balanced') == [124] * 9 + [123] * 18
  assert batches.batch_sizes(390, 128, 'balanced') == [98, 98, 97, 97]
  assert batches.batch_sizes(390, 128, 'drop_small') == [128] * 3
  assert batches.batch_sizes(3600, 128, 'drop_small') == [128] * 28 + [16]  # 16: not small
  assert batches.batch_sizes(3600, 128, 'balanced') == [125] * 4 + [124] * 25  # always spread
  for mode in batches.LAST_BATCH_MODES:
    assert batches.batch_sizes(100, 128, mode) == [100], mode  # one batch: the whole set
    assert batches.batch_sizes(256, 128, mode) == [128, 128], mode
  assert batches.batch_sizes(17, 8, 'drop_small') == [8, 8]  # small: under half a batch
  assert batches.batch_sizes(21, 8, 'drop_small') == [8, 8, 5]
  assert batches.num_batches(129, 128, 'keep', drop_single=True) == 1
  assert batches.num_batches(129, 128, 'balanced', drop_single=True) == 2  # 65 + 64


@pytest.mark.parametrize('n,batch_size', [(37, 16), (40, 16), (33, 8), (5, 16)])
def test_balanced_spans_cover_the_epoch_once(n, batch_size):
  k = batches.num_batches(n, batch_size, 'balanced')
  covered = []
  for b in range(k):
    start, mask = train._batch_span(b, n, batch_size, k, True)
    size = int(np.sum(mask))
    assert np.all(np.asarray(mask)[:size] == 1) and size <= batch_size
    covered += list(range(int(start), int(start) + size))
  assert covered == list(range(n))
  assert [int(np.sum(train._batch_span(b, n, batch_size, k, True)[1])) for b in range(k)] == \
      batches.batch_sizes(n, batch_size, 'balanced')


@pytest.mark.parametrize('last_batch', ['balanced', 'drop_small'])
def test_loop_and_scan_epochs_agree_off_keep(last_batch):
  kw = dict(step_cfg=train.StepConfig(), batch_size=16, max_epoch=3, converge_acc=1.0,
            last_batch=last_batch)
  out = {}
  for mode in ('scan', 'loop'):
    state, data = _setup()
    out[mode] = _converge(state, jax.random.PRNGKey(3), data, jnp.arange(40, dtype=jnp.int32),
                          35, mode=mode, **kw)
  (s1, _, st1), (s2, _, st2) = out['scan'], out['loop']
  assert st1.steps == st2.steps == 3 * (3 if last_batch == 'balanced' else 2)
  np.testing.assert_allclose(st1.train_loss, st2.train_loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  state, data = _setup()  # and not what 'keep' computes
  s3, _, _ = _converge(state, jax.random.PRNGKey(3), data, jnp.arange(40, dtype=jnp.int32),
                       35, mode='scan', **dict(kw, last_batch='keep'))
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(s1.params),
                                                    jax.tree.leaves(s3.params)))
