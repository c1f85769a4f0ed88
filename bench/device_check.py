"""One run on a GPU machine that says how dash-jax does there.

    bash bench/device_check.sh                 # the GPU run (< 8 min on an H200)
    bash bench/device_check.sh --smoke --out D # toy sizes on CPU (CI)
    python -m bench.device_check --smoke       # the same, from the repo root

Runs the GPU-relevant tests, times ResNet-18 (CIFAR size) SGD and SAM steps
in float32 and bfloat16, per-step ('loop') and compiled-epoch ('scan', and
'scan-block': a fixed-length block of steps a host round trip),
vmapped seeds and separate processes sharing the device, the DASH direction
pass and evaluation, the PyTorch eager step on the same device, and a short
protocol end to end on random CIFAR-shaped data; projects the paper's
CIFAR-10 DASH and cold runs; writes one markdown table to OUT/device_check.md.
Every section has a share of a wall-clock budget: one that would start past
it is reported as skipped, so the table always comes back.

Every call into dash_jax is in the "library" functions just below, so an
API change is fixed in one place.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np

import dash_jax
from dash_jax import models, optim, setup, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ------------------------------------------------------------------ library


def make_model(name: str, dtype: str, width: int):
  """The model as a launch builds it: this backend's kernels, `dtype` as
  config.precision ('float32' or 'bfloat16')."""
  from configs.digits import get_config
  config = get_config()
  config.model, config.width, config.precision = name, width, dtype
  return models.get(name).build(config, 10)


_TX = optim.sgd(0.01)  # one object: states of several seeds must stack


def make_state(model, input_shape, seed=0):
  return train.create_state(model, _TX, jax.random.PRNGKey(seed), input_shape,
                            keep_init=False)


def step_config(sam: bool):
  return train.StepConfig(sam_rho=0.1 if sam else None)


def compile_loop_step(state, data, order, n, step_cfg, batch):
  """(compiled step, its FLOPs per call from XLA's cost analysis or None)."""
  sums = jnp.zeros((2,), jnp.float32)
  compiled = train.loop_step.lower(state, sums, train.Epoch(data, order, n), 0,
                                   layout=train.Layout(step_cfg, batch)).compile()
  flops = None
  with contextlib.suppress(Exception):  # cost analysis is best effort
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get('flops', 0.0)) or None
  return compiled, flops


def loop_epoch(compiled, state, data, order, n, steps):
  sums = jnp.zeros((2,), jnp.float32)
  for b in range(steps):
    state, sums = compiled(state, sums, train.Epoch(data, order, n), b)
  return state, sums


def scan_block() -> int:
  """Steps per host round trip of a compiled epoch on this backend."""
  return 1 if jax.default_backend() == 'cpu' else setup.SCAN_BLOCK_ACCELERATOR


def _one_epoch(states, keys, data, buffer_idx, n, steps, step_cfg, batch, block):
  """One device_epochs call of one epoch (the threshold is out of reach)."""
  active = jnp.ones((keys.shape[0],), bool)
  states, keys, _, metrics, _ = train.device_epochs(
      states, keys, active, train.EpochSource(data, buffer_idx, n, steps),
      train.CallBounds(0, 1, np.float32(2.0)), layout=train.Layout(step_cfg, batch, block))
  return states, keys, metrics[0]


def scan_epoch(state, data, n, steps, step_cfg, batch, block):
  """One epoch as a launch runs it in mode 'scan': device_epochs on a group
  of one seed."""
  states, keys = jax.tree.map(lambda x: x[None], (state, jax.random.PRNGKey(1)))
  group_data = dict(data, train_y=data['train_y'][None])
  buffer_idx = jnp.arange(n, dtype=jnp.int32)[None]
  states, _, sums = _one_epoch(states, keys, group_data, buffer_idx, n, steps, step_cfg,
                               batch, block)
  return train.take_seed(states, 0), sums[0]


def seeds_epoch(states, keys, data, buffer_idx, n, steps, step_cfg, batch):
  """One epoch of S seeds stacked on axis 0 as one program."""
  return _one_epoch(states, keys, data, buffer_idx, n, steps, step_cfg, batch,
                    scan_block())


def direction(state, data, buffer_idx, num_chunks, chunk_size):
  return train.full_data_direction(state, data, buffer_idx, num_chunks, 0.3,
                                   chunk_size=chunk_size, mode=epoch_mode())


