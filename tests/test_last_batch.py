"""config.last_batch: how an epoch's batches are cut, which experiments end
their epochs in a small batch, and what the launch says before training."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dash_jax import batches, train
from dash_jax.launch import grid
from tests import helpers


def test_batch_sizes_of_each_mode():
  assert batches.batch_sizes(3330, 128) == [128] * 26 + [2]
  assert batches.batch_sizes(3330, 128, 'drop_small') == [128] * 26
  assert batches.batch_sizes(3330, 128, 'balanced') == [124] * 9 + [123] * 18
  assert batches.batch_sizes(390, 128, 'balanced') == [98, 98, 97, 97]
  assert batches.batch_sizes(390, 128, 'drop_small') == [128] * 3
  assert batches.batch_sizes(3600, 128, 'drop_small') == [128] * 28  # 16: small (under 32)
  assert batches.batch_sizes(3616, 128, 'drop_small') == [128] * 28 + [32]  # 32: not small
  assert batches.batch_sizes(3600, 128, 'balanced') == [125] * 4 + [124] * 25  # always spread
  for mode in batches.LAST_BATCH_MODES:
    assert batches.batch_sizes(100, 128, mode) == [100], mode  # one batch: the whole set
    assert batches.batch_sizes(256, 128, mode) == [128, 128], mode
  assert batches.batch_sizes(17, 8, 'drop_small') == [8, 8]  # small: under a quarter batch
  assert batches.batch_sizes(18, 8, 'drop_small') == [8, 8, 2]
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
    state, data = helpers.mlp_setup()
    out[mode] = helpers.converge(state, jax.random.PRNGKey(3), data, jnp.arange(40, dtype=jnp.int32),
                          35, mode=mode, **kw)
  (s1, _, st1), (s2, _, st2) = out['scan'], out['loop']
  assert st1.steps == st2.steps == 3 * (3 if last_batch == 'balanced' else 2)
  np.testing.assert_allclose(st1.train_loss, st2.train_loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  state, data = helpers.mlp_setup()  # and not what 'keep' computes
  s3, _, _ = helpers.converge(state, jax.random.PRNGKey(3), data, jnp.arange(40, dtype=jnp.int32),
                       35, mode='scan', **dict(kw, last_batch='keep'))
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(s1.params),
                                                    jax.tree.leaves(s3.params)))


@pytest.fixture(scope='module')
def m1d(tmp_path_factory):
  """MNIST-1D as the default launch loads it (4,000 training signals)."""
  pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('mnist1d')
  from configs.default import get_config
  from dash_jax import data
  config = get_config()
  config.data_dir = str(tmp_path_factory.mktemp('tfds_m1d'))
  return config, data.load(config)


def test_the_launch_lists_mnist1d_in_6_chunks_ending_in_a_batch_of_2(m1d):
  from dash_jax.launch import config as config_lib
  from dash_jax.launch import runs
  config, ds = m1d
  config = config.copy_and_resolve_references()
  config.num_chunks = 6
  lines = []
  runs.check_batches(ds, grid.plan(config, 'w'), lines.append)
  assert len(lines) == 2, lines  # one line each: the left-out rows, the small batches
  assert lines[0].endswith('train on 3,996 of the 4,000 training examples: 4 left out')
  assert lines[1].startswith('small last batches (under 32 examples, batch_size=128;')
  assert lines[1].count('experiment ') == 3  # 666 = 5 x 128 + 26; 3,996 = 31 x 128 + 28
  assert ('experiment 1: n=666, last batch 26 examples; experiment 5: n=3,330, last batch '
          '2 examples; experiment 6: n=3,996, last batch 28 examples') in lines[1]
  assert lines[1].endswith('--config.last_batch=balanced (or drop_small) or '
                           '--config.batch_size=125 avoids it')
  config.num_chunks = 10  # the default: 4,000 in chunks of 400, nothing left out
  lines = []
  runs.check_batches(ds, grid.plan(config, 'w'), lines.append)
  assert len(lines) == 1 and lines[0].endswith(
      'experiment 1: n=400, last batch 16 examples; experiment 9: n=3,600, last batch 16 '
      'examples; --config.last_batch=balanced (or drop_small) or --config.batch_size=120 '
      'avoids it')
  config.num_chunks = 6
  config_lib.set_sweep(config, 'last_batch', ('drop_small', 'balanced'))  # a sweep: prefixed
  lines = []
  runs.check_batches(ds, grid.plan(config, 'w'), lines.append)
  assert lines[1].startswith('[last_batch=drop_small] last_batch=drop_small leaves out each '
                             'epoch\'s last batch at experiment 1: n=666, last batch 26')
  assert len(lines) == 2  # balanced: nothing small


def _breast_cancer(tmp_path):
  """The README's 'Your data' file: 398 training rows, 171 test rows."""
  from sklearn.datasets import load_breast_cancer
  x, y = load_breast_cancer(return_X_y=True)
  order = np.random.default_rng(0).permutation(len(y))
  test, train_rows = order[:171], order[171:]
  path = tmp_path / 'breast_cancer.npz'
  np.savez(path, x_train=x[train_rows], y_train=y[train_rows], x_test=x[test], y_test=y[test])
  return str(path)


