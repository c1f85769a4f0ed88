"""The default config end to end through the library entry point."""
import json

import numpy as np
import pytest

import dash_jax
from tests import helpers


@pytest.mark.slow
def test_launch_writes_results_and_summary(tiny_config, tmp_path):
  tiny_config.train_type = 'cold,warm,sp,dash'
  tiny_config.seeds = '0,1'
  out = dash_jax.run(tiny_config, str(tmp_path))
  assert sorted(out) == sorted(f'{t}-sgd-seed{s}' for t in ('cold', 'warm', 'sp', 'dash')
                               for s in (0, 1))
  with open(tmp_path / 'dash-sgd-seed1' / 'results.json') as f:
    res = json.load(f)
  assert res['config']['train_type'] == 'dash'
  assert res['config']['optimizer'] == 'sgd'
  assert res['config']['seeds'] == '1'
  exps = res['experiments']
  assert [e['experiment'] for e in exps] == [1, 2, 3]
  chunk = 1258 // 3
  assert [e['num_train'] for e in exps] == [chunk, 2 * chunk, 3 * chunk]
  for e in exps:
    assert 0.0 <= e['test_acc'] <= 1.0 and 0.0 <= e['train_acc'] <= 1.0
    assert 1 <= e['epochs'] <= 3
    assert e['steps'] == e['epochs'] * int(np.ceil(e['num_train'] / 128))
  s = res['summary']
  assert s['test_acc_last'] == exps[-1]['test_acc']
  assert s['steps_total'] == sum(e['steps'] for e in exps)
  assert np.isclose(s['test_acc_mean'], np.mean([e['test_acc'] for e in exps]))
  with open(tmp_path / 'summary.json') as f:
    rows = json.load(f)['rows']
  assert [r['train_type'] for r in rows] == ['cold', 'warm', 'sp', 'dash']
  assert all(r['seeds'] == [0, 1] for r in rows)
  assert (tmp_path / 'summary.md').read_text().count('| sgd |') == 4


@pytest.mark.slow
def test_same_seed_same_numbers(tiny_config, tmp_path):
  tiny_config.train_type = 'dash'
  a = dash_jax.run(tiny_config, str(tmp_path / 'a'))['dash-sgd-seed0']
  b = dash_jax.run(tiny_config, str(tmp_path / 'b'))['dash-sgd-seed0']
  assert helpers.numbers(a) == helpers.numbers(b)


@pytest.mark.slow
def test_different_seeds_differ(tiny_config, tmp_path):
  tiny_config.seeds = '0,1'
  out = dash_jax.run(tiny_config, str(tmp_path))
  assert (out['warm-sgd-seed0']['experiments'][-1]['test_acc'] !=
          out['warm-sgd-seed1']['experiments'][-1]['test_acc'])


@pytest.mark.slow
def test_every_training_type_with_sgd_and_sam(tiny_config, tmp_path):
  from dash_jax.training_types import TRAINING_TYPES
  tiny_config.train_type = ','.join(TRAINING_TYPES)
  tiny_config.optimizer = 'sgd,sam'
  tiny_config.num_chunks = 2
  tiny_config.max_epoch = 2
  out = dash_jax.run(tiny_config, str(tmp_path))
  assert len(out) == 2 * len(TRAINING_TYPES)
  for name, res in out.items():
    assert name == f"{res['config']['train_type']}-{res['config']['optimizer']}-seed0"
    assert all(np.isfinite(e['test_loss']) for e in res['experiments'])
  # cold and warm share experiment 1, then differ
  cold, warm = out['cold-sam-seed0']['experiments'], out['warm-sam-seed0']['experiments']
  assert cold[0]['test_loss'] == warm[0]['test_loss']
  assert cold[1]['test_loss'] != warm[1]['test_loss']
  sgd = out['warm-sgd-seed0']['experiments']
  assert sgd[0]['test_loss'] != warm[0]['test_loss']