def evaluate(state, x, y, mean, std, batch):
  return train.evaluate(state, x, y, mean, std, batch_size=batch)


def epoch_mode() -> str:
  """What a launch picks for ResNet-18 on this backend (setup.epoch_mode)."""
  from configs.digits import get_config
  config = get_config()
  config.model = 'resnet18'
  return setup.epoch_mode(config.epoch_mode, config.model)


def run_protocol(overrides: dict, workdir: str) -> dict:
  """dash_jax.run on configs/digits.py with `overrides`; its log is kept
  out of the table (returned under '_log')."""
  from configs.digits import get_config  # run from the repo root (python -m)
  config = get_config()
  for k, v in overrides.items():
    config[k] = v
  log = io.StringIO()
  with contextlib.redirect_stdout(log):
    results = dash_jax.run(config, workdir)
  return {'_log': log.getvalue(), **results}


# ------------------------------------------------------------- constants

# Dense (no sparsity) tensor-core peaks, TFLOP/s, by jax device_kind:
# (bfloat16, TF32). XLA runs float32 convolutions and matmuls as TF32 there.
PEAK_TFLOPS = {
    'NVIDIA H200': (989.0, 494.7),
    'NVIDIA H100 80GB HBM3': (989.0, 494.7),
    'NVIDIA H100 SXM5 80GB': (989.0, 494.7),
}
# The paper's CIFAR-10 SGD mean steps per experiment over 50 experiments.
PAPER_STEPS = {'dash': 3454, 'cold': 2916}
PAPER_EXPERIMENTS, PAPER_CHUNK, PAPER_TEST = 50, 1000, 10_000

GPU_TESTS = ('tests/test_train.py', 'tests/test_parallel.py', 'tests/test_models.py',
             'tests/test_dash.py', 'tests/test_seeds.py', 'tests/test_interventions.py',
             'tests/test_conv.py', 'tests/test_batchnorm.py', 'tests/test_sota.py')
SMOKE_TESTS = ('tests/test_optim.py',)


@dataclasses.dataclass(frozen=True)
class Sizes:
  model: str
  width: int
  image: tuple
  batch: int
  steps: int  # timed steps per epoch
  repeats: int
  seeds: tuple
  processes: int
  dir_chunks: int
  dir_chunk: int
  eval_n: int
  eval_batch: int
  protocol: dict
  dtypes: tuple = ('float32', 'bfloat16')  # of the step rows measured; the others noted


FULL = Sizes('resnet18', 0, (32, 32, 3), 128, 30, 3, (1, 2, 4, 8), 2, 10, 1000,
             10_000, 256,
             {'model': 'resnet18', 'num_train': 5000, 'num_chunks': 10, 'max_epoch': 2})
# CI's check that every row comes out: the bfloat16 steps (the same code as
# float32's) and a second process add compiles and minutes, and nothing the
# rows' code does not already run; tests/test_precision.py covers bfloat16.
SMOKE = Sizes('mlp', 16, (32, 32, 3), 8, 2, 1, (1, 2), 1, 2, 8, 64, 32,
              {'model': 'mlp', 'width': 16, 'num_train': 64, 'num_chunks': 2,
               'max_epoch': 1}, dtypes=('float32',))
NOT_IN_SMOKE = 'not measured in --smoke (the GPU run measures it)'

# Epoch modes timed: a jitted step a batch from Python; a compiled epoch with
# one host round trip a step ('scan', block 1); and with a fixed-length block
# of steps a round trip ('scan-block', setup.SCAN_BLOCK_ACCELERATOR; 1 on CPU).
MODES = ('loop', 'scan', 'scan-block')
# Row names, in table order; tests/test_device_check.py checks each is there.
STEP_ROWS = [f'ResNet-18 {opt} step, {dtype}, {mode}'
             for opt in ('SGD', 'SAM') for dtype in ('float32', 'bfloat16')
             for mode in MODES]


def fastest(by_mode: dict):
  """The fastest measured epoch mode's row, or None."""
  timed = [r for r in by_mode.values() if r and r.ms]
  return min(timed, key=lambda r: r.ms) if timed else None


def row_names(sizes: Sizes) -> list[str]:
  return (['tests'] + STEP_ROWS
          + [f'vmapped seeds S={s}, SGD float32' for s in sizes.seeds]
          + [f'separate processes P={sizes.processes}, SGD float32',
             'DASH direction pass', 'evaluation',
             'PyTorch eager SGD step, float32', 'PyTorch eager SAM step, float32',
             'protocol cold-sgd', 'protocol dash-sgd',
             'projection: paper CIFAR-10 DASH-SGD', 'projection: paper CIFAR-10 cold-SGD'])


