"""SIGTERM, stop and resume: a second SIGTERM soon after is the same request
(saved once), workers get it too, a worker leaves no files a killed parent
could leave, and the report marks runs that have not finished."""
import os
import signal
import sys
import time

import pytest

from dash_jax.errors import UserError
from tests import helpers

SAVED = 'stopped (SIGTERM) after saving a checkpoint; re-run the same command to resume\n'


def _launch(workdir, tfds_dir, *overrides, prefix=(), config='configs/digits.py'):
  """launch.py on a tiny config, in its own session (a group signal stays there)."""
  return helpers.launch_tiny(workdir, tfds_dir, *overrides, config=config, prefix=prefix,
                             new_session=True)


@pytest.fixture
def fresh_signals(monkeypatch):
  """signals' state as in a new process, inside an experiment loop; exit_now
  records instead of ending the process."""
  from dash_jax import signals
  exits = []
  monkeypatch.setattr(signals, 'exit_now', lambda message, code: exits.append(code))
  monkeypatch.setattr(signals, '_first_term', None)
  monkeypatch.setattr(signals, '_repeats', 0)
  monkeypatch.setattr(signals, '_loops', 1)
  monkeypatch.setattr(signals, '_children', [])
  signals._stop.clear()
  yield signals, exits
  signals._stop.clear()


def test_a_second_sigterm_soon_after_is_the_same_request(fresh_signals, monkeypatch):
  signals, exits = fresh_signals
  clock = [100.0]
  monkeypatch.setattr(signals.time, 'monotonic', lambda: clock[0])
  signals._on_signal(signal.SIGTERM)
  assert signals.stop_requested() and exits == []  # saves at the next boundary
  clock[0] += 0.05  # `timeout`: the process group's copy, 50 ms later
  signals._on_signal(signal.SIGTERM)
  assert exits == []
  signals._on_signal(signal.SIGTERM)  # a third: exit now
  assert exits == [143]


def test_a_late_second_sigterm_or_ctrl_c_exits_at_once(fresh_signals, monkeypatch):
  signals, exits = fresh_signals
  clock = [100.0]
  monkeypatch.setattr(signals.time, 'monotonic', lambda: clock[0])
  signals._on_signal(signal.SIGTERM)
  clock[0] += signals.REPEAT_WINDOW_S + 0.5
  signals._on_signal(signal.SIGTERM)
  assert exits == [143]
  signals._on_signal(signal.SIGINT)
  assert exits == [143, 130]


def test_the_first_sigterm_is_passed_on_to_the_workers(fresh_signals, monkeypatch):
  signals, _ = fresh_signals
  sent = []
  monkeypatch.setattr(signals.os, 'kill', lambda pid, sig: sent.append((pid, sig)))
  signals.forward_to([11, 12])
  signals._on_signal(signal.SIGTERM)
  signals._on_signal(signal.SIGTERM)
  assert sent == [(11, signal.SIGTERM), (12, signal.SIGTERM)]


LONG_RUN = ('--config.num_chunks=1', '--config.max_epoch=400', '--config.converge_acc=1.0',
            '--config.checkpoint_every_epochs=0')  # one long experiment, no save inside


@pytest.mark.slow
def test_two_sigterms_50ms_apart_save_once(tfds_dir, tmp_path):
  """What coreutils `timeout`, SLURM and Kubernetes do: SIGTERM to the
  launch, then to its process group, here 50 ms apart (it used to take the
  second as "exit now" and leave without saving)."""
  proc = _launch(tmp_path, tfds_dir, *LONG_RUN)
  helpers.wait_for(proc, 'run 1/1')
  proc.send_signal(signal.SIGTERM)
  time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGTERM)  # the group's copy
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err
  assert err == SAVED
  assert os.listdir(tmp_path / 'warm-sgd-seed0' / 'checkpoints')  # the save is there


def test_a_worker_reads_its_config_from_stdin(tmp_path, monkeypatch):
  """No .workers-*.pkl a killed parent could leave: the config comes on stdin
  (issue 30); a UserError goes to the parent through the error pipe."""
  import io
  import pickle

  from dash_jax import data, signals
  from dash_jax.launch import runs
  from configs.digits import get_config
  monkeypatch.setattr(sys, 'stdin', io.TextIOWrapper(io.BytesIO(pickle.dumps((get_config(), '')))))
  monkeypatch.setattr(signals, 'install', lambda quiet=False: None)
  monkeypatch.setattr(os, 'kill', lambda pid, sig: None)  # its parent watch: never here

  def load(config):
    raise UserError('no data here')
  monkeypatch.setattr(data, 'load', load)
  read_fd, write_fd = os.pipe()
  with pytest.raises(SystemExit) as e:
    runs.worker_main(str(tmp_path), '1', str(os.getppid()), str(write_fd))
  os.close(write_fd)
  assert e.value.code == 2 and os.read(read_fd, 100) == b'no data here'
  os.close(read_fd)
  assert os.listdir(tmp_path) == []


def test_report_marks_runs_that_have_not_finished(tmp_path, capsys):
  import json

  from dash_jax.launch import report
  for seed in (0, 1, 2):
    config = {'experiment': 'incremental', 'dataset': 'digits', 'optimizer': 'sgd',
              'train_type': 'warm', 'seeds': str(seed), 'num_chunks': 2}
    folder = tmp_path / f'warm-sgd-seed{seed}'
    folder.mkdir()
    (folder / 'config.json').write_text(json.dumps(config))
    if seed < 2:  # seed 2 was killed: its config, no results
      exps = [{'experiment': j, 'test_acc': 0.5 + 0.1 * j + 0.01 * seed, 'steps': 4}
              for j in (1, 2)]
      (folder / 'results.json').write_text(json.dumps(
          {'config': config, 'experiments': exps, 'summary': {}}))
  assert report.main([str(tmp_path)]) == 0
  text = (tmp_path / 'report.md').read_text()
  assert '| SGD | Warm | 2 of 3 finished |' in text
  assert (f'digits/sgd/warm: not finished (no results.json yet, the table leaves them out): '
          f'seed 2 in {tmp_path / "warm-sgd-seed2"}') in text
  capsys.readouterr()
