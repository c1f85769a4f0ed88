"""The paper's Table 1 and Figure 1, made from this project's results.json files.

    python -m dash_jax.report WORKDIR [WORKDIR ...] [--out DIR]

Gathers every results.json below the given folders (so runs launched
separately into one workdir, or into several, are compared together) and
writes report.md, report.csv and figure_<dataset>_<optimizer>.png into --out
(default: the first folder).
"""
from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import io
import itertools
import json
import os
import sys

import numpy as np

from dash_jax import config as config_lib
from dash_jax import interventions
from dash_jax import results as results_lib
from dash_jax.errors import UserError

# Paper order and names; unknown training types follow, alphabetically.
TRAIN_TYPE_LABELS = {name: t.label for name, t in interventions.TRAINING_TYPES.items()}
OPTIMIZER_ORDER = ('sgd', 'sam')
COLORS = {'cold': 'C0', 'warm': 'C1', 'warm_rm': 'C4', 'reset': 'C5',
          'l2_init': 'C8', 'sp': 'C2', 'dash': 'C3'}
# Config fields that may differ between the seeds of one row.
_SAME_ROW_IGNORED = config_lib.EXECUTION_FIELDS | {'seed', 'seeds'}


@dataclasses.dataclass(frozen=True)
class Metric:
  key: str
  title: str
  higher_is_better: bool
  scale: float  # stored value -> shown value (accuracy as a fraction -> %)
  digits: int


METRICS = (
    Metric('test_acc_last', 'test acc. last (%)', True, 100.0, 2),
    Metric('test_acc_mean', 'test acc. mean (%)', True, 100.0, 2),
    Metric('steps_last', 'steps last', False, 1.0, 0),
    Metric('steps_mean', 'steps mean', False, 1.0, 0),
)


@dataclasses.dataclass
class Run:
  """One results.json: one (dataset, optimizer, train_type, seed)."""
  path: str
  config: dict
  experiments: list

  @property
  def key(self):
    c = self.config
    return (c['dataset'], c['optimizer'], c['train_type'])

  def curve(self, field):
    return np.array([e[field] for e in self.experiments], np.float64)

  def metrics(self) -> dict:
    acc, steps = self.curve('test_acc'), self.curve('steps')
    return {'test_acc_last': acc[-1], 'test_acc_mean': acc.mean(),
            'steps_last': steps[-1], 'steps_mean': steps.mean()}


@dataclasses.dataclass
class Row:
  """One table row: mean and std over seeds of every metric (shown units)."""
  dataset: str
  optimizer: str
  train_type: str
  seeds: list
  mean: dict
  std: dict
  best: dict = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------ gather


def gather(dirs) -> tuple[list[Run], list[str]]:
  """Complete incremental runs below `dirs`, and why any file was skipped."""
  runs, skipped = [], []
  for d in dirs:
    if not os.path.isdir(d):
      raise UserError(f'{d} is not a folder; pass the workdir of a launch')
    for root, subdirs, files in os.walk(d):
      subdirs.sort()
      if 'results.json' not in files:
        continue
      path = os.path.join(root, 'results.json')
      run, why = _read_run(path)
      if run is None:
        skipped.append(f'{path}: {why}')
      else:
        runs.append(run)
  if not runs:
    detail = f' ({len(skipped)} skipped: {skipped[0]})' if skipped else ''
    raise UserError(f'no complete results.json below {", ".join(dirs)}{detail}; '
                    f'pass the workdir of a finished launch')
  return runs, skipped


def _read_run(path):
  try:
    with open(path) as f:
      res = json.load(f)
  except (OSError, ValueError) as e:
    return None, f'unreadable ({e.__class__.__name__})'
  if not isinstance(res, dict):
    return None, 'not a JSON object'
  config, exps = res.get('config'), res.get('experiments')
  if not isinstance(config, dict) or not isinstance(exps, list):
    return None, 'no config/experiments'
  if config.get('experiment', 'incremental') != 'incremental':
    return None, f"a {config['experiment']} experiment"
  missing = [k for k in ('dataset', 'optimizer', 'train_type', 'seeds') if k not in config]
  number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
  if missing or not exps or any(not isinstance(e, dict) or not number(e.get('test_acc'))
                                or not number(e.get('steps')) for e in exps):
    return None, 'not an incremental-protocol result'
  expected = config.get('num_chunks', len(exps))
  if len(exps) != expected:
    return None, f'incomplete ({len(exps)}/{expected} experiments)'
  return Run(path, config, exps), None


# --------------------------------------------------------------- aggregate


