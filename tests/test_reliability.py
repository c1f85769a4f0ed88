"""Launches that share a workdir, unusable workdirs, signals, damaged files,
config errors, the batch clamp and the converged flag."""
import json
import os
import signal
import threading
import time

import pytest

import dash_jax
from dash_jax import checkpoint
from dash_jax.errors import UserError
from dash_jax.launch import locks, report, runs
from dash_jax.launch import grid
from tests import helpers

INTERRUPTED = 'stopped (Ctrl-C); re-run the same command to resume\n'  # asked for: no error


def _trained(out):
  """Run names a launch trained (its 'run i/N: NAME' lines)."""
  return [l.split(': ', 1)[1] for l in out.splitlines() if l.startswith('run ')]


# --------------------------------------------------------------- one workdir, many launches


@pytest.mark.slow
def test_same_launch_twice_at_once_shares_the_runs(tfds_dir, tmp_path):
  procs = [helpers.launch_tiny(tmp_path, tfds_dir, '--config.seeds=0,1') for _ in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, out + err
    assert err == ''  # a clean launch prints nothing on stderr (no filelock warnings)
  trained = _trained(outs[0][0]) + _trained(outs[1][0])
  assert sorted(trained) == ['warm-sgd-seed0', 'warm-sgd-seed1']  # each once
  tables = [out.split('| train_type')[1] for out, _ in outs]
  assert tables[0] == tables[1]  # both print the same numbers


@pytest.mark.slow
def test_second_launch_with_another_config_is_refused(tfds_dir, tmp_path):
  procs = [helpers.launch_tiny(tmp_path, tfds_dir),
           helpers.launch_tiny(tmp_path, tfds_dir, '--config.label_noise=0.0')]
  outs = [p.communicate(timeout=600) for p in procs]
  codes = sorted(p.returncode for p in procs)
  assert codes == [0, 2], outs
  refused = outs[[p.returncode for p in procs].index(2)][1]
  assert refused.startswith('error: ') and refused.count('\n') == 1
  assert 'different config (label_noise: ' in refused
  with open(tmp_path / 'warm-sgd-seed0' / 'results.json') as f:  # the winner's own results
    saved = json.load(f)['config']['label_noise']
  winner = [p for p in procs if p.returncode == 0][0]
  assert saved == (0.2 if winner is procs[0] else 0.0)


@pytest.mark.slow
def test_a_held_run_is_waited_for_then_trained(tiny_config, tmp_path):
  """A run another process holds is skipped, then taken once its lock goes
  (as when the holder crashes: the OS drops the lock)."""
  tiny_config.seeds = '0,1'
  other = locks.Lock(str(tmp_path / 'warm-sgd-seed0' / locks.RUN_LOCK))
  assert other.acquire(blocking=False)
  lines, out = [], {}
  worker = threading.Thread(target=lambda: out.update(dash_jax.run(
      tiny_config, str(tmp_path), lines.append)))
  worker.start()
  while not any(l.startswith('waiting for warm-sgd-seed0') for l in lines):
    assert worker.is_alive()
    time.sleep(0.05)
  assert _trained('\n'.join(lines)) == ['warm-sgd-seed1']  # the free one went first
  assert any('another process holds it' in l for l in lines)
  other.release()
  worker.join()
  assert _trained('\n'.join(lines)) == ['warm-sgd-seed1', 'warm-sgd-seed0']
  assert sorted(out) == ['warm-sgd-seed0', 'warm-sgd-seed1']


def test_a_lock_tells_this_launchs_own_processes_from_strangers(tmp_path, monkeypatch):
  """A lock names its holder's launch: a worker this launch started is
  'worker 1', a process of another launch (or an older lock file) is not."""
  monkeypatch.setattr(locks, '_launch', ('pid 1 on h', 'main process'))
  path = tmp_path / '.lock'
  lock = locks.Lock(str(path))
  path.write_text('pid 2 on h\nlaunch pid 1 on h; worker 1')
  assert lock.holder() == 'pid 2 on h' and lock.launch_role() == 'worker 1'
  assert locks.Claim([str(path)]).launch_roles() == 'worker 1'
  for stranger in ('pid 2 on h\nlaunch pid 7 on h; worker 1', 'pid 2 on h', ''):
    path.write_text(stranger)
    assert lock.launch_role() == '' and locks.Claim([str(path)]).launch_roles() == ''
  assert lock.acquire(blocking=False)  # what this process writes: itself, its launch
  assert path.read_text() == f'{locks.me()}\nlaunch pid 1 on h; main process'
  assert lock.launch_role() == ''  # itself is no other process
  lock.release()


# --------------------------------------------------------------- unusable workdirs


def _nothing_written(tmp_path, monkeypatch, tiny_config, workdir, expected):
  monkeypatch.chdir(tmp_path)
  before = sorted(os.listdir(tmp_path))
  with pytest.raises(UserError, match=expected) as e:
    runs.run(tiny_config, workdir)
  assert '\n' not in str(e.value)
  assert sorted(os.listdir(tmp_path)) == before


def test_empty_workdir_is_refused(tiny_config, tmp_path, monkeypatch):
  _nothing_written(tmp_path, monkeypatch, tiny_config, '', '--workdir is empty')
  tiny_config.experiment = 'synthetic'
  _nothing_written(tmp_path, monkeypatch, tiny_config, '', '--workdir is empty')


def test_workdir_that_is_or_sits_under_a_file_is_refused(tiny_config, tmp_path, monkeypatch):
  (tmp_path / 'f').write_text('x')
  _nothing_written(tmp_path, monkeypatch, tiny_config, 'f', 'is a file, not a folder')
  _nothing_written(tmp_path, monkeypatch, tiny_config, 'f/a/b', r'is under .*f, which is a file')


def test_unwritable_workdir_is_refused(tiny_config, tmp_path, monkeypatch):
  import tempfile

  def refuse(*a, **k):  # root ignores file modes, so refuse as a read-only disk would
    raise PermissionError(13, 'Permission denied')
  monkeypatch.setattr(tempfile, 'TemporaryFile', refuse)
  _nothing_written(tmp_path, monkeypatch, tiny_config, 'w', 'cannot write in .*Permission')


def test_empty_workdir_from_the_command_line(tmp_path, launch_in_process, monkeypatch):
  monkeypatch.chdir(tmp_path)
  code, _, err = launch_in_process('--config', os.path.join(helpers.ROOT, 'configs/synthetic.py'),
                                   '--workdir', '')
  assert code == 2
  assert os.listdir(tmp_path) == []  # no ./synthetic
  assert err.startswith('error: --workdir is empty') and err.count('\n') == 1


# --------------------------------------------------------------- signals


@pytest.mark.slow
def test_ctrl_c_during_the_first_compile_is_one_line(tfds_dir, tmp_path):
  proc = helpers.launch_tiny(tmp_path, tfds_dir)
  helpers.wait_for(proc, 'run 1/1')  # the first compile comes right after this line
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=60)
  assert proc.returncode == 130, err
  assert err == INTERRUPTED


