"""The launch's tables: mean and std over seeds, the one aggregation behind
summary.md/json (the launch's closing table) and report.md/csv (report.py),
so the two cannot disagree."""
from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import NamedTuple

import numpy as np

from dash_jax import provenance, results
from dash_jax.results import SUMMARY_FIELDS
from dash_jax.launch import config as config_lib
from dash_jax.launch import saved


class RowKey(NamedTuple):
  """What a table row holds the seeds of."""
  dataset: str
  optimizer: str
  train_type: str
  swept: tuple  # ((field, value), ...)


@dataclasses.dataclass
class RunResult:
  """One results.json: one (dataset, optimizer, train_type, swept values, seed)."""
  path: str | None
  config: dict
  experiments: list
  provenance: dict | None = None

  @classmethod
  def from_results(cls, results: dict, path: str | None = None) -> RunResult:
    return cls(path, results['config'], results['experiments'],
               results.get('provenance'))

  @property
  def swept(self) -> tuple:
    """((field, value), ...) of the fields its launch swept."""
    return tuple((f, self.config.get(f)) for f in self.config.get(config_lib.SWEPT) or ())

  @property
  def key(self) -> RowKey:
    """The row it belongs to."""
    c = self.config
    return RowKey(c['dataset'], c['optimizer'], c['train_type'], self.swept)

  @property
  def environment(self) -> str:
    return provenance.environment_key(self.provenance)

  def curve(self, field):
    return np.array([e[field] for e in self.experiments], np.float64)

  def summary(self) -> dict:
    """Its headline figures (results.summarise: the one place they are computed)."""
    return results.summarise(self.experiments)


def figures(run: RunResult) -> dict:
  """The summary figures a row averages over seeds (results.SUMMARY_FIELDS)."""
  summary = run.summary()
  return {f: summary[f] for f in results.SUMMARY_FIELDS}


@dataclasses.dataclass
class Stats:
  """One group of seeds: mean and (population) std of every value."""
  seeds: list
  mean: dict
  std: dict
  environments: list  # distinct environment_key of the seeds, first seen first


def group(runs, key=lambda r: r.key) -> collections.OrderedDict:
  """key(run) -> its runs sorted by seed; keys in first-seen order."""
  groups = collections.OrderedDict()
  for r in runs:
    groups.setdefault(key(r), []).append(r)
  for k, g in groups.items():
    groups[k] = sorted(g, key=lambda r: saved.seed_of(r.config))
  return groups


def over_seeds(runs, values=figures) -> Stats:
  """values(run) -> {name: number}, averaged over the runs (one per seed)."""
  per_run = [values(r) for r in runs]
  arrays = {k: np.array([v[k] for v in per_run], np.float64) for k in per_run[0]}
  return Stats([saved.seed_of(r.config) for r in runs],
               {k: float(a.mean()) for k, a in arrays.items()},
               {k: float(a.std()) for k, a in arrays.items()},
               list(dict.fromkeys(r.environment for r in runs)))


@dataclasses.dataclass
class Row:
  """One row of the launch's table and the report: a group of seeds of one
  (dataset, optimizer, train_type, swept values), mean and (population) std
  over the seeds of each summary figure, in stored units (accuracy as a
  fraction)."""
  dataset: str
  optimizer: str
  train_type: str
  swept: tuple  # ((field, value), ...) of its launch's swept fields
  seeds: list
  mean: dict  # results.SUMMARY_FIELDS -> mean over seeds
  std: dict
  environments: list  # distinct environment_key of the seeds, first seen first
  unconverged: int  # experiments (over all seeds) stopped by max_epoch
  runs: list  # its RunResults, by seed
  per_seed: dict  # results.SUMMARY_FIELDS -> each seed's value
  unfinished: list = dataclasses.field(default_factory=list)  # the report's: seeds started, no results yet

  @property
  def key(self) -> RowKey:
    return RowKey(self.dataset, self.optimizer, self.train_type, self.swept)

  def value(self, field):
    """The row's value of a swept column: its swept value, else the value it
    was launched with (a run of no sweep, at the defaults); '' if unknown."""
    swept = dict(self.swept)
    return swept[field] if field in swept else self.runs[0].config.get(field, '')

  def spread(self, std_text: str) -> str:
    """' (std)' after a cell's mean; '' for a row of one seed, which has none."""
    return f' ({std_text})' if len(self.seeds) > 1 else ''

  def shown(self, field, scale=1.0) -> tuple[float, float]:
    """(mean, population std) over seeds of scale * `field`: a view's units
    (e.g. accuracy in %), each seed scaled before averaging."""
    values = scale * np.array(self.per_seed[field], np.float64)
    return float(values.mean()), float(values.std())


def row(runs: list[RunResult]) -> Row:
  """The row of one group of seeds (tables.group's values)."""
  stats = over_seeds(runs)
  per_run = [figures(r) for r in runs]
  return Row(*runs[0].key, stats.seeds, stats.mean, stats.std,
             stats.environments, sum(r.summary()['unconverged'] for r in runs), list(runs),
             {f: [v[f] for v in per_run] for f in results.SUMMARY_FIELDS})


