"""The workdir and what is written there: a config file argument refused
before the workdir exists, a full disk, a failed checkpoint save and a
workdir turned read-only mid-run, each one line."""
import json
import os
import subprocess

import jax
import jax.numpy as jnp
import pytest

from dash_jax import models
from dash_jax.errors import UserError
from tests import helpers


@pytest.mark.slow
def test_config_file_with_an_argument_it_does_not_take_is_one_line(tmp_path):
  config = os.path.join(helpers.ROOT, 'configs', 'default.py')
  proc = helpers.run_launch('--config', f'{config}:bogus', '--workdir', tmp_path / 'w',
                            timeout=120)
  assert proc.returncode == 2
  assert proc.stderr == (f'error: config file {config}: its get_config() takes no argument, '
                         f"but --config {config}:bogus passes 'bogus' after the colon; drop "
                         f'":bogus" (pass --config {config})\n')
  assert not os.path.exists(tmp_path / 'w')


@pytest.fixture
def small_disk(tmp_path):
  """A 300 KB tmpfs (root only); skipped, with the reason, where mounting fails."""
  path = tmp_path / 'disk'
  path.mkdir()
  proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=300k', 'tmpfs', str(path)],
                        capture_output=True, text=True)
  if proc.returncode != 0:
    pytest.skip(f'cannot mount a small tmpfs here ({proc.stderr.strip()})')
  yield path
  subprocess.run(['umount', '-l', str(path)], check=False)


@pytest.mark.slow
def test_a_full_disk_before_any_checkpoint_keeps_the_finished_results(tiny_config, small_disk):
  import dash_jax
  tiny_config.width = 512  # its checkpoint (params and momentum) outgrows 300 KB
  tiny_config.num_chunks = 2
  tiny_config.max_epoch = 1
  tiny_config.tensorboard = False
  tiny_config.checkpoint_min_interval_s = 10.0  # the default: later saves are skipped
  with pytest.raises(UserError) as e:
    dash_jax.run(tiny_config, str(small_disk), lambda *a: None)
  msg = str(e.value)
  results_path = small_disk / 'warm-sgd-seed0' / 'results.json'
  assert msg == (f'saving a checkpoint in {small_disk}/warm-sgd-seed0/checkpoints failed (No '
                 f'space left on device) after the run finished; its results are saved '
                 f'({results_path}); fix that and re-run the same command for the other runs')
  assert len(json.loads(results_path.read_text())['experiments']) == 2


def test_a_failed_save_says_when_there_is_no_checkpoint_to_resume_from(tmp_path):
  from dash_jax import checkpoint, optim, train
  state = train.create_state(models.MLP(10, width=8), optim.sgd(0.1),
                             jax.random.PRNGKey(0), (8, 8, 1), False)
  ckpts = checkpoint.RunCheckpoints(str(tmp_path / 'c'))

  def full_disk(*a, **k):
    raise ValueError('RESOURCE_EXHAUSTED: Failed to write: No space left on device [...]')
  real_save = ckpts.manager.save
  ckpts.manager.save = full_disk
  with pytest.raises(UserError, match=r'start the run over \(no checkpoint of it was saved\)'):
    ckpts.save(1, state, jnp.zeros((2,), jnp.uint32), {})
  ckpts.manager.save = real_save
  ckpts.save(2, state, jnp.zeros((2,), jnp.uint32), {})
  ckpts.wait()
  ckpts.manager.save = full_disk
  with pytest.raises(UserError, match=r'resume from the last saved one \(.*/c/2\)'):
    ckpts.save(3, state, jnp.zeros((2,), jnp.uint32), {})
  ckpts.manager.save = real_save
  ckpts.close()


@pytest.mark.slow
def test_a_read_only_workdir_mid_run_is_one_line_naming_the_event_file(tiny_config, tmp_path,
                                                                      monkeypatch, capfd):
  """TensorBoard's writer thread hits EROFS mid-run (root ignores file modes,
  so the write itself fails, as on a disk remounted read-only)."""
  import errno
  import threading

  import dash_jax
  from dash_jax import observers
  observers._tensorboard_without_tf()
  from tensorboard.summary.writer import event_file_writer
  calls = []
  real_write = event_file_writer.RecordWriter.write

  def write(self, data):
    calls.append(1)
    if len(calls) > 4:  # after the first records: mid-run
      raise OSError(errno.EROFS, 'Read-only file system', b'/the/events/file')
    return real_write(self, data)
  monkeypatch.setattr(event_file_writer.RecordWriter, 'write', write)
  monkeypatch.setattr(threading, 'excepthook', threading.__excepthook__)  # Python's own printer
  tiny_config.max_epoch = 20
  with pytest.raises(UserError) as e:
    dash_jax.run(tiny_config, str(tmp_path), lambda *a: None)
  msg = str(e.value)
  events = [n for n in os.listdir(tmp_path / 'warm-sgd-seed0') if n.startswith('events.out')]
  assert msg == (f'writing TensorBoard scalars to {tmp_path / "warm-sgd-seed0" / events[0]} '
                 f'failed (Read-only file system); fix that (or pass --config.tensorboard=False) '
                 f'and re-run the same command to resume')
  err = capfd.readouterr().err
  assert 'Traceback' not in err and 'Exception in thread' not in err, err