def _order(values, preferred):
  rank = {v: i for i, v in enumerate(preferred)}
  return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), v))


def group(runs) -> 'collections.OrderedDict[tuple, list[Run]]':
  """(dataset, optimizer, train_type) -> runs (by seed), in table order."""
  by_key = collections.defaultdict(list)
  for r in runs:
    by_key[r.key].append(r)
  opts = _order([k[1] for k in by_key], OPTIMIZER_ORDER)
  tts = _order([k[2] for k in by_key], TRAIN_TYPE_LABELS)
  keys = sorted(by_key, key=lambda k: (k[0], opts.index(k[1]), tts.index(k[2])))
  return collections.OrderedDict(
      (k, sorted(by_key[k], key=lambda r: results_lib.seed_of(r.config))) for k in keys)


def aggregate(groups) -> list[Row]:
  """Mean and (population) std over seeds; best per column per block."""
  rows = []
  for (dataset, opt, tt), runs in groups.items():
    values = {m.key: m.scale * np.array([r.metrics()[m.key] for r in runs])
              for m in METRICS}
    rows.append(Row(dataset, opt, tt, [results_lib.seed_of(r.config) for r in runs],
                    {k: float(v.mean()) for k, v in values.items()},
                    {k: float(v.std()) for k, v in values.items()}))
  for block in _blocks(rows).values():
    for m in METRICS:
      shown = [round(r.mean[m.key], m.digits) for r in block]
      best = max(shown) if m.higher_is_better else min(shown)
      for r, v in zip(block, shown):
        r.best[m.key] = len(block) > 1 and v == best
  return rows


def _blocks(rows):
  """Rows compared with each other: one dataset and one optimizer."""
  blocks = collections.OrderedDict()
  for r in rows:
    blocks.setdefault((r.dataset, r.optimizer), []).append(r)
  return blocks


def mismatches(groups) -> list[str]:
  """Rows whose seeds were run with different settings (mixed up workdirs)."""
  notes = []
  for (dataset, opt, tt), runs in groups.items():
    fields = sorted(k for k in set().union(*(r.config for r in runs))
                    if k not in _SAME_ROW_IGNORED and
                    len({json.dumps(r.config.get(k), sort_keys=True) for r in runs}) > 1)
    if fields:
      notes.append(f'{dataset}/{opt}/{tt}: seeds differ in {", ".join(fields)}')
    seeds = [results_lib.seed_of(r.config) for r in runs]
    if len(set(seeds)) != len(seeds):
      notes.append(f'{dataset}/{opt}/{tt}: a seed appears more than once {seeds}')
  return notes


# ----------------------------------------------------------------- tables


def label(train_type: str) -> str:
  return TRAIN_TYPE_LABELS.get(train_type, train_type)


def _cell(row, m):
  text = f'{row.mean[m.key]:.{m.digits}f} ({row.std[m.key]:.{m.digits}f})'
  return f'**{text}**' if row.best.get(m.key) else text


def markdown(rows, figures=None, notes=()) -> str:
  """One table per dataset, rows optimizer x training type, as Table 1."""
  figures = figures or {}
  out = ['# Results', '']
  for dataset in dict.fromkeys(r.dataset for r in rows):
    out += [f'## {dataset}', '',
            '| optimizer | training type | seeds | ' +
            ' | '.join(m.title for m in METRICS) + ' |',
            '|---|---|---:|' + '---:|' * len(METRICS)]
    for r in (r for r in rows if r.dataset == dataset):
      out.append(f'| {r.optimizer.upper()} | {label(r.train_type)} | {len(r.seeds)} | ' +
                 ' | '.join(_cell(r, m) for m in METRICS) + ' |')
    out.append('')
    for (d, opt), path in figures.items():
      if d == dataset:
        out += [f'![{dataset}, {opt.upper()}: test accuracy and steps per experiment]'
                f'({os.path.basename(path)})', '']
  out += ['mean (std) over seeds (population std). "last": the last experiment; '
          '"mean": mean over all experiments; steps: SGD steps (batches) in one '
          'experiment. Bold: the best of a column among the training types of one '
          'dataset and optimizer (highest accuracy, fewest steps), compared as shown.']
  for n in notes:
    out.append(f'\nNote: {n}')
  return '\n'.join(out) + '\n'


CSV_FIELDS = (['dataset', 'optimizer', 'train_type', 'num_seeds', 'seeds'] +
              [f'{m.key}{s}' for m in METRICS for s in ('_mean', '_std', '_best')])


