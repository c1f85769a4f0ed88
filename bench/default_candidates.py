"""Candidate defaults (configs/default.py), compared by paired differences.

    nice -n 10 python -m bench.default_candidates --workdir runs/candidates \
        --candidates lr0.01,lr0.001 --out docs/default_choice_table.md

Each candidate is configs/digits.py plus a few overrides, run through the
project's own launch (`dash_jax.run`, seeds vmapped) for cold, warm, sp and
dash. One lucky seed can flip a mean difference of a few tenths, so the table
pairs runs by seed: DASH - cold and DASH - warm per seed, then their mean,
std and how many seeds DASH wins. Finished runs in --workdir are reused (the
launch skips them), so a second call only prints the table again.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # before TensorFlow loads
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

TRAIN_TYPES = ('cold', 'warm', 'sp', 'dash')

# MNIST-1D's base: clean labels, MLP 512x3, SGD lr 0.05, 10 chunks, batch 128.
M1D = {'dataset': 'mnist1d', 'label_noise': 0.0, 'width': 512, 'depth': 3,
       'learning_rate': 0.05, 'num_chunks': 10, 'batch_size': 128}

# name -> overrides of configs/digits.py (the m1d ones set every field MNIST-1D differs in)
CANDIDATES = {
    'm1d': M1D,
    'm1d_b100': {**M1D, 'batch_size': 100},  # chunks of 400: no short last batch
    'm1d_w256': {**M1D, 'width': 256},
    'm1d_d2': {**M1D, 'depth': 2},
    'm1d_lr0.1': {**M1D, 'learning_rate': 0.1},
    'm1d_lr0.01': {**M1D, 'learning_rate': 0.01},
    'm1d_c20': {**M1D, 'num_chunks': 20},
    'm1d_noise0.2': {**M1D, 'label_noise': 0.2},
    'm1d_w256_b100': {**M1D, 'width': 256, 'batch_size': 100},
    'm1d_sam': {**M1D, 'optimizer': 'sam'},
    'lr0.01': {'learning_rate': 0.01},
    'lr0.001': {'learning_rate': 0.001},
    'lr0.001_noise0.3': {'learning_rate': 0.001, 'label_noise': 0.3},
    'lr0.001_width1024': {'learning_rate': 0.001, 'width': 1024},
    'lr0.001_chunks10': {'learning_rate': 0.001, 'num_chunks': 10},
    'lr0.003': {'learning_rate': 0.003},
    'noise0.3': {'label_noise': 0.3},
    'noise0.4': {'label_noise': 0.4},
}
WALL = 'candidate_wall.json'  # the launch's wall time, kept for reruns


def candidate_config(name: str, seeds: str, vmap: bool = True):
  from configs.digits import get_config
  from dash_jax.errors import UserError
  if name not in CANDIDATES:
    raise UserError(f'unknown candidate {name!r}; choose from {", ".join(CANDIDATES)}')
  config = get_config()
  config.train_type = ','.join(TRAIN_TYPES)
  config.update(CANDIDATES[name])
  config.seeds = seeds
  config.vmap_seeds = vmap
  config.progress = False
  config.tensorboard = False
  return config


def run_candidate(name: str, seeds: str, workdir: str, vmap: bool = True) -> tuple[dict, float]:
  """{train_type: {seed: summary}} and the launch's wall time (s)."""
  import dash_jax
  from dash_jax.launch import saved
  folder = os.path.join(workdir, name)
  wall_path = os.path.join(folder, WALL)
  config = candidate_config(name, seeds, vmap)
  start = time.perf_counter()
  results = dash_jax.run(config, folder)
  wall = time.perf_counter() - start
  if os.path.exists(wall_path):  # finished earlier: keep the first launch's time
    with open(wall_path) as f:
      wall = json.load(f)['wall_s']
  else:
    with open(wall_path, 'w') as f:
      json.dump({'wall_s': wall}, f)
  by_type = {}
  for res in results.values():
    cfg = res['config']
    summary = dict(res['summary'], unconverged=sum(
        not e.get('converged', True) for e in res['experiments']))
    by_type.setdefault(cfg['train_type'], {})[saved.seed_of(cfg)] = summary
  return by_type, wall


def paired(a: dict, b: dict, field='test_acc_last') -> np.ndarray:
  seeds = sorted(set(a) & set(b))
  return np.array([a[s][field] - b[s][field] for s in seeds]) * 100


def rows(name: str, by_type: dict, wall: float) -> dict:
  def acc(t):
    x = np.array([v['test_acc_last'] for v in by_type[t].values()]) * 100
    return f'{x.mean():.2f} ({x.std():.2f})'

  def steps(t):
    return np.mean([v['steps_total'] for v in by_type[t].values()])

  def diff(other):
    d = paired(by_type['dash'], by_type[other])
    return f'{d.mean():+.2f} ({d.std():.2f}), {int((d > 0).sum())}/{len(d)}'

  row = {'candidate': name, 'overrides': ', '.join(
      f'{k}={v}' for k, v in CANDIDATES[name].items())}
  for t in TRAIN_TYPES:
    row[f'{t} acc'] = acc(t)
  for t in TRAIN_TYPES:
    row[f'{t} steps'] = f'{steps(t):,.0f}'
  row['DASH-cold'] = diff('cold')
  row['DASH-sp'] = diff('sp')
  row['DASH-warm'] = diff('warm')
  row['warm-cold'] = (lambda d: f'{d.mean():+.2f} ({d.std():.2f}), {int((d < 0).sum())}/{len(d)} below')(
      paired(by_type['warm'], by_type['cold']))
  row['unconverged'] = sum(v['unconverged'] for t in TRAIN_TYPES for v in by_type[t].values())
  row['DASH steps % cold'] = f'{100 * steps("dash") / steps("cold"):.0f}%'
  row['wall'] = f'{wall / 60:.1f} min'
  return row


def markdown(table: list[dict]) -> str:
  keys = list(table[0])
  lines = ['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
  lines += ['| ' + ' | '.join(str(r[k]) for k in keys) + ' |' for r in table]
  return '\n'.join(lines) + '\n'


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--candidates', default='lr0.01,lr0.001',
                 help=f'comma-separated, from: {", ".join(CANDIDATES)}')
  p.add_argument('--seeds', default='0,1,2,3,4,5,6,7')
  p.add_argument('--workdir', default='runs/candidates')
  p.add_argument('--out', default='', help='write the markdown table here too')
  p.add_argument('--sequential', action='store_true',
                 help='seeds one after another (faster on a 2-core CPU than vmapped)')
  args = p.parse_args(argv)
  table = []
  for name in args.candidates.split(','):
    by_type, wall = run_candidate(name, args.seeds, args.workdir, not args.sequential)
    table.append(rows(name, by_type, wall))
    print(markdown(table[-1:]), flush=True)
  text = (f'Seeds {args.seeds}; test accuracy of the last experiment, mean (std) '
          f'over seeds, %; steps summed over experiments; DASH-cold and '
          f'DASH-warm: paired by seed, mean (std), seeds DASH wins.\n\n'
          + markdown(table))
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
