"""This project against PyTorch eager on the same CPU, side by side.

    python -m bench.bench            # full run, < 10 min on a 2-core CPU
    python -m bench.bench --quick    # smoke mode: tiny shapes, seconds

Every comparison alternates JAX and PyTorch repeats (so load from other
processes hits both alike) and reports medians. The PyTorch side
(bench/torch_ref.py) is written the way the original code does it. Prints a
markdown table and writes it, with the machine, to BENCHMARKS.md. Needs
torch (requirements-bench.txt); the JAX-side builders here do not.
"""
from __future__ import annotations

import argparse
import datetime
import inspect
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from dash_jax import models, optim, setup, train  # noqa: E402

LR, MOMENTUM, RHO = 0.01, 0.9, 0.1


# ------------------------------------------------------------- JAX side


class JaxBench:
  """A model's train state and device data, and the project's own compiled
  functions over them: one call of each method = one timed unit."""

  def __init__(self, model_name, input_shape, n, batch_size, width=512, sam=False,
               seed=0):
    from configs.digits import get_config
    config = get_config()
    config.width, config.model = width, model_name
    self.model = models.get(model_name).build(config, 10)
    self.mode = setup.epoch_mode(config.epoch_mode, config.model)  # what a launch would use
    self.n, self.batch_size = n, batch_size
    self.num_batches = math.ceil(n / batch_size)
    self.step_cfg = train.StepConfig(sam_rho=RHO if sam else None)
    self.state = train.create_state(self.model, optim.sgd(LR, MOMENTUM, 0.0),
                                    jax.random.PRNGKey(seed), input_shape, False)
    x, y = synthetic_data(n, input_shape, seed)
    mean = np.full((input_shape[-1],), x.mean(), np.float32)
    std = np.full((input_shape[-1],), x.std() + 1e-3, np.float32)
    self.data = jax.device_put({'train_x': x, 'train_y': y, 'mean': mean, 'std': std})
    self.buffer_idx = jnp.arange(n, dtype=jnp.int32)
    self.key = jax.random.PRNGKey(seed + 1)

  def _order(self):
    self.key, epoch_key = jax.random.split(self.key)
    order = train.epoch_order(epoch_key, self.buffer_idx, self.n, self.batch_size)
    return order, jax.random.fold_in(epoch_key, 1)

  def scan_epoch(self):
    """One epoch as train_until_converged runs it in mode 'scan' with one
    epoch a call (order, compiled loop, host sync of the metrics)."""
    return self.device_epochs(1)[0]

  def device_epochs(self, epochs):
    """`epochs` epochs as train_until_converged runs them in mode 'scan':
    one device_epochs call (orders, compiled loops, metrics) on a group of
    one seed, one host sync; the threshold is out of reach so every epoch runs."""
    if not hasattr(self, '_group_data'):
      self._group_data = (dict(self.data, train_y=self.data['train_y'][None]),
                          self.buffer_idx[None], jnp.ones((1,), bool))
    data, buffer_idx, active = self._group_data
    states, keys = jax.tree.map(lambda x: x[None], (self.state, self.key))
    states, keys, count, metrics, _ = train.device_epochs(
        states, keys, active, train.EpochSource(data, buffer_idx, self.n, self.num_batches),
        train.CallBounds(0, epochs, np.float32(2.0)),
        layout=train.Layout(self.step_cfg, self.batch_size))
    self.state, self.key = train.take_seed(states, 0), keys[0]
    assert int(count) == epochs
    return np.asarray(metrics)[:, 0]

  def loop_epoch(self):
    """One epoch as in mode 'loop' (one dispatched jitted step per batch)."""
    order, step_key = self._order()
    sums = jnp.zeros((2,), jnp.float32)
    for b in range(self.num_batches):
      sums = self._loop_step(order, b, step_key, sums)
    return np.asarray(sums)

  def _loop_step(self, order, b, step_key, sums):
    self.state, sums = train.loop_step(
        self.state, sums,
        train.Epoch(self.data, order, self.n, num_batches=self.num_batches, key=step_key), b,
        layout=train.Layout(self.step_cfg, self.batch_size))
    return sums

  def step(self):
    """One dispatched loop_step (batch 0 of a fixed order), waited for."""
    if not hasattr(self, '_fixed'):
      self._fixed = self._order()
    order, step_key = self._fixed
    return np.asarray(self._loop_step(order, 0, step_key, jnp.zeros((2,), jnp.float32)))

  def direction(self, chunk_size, chunks=None):
    """DASH's full-data direction over the first `chunks` chunk-size batches
    (default: all n examples); the chunk count is traced, so one chunk
    compiles the same program."""
    extra = ({'mode': self.mode} if 'mode' in
             inspect.signature(train.full_data_direction).parameters else {})
    g = train.full_data_direction(self.state, self.data, self.buffer_idx,
                                  chunks or self.n // chunk_size, 0.3,
                                  chunk_size=chunk_size, **extra)
    return jax.block_until_ready(g)