@pytest.mark.slow
def test_sigterm_saves_then_the_relaunch_resumes(tfds_dir, tmp_path):
  args = ('--config.num_chunks=1', '--config.max_epoch=400', '--config.converge_acc=1.0',
          '--config.checkpoint_every_epochs=0')  # no checkpoints inside the experiment
  proc = helpers.launch_tiny(tmp_path, tfds_dir, *args)
  helpers.wait_for(proc, 'run 1/1')  # its one experiment: 400 epochs
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err
  assert err == ('stopped (SIGTERM) after saving a checkpoint; re-run the same command '
                 'to resume\n')  # a requested stop: no 'error'
  again = helpers.launch_tiny(tmp_path, tfds_dir, *args)
  line = helpers.wait_for(again, 'resuming at experiment')[-1]
  assert 'resuming at experiment 1, epoch ' in line  # mid-experiment: the epochs were kept
  again.send_signal(signal.SIGINT)  # and Ctrl-C mid-run: one line too
  _, err = again.communicate(timeout=60)
  assert again.returncode == 130 and err == INTERRUPTED


# --------------------------------------------------------------- damaged files


def _finished_looking_run(config, workdir, results_text):
  spec = grid.points(config)[0]
  folder = workdir / spec.name
  folder.mkdir(parents=True)
  (folder / 'config.json').write_text(json.dumps(grid.run_fields(config, spec)))
  (folder / 'results.json').write_text(results_text)
  return folder