# ------------------------------------------------------------- measuring


@dataclasses.dataclass
class Row:
  name: str
  ms: float | None = None
  images_s: float | None = None
  tflops: float | None = None
  share: float | None = None
  notes: str = ''
  gflop: float | None = None  # per step (XLA count); shown in notes

  def markdown(self) -> str:
    def f(v, fmt):
      return 'n/a' if v is None else format(v, fmt)
    return (f'| {self.name} | {f(self.ms, ".2f")} | {f(self.images_s, ",.0f")} | '
            f'{f(self.tflops, ".1f")} | '
            f'{"n/a" if self.share is None else f"{self.share:.1f}%"} | {self.notes} |')


def random_data(n, image, num_seeds=0, seed=0):
  """Device arrays shaped as a launch's `data` (labels stacked per seed
  when num_seeds > 0)."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 10, (max(num_seeds, 1), n), dtype=np.int32)
  return jax.device_put({
      'train_x': rng.integers(0, 256, (n, *image), dtype=np.uint8),
      'train_y': y if num_seeds else y[0],
      'mean': np.full((image[-1],), 127.5, np.float32),
      'std': np.full((image[-1],), 73.9, np.float32)})


def block(tree):
  jax.block_until_ready(tree)
  return tree


def peak_for(dtype):
  kind = getattr(jax.devices()[0], 'device_kind', '')
  peaks = PEAK_TFLOPS.get(kind)
  return None if peaks is None else peaks[0 if dtype == 'bfloat16' else 1]


def time_steps(sizes, opt, dtype, modes=MODES):
  """{mode: Row} for one optimizer and dtype."""
  model = make_model(sizes.model, dtype, sizes.width)
  step_cfg = step_config(opt == 'SAM')
  n = sizes.steps * sizes.batch
  data = random_data(n, sizes.image)
  order = train.epoch_order(jax.random.PRNGKey(1), jnp.arange(n, dtype=jnp.int32), n,
                            sizes.batch)
  state = make_state(model, sizes.image)
  compiled, flops = None, None
  if 'loop' in modes:
    compiled, flops = compile_loop_step(state, data, order, n, step_cfg, sizes.batch)
  peak = peak_for(dtype)
  out = {}
  for mode in modes:
    def epoch(state, mode=mode):
      if mode == 'loop':
        return block(loop_epoch(compiled, state, data, order, n, sizes.steps))[0]
      return block(scan_epoch(state, data, n, sizes.steps, step_cfg, sizes.batch,
                              1 if mode == 'scan' else scan_block()))[0]
    start = time.perf_counter()
    state = epoch(state)  # compiles (scan)
    first = time.perf_counter() - start
    state = epoch(state)  # again: committed inputs can mean one more compile
    times = []
    for _ in range(sizes.repeats):
      start = time.perf_counter()
      state = epoch(state)
      times.append((time.perf_counter() - start) / sizes.steps)
    sec = statistics.median(times)
    tflops = flops / sec / 1e12 if flops else None
    out[mode] = Row('', sec * 1e3, sizes.batch / sec, tflops,
                    100 * tflops / peak if (tflops and peak) else None,
                    f'{"n/a" if flops is None else f"{flops / 1e9:.1f}"} GFLOP/step; '
                    f'first epoch (compile) {first:.1f} s', flops and flops / 1e9)
  return out


def time_seeds(sizes, num_seeds, flops_per_step):
  model = make_model(sizes.model, 'float32', sizes.width)
  step_cfg = step_config(False)
  n = sizes.steps * sizes.batch
  data = random_data(n, sizes.image, num_seeds=num_seeds)
  states = [make_state(model, sizes.image, seed) for seed in range(num_seeds)]
  states = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
  keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
  buffer_idx = jnp.tile(jnp.arange(n, dtype=jnp.int32), (num_seeds, 1))
  for _ in range(2):  # compile; then again, as time_steps does
    states, keys, _ = block(seeds_epoch(states, keys, data, buffer_idx, n, sizes.steps,
                                        step_cfg, sizes.batch))
  times = []
  for _ in range(sizes.repeats):
    start = time.perf_counter()
    states, keys, _ = block(seeds_epoch(states, keys, data, buffer_idx, n,
                                        sizes.steps, step_cfg, sizes.batch))
    times.append((time.perf_counter() - start) / sizes.steps)
  sec = statistics.median(times)
  tflops = flops_per_step * num_seeds / sec / 1e12 if flops_per_step else None
  peak = peak_for('float32')
  return Row('', sec * 1e3, num_seeds * sizes.batch / sec, tflops,
             100 * tflops / peak if (tflops and peak) else None,
             'ms per step of all S seeds together')


def worker(sizes_name):
  """One of the separate processes: SGD float32 scan epochs; prints JSON."""
  sizes = SMOKE if sizes_name == 'smoke' else FULL
  row = time_steps(sizes, 'SGD', 'float32', modes=('scan-block',))['scan-block']
  print(json.dumps({'ms': row.ms, 'images_s': row.images_s}))


def time_processes(sizes, smoke):
  """P processes each timing its own SGD step on the same device at once."""
  env = dict(os.environ, XLA_PYTHON_CLIENT_MEM_FRACTION=f'{0.8 / sizes.processes:.2f}',
             XLA_PYTHON_CLIENT_PREALLOCATE='false')
  cmd = [sys.executable, '-m', 'bench.device_check', '--worker',
         'smoke' if smoke else 'full']
  start = time.perf_counter()
  procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for _ in range(sizes.processes)]
  outs = [p.communicate(timeout=600) for p in procs]
  wall = time.perf_counter() - start
  if any(p.returncode for p in procs):
    err = next(o[1] for p, o in zip(procs, outs) if p.returncode).strip().splitlines()
    return Row('', notes=f'failed: {err[-1] if err else "no output"}')
  res = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
  return Row('', statistics.mean(r['ms'] for r in res), sum(r['images_s'] for r in res),
             notes=f'aggregate of {sizes.processes} processes timed at once '
                   f'(they overlap, not exactly); {wall:.0f} s with startup and compiles')


def time_direction_and_eval(sizes):
  model = make_model(sizes.model, 'float32', sizes.width)
  state = make_state(model, sizes.image)
  n = sizes.dir_chunks * sizes.dir_chunk
  data = random_data(n, sizes.image)
  buffer_idx = jnp.arange(n, dtype=jnp.int32)
  block(direction(state, data, buffer_idx, sizes.dir_chunks, sizes.dir_chunk))
  times = []
  for _ in range(sizes.repeats):
    start = time.perf_counter()
    block(direction(state, data, buffer_idx, sizes.dir_chunks, sizes.dir_chunk))
    times.append(time.perf_counter() - start)
  dir_s = statistics.median(times)
  test = random_data(sizes.eval_n, sizes.image, seed=1)
  args = (state, test['train_x'], test['train_y'], test['mean'], test['std'],
          sizes.eval_batch)
  block(evaluate(*args))
  times = []
  for _ in range(sizes.repeats):
    start = time.perf_counter()
    block(evaluate(*args))
    times.append(time.perf_counter() - start)
  eval_s = statistics.median(times)
  return (Row('', dir_s / sizes.dir_chunks * 1e3, n / dir_s,
              notes=f'ms per chunk of {sizes.dir_chunk}; {sizes.dir_chunks} chunks, '
                    f'mode {epoch_mode()}'),
          Row('', eval_s * 1e3, sizes.eval_n / eval_s,
              notes=f'ms for {sizes.eval_n:,} test images, batch {sizes.eval_batch}'))


def time_torch(sizes, smoke):
  """PyTorch eager (bench/torch_ref.py, float32, as the original code)."""
  import torch

  from bench import torch_ref
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  if smoke:
    model = torch_ref.MLP(int(np.prod(sizes.image)), sizes.width, 10).to(device)
  else:
    model = torch_ref.ResNet18(10).to(device)
  opt = torch_ref.sgd(model)
  x = torch.randn(sizes.batch, sizes.image[2], *sizes.image[:2], device=device)
  y = torch.randint(0, 10, (sizes.batch,), device=device)
  rows = []
  for step in (torch_ref.train_step, torch_ref.sam_step):
    step(model, opt, x, y)  # warm-up (cuDNN autotuning)
    times = []
    for _ in range(sizes.repeats):
      start = time.perf_counter()
      for _ in range(sizes.steps):
        step(model, opt, x, y)  # .item() inside: one host sync a step
      if device == 'cuda':
        torch.cuda.synchronize()
      times.append((time.perf_counter() - start) / sizes.steps)
    sec = statistics.median(times)
    rows.append(Row('', sec * 1e3, sizes.batch / sec,
                    notes=f'torch {torch.__version__} on {device}'))
  return rows


def run_short_protocol(sizes, workdir):
  """cold and dash (SGD) through dash_jax.run on random_cifar_shape; one
  row each: all-in wall time per step."""
  overrides = dict(sizes.protocol, dataset='random_cifar_shape', train_type='cold,dash',
                   optimizer='sgd', seeds='0', label_noise=0.0, progress=False,
                   tensorboard=False, compile_cache_dir='')
  start = time.perf_counter()
  results = run_protocol(overrides, workdir)
  wall = time.perf_counter() - start
  rows = {}
  for tt in ('cold', 'dash'):
    exps = results[f'{tt}-sgd-seed0']['experiments']
    steps = sum(e['steps'] for e in exps)
    run_s = sum(e['wall_s'] for e in exps)
    compile_s = sum(e.get('compile_s', 0.0) for e in exps)
    images = sum(e['epochs'] * e['num_train'] for e in exps)
    rows[tt] = Row('', run_s / steps * 1e3, images / run_s,
                   notes=f'{len(exps)} experiments, {steps} steps, {run_s:.1f} s in '
                         f'experiments (compiles {compile_s:.1f} s); launch '
                         f'{wall:.1f} s for both runs')
  return rows


def projection(kind, step_ms, dir_ms_per_image, eval_ms_per_image):
  """The paper's 50-experiment CIFAR-10 run at the measured speeds."""
  steps = PAPER_EXPERIMENTS * PAPER_STEPS[kind]
  step_h = steps * step_ms / 3.6e6
  eval_h = PAPER_EXPERIMENTS * PAPER_TEST * eval_ms_per_image / 3.6e6
  dir_images = sum(range(2, PAPER_EXPERIMENTS + 1)) * PAPER_CHUNK if kind == 'dash' else 0
  dir_h = dir_images * dir_ms_per_image / 3.6e6
  total = step_h + eval_h + dir_h
  return Row('', notes=f'{total:.2f} h: {steps:,} steps {step_h:.2f} h'
             + (f' + direction passes ({dir_images:,} images) {dir_h:.2f} h'
                if kind == 'dash' else '')
             + f' + evaluation {eval_h:.2f} h; one seed, SGD float32 scan')