def synthetic_data(n, input_shape, seed):
  """uint8 pixels and labels (digits' 0..16 range for 8x8x1, else 0..255)."""
  rng = np.random.default_rng(seed)
  high = 17 if tuple(input_shape) == (8, 8, 1) else 256
  x = rng.integers(0, high, (n,) + tuple(input_shape)).astype(np.uint8)
  return x, rng.integers(0, 10, n).astype(np.int32)


def time_jax_mlp_step(batch_size=128, width=512, n=None):
  """Seconds of one compiled MLP train step (digits shape), after a warm-up
  call: the JAX side of benchmark a, runnable without torch."""
  b = JaxBench('mlp', (8, 8, 1), n or batch_size, batch_size, width=width)
  b.step()
  start = time.perf_counter()
  b.step()
  return time.perf_counter() - start


# --------------------------------------------------------- PyTorch side


class TorchBench:
  """The same model, data and unit of work in PyTorch eager."""

  def __init__(self, model_name, input_shape, n, batch_size, width=512, sam=False,
               seed=0):
    import torch
    from bench import torch_ref
    self.torch, self.ref = torch, torch_ref
    torch.manual_seed(seed)
    if model_name == 'mlp':
      self.model = torch_ref.MLP(int(np.prod(input_shape)), width, 10)
    else:
      self.model = torch_ref.ResNet18(10)
    self.opt = torch_ref.sgd(self.model, LR, MOMENTUM)
    x, y = synthetic_data(n, input_shape, seed)
    x = x.astype(np.float32)
    x = (x - x.mean()) / (x.std() + 1e-3)
    self.x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    self.y = torch.from_numpy(y.astype(np.int64))
    self.n, self.batch_size, self.sam = n, batch_size, sam
    self.generator = torch.Generator().manual_seed(seed)

  def _step(self, idx):
    fn = self.ref.sam_step if self.sam else self.ref.train_step
    return fn(self.model, self.opt, self.x[idx], self.y[idx])

  def epoch(self):
    """DataLoader(shuffle=True)-style: permutation, index, step per batch."""
    perm = self.torch.randperm(self.n, generator=self.generator)
    return [self._step(perm[s:s + self.batch_size]) for s in range(0, self.n, self.batch_size)]

  def step(self):
    return self._step(slice(0, self.batch_size))

  def direction(self, chunk_size, chunks=None):
    n = (chunks or self.n // chunk_size) * chunk_size
    return self.ref.direction(self.model, self.x[:n], self.y[:n], chunk_size, 0.3)


def setup_torch(threads):
  import torch
  torch.set_num_threads(threads)
  return torch.__version__


# ------------------------------------------------------------- timing


def interleaved(fns, repeats, warmup=1, warmups=None):
  """{name: [seconds]}: every fn warmed up (compiles; `warmups` can give a
  cheaper call that compiles the same), then run in turn."""
  for name, fn in fns.items():
    for _ in range(warmup):
      (warmups or {}).get(name, fn)()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return times


def med(ts, per=1):
  return statistics.median(ts) / per


def _fmt(v):
  return f'{v:.0f}' if v >= 100 else f'{v:.3g}'


class Table:
  def __init__(self):
    self.rows, self.notes = [], []

  def add(self, name, jax_s, torch_s, target, unit='ms', note=''):
    ratio = jax_s / torch_s
    met = '-' if target is None else ('yes' if ratio <= target else 'NO')
    show = lambda t: _fmt(t * 1e3 if unit == 'ms' else t) + f' {unit}'
    self.rows.append((name, show(jax_s), show(torch_s), f'{ratio:.2f}',
                      '-' if target is None else f'<= {target:.2g}', met))
    if note:
      self.notes.append(f'- {name}: {note}')
    print(f'  {name}: jax {show(jax_s)}, torch {show(torch_s)}, ratio {ratio:.2f}',
          flush=True)

  def markdown(self):
    lines = ['| benchmark | jax (median) | torch (median) | ratio jax/torch | target | met? |',
             '|---|---|---|---|---|---|']
    lines += ['| ' + ' | '.join(r) + ' |' for r in self.rows]
    return '\n'.join(lines + [''] + self.notes)


# ---------------------------------------------------------- benchmarks


def bench_mlp(table, sizes, repeats):
  """a. The default config's MLP: digits 8x8x1, 64-512-BN-ReLU-10."""
  n, batch = sizes['mlp_n'], sizes['batch']
  jb = JaxBench('mlp', (8, 8, 1), n, batch, width=sizes['width'])
  tb = TorchBench('mlp', (8, 8, 1), n, batch, width=sizes['width'])
  nb, epochs = jb.num_batches, 10
  torch_epochs = lambda: [tb.epoch() for _ in range(epochs)]
  t = interleaved({'device': lambda: jb.device_epochs(epochs), 'torch_epochs': torch_epochs,
                   'scan': jb.scan_epoch, 'torch_epoch': tb.epoch}, repeats * 4)
  table.add(f'a. MLP step, as trained ({epochs} epochs of {n} on the device, per step)',
            med(t['device'], epochs * nb), med(t['torch_epochs'], epochs * nb), 0.5,
            note=f'JAX: one `device_epochs` call ({epochs} epochs of {nb} batches: orders, '
                 f'compiled loops, metrics, one host sync) / {epochs * nb}; torch: '
                 f'{epochs} epochs of index-batched steps / {epochs * nb}.')
  table.add(f'a. MLP step, one epoch a call (device_epochs of 1 epoch, {n}, per step)',
            med(t['scan'], nb), med(t['torch_epoch'], nb), None,
            note=f'JAX: one one-epoch `device_epochs` call ({nb} batches, order + compiled loop + '
                 f'metrics sync) / {nb}, as with diagnostics on; torch: one epoch / {nb}.')
  t = interleaved({'step': jb.step, 'torch_step': tb.step}, repeats * 10)
  table.add('a. MLP step, one dispatched jitted step (loop_step)', med(t['step']),
            med(t['torch_step']), None,
            note='dispatch-bound; the project only uses it for convnets on CPU.')


def bench_resnet(table, sizes, repeats, sam):
  """b/c. ResNet-18 train (or SAM) step, dispatched as the project does on CPU."""
  shape, batch = sizes['image'], sizes['batch']
  jb = JaxBench('resnet18', shape, batch, batch, sam=sam)
  tb = TorchBench('resnet18', shape, batch, batch, sam=sam)
  t = interleaved({'jax': jb.step, 'torch': tb.step}, repeats)
  name = 'c. ResNet-18 SAM step' if sam else 'b. ResNet-18 train step'
  table.add(f'{name} (batch {batch}, {shape[0]}x{shape[1]})', med(t['jax']),
            med(t['torch']), 1.0)


def bench_direction(table, sizes, repeats):
  """d. DASH's direction pass on ResNet-18 vs one epoch over the same data."""
  n, chunk, batch, shape = sizes['dir_n'], sizes['dir_chunk'], sizes['batch'], sizes['image']
  jb = JaxBench('resnet18', shape, n, batch)
  tb = TorchBench('resnet18', shape, n, batch)
  t = interleaved({'dir': lambda: jb.direction(chunk), 'epoch': jb.loop_epoch,
                   'tdir': lambda: tb.direction(chunk)}, repeats,
                  warmups={'dir': lambda: jb.direction(chunk, 1), 'epoch': jb.step,
                           'tdir': lambda: tb.direction(chunk, 1)})
  table.add(f'd. DASH direction, ResNet-18, {n} images (jax) vs one jax epoch',
            med(t['dir']), med(t['epoch']), 1.0, unit='s',
            note=f'"torch" column here is the project\'s own training epoch '
                 f'({jb.num_batches} loop_steps).')
  table.add(f'd. DASH direction, ResNet-18, {n} images, vs torch', med(t['dir']),
            med(t['tdir']), None, unit='s')


def jax_protocol(quick, workdir, compile_cache=''):
  """e, JAX side: dash_jax.run on the default config (one dash run), with
  its compiled programs cached in `compile_cache` ('' = no disk cache)."""
  import contextlib
  import io
  import dash_jax
  config = protocol_config(quick)
  config.compile_cache_dir = compile_cache
  start = time.perf_counter()
  with contextlib.redirect_stdout(io.StringIO()):  # per-experiment lines, table
    out = dash_jax.run(config, workdir)
  wall = time.perf_counter() - start
  res = out['dash-sgd-seed0']
  return {'wall_s': wall, 'steps': res['summary']['steps_total'],
          'experiments_s': sum(e['wall_s'] for e in res['experiments']),
          'test_acc_last': res['summary']['test_acc_last']}


def protocol_config(quick):
  from configs.digits import get_config
  config = get_config()
  config.train_type, config.seeds = 'dash', '0'
  config.progress = config.tensorboard = False
  if quick:
    config.num_chunks, config.max_epoch, config.width = 2, 2, 32
  return config


def torch_protocol(quick, loader='dataloader'):
  """e, PyTorch side: the same data (project's loader, label noise and chunk
  split), model, optimizer, convergence rule and DASH. loader='dataloader'
  batches as the original code does (a DataLoader over a per-image
  ToTensor+Normalize dataset); 'tensor' indexes whole tensors (faster than
  the original)."""
  import torch
  from bench import torch_ref
  from dash_jax import data as data_lib
  config = protocol_config(quick)
  start = time.perf_counter()
  ds = data_lib.load(config)
  mean, std = setup.normalisation(config.normalize, config.model, ds)
  labels = data_lib.noisy_labels(ds.train_y, config.label_noise, ds.num_classes, 0)
  buffer, _ = setup.chunk_buffer(len(labels), config.num_chunks, 0)
  prep = lambda x: torch.from_numpy(((x.astype(np.float32) - mean) / std).reshape(len(x), -1))
  torch.manual_seed(0)
  model = torch_ref.MLP(int(np.prod(ds.input_shape)), config.width, ds.num_classes)
  res = torch_ref.dash_protocol(
      model, prep(ds.train_x[buffer]), torch.from_numpy(labels[buffer].astype(np.int64)),
      prep(ds.test_x), torch.from_numpy(ds.test_y.astype(np.int64)), config.num_chunks,
      batch_size=config.batch_size, max_epoch=config.max_epoch,
      converge_acc=config.converge_acc, lr=config.learning_rate,
      momentum=config.momentum, lam=config.dash_lambda, alpha=config.dash_alpha, seed=0,
      dataset=None if loader == 'tensor' else torch_ref.PerSampleImages(
          ds.train_x[buffer], labels[buffer], mean, std))
  return {'wall_s': time.perf_counter() - start, 'steps': sum(s for s, _ in res),
          'test_acc_last': res[-1][1]}


def bench_protocol(table, quick, repeats):
  """e. The default protocol end to end, each side in a fresh process (JAX's
  compiles and both sides' data load, tfds importing TensorFlow, included,
  as a user runs it)."""
  def child(*args):
    cmd = [sys.executable, '-m', 'bench.bench', *args] + (['--quick'] if quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])

  jax_runs, jax_warm, torch_runs, torch_fast = [], [], [], []
  with tempfile.TemporaryDirectory() as cache:
    for _ in range(repeats):  # interleaved; a new compile cache for each cold run
      with tempfile.TemporaryDirectory() as workdir, tempfile.TemporaryDirectory() as fresh:
        jax_runs.append(child('--protocol-jax', workdir, '--compile-cache', fresh))
      with tempfile.TemporaryDirectory() as workdir:
        jax_warm.append(child('--protocol-jax', workdir, '--compile-cache', cache))
      torch_runs.append(child('--protocol-torch', 'dataloader'))
      torch_fast.append(child('--protocol-torch', 'tensor'))
  wall = lambda runs: statistics.median(r['wall_s'] for r in runs)
  steps = lambda runs: '/'.join(str(r['steps']) for r in runs)
  acc = lambda runs: '/'.join(f"{r['test_acc_last']:.3f}" for r in runs)
  name = 'e. default protocol end to end (digits, dash, seed 0, all chunks)'
  table.add(f'{name}, vs the original\'s DataLoader', wall(jax_runs), wall(torch_runs),
            1 / 3, unit='s',
            note=f'steps taken jax {steps(jax_runs)}, torch {steps(torch_runs)}; '
                 f'last test acc jax {acc(jax_runs)}, torch {acc(torch_runs)}; each side '
                 f'in a fresh process. JAX: dash_jax.run with an empty compile cache (data '
                 f'load, compiles, checkpoints, report included; its experiments alone, as '
                 f'results.json times them: '
                 f'{statistics.median(r["experiments_s"] for r in jax_runs):.2f} s). Torch: '
                 f'the same data load, then batches as the original code makes them: a '
                 f'DataLoader (num_workers=0) over a dataset applying ToTensor+Normalize '
                 f'per image.')
  table.add(f'{name}, vs torch indexing tensors', wall(jax_runs), wall(torch_fast), None,
            unit='s', note=f'torch batches by indexing whole tensors, faster than the '
                           f'original code (steps {steps(torch_fast)}).')
  table.add(f'{name}, compile cache warm, vs the original\'s DataLoader', wall(jax_warm),
            wall(torch_runs), 1 / 3, unit='s',
            note='JAX relaunched with its compiled programs on disk '
                 '(config.compile_cache_dir, on by default), as every launch after the first.')
  return jax_runs, torch_runs


