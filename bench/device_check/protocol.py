"""A short protocol end to end: cold and DASH (SGD) through dash_jax.run on
random_cifar_shape, all-in wall time per step (dash_jax.run is this
module's one call into dash_jax)."""
from __future__ import annotations

import contextlib
import io
import time

import dash_jax
from bench.device_check.rows import Row
from bench.device_check.steps import launch_config


def run_protocol(overrides: dict, workdir: str) -> dict:
  """dash_jax.run on configs/digits.py with `overrides`; its log is kept
  out of the table (returned under '_log')."""
  config = launch_config(overrides['model'])
  for k, v in overrides.items():
    config[k] = v
  log = io.StringIO()
  with contextlib.redirect_stdout(log):
    results = dash_jax.run(config, workdir)
  return {'_log': log.getvalue(), **results}


def run_short_protocol(sizes, workdir):
  """{'cold': Row, 'dash': Row}: all-in wall time per step of each run."""
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


def sizes_note(sizes) -> str:
  """What the protocol rows ran, put before their notes."""
  p = sizes.protocol
  return (f'random_cifar_shape, {p["model"]}, {p["num_train"]} train, '
          f'{p["num_chunks"]} chunks, max_epoch {p["max_epoch"]}: ')
