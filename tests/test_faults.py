"""Reliability, third pass (issue 24): no silent NaN from the DASH API, no
run that trains at chance on BatchNorm over one example, one line under every
writer fault, SIGTERM saved once, and the smaller items."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dash_jax import dash, models
from dash_jax.errors import UserError
from tests.test_reliability import _launch as reliability_launch
from tests.test_reliability import _wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED = 'stopped (SIGTERM) after saving a checkpoint; re-run the same command to resume\n'


def _launch(workdir, tfds_dir, *overrides, prefix=(), config='configs/digits.py'):
  """launch.py on a tiny config, in its own session (a group signal stays there)."""
  return reliability_launch(workdir, tfds_dir, *overrides, config=config, prefix=prefix,
                            new_session=True)


# --------------------------------------------------------------- 1. DASH API never returns NaN


def _mlp():
  model = models.MLP(num_classes=3, width=8, depth=2)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 1)), train=False)
  return model, variables


def _loss_for(model, stats):
  def loss(params, batch):
    x, y = batch
    logits = model.apply({'params': params, 'batch_stats': stats}, x, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss


def _batches(n, nan_at=None, nan_label=False):
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    x = rng.normal(size=(5, 2, 2, 1)).astype(np.float32)
    y = rng.integers(0, 3, 5).astype(np.int32)
    if i == nan_at:
      x[2, 1, 0, 0] = np.nan
    out.append((jnp.asarray(x), jnp.asarray(y)))
  return out


def test_shrink_refuses_a_nan_direction_naming_the_leaf():
  model, variables = _mlp()
  params = variables['params']
  direction = jax.tree.map(jnp.ones_like, params)
  direction['fc1']['kernel'] = direction['fc1']['kernel'].at[3, 1].set(jnp.nan)
  before = jax.tree.map(np.array, params)
  with pytest.raises(UserError, match=r'^direction fc1/kernel holds NaN or inf') as e:
    dash.shrink(params, direction, 0.3)
  assert '\n' not in str(e.value)
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, params))
  direction['fc1']['kernel'] = jnp.ones_like(params['fc1']['kernel'])
  direction['head']['bias'] = direction['head']['bias'].at[0].set(jnp.inf)
  with pytest.raises(UserError, match='direction head/bias holds NaN or inf'):
    dash.shrink(params, direction, 0.3)


def test_shrink_under_jit_keeps_its_numbers_and_shrink_checked_flags():
  _, variables = _mlp()
  params = variables['params']
  direction = jax.tree.map(lambda p: jnp.cos(p) + 0.1, params)
  eager = dash.shrink(params, direction, 0.3)
  jax.tree.map(np.testing.assert_array_equal, eager,
               jax.jit(dash.shrink, static_argnames='per')(params, direction, 0.3, per='kernel'))
  out, ok = jax.jit(dash.shrink_checked)(params, direction, 0.3)
  assert bool(ok)
  jax.tree.map(np.testing.assert_array_equal, eager, out)
  direction['fc1']['bias'] = direction['fc1']['bias'].at[0].set(jnp.nan)
  assert not bool(jax.jit(dash.shrink_checked)(params, direction, 0.3)[1])


@pytest.mark.parametrize('case', ['nan_input', 'nan_loss'])
def test_direction_refuses_a_non_finite_batch_naming_it(case):
  model, variables = _mlp()
  stats = variables['batch_stats']
  loss = _loss_for(model, stats)
  if case == 'nan_input':
    batches = _batches(4, nan_at=2)
    expected = (r'^batch 2 \(counting from 0\) of the 4 given makes its loss and the '
                r'gradient of bn1/scale NaN or inf')
  else:
    def loss(params, batch, inner=loss):  # noqa: F811 - NaN loss on one batch only
      x, _ = batch
      return inner(params, batch) + jnp.where(x[0, 0, 0, 0] > 100, jnp.nan, 0.0)
    batches = _batches(3)
    batches[1] = (batches[1][0].at[0, 0, 0, 0].set(1000.0), batches[1][1])
    expected = r'^batch 1 \(counting from 0\) of the 3 given makes its loss NaN or inf'
  with pytest.raises(UserError, match=expected) as e:
    dash.direction(loss, variables['params'], batches, alpha=0.3)
  assert '\n' not in str(e.value)


def test_direction_of_finite_batches_is_unchanged():
  model, variables = _mlp()
  loss = _loss_for(model, variables['batch_stats'])
  batches = _batches(3)
  got = dash.direction(loss, variables['params'], batches, alpha=0.4)
  g = jax.tree.map(jnp.zeros_like, variables['params'])
  for b in batches:
    grad = jax.grad(loss)(variables['params'], b)
    g = jax.tree.map(lambda a, d: 0.6 * a - 0.4 * d, g, grad)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, g)


class _Net(nnx.Module):
  def __init__(self, rngs):
    self.fc = nnx.Linear(4, 6, rngs=rngs)
    self.bn = nnx.BatchNorm(6, rngs=rngs)
    self.head = nnx.Linear(6, 3, rngs=rngs)

  def __call__(self, x):
    return self.head(nnx.relu(self.bn(self.fc(x.reshape((x.shape[0], -1))))))


def _nnx_loss(model, batch):
  x, y = batch
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def test_apply_leaves_the_nnx_model_untouched_on_a_nan_input():
  model = _Net(nnx.Rngs(0))
  model.eval()
  before = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  with pytest.raises(UserError, match=r'^batch 0 \(counting from 0\) of the 2 given'):
    dash.apply(model, _nnx_loss, _batches(2, nan_at=0), lam=0.3)
  after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  jax.tree.map(np.testing.assert_array_equal, before, after)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(after))
  dash.apply(model, _nnx_loss, _batches(2), lam=0.3)  # finite batches: shrinks as before
  changed = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  assert not np.array_equal(before['fc']['kernel'], changed['fc']['kernel'])


# --------------------------------------------------------------- 5. SIGTERM saves once


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
  _wait_for(proc, 'run 1/1')
  proc.send_signal(signal.SIGTERM)
  time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGTERM)  # the group's copy
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err
  assert err == SAVED
  assert os.listdir(tmp_path / 'warm-sgd-seed0' / 'checkpoints')  # the save is there


# --------------------------------------------------------------- 6. the smaller items


@pytest.mark.slow
def test_config_file_with_an_argument_it_does_not_take_is_one_line(tmp_path):
  config = os.path.join(ROOT, 'configs', 'default.py')
  proc = subprocess.run([sys.executable, os.path.join(ROOT, 'launch.py'), '--config',
                         f'{config}:bogus', '--workdir', str(tmp_path / 'w')], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr == (f'error: config file {config}: its get_config() takes no argument, '
                         f"but --config {config}:bogus passes 'bogus' after the colon; drop "
                         f'":bogus" (pass --config {config})\n')
  assert not os.path.exists(tmp_path / 'w')


@pytest.mark.slow
@pytest.mark.parametrize('vmap', [False, True])
def test_a_non_finite_loss_names_the_run(tiny_config, tmp_path, vmap):
  import dash_jax
  tiny_config.learning_rate = 1e12
  tiny_config.seeds = '1,2'
  tiny_config.vmap_seeds = vmap
  with pytest.raises(UserError) as e:
    dash_jax.run(tiny_config, str(tmp_path), lambda *a: None)
  msg = str(e.value)
  assert msg.startswith('warm-sgd-seed1: non-finite training loss'), msg
  assert '\n' not in msg


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


def test_a_worker_reads_its_config_from_stdin(tmp_path, monkeypatch):
  """No .workers-*.pkl a killed parent could leave: the config comes on stdin
  (issue 30); a UserError goes to the parent through the error pipe."""
  import io
  import pickle

  from dash_jax import data, signals
  from dash_jax.launch import runs
  from configs.digits import get_config
  monkeypatch.setattr(sys, 'stdin', io.TextIOWrapper(io.BytesIO(pickle.dumps(get_config()))))
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


# --------------------------------------------------------------- 2. BatchNorm over one example


def test_batch_size_one_with_batchnorm_is_refused_before_compute(tiny_config, tmp_path):
  from dash_jax.launch import runs
  tiny_config.batch_size = 1
  with pytest.raises(UserError, match=r'^config.batch_size=1: BatchNorm in model mlp would '
                     r'normalise one value per channel') as e:
    runs.run(tiny_config, str(tmp_path))
  assert '\n' not in str(e.value)
  assert not os.path.exists(tmp_path / 'warm-sgd-seed0')  # nothing trained or written


def test_which_models_see_one_value_per_channel_for_one_example():
  assert models.batchnorm_values_per_channel(models.MLP(10, width=8), (8, 8, 1)) == 1
  assert models.batchnorm_values_per_channel(models.ResNet18(10), (32, 32, 3)) == 4
  assert models.batchnorm_values_per_channel(models.MLP(10, width=8, depth=1), (8, 8, 1)) is None


def test_only_a_last_batch_of_exactly_one_is_left_out():
  from dash_jax.batches import num_batches
  assert num_batches(129, 128, drop_single=True) == 1
  assert num_batches(129, 128) == 2  # no BatchNorm that needs it: kept
  for n in (1, 127, 128, 130, 255, 256, 62 * 20):  # every other n: as before
    assert num_batches(n, 128, drop_single=True) == -(-n // 128), n


@pytest.mark.slow
def test_a_last_batch_of_one_is_dropped_in_training(tiny_config, tmp_path):
  import dash_jax
  tiny_config.num_chunks = 2  # digits: 1258 training examples, chunks of 629
  tiny_config.batch_size = 628  # experiment 1: 629 = 628 + 1; experiment 2: 1258 = 2 * 628 + 2
  tiny_config.max_epoch = 2
  res = dash_jax.run(tiny_config, str(tmp_path), lambda *a: None)['warm-sgd-seed0']
  first, second = res['experiments']
  assert first['steps'] == first['epochs'] * 1  # the batch of one left out
  assert second['steps'] == second['epochs'] * 3  # 628 + 628 + 2: all kept


# --------------------------------------------------------------- 4. a checkpoint save that fails


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


# --------------------------------------------------------------- 3. writers that fail


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
