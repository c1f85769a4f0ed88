"""Mean and std over seeds: the one aggregation behind summary.md/json and
report.md/csv, so the launch's table and the report cannot disagree."""
from __future__ import annotations

import collections
import dataclasses

import numpy as np

from dash_jax import config as config_lib
from dash_jax import provenance, results


@dataclasses.dataclass
class Run:
  """One results.json: one (dataset, optimizer, train_type, swept values, seed)."""
  path: str | None
  config: dict
  experiments: list
  provenance: dict | None = None

  @classmethod
  def from_results(cls, results: dict, path: str | None = None) -> Run:
    return cls(path, results['config'], results['experiments'],
               results.get('provenance'))

  @property
  def swept(self) -> tuple:
    """((field, value), ...) of the fields its launch swept."""
    return tuple((f, self.config.get(f)) for f in self.config.get('swept') or ())

  @property
  def key(self):
    c = self.config
    return (c.get('dataset'), c['optimizer'], c['train_type'], self.swept)

  @property
  def environment(self) -> str:
    return provenance.environment_key(self.provenance)

  def curve(self, field):
    return np.array([e[field] for e in self.experiments], np.float64)

  def metrics(self) -> dict:
    acc, steps = self.curve('test_acc'), self.curve('steps')
    return {'test_acc_last': acc[-1], 'test_acc_mean': acc.mean(),
            'steps_last': steps[-1], 'steps_mean': steps.mean(),
            'steps_total': steps.sum()}


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


def over_seeds(runs, values=Run.metrics) -> Stats:
  """values(run) -> {name: number}, averaged over the runs (one per seed)."""
  per_run = [values(r) for r in runs]
  arrays = {k: np.array([v[k] for v in per_run], np.float64) for k in per_run[0]}
  return Stats([results.seed_of(r.config) for r in runs],
               {k: float(a.mean()) for k, a in arrays.items()},
               {k: float(a.std()) for k, a in arrays.items()},
               list(dict.fromkeys(r.environment for r in runs)))


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
