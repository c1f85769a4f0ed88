"""The original code's extra metrics, TensorBoard scalars and the launch's report."""
import csv
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dash_jax
from dash_jax import diagnostics, models, optim, train
from tests import helpers


@pytest.fixture(scope='module')
def tiny():
  """An MLP state and 30 random 4x4 images in a shuffled buffer."""
  from configs.digits import get_config
  config = get_config()
  config.width = 8
  model = models.get('mlp').build(config, 3)
  state = train.create_state(model, optim.sgd(0.1, 0.9, 0.0), jax.random.PRNGKey(0),
                             (4, 4, 1), keep_init=False)
  rng = np.random.default_rng(0)
  data = {'train_x': rng.integers(0, 256, (30, 4, 4, 1), dtype=np.uint8),
          'train_y': rng.integers(0, 3, 30).astype(np.int32),
          'mean': np.full((1,), 100.0, np.float32), 'std': np.full((1,), 60.0, np.float32)}
  return state, jax.device_put(data), jnp.asarray(rng.permutation(30).astype(np.int32))


def test_buffer_accuracy_matches_evaluate(tiny):
  state, data, buf = tiny
  idx = np.asarray(buf)[5:23]
  want, _ = train.evaluate(state, data['train_x'][idx], data['train_y'][idx],
                           data['mean'], data['std'], batch_size=7)
  got = diagnostics.buffer_accuracy(state, data, buf, 5, 23, batch_size=4)
  assert float(got) == pytest.approx(float(want), abs=1e-6)


@pytest.mark.slow
def test_buffer_grad_norm_is_the_kernel_gradient_norm_of_the_mean_loss(tiny):
  state, data, buf = tiny
  idx = np.asarray(buf)[3:20]
  x = train.normalise(data['train_x'][idx], data['mean'], data['std'])

  def loss(p):
    logits, _ = train.forward(state, p, state.batch_stats, x, False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, data['train_y'][idx]).mean()
  g = jax.grad(loss)(state.params)
  want = np.sqrt(sum(np.sum(np.square(k)) for k in diagnostics.kernels(g)))
  got = diagnostics.buffer_grad_norm(state, data, buf, 3, 20, batch_size=4)
  assert float(got) == pytest.approx(float(want), rel=1e-4)
  assert len(diagnostics.kernels(g)) == 2  # two Dense kernels; no bias, no BatchNorm


def test_param_norms_and_distance():
  params = {'fc': {'kernel': jnp.full((2, 3), -2.0), 'bias': jnp.full((3,), 100.0)},
            'conv': {'kernel': jnp.ones((3, 3, 2, 4))},
            'bn': {'scale': jnp.full((4,), 50.0)}}
  n = {k: float(v) for k, v in diagnostics.param_norms(params).items()}
  assert n == pytest.approx({'param_norm_fc': 2.0, 'param_norm_conv': 72 / 8,
                             'param_norm_l2': math.sqrt(24 + 72)})
  double = jax.tree.map(lambda a: 2 * a, params)
  assert float(diagnostics.relative_distance(params, params)) == 0.0
  assert float(diagnostics.relative_distance(double, params)) == pytest.approx(1.0)


def read_scalars(run_dir):
  """{tag: [(step, value)]}, read back by TensorBoard's own loader."""
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(str(run_dir))
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
          for tag in acc.Tags()['scalars']}


@pytest.mark.slow
def test_launch_diagnostics_tensorboard_and_report(tiny_config, tmp_path):
  tiny_config.diagnostics = True
  on = dash_jax.run(tiny_config, str(tmp_path / 'on'))['warm-sgd-seed0']
  exps = on['experiments']

  first = exps[0]['diagnostics']
  assert set(first) == {'param_norm_fc', 'param_norm_l2', 'dist_from_start'}
  assert first['param_norm_fc'] > 0 and first['dist_from_start'] > 0
  for e in exps[1:]:
    d = e['diagnostics']
    assert len(d['prev_acc']) == min(e['epochs'], diagnostics.PREV_ACC_EPOCHS) + 1
    assert all(0.0 <= a <= 1.0 for a in d['prev_acc'])
    for k in ('grad_norm_prev', 'grad_norm_all', 'grad_norm_new'):
      assert np.isfinite(d[k]) and d[k] > 0
    # warm: nothing happens between experiments, so training starts where
    # the previous experiment ended.
    assert d['dist_from_prev'] == pytest.approx(d['dist_from_start'], rel=1e-5)
  with open(tmp_path / 'on' / 'warm-sgd-seed0' / 'results.json') as f:
    assert json.load(f)['experiments'][2]['diagnostics'] == exps[2]['diagnostics']

  # Measuring does not change training.
  tiny_config.diagnostics = False
  off = dash_jax.run(tiny_config, str(tmp_path / 'off'))['warm-sgd-seed0']
  assert helpers.numbers(on, drop=('diagnostics',)) == helpers.numbers(off, drop=('diagnostics',))
  assert 'diagnostics' not in off['experiments'][0]

  scalars = read_scalars(tmp_path / 'on' / 'warm-sgd-seed0')
  assert scalars['experiment/test_acc'] == [
      (e['experiment'], pytest.approx(e['test_acc'])) for e in exps]
  assert [s for s, _ in scalars['epoch/train_acc']] == list(
      range(1, sum(e['epochs'] for e in exps) + 1))
  assert [s for s, _ in scalars['diagnostics/grad_norm_all']] == [2, 3]
  assert 'diagnostics/grad_norm_all' not in read_scalars(tmp_path / 'off' / 'warm-sgd-seed0')

  # The launch ends with the report in its workdir.
  out = tmp_path / 'off'
  assert {'report.md', 'report.csv', 'figure_digits_sgd.png'} <= set(os.listdir(out))
  with open(out / 'report.csv') as f:
    row, = csv.DictReader(f)
  assert row['train_type'] == 'warm'
  assert float(row['test_acc_last_mean']) == pytest.approx(100 * exps[-1]['test_acc'])
  assert float(row['steps_mean_mean']) == pytest.approx(np.mean([e['steps'] for e in exps]))
