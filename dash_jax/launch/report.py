"""The paper's Table 1 and Figure 1, made from this project's results.json files.

    python -m dash_jax.launch.report WORKDIR [WORKDIR ...] [--out DIR] [--against TYPE]

Gathers every results.json below the given folders (so runs launched
separately into one workdir, or into several, are compared together) and
writes report.md, report.csv and figure_<dataset>_<optimizer>.png into --out
(default: the first folder). Runs of a sweep (config.swept) make a row per
swept values; with one swept field, sensitivity_<field>.png plots the last
experiment's test accuracy and the total steps against its values, as the
paper's hyper-parameter analysis does. Under each table, every training
type's last test accuracy is compared seed by seed with DASH's (--against:
another type's).
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

from dash_jax import results as results_lib
from dash_jax import training_types
from dash_jax.errors import UserError
from dash_jax.launch import config as config_lib
from dash_jax.launch import paired, saved, tables

# Paper order and names; unknown training types follow, alphabetically.
TRAIN_TYPE_LABELS = {name: t.label for name, t in training_types.TRAINING_TYPES.items()}
OPTIMIZER_ORDER = ('sgd', 'sam')
COLORS = {'cold': 'C0', 'warm': 'C1', 'warm_rm': 'C4', 'reset': 'C5',
          'l2_init': 'C8', 'sp': 'C2', 'dash': 'C3', 'redo': 'C6', 'cbp': 'C9'}
PALETTE = tuple(f'C{i}' for i in range(10))  # matplotlib's tab10: 10 distinct colours
MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '*', '<', '>')
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


# ------------------------------------------------------------------ gather


def gather(dirs) -> tuple[list[tables.RunResult], list[str]]:
  """Complete incremental runs below `dirs`, and why any other run was
  skipped (another experiment, unfinished); a damaged results.json is a
  one-line UserError naming it (saved.read_run, as a launch reads it)."""
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


def unfinished(dirs) -> dict:
  """Run key -> [(seed, folder)] of runs started but not finished below
  `dirs`: a run folder with its config.json and no results.json (a launch
  still going, or one that stopped; a replaced run's old folder is left out)."""
  out = {}
  for d in dirs:
    for root, subdirs, files in os.walk(d):
      subdirs.sort()
      if (results_lib.RUN_CONFIG not in files or results_lib.RESULTS in files
          or '.replaced-' in os.path.basename(root)):
        continue
      try:
        with open(os.path.join(root, results_lib.RUN_CONFIG)) as f:
          config = json.load(f)
        if config.get('experiment', 'incremental') != 'incremental':
          continue
        seed = saved.seed_of(config)
        key = tables.RunResult(None, config, []).key
      except (OSError, ValueError, KeyError, TypeError, AttributeError):
        continue  # not a run's config: nothing to say about it
      out.setdefault(key, []).append((seed, root))
  return out


def _read_run(path):
  res = saved.read_run(path)
  config, exps = res['config'], res['experiments']
  if config['experiment'] != 'incremental':
    return None, f"a {config['experiment']} experiment"
  if len(exps) != config['num_chunks']:
    return None, f"incomplete ({len(exps)}/{config['num_chunks']} experiments)"
  return tables.RunResult.from_results(res, path), None


# --------------------------------------------------------------- aggregate


def _order(values, preferred):
  rank = {v: i for i, v in enumerate(preferred)}
  return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), v))


def _value_key(value):
  """Swept values in order: numbers by value, anything else by its text."""
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  return (0, value, '') if number else (1, 0, str(value))


def group(runs) -> collections.OrderedDict[tuple, list[tables.RunResult]]:
  """(dataset, optimizer, train_type, swept) -> runs (by seed), in table
  order; swept: ((field, value), ...), () for a run of no sweep."""
  by_key = tables.group(runs)
  opts = _order([k[1] for k in by_key], OPTIMIZER_ORDER)
  tts = _order([k[2] for k in by_key], TRAIN_TYPE_LABELS)
  keys = sorted(by_key, key=lambda k: (k[0], opts.index(k[1]), tts.index(k[2]),
                                       tuple((f, _value_key(v)) for f, v in k[3])))
  return collections.OrderedDict((k, by_key[k]) for k in keys)