def _bc_config(tmp_path, **overrides):
  from configs.default import get_config
  config = get_config()
  config.update(dict(dataset=_breast_cancer(tmp_path), num_chunks=10, seeds='0',
                     train_type='cold', width=16, max_epoch=1, converge_acc=1.0,
                     runs_per_device=1, progress=False, tensorboard=False,
                     compile_cache_dir=''))
  config.update(overrides)
  return config


def test_398_rows_in_10_chunks_leave_8_out_and_exp_10_names_its_batch_of_6(tmp_path):
  from dash_jax.launch import runs
  lines = []
  res = runs.run(_bc_config(tmp_path), str(tmp_path / 'w'), log=lines.append)['cold-sgd-seed0']
  assert ('10 chunks of 39 examples (N // num_chunks, as the original) train on 390 of '
          'the 398 training examples: 8 left out') in lines
  assert res['chunking'] == {'train_examples': 398, 'num_chunks': 10, 'chunk_size': 39,
                             'left_out': 8}
  assert any(line.startswith('small last batches') and line.endswith(
      'experiment 4: n=156, last batch 28 examples; experiment 7: n=273, last batch 17 '
      'examples; experiment 10: n=390, last batch 6 examples; --config.last_batch=balanced '
      '(or drop_small) or --config.batch_size=120 avoids it') for line in lines)
  done = [line for line in lines if ' exp ' in line]
  assert len(done) == 10 and not res['experiments'][-1]['converged']  # max_epoch=1
  assert done[-1].endswith('NOT CONVERGED (max_epoch=1 before converge_acc=1.0); '
                           'likely cause: experiment 10\'s epochs (n=390) end in a batch of 6 '
                           'examples, over which BatchNorm normalises noise; '
                           '--config.last_batch=balanced (or drop_small) or '
                           '--config.batch_size=120 avoids it')
  for line, e in zip(done, res['experiments']):  # only where the batch is small (4, 7, 10)
    assert ('likely cause' in line) == (e['experiment'] in (4, 7, 10) and not e['converged'])


@pytest.mark.parametrize('batch_size,cause', [(32, True), (13, False)])
def test_a_nonfinite_loss_names_a_small_last_batch_only_where_there_is_one(
    tmp_path, batch_size, cause):
  from dash_jax.launch import runs
  from dash_jax.errors import UserError
  config = _bc_config(tmp_path, batch_size=batch_size, learning_rate=1e30, max_epoch=5)
  with pytest.raises(UserError) as e:  # experiment 1: n = 39 = 32 + 7, or 3 x 13
    runs.run(config, str(tmp_path / 'w'), log=lambda line: None)
  msg = str(e.value)
  assert msg.startswith('cold-sgd-seed0: non-finite training loss') and '\n' not in msg
  assert 'experiment 1,' in msg and msg.rstrip(')').endswith('lower --config.learning_rate')
  assert ('likely cause: experiment 1\'s epochs (n=39) end in a batch of 7 examples' in msg) == cause
  if cause:
    assert msg.endswith('avoids it (else lower --config.learning_rate)')


@pytest.mark.slow
@pytest.mark.parametrize('last_batch', ['balanced', 'drop_small'])
def test_vmapped_seeds_and_resume_keep_the_plain_numbers_off_keep(tmp_path, last_batch):
  """Chunks of 132 rows: n = 132, 264, 396 all end in a small batch (4, 8, 12)."""
  import os
  import shutil
  from dash_jax.launch import runs
  config = _bc_config(tmp_path, num_chunks=3, train_type='dash', seeds='0,1', max_epoch=8,
                      converge_acc=0.97, last_batch=last_batch, checkpoint_every_epochs=2,
                      keep_checkpoints=20, checkpoint_min_interval_s=0.0)
  quiet = lambda line: None
  plain = helpers.numbers_by_run(runs.run(config, str(tmp_path / 'plain'), log=quiet))
  per_epoch = {'balanced': [2, 3, 4], 'drop_small': [1, 2, 3]}[last_batch]
  for exps in plain.values():
    assert [e['steps'] for e in exps] == [e['epochs'] * k for e, k in zip(exps, per_epoch)]
  config.vmap_seeds = True
  ref = helpers.numbers_by_run(runs.run(config, str(tmp_path / 'vmap'), log=quiet))
  helpers.close(plain, ref)
  ckpt_dir = tmp_path / 'vmap' / 'dash-sgd-seeds0_1' / 'checkpoints'
  steps = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  assert len(steps) >= 3
  for s in steps[-2:]:  # back to a save inside an experiment or after one
    shutil.rmtree(ckpt_dir / str(s))
  for run in ref:
    os.remove(tmp_path / 'vmap' / run / 'results.json')
  lines = []
  again = helpers.numbers_by_run(runs.run(config, str(tmp_path / 'vmap'), log=lines.append))
  assert any('resuming at experiment' in line for line in lines)
  assert again == ref


def test_last_batch_is_a_checked_science_field():
  from configs.default import get_config
  from dash_jax.launch import config as config_lib
  from dash_jax.errors import UserError
  config = get_config()
  assert config.last_batch == 'keep'
  assert 'last_batch' not in config_lib.EXECUTION_FIELDS | config_lib.UNSWEEPABLE_FIELDS
  assert config_lib.upgrade({'learning_rate': 0.05})['last_batch'] == 'keep'  # older runs
  config.last_batch = 'drop'
  with pytest.raises(UserError, match=r"^unknown last_batch 'drop'; valid: balanced, "
                     r"drop_small, keep$"):
    config_lib.validate(config)
