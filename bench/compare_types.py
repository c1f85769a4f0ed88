"""Every training type of one or more workdirs in one table, paired by seed
against a reference type (DASH by default), and one figure.

    python -m bench.compare_types runs/mnist1d runs/redo_cbp \
        --figure docs/figure_mnist1d_nine_types.png

(run from the repository root, as a module, so this checkout's dash_jax is
the one imported).

Prints a Markdown table: test accuracy after the last experiment and steps
of the last experiment (mean (std) over seeds), and the paired difference of
each type's last test accuracy minus the reference's on the same seed (mean
(std), and on how many seeds the type is ahead). Runs that have not finished
(no results.json) are left out and counted under the table.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os

import numpy as np

from dash_jax import interventions


def load(workdirs):
  """{train_type: {seed: experiments}} for every finished SGD run."""
  by_type = collections.defaultdict(dict)
  for workdir in workdirs:
    for path in sorted(glob.glob(os.path.join(workdir, '*', 'results.json'))):
      with open(path) as f:
        res = json.load(f)
      c = res['config']
      if c['optimizer'] == 'sgd' and not c.get('swept'):
        by_type[c['train_type']][int(c['seeds'])] = res['experiments']
  order = list(interventions.TRAINING_TYPES)
  return dict(sorted(by_type.items(), key=lambda kv: order.index(kv[0])
                     if kv[0] in order else len(order)))


def _ms(values, scale=1.0, digits=2):
  v = np.asarray(values, np.float64) * scale
  return f'{v.mean():.{digits}f} ({v.std():.{digits}f})'


def table(by_type, reference='dash') -> str:
  """The Markdown table (see the module doc)."""
  ref = by_type.get(reference, {})
  label = interventions.TRAINING_TYPES[reference].label
  lines = [f'| train_type | seeds | test acc last (%) | steps last | acc − {label} (paired) '
           f'| ahead of {label} |', '|---|---|---|---|---|---|']
  for name, runs in by_type.items():
    seeds = sorted(runs)
    acc = [runs[s][-1]['test_acc'] for s in seeds]
    steps = [runs[s][-1]['steps'] for s in seeds]
    paired = [runs[s][-1]['test_acc'] - ref[s][-1]['test_acc'] for s in seeds if s in ref]
    diff = _ms(paired, 100) if paired and name != reference else '-'
    ahead = (f'{sum(d > 0 for d in paired)}/{len(paired)}'
             if paired and name != reference else '-')
    lines.append(f'| {name} | {len(seeds)} | {_ms(acc, 100)} | {_ms(steps, digits=0)} '
                 f'| {diff} | {ahead} |')
  return '\n'.join(lines)


def figure(by_type, path) -> None:
  """Test accuracy after each experiment, mean over seeds, one line a type."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, (name, runs) in enumerate(by_type.items()):
    curves = np.array([[e['test_acc'] for e in runs[s]] for s in sorted(runs)]) * 100
    label = interventions.TRAINING_TYPES.get(name)
    ax.plot(np.arange(1, curves.shape[1] + 1), curves.mean(0), marker='os^Dv<>PX*'[i % 10],
            label=f'{label.label if label else name} ({len(runs)} seeds)')
  ax.set_xlabel('experiment (chunks seen)')
  ax.set_ylabel('test accuracy (%), mean over seeds')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--reference', default='dash')
  parser.add_argument('--figure', default='')
  args = parser.parse_args(argv)
  by_type = load(args.workdirs)
  print(table(by_type, args.reference))
  if args.figure:
    figure(by_type, args.figure)
    print(f'figure: {args.figure}')


if __name__ == '__main__':
  main()