def run_tests(files, out_dir, timeout_s):
  """pytest on `files` in a fresh process at full matmul precision (tests
  compare code paths to ~1e-6; TF32 would fail them for the wrong reason).
  Stopped after `timeout_s`: then counted from its progress dots."""
  xml = os.path.join(out_dir, 'device_check_tests.xml')
  env = dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION='highest')
  if jax.default_backend() != 'cpu':
    env['JAX_PLATFORMS'] = ''  # set, so conftest keeps it; empty = JAX picks the GPU
  start = time.perf_counter()
  # -o addopts=: one process (pytest.ini's -n auto would start a worker per core on
  # one GPU, and needs pytest-xdist, which a GPU machine may not have).
  proc = subprocess.Popen([sys.executable, '-m', 'pytest', '-q', '-o', 'addopts=',
                           '-p', 'no:cacheprovider', f'--junitxml={xml}', *files],
                          cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    log, _ = proc.communicate(timeout=timeout_s)
    stopped = False
  except subprocess.TimeoutExpired:
    proc.kill()
    log, _ = proc.communicate()
    stopped = True
  wall = time.perf_counter() - start
  with open(os.path.join(out_dir, 'device_check_tests.log'), 'w') as f:
    f.write(log)
  where = ', '.join(os.path.basename(f) for f in files)
  if stopped or not os.path.exists(xml):
    dots = ''.join(re.findall(r'^([.FEsx]+)(?:\s+\[\s*\d+%\])?$', log, re.MULTILINE))
    counts = {c: dots.count(c) for c in '.FEs'}
    state = f'stopped after {timeout_s:.0f} s' if stopped else 'no report'
    return Row('tests', notes=f'{state}: {counts["."]} passed, {counts["F"]} failed, '
               f'{counts["E"]} errors, {counts["s"]} skipped so far ({where})')
  suite = ET.parse(xml).getroot()
  suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
  total, failed = int(suite.get('tests')), int(suite.get('failures'))
  errors, skipped = int(suite.get('errors')), int(suite.get('skipped'))
  failing = [f'{c.get("classname")}.{c.get("name")}' for c in suite.iter('testcase')
             if c.find('failure') is not None or c.find('error') is not None]
  notes = (f'{total - failed - errors - skipped} passed, {failed} failed, {errors} errors, '
           f'{skipped} skipped in {wall:.0f} s ({where})')
  if failing:
    notes += '; failing: ' + ', '.join(failing[:8]) + (' ...' if len(failing) > 8 else '')
  return Row('tests', notes=notes)


# ------------------------------------------------------------------ main


class Budget:
  """Wall-clock budget: sections that would start past it are skipped."""

  def __init__(self, seconds, reserve_s=0.0):
    self.end = time.perf_counter() + seconds
    self.reserve_s = reserve_s  # kept for the tests, which run last

  def left(self):
    return self.end - time.perf_counter() - self.reserve_s


def section(rows, names, budget, need_s, fn):
  """Fill rows[names] from fn() (a Row or list of Rows), or mark them
  skipped/failed; never raises, so the table always comes out."""
  names = [names] if isinstance(names, str) else names
  if budget.left() < need_s:
    for n in names:
      rows[n] = Row(n, notes=f'skipped: {budget.left():.0f} s of the budget left')
    return
  start = time.perf_counter()
  try:
    got = fn()
  except Exception as e:  # noqa: BLE001 - one failed section must not lose the rest
    msg = ' '.join(f'{type(e).__name__}: {e}'.split())[:300]
    for n in names:
      rows[n] = Row(n, notes=f'failed: {msg}')
    print(f'[device_check] {names[0]}: failed after {time.perf_counter() - start:.0f} s: '
          f'{msg}', file=sys.stderr)
    return
  finally:
    print(f'[device_check] {names[0]}{" ..." if len(names) > 1 else ""}: '
          f'{time.perf_counter() - start:.1f} s', file=sys.stderr)
  got = got if isinstance(got, (list, tuple)) else [got]
  for n, row in zip(names, got):
    rows[n] = dataclasses.replace(row, name=n)


def versions():
  out = {'python': platform.python_version(), 'jax': jax.__version__}
  for mod in ('jaxlib', 'flax', 'optax', 'torch'):
    with contextlib.suppress(Exception):
      out[mod] = __import__(mod).__version__
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--smoke', action='store_true',
                      help='toy sizes (MLP), CPU, well under a minute on an idle machine')
  parser.add_argument('--out', default=os.environ.get('OUT', ''),
                      help='folder for device_check.md (default $OUT, else bench/)')
  parser.add_argument('--budget-s', type=float, default=0,
                      help='wall-clock budget (default 420; smoke 900: CI runs every row)')
  parser.add_argument('--tests', default='', help='comma-separated test files '
                      '(default: the GPU-relevant ones; "none" skips)')
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    return worker(args.worker)
  sizes = SMOKE if args.smoke else FULL
  out_dir = args.out or os.path.join(ROOT, 'bench')
  os.makedirs(out_dir, exist_ok=True)
  files = ([] if args.tests == 'none' else
           [f for f in args.tests.split(',') if f] or list(SMOKE_TESTS if args.smoke
                                                        else GPU_TESTS))
  budget = Budget(args.budget_s or (900 if args.smoke else 420),
                  reserve_s=(30 if args.smoke else 120) if files else 0)
  start = time.perf_counter()
  names = row_names(sizes)
  rows: dict[str, Row] = {}

  step = {}
  for opt in ('SGD', 'SAM'):
    for dtype in ('float32', 'bfloat16'):
      keys = [f'ResNet-18 {opt} step, {dtype}, {m}' for m in MODES]
      if dtype not in sizes.dtypes:
        rows.update((k, Row(k, notes=NOT_IN_SMOKE)) for k in keys)
        continue

      def measure(opt=opt, dtype=dtype):
        got = time_steps(sizes, opt, dtype)
        step[(opt, dtype)] = got
        return [got[m] for m in MODES]
      section(rows, keys, budget, 45, measure)

  sgd = step.get(('SGD', 'float32'), {})
  flops = sgd['loop'].gflop * 1e9 if sgd and sgd['loop'].gflop else None
  for s in sizes.seeds:
    section(rows, f'vmapped seeds S={s}, SGD float32', budget, 40,
            lambda s=s: time_seeds(sizes, s, flops))
  base = rows.get(f'vmapped seeds S={sizes.seeds[0]}, SGD float32')
  for s in sizes.seeds[1:]:
    r = rows[f'vmapped seeds S={s}, SGD float32']
    if base and base.images_s and r.images_s:
      r.notes += f'; {r.images_s / base.images_s:.2f}x the images/s of S={sizes.seeds[0]}'

  section(rows, ['DASH direction pass', 'evaluation'], budget, 30,
          lambda: time_direction_and_eval(sizes))
  try:
    import torch  # noqa: F401
    has_torch = True
  except ImportError:
    has_torch = False
  torch_rows = ['PyTorch eager SGD step, float32', 'PyTorch eager SAM step, float32']
  if has_torch:
    section(rows, torch_rows, budget, 30, lambda: time_torch(sizes, args.smoke))
    for r, opt in zip(torch_rows, ('SGD', 'SAM')):
      ours = fastest(step.get((opt, 'float32'), {}))
      if ours and rows[r].ms:
        rows[r].notes += f'; jax fastest mode / torch = {ours.ms / rows[r].ms:.2f}'
  else:
    for r in torch_rows:
      rows[r] = Row(r, notes='skipped: torch not installed')

  with tempfile.TemporaryDirectory() as workdir:
    section(rows, ['protocol cold-sgd', 'protocol dash-sgd'], budget, 90,
            lambda: list(run_short_protocol(sizes, workdir).values()))
  p = sizes.protocol
  for r in ('protocol cold-sgd', 'protocol dash-sgd'):
    rows[r].notes = (f'random_cifar_shape, {p["model"]}, {p["num_train"]} train, '
                     f'{p["num_chunks"]} chunks, max_epoch {p["max_epoch"]}: ') + rows[r].notes

  section(rows, f'separate processes P={sizes.processes}, SGD float32', budget, 60,
          lambda: time_processes(sizes, args.smoke))

  if files:  # last: the measurements are what only this machine can give
    budget.reserve_s = 0
    section(rows, 'tests', budget, 20,
            lambda: run_tests(files, out_dir, max(budget.left(), 20)))
  else:
    rows['tests'] = Row('tests', notes='skipped: --tests none')

  scan = fastest(sgd)
  dir_row, eval_row = rows.get('DASH direction pass'), rows.get('evaluation')
  for kind, name in (('dash', 'projection: paper CIFAR-10 DASH-SGD'),
                     ('cold', 'projection: paper CIFAR-10 cold-SGD')):
    if scan and dir_row and dir_row.images_s and eval_row and eval_row.images_s:
      rows[name] = dataclasses.replace(
          projection(kind, scan.ms, 1e3 / dir_row.images_s, 1e3 / eval_row.images_s),
          name=name)
    else:
      rows[name] = Row(name, notes='n/a: a measurement it needs is missing')

  text = render(rows, names, args, sizes, time.perf_counter() - start)
  path = os.path.join(out_dir, 'device_check.md')
  with open(path, 'w') as f:
    f.write(text)
  print(text)
  print(f'written to {path}')
  return rows