@pytest.mark.parametrize('text', ['{"config": {"lr', '{}', '[]'])
def test_damaged_results_json_is_named(tiny_config, tmp_path, text):
  folder = _finished_looking_run(tiny_config, tmp_path, text)
  with pytest.raises(UserError) as e:
    runs.run(tiny_config, str(tmp_path))
  msg = str(e.value)
  assert str(folder / 'results.json') in msg and 'delete it to recompute that run' in msg
  assert '\n' not in msg


def test_damaged_config_json_is_named(tiny_config, tmp_path):
  folder = _finished_looking_run(tiny_config, tmp_path, '{}')
  (folder / 'config.json').write_text('{"seeds": "0", "train')
  with pytest.raises(UserError) as e:
    runs.run(tiny_config, str(tmp_path))
  assert str(folder / 'config.json') in str(e.value) and 'delete it' in str(e.value)


def test_failed_save_is_one_line_and_leaves_no_tmp_folder(tmp_path):
  import jax
  import jax.numpy as jnp
  from dash_jax import models, optim, train
  state = train.create_state(models.MLP(10, width=8), optim.sgd(0.1),
                             jax.random.PRNGKey(0), (8, 8, 1), False)
  ckpts = checkpoint.RunCheckpoints(str(tmp_path / 'c'))
  half = tmp_path / 'c' / '7.orbax-checkpoint-tmp'
  half.mkdir()

  def full_disk(*a, **k):
    raise ValueError('RESOURCE_EXHAUSTED: Failed to write: No space left on device [...]')
  ckpts.manager.save = full_disk
  with pytest.raises(UserError) as e:
    ckpts.save(7, state, jnp.zeros((2,), jnp.uint32), {})
  assert 'failed (No space left on device)' in str(e.value) and '\n' not in str(e.value)
  assert not half.exists()
  ckpts.close()


@pytest.mark.parametrize('text', ['[]', '{"config": {"dataset": "digits", "optimizer": "sgd", '
                                  '"train_type": "warm", "seeds": "0", "num_chunks": 1}, '
                                  '"experiments": [{"test_acc": "abc", "steps": 1}]}'])