def csv_text(rows) -> str:
  """Full precision; accuracies in %; *_best is 1 for the marked cells."""
  buf = io.StringIO()
  w = csv.DictWriter(buf, CSV_FIELDS, lineterminator='\n')
  w.writeheader()
  for r in rows:
    rec = {'dataset': r.dataset, 'optimizer': r.optimizer, 'train_type': r.train_type,
           'num_seeds': len(r.seeds), 'seeds': ' '.join(map(str, r.seeds))}
    for m in METRICS:
      rec[f'{m.key}_mean'] = repr(r.mean[m.key])
      rec[f'{m.key}_std'] = repr(r.std[m.key])
      rec[f'{m.key}_best'] = int(bool(r.best.get(m.key)))
    w.writerow(rec)
  return buf.getvalue()


# ---------------------------------------------------------------- figures

PANELS = (('test_acc', 100.0, 'test accuracy (%)'), ('steps', 1.0, 'steps'))


def curves(runs, field, scale=1.0):
  """(experiment numbers, mean, std) over seeds; the common experiments."""
  n = min(len(r.experiments) for r in runs)
  values = scale * np.stack([r.curve(field)[:n] for r in runs])
  x = np.array([e['experiment'] for e in runs[0].experiments[:n]])
  return x, values.mean(0), values.std(0)


def build_figure(dataset, optimizer, by_train_type):
  """Figure 1 of the paper for one dataset and optimizer: test accuracy and
  steps per experiment, a line per training type, a std band over seeds."""
  from matplotlib.figure import Figure  # no pyplot: no global state or GUI
  from matplotlib.ticker import MaxNLocator
  fig = Figure(figsize=(10, 4), dpi=100, layout='constrained')
  axes = fig.subplots(1, 2)
  spare = itertools.cycle(('C6', 'C7', 'C9'))
  colors = {tt: COLORS.get(tt) or next(spare) for tt in by_train_type}
  for ax, (field, scale, ylabel) in zip(axes, PANELS):
    for tt, runs in by_train_type.items():
      x, mean, std = curves(runs, field, scale)
      ax.plot(x, mean, color=colors[tt], label=f'{label(tt)} ({len(runs)} seeds)')
      ax.fill_between(x, mean - std, mean + std, color=colors[tt], alpha=0.2,
                      linewidth=0)
    ax.set_xlabel('experiment')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.suptitle(f'{dataset}, {optimizer.upper()}')
  return fig


def figure_name(dataset, optimizer) -> str:
  safe = lambda s: ''.join(c if c.isalnum() or c in '-_' else '_' for c in s)
  return f'figure_{safe(dataset)}_{safe(optimizer)}.png'


# ------------------------------------------------------------------ write


@dataclasses.dataclass
class Report:
  rows: list
  markdown: str
  paths: dict  # 'markdown', 'csv', and (dataset, optimizer) -> figure path
  skipped: list


def write(dirs, out_dir=None) -> Report:
  """Tables and figures for every complete run below `dirs`, into out_dir."""
  dirs = [dirs] if isinstance(dirs, str) else list(dirs)
  out_dir = out_dir or dirs[0]
  runs, skipped = gather(dirs)
  groups = group(runs)
  rows = aggregate(groups)
  os.makedirs(out_dir, exist_ok=True)
  figures = {}
  by_block = collections.OrderedDict()
  for (dataset, opt, tt), g in groups.items():
    by_block.setdefault((dataset, opt), collections.OrderedDict())[tt] = g
  for (dataset, opt), by_tt in by_block.items():
    path = os.path.join(out_dir, figure_name(dataset, opt))
    build_figure(dataset, opt, by_tt).savefig(path)
    figures[(dataset, opt)] = path
  notes = mismatches(groups) + [f'skipped {s}' for s in skipped]
  text = markdown(rows, figures, notes)
  paths = {'markdown': os.path.join(out_dir, 'report.md'),
           'csv': os.path.join(out_dir, 'report.csv'), **figures}
  with open(paths['markdown'], 'w') as f:
    f.write(text)
  with open(paths['csv'], 'w') as f:
    f.write(csv_text(rows))
  return Report(rows, text, paths, skipped)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m dash_jax.report',
      description='Table 1 (Markdown, CSV) and Figure 1 (PNG) from results.json files.')
  parser.add_argument('dirs', nargs='+', metavar='WORKDIR',
                      help='folders searched recursively for results.json')
  parser.add_argument('--out', default=None,
                      help='where report.md/.csv and the figures go (default: first WORKDIR)')
  args = parser.parse_args(argv)
  try:
    rep = write(args.dirs, args.out)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(rep.markdown)
  print('wrote ' + ', '.join(str(p) for p in rep.paths.values()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