def best(rows) -> dict[tuple, set]:
  """row.key -> the metrics where the row is the best of its block (as
  shown: highest accuracy, fewest steps); a block of one row has none."""
  marked = {r.key: set() for r in rows}
  for block in _blocks(rows).values():
    for m in METRICS:
      shown = [round(r.shown(m.key, m.scale)[0], m.digits) for r in block]
      top = max(shown) if m.higher_is_better else min(shown)
      for r, v in zip(block, shown):
        if len(block) > 1 and v == top:
          marked[r.key].add(m.key)
  return marked


def _blocks(rows):
  """Rows compared with each other: one dataset and one optimizer."""
  blocks = collections.OrderedDict()
  for r in rows:
    blocks.setdefault((r.dataset, r.optimizer), []).append(r)
  return blocks


def mismatches(groups) -> list[str]:
  """Rows whose seeds were run with different settings (mixed up workdirs)."""
  notes = []
  for (dataset, opt, tt, swept), runs in groups.items():
    where = '/'.join([dataset, opt, tt] + [f'{f}={v}' for f, v in swept])
    fields = sorted(k for k in set().union(*(r.config for r in runs))
                    if k not in _SAME_ROW_IGNORED and
                    len({json.dumps(r.config.get(k), sort_keys=True) for r in runs}) > 1)
    if fields:
      notes.append(f'{where}: seeds differ in {", ".join(fields)}')
    seeds = [saved.seed_of(r.config) for r in runs]
    if len(set(seeds)) != len(seeds):
      notes.append(f'{where}: a seed appears more than once {seeds}')
  return notes


def unconverged(rows) -> list[str]:
  """Rows with experiments stopped by max_epoch: their numbers are not the
  protocol's (it trains each experiment to converge_acc)."""
  return [f'{"/".join([r.dataset, r.optimizer, r.train_type] + [f"{f}={v}" for f, v in r.swept])}: '
          f'{r.unconverged} of {sum(len(run.experiments) for run in r.runs)} experiments '
          f'(over its seeds) hit max_epoch before converge_acc'
          for r in rows if r.unconverged]


# ----------------------------------------------------------------- tables


def label(train_type: str, swept=()) -> str:
  """'DASH', or 'DASH dash_lambda=0.1' for a row of a sweep."""
  return ' '.join([TRAIN_TYPE_LABELS.get(train_type, train_type)] +
                  [f'{f}={v}' for f, v in swept])


def _cell(row, m, marked):
  mean, std = row.shown(m.key, m.scale)
  text = f'{mean:.{m.digits}f}' + row.spread(f'{std:.{m.digits}f}')
  return f'**{text}**' if m.key in marked[row.key] else text


def markdown(rows, figures=None, notes=(), sensitivity=None, against=paired.REFERENCE) -> str:
  """One table per dataset, rows optimizer x training type (x swept values),
  as Table 1. figures: (dataset, optimizer) -> path; sensitivity: field ->
  path."""
  figures = figures or {}
  marked = best(rows)
  out = ['# Results', '']
  for dataset in dict.fromkeys(r.dataset for r in rows):
    block = [r for r in rows if r.dataset == dataset]
    swept = tables.swept_fields(r.swept for r in block)
    out += [f'## {dataset}', '',
            '| optimizer | training type | ' + ''.join(f'{f} | ' for f in swept) +
            'seeds | ' + ' | '.join(m.title for m in METRICS) + ' |',
            '|---|---|' + '---:|' * (len(swept) + 1 + len(METRICS))]
    for r in block:
      values = ''.join(f'{r.value(f)} | ' for f in swept)
      seeds = (f'{len(r.seeds)} of {len(r.seeds) + len(r.unfinished)} finished'
               if r.unfinished else f'{len(r.seeds)}')
      out.append(f'| {r.optimizer.upper()} | {label(r.train_type)} | {values}'
                 f'{seeds} | ' + ' | '.join(_cell(r, m, marked) for m in METRICS) + ' |')
    out.append('')
    for rows_compared in _blocks(block).values():
      out += paired.markdown(paired.against(rows_compared, against),
                             lambda r: label(r.train_type, r.swept), label(against))
    out += tables.environment_lines(
        (f'{r.optimizer.upper()} {label(r.train_type, r.swept)}', r.environments)
        for r in block)
    out.append('')
    for (d, opt), path in figures.items():
      if d == dataset:
        out += [(f'![{dataset}, {opt.upper()}: test accuracy and steps per experiment]'
                 f'({os.path.basename(path)})'), '']
  for field, path in (sensitivity or {}).items():
    out += [f'## Sensitivity to {field}', '',
            f'![last experiment test accuracy and total steps against {field}]'
            f'({os.path.basename(path)})', '']
  spread = tables.spread_note(rows).replace('mean (std) over seeds', 'mean (std) over '
                                              'seeds (population std)')
  out.append(spread + ' "last": the last experiment; '
             '"mean": mean over all experiments; steps: SGD steps (batches) in one '
             'experiment. Bold: the best of a column among the rows (training types, '
             'swept values) of one dataset and optimizer (highest accuracy, fewest '
             'steps), compared as shown.')
  for n in notes:
    out.append(f'\nNote: {n}')
  return '\n'.join(out) + '\n'