def rows(runs: list[RunResult]) -> list[Row]:
  """One Row per (dataset, optimizer, train_type, swept values), in
  first-seen order: what summary.md and report.md both show."""
  return [row(g) for g in group(runs).values()]


def swept_fields(rows_swept) -> list[str]:
  """The fields swept in any of `rows_swept` ((field, value) tuples), in
  name order: the tables' extra columns."""
  fields = {f for swept in rows_swept for f, _ in swept}
  return sorted(fields, key=config_lib.field_order)


def environment_lines(labelled) -> list[str]:
  """Markdown lines naming the environments of one table's rows.

  labelled: (row label, its environments) pairs. One environment: one line;
  several: an explicit note, then which rows each one produced."""
  by_env = collections.OrderedDict()
  for row_label, envs in labelled:
    for env in envs:
      by_env.setdefault(env, []).append(row_label)
  if len(by_env) == 1:
    return [f'Environment: {next(iter(by_env))}.']
  return ([f'Note: rows of this table come from {len(by_env)} environments:', ''] +
          [f'- {env}: {", ".join(rows)}' for env, rows in by_env.items()])

# ------------------------------------------- summary.md / summary.json


def json_rows(rows: list[Row]) -> list[dict]:
  """summary.json's rows: per (train_type, optimizer, swept values) the
  mean/std over seeds of each field, and the environments the seeds ran in."""
  out = []
  for r in rows:
    row = {'train_type': r.train_type, 'optimizer': r.optimizer, 'swept': dict(r.swept),
           'seeds': r.seeds}
    for f in SUMMARY_FIELDS:
      row[f] = {'mean': r.mean[f], 'std': r.std[f]}
    row['environments'] = r.environments
    row['unconverged'] = r.unconverged
    out.append(row)
  return out


def markdown(rows: list[Row]) -> str:
  """The swept fields (if any) are columns after the optimizer."""
  swept = swept_fields(r.swept for r in rows)
  head = ('| train_type | optimizer | ' + ''.join(f'{f} | ' for f in swept) +
          'seeds | test acc last (%) | test acc mean (%) | steps last | steps mean '
          '| steps total |')
  lines = [head, '|' + '---|' * (8 + len(swept))]
  pct = lambda r, f: f"{100 * r.mean[f]:.2f}" + r.spread(f'{100 * r.std[f]:.2f}')
  num = lambda r, f: f"{r.mean[f]:.0f}" + r.spread(f'{r.std[f]:.0f}')
  for r in rows:
    values = ''.join(f"{dict(r.swept).get(f, '')} | " for f in swept)
    lines.append(f"| {r.train_type} | {r.optimizer} | {values}{len(r.seeds)} | "
                 f"{pct(r, 'test_acc_last')} | {pct(r, 'test_acc_mean')} | "
                 f"{num(r, 'steps_last')} | {num(r, 'steps_mean')} | "
                 f"{num(r, 'steps_total')} |")
  envs = environment_lines((_row_label(r), r.environments) for r in rows)
  note = '\n\n' + spread_note(rows) + '\n'
  stopped = [f'{_row_label(r, "-")}: {r.unconverged}' for r in rows if r.unconverged]
  if stopped:
    note += ('experiments that hit max_epoch before converge_acc (over all seeds): '
             + ', '.join(stopped) + '.\n')
  return '\n'.join(lines) + note + '\n' + '\n'.join(envs) + '\n'


def spread_note(rows) -> str:
  """What the cells show: mean (std) over seeds; a row of one seed has no
  spread to show, so it shows its value alone."""
  single = [len(r.seeds) == 1 for r in rows]
  if all(single):
    return 'one seed: its values (no spread over seeds).'
  return 'mean (std) over seeds' + ('; rows of one seed: the value alone.' if any(single)
                                    else '.')


def _row_label(row, sep='/') -> str:
  return sep.join([row.train_type, row.optimizer] + [f'{f}={v}' for f, v in row.swept])


def environments(results: list[dict]) -> list[dict]:
  """The distinct provenance blocks of the results, ignoring start/end times
  and command line (which differ between any two runs)."""
  out = {}
  for r in results:
    block = r.get('provenance')
    if block:
      out.setdefault(_environment_fingerprint(block), block)
  return list(out.values())


def _environment_fingerprint(block):
  per_run = ('start_time', 'end_time', 'command')
  return json.dumps({k: v for k, v in block.items() if k not in per_run}, sort_keys=True)


def write(workdir: str, results: list[dict], provenance: list[dict] | None = None) -> str:
  """summary.json ({'rows', 'environments'}) and summary.md in the workdir;
  returns the Markdown. provenance: the launch's blocks (default: those the
  results carry)."""
  table = rows([RunResult.from_results(r) for r in results])
  text = markdown(table)
  if provenance is None:
    provenance = environments(results)
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump({'rows': json_rows(table), 'environments': list(provenance)}, f, indent=2)
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write(text)
  return text
