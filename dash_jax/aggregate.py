"""Mean and std over seeds: the one aggregation behind summary.md/json and
report.md/csv (aggregate.rows), so the launch's table and the report cannot
disagree."""
from __future__ import annotations

import collections
import dataclasses

import numpy as np

from dash_jax import config as config_lib
from dash_jax import provenance, results


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
    return tuple((f, self.config.get(f)) for f in self.config.get('swept') or ())

  @property
  def key(self):
    """(dataset, optimizer, train_type, swept): the row it belongs to."""
    c = self.config
    return (c['dataset'], c['optimizer'], c['train_type'], self.swept)

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
    groups[k] = sorted(g, key=lambda r: results.seed_of(r.config))
  return groups


def over_seeds(runs, values=figures) -> Stats:
  """values(run) -> {name: number}, averaged over the runs (one per seed)."""
  per_run = [values(r) for r in runs]
  arrays = {k: np.array([v[k] for v in per_run], np.float64) for k in per_run[0]}
  return Stats([results.seed_of(r.config) for r in runs],
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
  def key(self) -> tuple:
    return (self.dataset, self.optimizer, self.train_type, self.swept)

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
  """The row of one group of seeds (aggregate.group's values)."""
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