CSV_FIELDS = (['dataset', 'optimizer', 'train_type', 'num_seeds', 'seeds'] +
              [f'{m.key}{s}' for m in METRICS for s in ('_mean', '_std', '_best')] +
              ['environments'])


def csv_fields(swept=()) -> list[str]:
  """CSV_FIELDS with a column per swept field after train_type."""
  return CSV_FIELDS[:3] + list(swept) + CSV_FIELDS[3:]


def csv_text(rows) -> str:
  """Full precision; accuracies in %; *_best is 1 for the marked cells; a
  swept field's column holds, on rows that did not sweep it, the value they
  were launched with (empty if their config does not have the field)."""
  buf = io.StringIO()
  swept = tables.swept_fields(r.swept for r in rows)
  marked = best(rows)
  w = csv.DictWriter(buf, csv_fields(swept), lineterminator='\n')
  w.writeheader()
  for r in rows:
    rec = {'dataset': r.dataset, 'optimizer': r.optimizer, 'train_type': r.train_type,
           'num_seeds': len(r.seeds), 'seeds': ' '.join(map(str, r.seeds)),
           **{f: r.value(f) for f in swept}}
    for m in METRICS:
      mean, std = r.shown(m.key, m.scale)
      rec[f'{m.key}_mean'], rec[f'{m.key}_std'] = repr(mean), repr(std)
      rec[f'{m.key}_best'] = int(m.key in marked[r.key])
    rec['environments'] = '; '.join(r.environments)
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


def _colors(train_types) -> list[str]:
  """A colour per line, all different up to 10 lines: the paper's colour of a
  training type that has one line; lines of a training type that appears
  more than once (a sweep), or has no colour, take the colours no other line
  has."""
  counts = collections.Counter(train_types)
  fixed = [COLORS.get(tt) if counts[tt] == 1 else None for tt in train_types]
  free = [c for c in PALETTE if c not in fixed]
  spare = itertools.chain(free, itertools.cycle(PALETTE))  # past 10 lines they repeat
  return [c or next(spare) for c in fixed]


def _markers(n) -> list[str]:
  """A marker per line, all different up to 10 lines."""
  return [MARKERS[i % len(MARKERS)] for i in range(n)]


def _legend_outside(fig, axes):
  """One legend for the figure, right of the plots (off the curves); a label
  shown once."""
  handles = {}
  for ax in axes:
    for h, l in zip(*ax.get_legend_handles_labels()):
      handles.setdefault(l, h)
  fig.legend(list(handles.values()), list(handles), loc='outside right upper')