SIZES = {
    'full': dict(batch=128, width=512, mlp_n=1258, image=(32, 32, 3), dir_n=2560,
                 dir_chunk=128),
    'quick': dict(batch=8, width=32, mlp_n=20, image=(16, 16, 3), dir_n=16, dir_chunk=8),
}


def machine():
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
  except (OSError, StopIteration):
    pass
  import torch
  return (f'{cpu}, {os.cpu_count()} cores; jax {jax.__version__} '
          f'({jax.default_backend()}), torch {torch.__version__} '
          f'({torch.get_num_threads()} threads); {platform.python_version()}; '
          f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='smoke mode: tiny shapes')
  parser.add_argument('--repeats', type=int, default=None)
  parser.add_argument('--only', default='abcde', help='which benchmarks, e.g. "ab"')
  parser.add_argument('--out', default=os.path.join(ROOT, 'BENCHMARKS.md'))
  parser.add_argument('--protocol-jax', metavar='WORKDIR', help=argparse.SUPPRESS)
  parser.add_argument('--protocol-torch', choices=('dataloader', 'tensor'),
                      help=argparse.SUPPRESS)
  parser.add_argument('--compile-cache', default='', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.protocol_jax:  # child processes of benchmark e
    print(json.dumps(jax_protocol(args.quick, args.protocol_jax, args.compile_cache)))
    return None
  if args.protocol_torch:
    setup_torch(os.cpu_count())
    print(json.dumps(torch_protocol(args.quick, args.protocol_torch)))
    return None
  setup_torch(os.cpu_count())
  sizes = SIZES['quick' if args.quick else 'full']
  repeats = args.repeats or (1 if args.quick else 7)
  table, start = Table(), time.perf_counter()
  if 'a' in args.only:
    bench_mlp(table, sizes, repeats)
  if 'b' in args.only:
    bench_resnet(table, sizes, repeats, sam=False)
  if 'c' in args.only:
    bench_resnet(table, sizes, max(1, repeats - 2), sam=True)
  if 'd' in args.only:
    bench_direction(table, sizes, 1 if args.quick else 2)
  if 'e' in args.only:
    bench_protocol(table, args.quick, 1 if args.quick else 3)
  command = 'python -m bench.bench' + (' --quick' if args.quick else '') + (
      f' --only {args.only}' if args.only != 'abcde' else '')
  text = (f'# Benchmarks: dash-jax vs PyTorch eager\n\n'
          f'Machine: {machine()}\n\nCommand: `{command}` '
          f'({time.perf_counter() - start:.0f} s)\n\n{table.markdown()}\n')
  print('\n' + text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  return table


if __name__ == '__main__':
  main()