def test_report_names_malformed_results(tmp_path, capsys, text):
  """The launch's rule: a damaged results.json is one line naming it."""
  (tmp_path / 'r').mkdir()
  (tmp_path / 'r' / 'results.json').write_text(text)
  assert report.main([str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"error: {tmp_path / 'r' / 'results.json'} is damaged")
  assert err.count('\n') == 1


# --------------------------------------------------------------- config errors


def test_negative_seed_is_named(tiny_config, tmp_path):
  tiny_config.seeds = '-1'
  with pytest.raises(UserError, match=r"config.seeds='-1' must list integers"):
    runs.run(tiny_config, str(tmp_path))


def test_num_train_beyond_the_split_is_refused(tiny_config, tmp_path):
  tiny_config.num_train = 100_000
  with pytest.raises(UserError, match='config.num_train=100000 exceeds the 1258 training'):
    runs.run(tiny_config, str(tmp_path))
  assert not os.path.exists(tmp_path / 'warm-sgd-seed0')  # refused before any run


@pytest.mark.parametrize('body,expected', [
    ('def get_config():\n  return None\n', 'get_config() returned None'),
    ('x = 1\n', 'has no get_config()')])
def test_config_file_without_a_config(tmp_path, body, expected, launch_in_process):
  path = tmp_path / 'c.py'
  path.write_text(body)
  code, _, err = launch_in_process('--config', path, '--workdir', tmp_path / 'w')
  assert code == 2
  assert err.startswith(f'error: config file {path}')
  assert err.count('\n') == 1 and expected in err and str(path) in err


# --------------------------------------------------------------- batch clamp, converged flag


@pytest.mark.slow
def test_batch_beyond_the_training_set_is_the_training_set(tiny_config, tmp_path):
  tiny_config.max_epoch = 2
  big = dash_jax.run(tiny_config, str(tmp_path / 'big'), lambda *a: None)['warm-sgd-seed0']
  tiny_config.batch_size = 1257  # 3 chunks of 419 of digits. 1258 training examples
  same = dash_jax.run(tiny_config, str(tmp_path / 'same'), lambda *a: None)['warm-sgd-seed0']
  tiny_config.batch_size = 100_000
  huge = dash_jax.run(tiny_config, str(tmp_path / 'huge'), lambda *a: None)['warm-sgd-seed0']
  assert helpers.numbers(huge) == helpers.numbers(same)
  assert [e['steps'] for e in huge['experiments']] == [2, 2, 2]  # one batch an epoch
  assert helpers.numbers(big) != helpers.numbers(same)  # batch 128 really differs


@pytest.mark.slow
def test_unconverged_experiments_are_marked(tiny_config, tmp_path):
  lines = []
  res = dash_jax.run(tiny_config, str(tmp_path / 'a'), lines.append)['warm-sgd-seed0']
  assert [e['converged'] for e in res['experiments']] == [False] * 3  # 3 epochs: never 0.999
  assert all(e['epochs'] == 3 for e in res['experiments'])
  assert res['summary']['unconverged'] == 3
  assert sum('NOT CONVERGED (max_epoch=3' in l for l in lines) == 3
  assert 'hit max_epoch before converge_acc (over all seeds): warm-sgd: 3.' in lines[-2]
  tiny_config.converge_acc = 0.05  # reached after the first epoch
  lines.clear()
  res = dash_jax.run(tiny_config, str(tmp_path / 'b'), lines.append)['warm-sgd-seed0']
  assert [(e['converged'], e['epochs']) for e in res['experiments']] == [(True, 1)] * 3
  assert res['summary']['unconverged'] == 0
  assert not any('NOT CONVERGED' in l or 'max_epoch before' in l for l in lines)


@pytest.mark.slow
def test_runs_per_device_packs_the_runs_into_worker_processes(tiny_config, tmp_path, capfd):
  """config.runs_per_device=2: a spawned worker process takes the runs this
  process does not hold; each run is trained once, with its own numbers."""
  tiny_config.train_type = 'warm,dash'
  tiny_config.seeds = '0,1,2'
  tiny_config.max_epoch = 20  # runs long enough for the worker to start
  tiny_config.progress = False
  alone = dash_jax.run(tiny_config, str(tmp_path / 'alone'), log=lambda *a: None)
  tiny_config.runs_per_device = 2
  lines = []
  packed = dash_jax.run(tiny_config, str(tmp_path / 'packed'), log=lines.append)
  assert sorted(packed) == sorted(alone)
  for name in alone:
    assert helpers.numbers(packed[name]) == helpers.numbers(alone[name]), name
  here = [l.split(': ', 1)[1] for l in lines if l.startswith('run ')]
  worker_out = capfd.readouterr().out.splitlines()
  worker = [l.split(': ', 1)[1] for l in worker_out if l.startswith('[worker 1] run ')]
  assert sorted(here + worker) == sorted(alone), (here, worker)  # each once
  # The launch says it started its worker, and never calls it a stranger.
  assert any(l.startswith('started 1 worker process (pid ') for l in lines), lines
  assert not any('another process' in l for l in lines + worker_out), lines + worker_out


def test_a_one_run_launch_starts_no_worker(tiny_config, tmp_path):
  """runs_per_device=2 with one run: no worker process to start and stop."""
  tiny_config.train_type = 'warm'
  tiny_config.seeds = '0'
  tiny_config.progress = False
  tiny_config.runs_per_device = 2
  lines = []
  dash_jax.run(tiny_config, str(tmp_path / 'one'), log=lines.append)
  assert not any(l.startswith('started ') for l in lines), lines
  assert any(l.startswith('run 1/1: warm-') for l in lines), lines