def build_figure(dataset, optimizer, by_train_type):
  """Figure 1 of the paper for one dataset and optimizer: test accuracy and
  steps per experiment, a line per row (training type, or (training type,
  swept values)), a std band over seeds."""
  from matplotlib.figure import Figure  # no pyplot: no global state or GUI
  from matplotlib.ticker import MaxNLocator
  fig = Figure(figsize=(10, 4), dpi=100, layout='constrained')
  axes = fig.subplots(1, 2)
  lines = [(k if isinstance(k, tuple) else (k, ()), runs) for k, runs in by_train_type.items()]
  colors = _colors([tt for (tt, _), _ in lines])
  markers = _markers(len(lines))
  for ax, (field, scale, ylabel) in zip(axes, PANELS):
    for color, marker, ((tt, swept), runs) in zip(colors, markers, lines):
      x, mean, std = curves(runs, field, scale)
      ax.plot(x, mean, color=color, marker=marker, markersize=4,
              markevery=max(1, len(x) // 12), label=f'{label(tt, swept)} ({len(runs)} seeds)')
      ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel('experiment')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  _legend_outside(fig, axes[:1])
  fig.suptitle(f'{dataset}, {optimizer.upper()}')
  return fig


def _safe(s) -> str:
  return ''.join(c if c.isalnum() or c in '-_' else '_' for c in str(s))


def figure_name(dataset, optimizer) -> str:
  return f'figure_{_safe(short_dataset(dataset))}_{_safe(optimizer)}.png'


def short_dataset(dataset) -> str:
  """A dataset's name in file names: a registered name as it is; your own
  data (PATH.npz, npz:PATH, folder:PATH) the file's stem or the folder's
  name; tfds:NAME/CONFIG its NAME/CONFIG."""
  text = str(dataset)
  kind, sep, rest = text.partition(':')
  if sep and kind in ('npz', 'folder', 'tfds') and rest.strip():
    text = rest.strip()
    if kind == 'tfds':
      return text
  elif not (text.lower().endswith('.npz') or '/' in text or os.sep in text):
    return text
  base = os.path.basename(os.path.normpath(text))
  return base[:-4] if base.lower().endswith('.npz') else base


def figure_names(blocks) -> dict:
  """{(dataset, optimizer): file name} of a report's figures: short names,
  but a dataset's whole name where two datasets would share a short one
  (a.npz in two folders)."""
  short = collections.Counter(short_dataset(d) for d in dict.fromkeys(d for d, _ in blocks))
  return {(d, opt): figure_name(d, opt) if short[short_dataset(d)] == 1 else
          f'figure_{_safe(d)}_{_safe(opt)}.png' for d, opt in blocks}


SENSITIVITY = (('test_acc_last', 100.0, 'last experiment test accuracy (%)'),
               ('steps_total', 1.0, 'total steps (all experiments)'))


def sensitivity_points(by_train_type, field):
  """{train_type: (values, mean, std)} per SENSITIVITY metric, over seeds, the
  values in order; a training type not swept over `field` (a baseline) has
  values None and one point."""
  out = {}
  for tt, by_value in by_train_type.items():
    values = sorted(by_value, key=_value_key)
    points = []
    for key, scale, _ in SENSITIVITY:
      stats = [tables.over_seeds(by_value[v], lambda r: {'v': r.summary()[key]})
               for v in values]
      points.append((np.array([scale * s.mean['v'] for s in stats]),
                     np.array([scale * s.std['v'] for s in stats])))
    out[tt] = (None if values == [None] else values, points)
  return out


def build_sensitivity(field, blocks):
  """The paper's hyper-parameter analysis: per (dataset, optimizer) block, the
  last experiment's test accuracy and the total steps against the swept
  `field`, a line per training type with a std band over seeds; a training
  type run without the sweep is a dashed level (a baseline).

  blocks: {(dataset, optimizer): {train_type: {value or None: runs}}}."""
  from matplotlib.figure import Figure
  fig = Figure(figsize=(10, 4 * len(blocks)), dpi=100, layout='constrained')
  axes = np.asarray(fig.subplots(len(blocks), 2)).reshape(len(blocks), 2)
  for row, ((dataset, opt), by_tt) in zip(axes, blocks.items()):
    points = sensitivity_points(by_tt, field)
    swept = sorted({v for vals, _ in points.values() if vals for v in vals}, key=_value_key)
    numeric = all(_value_key(v)[0] == 0 for v in swept)
    where = {v: (v if numeric else i) for i, v in enumerate(swept)}
    colors = dict(zip(by_tt, _colors(list(by_tt))))
    markers = dict(zip(by_tt, _markers(len(by_tt))))
    for ax, (_, _, ylabel), i in zip(row, SENSITIVITY, range(2)):
      for tt, (values, metrics) in points.items():
        mean, std = metrics[i]
        if values is None:  # a baseline: its level across the swept range
          ax.axhline(mean[0], color=colors[tt], linestyle='--',
                     label=f'{label(tt)} (not swept)')
          ax.axhspan(mean[0] - std[0], mean[0] + std[0], color=colors[tt], alpha=0.1,
                     linewidth=0)
          continue
        x = np.array([where[v] for v in values], np.float64)
        n = len(by_tt[tt][values[0]])
        ax.plot(x, mean, marker=markers[tt], color=colors[tt],
                label=f'{label(tt)} ({n} seeds)')
        ax.fill_between(x, mean - std, mean + std, color=colors[tt], alpha=0.2,
                        linewidth=0)
      if not numeric:
        ax.set_xticks(range(len(swept)), [str(v) for v in swept])
      ax.set_xlabel(field)
      ax.set_ylabel(ylabel)
      ax.set_title(f'{dataset}, {opt.upper()}')
      ax.grid(alpha=0.3)
  _legend_outside(fig, axes[:, 0])
  return fig


def sensitivity_name(field) -> str:
  return f'sensitivity_{_safe(field)}.png'


# ------------------------------------------------------------------ write


@dataclasses.dataclass
class Report:
  rows: list
  markdown: str
  paths: dict  # 'markdown', 'csv', (dataset, optimizer) and ('sensitivity', field)
               # -> figure path
  skipped: list


def write(dirs, out_dir=None, against=paired.REFERENCE) -> Report:
  """Tables and figures for every complete run below `dirs`, into out_dir;
  the paired tables compare every type with `against`."""
  if against not in training_types.TRAINING_TYPES:
    raise UserError(f'--against={against} is no training type; one of '
                    f'{", ".join(training_types.TRAINING_TYPES)}')
  dirs = [dirs] if isinstance(dirs, str) else list(dirs)
  out_dir = out_dir or dirs[0]
  runs, skipped = gather(dirs)
  groups = group(runs)
  rows = [tables.row(g) for g in groups.values()]  # the launch table's rows, in table order
  os.makedirs(out_dir, exist_ok=True)
  figures, sensitivity = {}, {}
  by_block = collections.OrderedDict()
  for (dataset, opt, tt, swept), g in groups.items():
    by_block.setdefault((dataset, opt), collections.OrderedDict())[(tt, swept)] = g
  names = figure_names(by_block)
  for (dataset, opt), by_line in by_block.items():
    path = os.path.join(out_dir, names[(dataset, opt)])
    build_figure(dataset, opt, by_line).savefig(path)
    figures[(dataset, opt)] = path
  swept = tables.swept_fields(k[3] for k in groups)
  if len(swept) == 1:
    field = swept[0]
    blocks = collections.OrderedDict()
    for (dataset, opt, tt, sw), g in groups.items():
      by_tt = blocks.setdefault((dataset, opt), collections.OrderedDict())
      by_tt.setdefault(tt, collections.OrderedDict())[dict(sw).get(field)] = g
    blocks = collections.OrderedDict(  # a block with no swept row has nothing to plot
        (k, v) for k, v in blocks.items()
        if any(val is not None for by_value in v.values() for val in by_value))
    sensitivity[field] = os.path.join(out_dir, sensitivity_name(field))
    build_sensitivity(field, blocks).savefig(sensitivity[field])
  notes = mismatches(groups) + unconverged(rows) + [f'skipped {s}' for s in skipped]
  started = unfinished(dirs)
  for r in rows:
    r.unfinished = sorted(seed for seed, _ in started.get((r.dataset, r.optimizer,
                                                           r.train_type, r.swept), ()))
  for (dataset, opt, tt, swept), waiting in started.items():
    where = '/'.join([str(dataset), opt, tt] + [f'{f}={v}' for f, v in swept])
    notes.append(f'{where}: not finished (no results.json yet, the table leaves '
                 f'them out): ' + ', '.join(f'seed {seed} in {folder}'
                                            for seed, folder in sorted(waiting)))
  text = markdown(rows, figures, notes, sensitivity, against)
  paths = {'markdown': os.path.join(out_dir, 'report.md'),
           'csv': os.path.join(out_dir, 'report.csv'), **figures,
           **{('sensitivity', f): p for f, p in sensitivity.items()}}
  with open(paths['markdown'], 'w') as f:
    f.write(text)
  with open(paths['csv'], 'w') as f:
    f.write(csv_text(rows))
  return Report(rows, text, paths, skipped)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m dash_jax.launch.report',
      description='Table 1 (Markdown, CSV) and Figure 1 (PNG) from results.json files.')
  parser.add_argument('dirs', nargs='+', metavar='WORKDIR',
                      help='folders searched recursively for results.json')
  parser.add_argument('--out', default=None,
                      help='where report.md/.csv and the figures go (default: first WORKDIR)')
  parser.add_argument('--against', default=paired.REFERENCE, metavar='TRAIN_TYPE',
                      help='the training type the paired table compares every other with '
                           f'(default: {paired.REFERENCE})')
  args = parser.parse_args(argv)
  try:
    rep = write(args.dirs, args.out, args.against)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(rep.markdown)
  print('wrote ' + ', '.join(str(p) for p in rep.paths.values()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
