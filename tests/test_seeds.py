"""Seeds trained together (vmap) give each seed's own plain-run numbers."""
import os
import shutil

import pytest

from dash_jax.launch import runs
from dash_jax.launch.config import EXECUTION_FIELDS
from tests import helpers


@pytest.fixture
def seeds_config(tiny_config):
  tiny_config.train_type = 'dash,cold'
  tiny_config.optimizer = 'sam'
  tiny_config.seeds = '0,1,2'
  tiny_config.max_epoch = 12
  tiny_config.converge_acc = 0.55  # reached at different epochs by different seeds
  tiny_config.progress = False
  return tiny_config


@pytest.mark.slow
def test_vmapped_seeds_match_plain_runs(seeds_config, tmp_path):
  plain = helpers.numbers_by_run(runs.run(seeds_config, str(tmp_path / 'plain'), log=lambda *a: None))
  seeds_config.vmap_seeds = True
  lines = []
  vmapped = helpers.numbers_by_run(runs.run(seeds_config, str(tmp_path / 'vmap'), log=lines.append))
  assert any('seeds [0, 1, 2] as one program' in l for l in lines)
  helpers.close(plain, vmapped)
  # Each seed stopped by its own rule: some converged early, at different epochs.
  epochs = {run: [e['epochs'] for e in exps] for run, exps in plain.items()}
  assert len({tuple(e) for e in epochs.values()}) > 1
  assert any(e < seeds_config.max_epoch for es in epochs.values() for e in es)
  # Every seed still has its own run folder, config and TensorBoard scalars.
  for run in plain:
    assert (tmp_path / 'vmap' / run / 'results.json').exists()
    assert (tmp_path / 'vmap' / run / 'config.json').exists()
    assert any(f.startswith('events.out') for f in os.listdir(tmp_path / 'vmap' / run))
  assert (tmp_path / 'vmap' / 'dash-sam-seeds0_1_2' / 'checkpoints').is_dir()


@pytest.mark.slow
def test_vmapped_group_resumes_from_an_older_checkpoint(seeds_config, tmp_path):
  seeds_config.train_type = 'dash'
  seeds_config.vmap_seeds = True
  seeds_config.checkpoint_every_epochs = 2
  seeds_config.keep_checkpoints = 10
  ref = helpers.numbers_by_run(runs.run(seeds_config, str(tmp_path), log=lambda *a: None))
  ckpt_dir = tmp_path / 'dash-sam-seeds0_1_2' / 'checkpoints'
  steps = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  assert len(steps) >= 3
  for s in steps[-2:]:  # back to a save inside an experiment or after one
    shutil.rmtree(ckpt_dir / str(s))
  for run in ref:
    os.remove(tmp_path / run / 'results.json')
  lines = []
  again = helpers.numbers_by_run(runs.run(seeds_config, str(tmp_path), log=lines.append))
  assert any('resuming at experiment' in l for l in lines)
  assert again == ref


def test_vmap_seeds_is_an_execution_choice():
  assert 'vmap_seeds' in EXECUTION_FIELDS and 'devices' in EXECUTION_FIELDS


@pytest.mark.parametrize('overrides', [{'epoch_mode': 'loop'}, {'diagnostics': True}],
                         ids=['loop', 'diagnostics'])
@pytest.mark.slow
def test_vmapped_seeds_take_every_execution_feature(seeds_config, tmp_path, overrides):
  """The one experiment loop serves a group as a plain run: the Python-loop
  epoch mode and the diagnostics work for vmapped seeds, with plain numbers."""
  seeds_config.train_type = 'dash'
  seeds_config.seeds = '0,1'
  for k, v in overrides.items():
    seeds_config[k] = v
  plain_results = runs.run(seeds_config, str(tmp_path / 'plain'), log=lambda *a: None)
  seeds_config.vmap_seeds = True
  vmapped_results = runs.run(seeds_config, str(tmp_path / 'vmap'), log=lambda *a: None)
  helpers.close(helpers.numbers_by_run(plain_results), helpers.numbers_by_run(vmapped_results))
  if overrides.get('diagnostics'):
    for name, res in plain_results.items():
      for a, b in zip(res['experiments'], vmapped_results[name]['experiments'], strict=True):
        assert a['diagnostics'].keys() == b['diagnostics'].keys()
        for k, v in a['diagnostics'].items():
          assert b['diagnostics'][k] == pytest.approx(v, rel=1e-3, abs=1e-5), (name, k)
