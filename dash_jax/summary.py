"""The launch's closing table: each summary figure as mean and std over seeds."""
from __future__ import annotations

import collections
import json
import os

import numpy as np

from dash_jax import results as results_lib

FIELDS = ('test_acc_last', 'test_acc_mean', 'steps_last', 'steps_mean', 'steps_total')


def aggregate(results: list[dict]) -> list[dict]:
  """One row per (train_type, optimizer): mean/std over seeds of each field."""
  groups = collections.OrderedDict()
  for r in results:
    c = r['config']
    groups.setdefault((c['train_type'], c['optimizer']), []).append(r)
  rows = []
  for (tt, opt), runs in groups.items():
    row = {'train_type': tt, 'optimizer': opt,
           'seeds': [results_lib.seed_of(r['config']) for r in runs]}
    for f in FIELDS:
      values = np.array([r['summary'][f] for r in runs], dtype=np.float64)
      row[f] = {'mean': float(values.mean()), 'std': float(values.std())}
    row['unconverged'] = sum(r['summary'].get('unconverged', 0) for r in runs)
    rows.append(row)
  return rows


def markdown(rows: list[dict]) -> str:
  head = ('| train_type | optimizer | seeds | test acc last (%) | test acc mean (%) '
          '| steps last | steps mean | steps total |')
  lines = [head, '|' + '---|' * 8]
  for r in rows:
    pct = lambda f: f"{100 * r[f]['mean']:.2f} ({100 * r[f]['std']:.2f})"
    num = lambda f: f"{r[f]['mean']:.0f} ({r[f]['std']:.0f})"
    lines.append(f"| {r['train_type']} | {r['optimizer']} | {len(r['seeds'])} | "
                 f"{pct('test_acc_last')} | {pct('test_acc_mean')} | "
                 f"{num('steps_last')} | {num('steps_mean')} | {num('steps_total')} |")
  note = '\n\nmean (std) over seeds.\n'
  stopped = [f"{r['train_type']}-{r['optimizer']}: {r['unconverged']}" for r in rows
             if r.get('unconverged')]
  if stopped:
    note += ('experiments that hit max_epoch before converge_acc (over all seeds): '
             + ', '.join(stopped) + '.\n')
  return '\n'.join(lines) + note


def write(workdir: str, results: list[dict]) -> str:
  """summary.json and summary.md in the workdir; returns the Markdown."""
  rows = aggregate(results)
  text = markdown(rows)
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(rows, f, indent=2)
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write(text)
  return text
