"""Runs survive SIGKILL, corrupt checkpoints, config changes and NaNs."""
import json
import os
import random
import signal
import subprocess
import time

import pytest

import dash_jax
from dash_jax.errors import UserError
from tests import helpers

# One DASH seed over 4 chunks of up to 25 epochs, saved every 2 epochs: long
# enough to be killed between two saves.
FLAGS = dict(train_type='dash', num_chunks=4, max_epoch=25, checkpoint_every_epochs=2)


def _launch(workdir, tfds_dir, *overrides):
  return helpers.launch(workdir, *helpers.tiny_flags(data_dir=tfds_dir, **FLAGS), *overrides,
                        stderr=subprocess.STDOUT)


def _numbers(workdir):
  return helpers.numbers(helpers.read_results(os.path.join(workdir, 'dash-sgd-seed0')))


def _committed_steps(workdir):
  path = os.path.join(workdir, 'dash-sgd-seed0', 'checkpoints')
  if not os.path.isdir(path):
    return []
  return [d for d in os.listdir(path) if d.isdigit()]


@pytest.mark.slow
def test_sigkill_and_resume_gives_identical_results(tfds_dir, tmp_path):
  ref = _launch(tmp_path / 'ref', tfds_dir)
  victim = _launch(tmp_path / 'killed', tfds_dir)
  deadline = time.time() + 240
  while len(_committed_steps(tmp_path / 'killed')) < 2 and time.time() < deadline:
    assert victim.poll() is None, victim.stdout.read()
    time.sleep(0.05)
  time.sleep(random.Random(0).uniform(0.0, 0.3))
  victim.send_signal(signal.SIGKILL)
  victim.wait()
  assert not os.path.exists(tmp_path / 'killed' / 'dash-sgd-seed0' / 'results.json'), \
      'the run finished before it could be killed'
  resumed = _launch(tmp_path / 'killed', tfds_dir)
  out, _ = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, out
  assert 'resuming at experiment' in out
  ref_out, _ = ref.communicate(timeout=300)
  assert ref.returncode == 0, ref_out
  assert _numbers(tmp_path / 'killed') == _numbers(tmp_path / 'ref')


def _tiny(config, **kw):
  config.train_type = 'dash'
  config.num_chunks = 3
  config.max_epoch = 8
  config.checkpoint_every_epochs = 3
  for k, v in kw.items():
    config[k] = v
  return config


@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back(tiny_config, tmp_path, capsys):
  config = _tiny(tiny_config)
  ref = dash_jax.run(config, str(tmp_path))['dash-sgd-seed0']
  run_dir = tmp_path / 'dash-sgd-seed0'
  os.remove(run_dir / 'results.json')
  steps = sorted(int(s) for s in os.listdir(run_dir / 'checkpoints') if s.isdigit())
  newest = run_dir / 'checkpoints' / str(steps[-1])
  for root, _, files in os.walk(newest):
    for name in files:  # truncate every file of the newest checkpoint
      open(os.path.join(root, name), 'w').close()
  again = dash_jax.run(config, str(tmp_path))['dash-sgd-seed0']
  out = capsys.readouterr().out
  assert 'is unreadable' in out and 'resuming at experiment' in out
  assert os.path.isdir(str(newest) + '.corrupt')
  assert helpers.numbers(again) == helpers.numbers(ref)


@pytest.mark.slow
def test_finished_runs_are_skipped(tiny_config, tmp_path, capsys):
  config = _tiny(tiny_config)
  first = dash_jax.run(config, str(tmp_path))
  second = dash_jax.run(config, str(tmp_path))
  assert 'finished earlier' in capsys.readouterr().out
  assert first == second


@pytest.mark.slow
def test_workdir_with_other_config_is_refused(tiny_config, tmp_path):
  config = _tiny(tiny_config)
  dash_jax.run(config, str(tmp_path))
  config.learning_rate = 0.05
  config.epoch_mode = 'loop'  # execution-only: not a difference
  with pytest.raises(UserError) as e:
    dash_jax.run(config, str(tmp_path))
  assert 'learning_rate: 0.01 -> 0.05' in str(e.value)
  assert 'epoch_mode' not in str(e.value) and '\n' not in str(e.value)
  config.allow_config_change = True
  out = dash_jax.run(config, str(tmp_path))['dash-sgd-seed0']
  assert out['config']['learning_rate'] == 0.05
  with open(tmp_path / 'dash-sgd-seed0.replaced-1' / 'results.json') as f:
    assert json.load(f)['config']['learning_rate'] == 0.01  # nothing lost


@pytest.mark.slow
def test_nonfinite_loss_stops_the_run(tiny_config, tmp_path):
  config = _tiny(tiny_config, learning_rate=1e12)
  with pytest.raises(UserError) as e:
    dash_jax.run(config, str(tmp_path))
  msg = str(e.value)
  assert 'non-finite training loss' in msg and 'experiment 1' in msg and 'epoch' in msg
  assert not os.path.exists(tmp_path / 'dash-sgd-seed0' / 'results.json')


def test_saves_closer_than_the_minimum_interval_are_skipped(tmp_path):
  import jax
  import jax.numpy as jnp
  from dash_jax import checkpoint, models, optim, train
  state = train.create_state(models.MLP(10, width=8), optim.sgd(0.1),
                             jax.random.PRNGKey(0), (8, 8, 1), False)
  key = jnp.zeros((2,), jnp.uint32)
  ckpts = checkpoint.RunCheckpoints(str(tmp_path / 'c'), min_interval_s=3600)
  assert ckpts.save(1, state, key, {'experiment': 1})
  assert not ckpts.save(2, state, key, {'experiment': 2})  # too soon: skipped
  ckpts.close()
  assert sorted(os.listdir(tmp_path / 'c')) == ['1']
  ckpts = checkpoint.RunCheckpoints(str(tmp_path / 'd'), min_interval_s=0)
  assert ckpts.save(1, state, key, {}) and ckpts.save(2, state, key, {})
  ckpts.close()
  assert sorted(os.listdir(tmp_path / 'd')) == ['1', '2']


def test_a_save_keeps_the_records_as_they_were_when_it_was_asked_for(tmp_path, monkeypatch):
  """Orbax writes the metadata in the background; the loop appends the next
  experiment's record meanwhile. The save must hold the records of its own
  moment, or a resumed run trains an experiment it already recorded."""
  import asyncio

  import jax
  import jax.numpy as jnp
  from orbax.checkpoint._src.handlers import json_checkpoint_handler as json_handler
  from dash_jax import checkpoint, models, optim, train
  real = json_handler.JsonCheckpointHandler._save_fn

  async def late(self, x, directory):  # a busy machine: the write comes later
    await asyncio.sleep(0.5)
    return await real(self, x, directory)
  monkeypatch.setattr(json_handler.JsonCheckpointHandler, '_save_fn', late)
  state = train.create_state(models.MLP(10, width=8), optim.sgd(0.1),
                             jax.random.PRNGKey(0), (8, 8, 1), False)
  records = [{'experiment': 1}]
  ckpts = checkpoint.RunCheckpoints(str(tmp_path / 'c'))
  ckpts.save(2, state, jnp.zeros((2,), jnp.uint32), {'experiment': 2, 'experiments': records})
  records.append({'experiment': 2})  # the loop goes on at once
  ckpts.close()
  _, _, meta = checkpoint.RunCheckpoints(str(tmp_path / 'c')).restore_latest(
      state, jnp.zeros((2,), jnp.uint32))
  assert meta['experiments'] == [{'experiment': 1}]