def render(rows, names, args, sizes, wall_s):
  device = jax.devices()[0]
  kind = getattr(device, 'device_kind', device.platform)
  v = versions()
  peak = PEAK_TFLOPS.get(kind)
  cmd = 'bash bench/device_check.sh' + (' --smoke' if args.smoke else '')
  lines = [
      f'### GPU device check: {kind} ({jax.default_backend()}, {jax.device_count()} device(s))',
      '',
      f'`{cmd}`, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}, '
      f'{wall_s:.0f} s; ' + ', '.join(f'{k} {val}' for k, val in v.items())
      + f'; {platform.machine()}.',
      '',
      f'Steps: {sizes.model}, batch {sizes.batch} of {"x".join(map(str, sizes.image))}, '
      f'median of {sizes.repeats} epochs of {sizes.steps} steps; FLOPs from XLA\'s cost '
      f'analysis of the compiled step; peak: '
      + (f'{peak[0]:.0f} TFLOP/s bf16, {peak[1]:.0f} TF32 (dense)' if peak else 'n/a '
         '(no peak known for this device)') + '.',
      '',
      '| check | ms | images/s | TFLOP/s | share of peak | notes |',
      '|---|---|---|---|---|---|']
  lines += [rows.get(n, Row(n, notes='missing')).markdown() for n in names]
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main()
