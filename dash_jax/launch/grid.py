"""A launch's grid: every training type x optimizer x swept value x seed of
its config, each a settings.Run whose typed settings are built here, once.

The one place a ConfigDict becomes settings: below this, the core reads the
records of dash_jax/settings.py only.
"""
from __future__ import annotations

import dataclasses
import itertools
import os

from dash_jax import models, settings, training_types
from dash_jax.errors import UserError
from dash_jax.launch import config as config_lib


@dataclasses.dataclass(frozen=True)
class Point:
  """A point of the grid: the single values a run is launched with
  (`sweep`: (field, value) of each swept field, in name order)."""
  train_type: str
  optimizer: str
  seed: int
  sweep: tuple = ()

  @property
  def stem(self) -> str:
    """The name without the seed: what the seeds of a row share."""
    return '-'.join([self.train_type, self.optimizer] +
                    [_swept_text(f, v) for f, v in self.sweep])

  @property
  def name(self) -> str:
    return f'{self.stem}-seed{self.seed}'


def _swept_text(field, value) -> str:
  text = value_text(value)
  sep = '' if text[:1].isdigit() or text[:1] in '.+-' else '_'
  return f'{config_lib.SHORT_NAMES.get(field, field)}{sep}{text}'


def value_text(value) -> str:
  """A swept value as it appears in a folder name (floats round-trip)."""
  text = repr(value) if isinstance(value, float) else str(value)
  return ''.join(c if c.isalnum() or c in '.+-_' else '_' for c in text)


def points(config) -> list[Point]:
  """Every combination of the listed training types, optimizers, swept
  values and seeds (seeds vary fastest)."""
  swept = config_lib.sweeps(config)
  seen, out = {}, []
  for tt, opt, values, seed in itertools.product(
      config_lib.parse_list(config.train_type, str, 'train_type'),
      config_lib.parse_list(config.optimizer, str, 'optimizer'),
      itertools.product(*swept.values()),
      config_lib.parse_list(config.seeds, int, 'seeds')):
    point = Point(tt, opt, seed, tuple(zip(swept, values)))
    if seen.setdefault(point.name, point) != point:
      raise UserError(f'runs {seen[point.name].sweep} and {point.sweep} would share the '
                      f'folder {point.name}; give values that differ in letters or digits')
    out.append(point)
  return out


def run_fields(config, point: Point, dataset_sha256: str = '') -> dict:
  """The run's config as results.json records it: the launch's fields with
  the point's single values, the resolved model, a file dataset's hash and
  (swept runs) the swept fields' names. A new dict: the launch's config is
  left as it is."""
  fields = config_lib.single(config, dict(point.sweep)).to_dict()
  fields.update(train_type=point.train_type, optimizer=point.optimizer,
                seeds=str(point.seed))
  fields['model'] = models.resolve_name(fields['model'], fields['sota'])
  if dataset_sha256:
    fields[config_lib.DATASET_SHA256] = dataset_sha256
  if point.sweep:
    fields[config_lib.SWEPT] = [f for f, _ in point.sweep]
  return fields


def run_settings(fields: dict) -> settings.RunSettings:
  """A run's typed settings from its recorded fields (run_fields)."""
  parts = {name: settings.part(cls, fields) for name, cls in settings.PARTS.items()}
  parts['optim'] = dataclasses.replace(parts['optim'], sota_milestones=tuple(
      config_lib.parse_list(fields['sota_milestones'], int, 'sota_milestones')))
  parts['data'] = dataclasses.replace(
      parts['data'], dataset_sha256=fields.get(config_lib.DATASET_SHA256, ''))
  return settings.RunSettings(
      train_type=fields['train_type'], seed=config_lib.parse_list(fields['seeds'], int, 'seeds')[0],
      hparams=training_types.get(fields['train_type']).hparams(fields),
      swept=tuple((f, fields[f]) for f in fields.get(config_lib.SWEPT) or ()), **parts)


def plan(config, workdir: str, dataset_sha256: str = '') -> list[settings.Run]:
  """The launch's runs, in grid order, each with its folder in `workdir`."""
  out = []
  for point in points(config):
    fields = run_fields(config, point, dataset_sha256)
    out.append(settings.Run(point.name, os.path.join(workdir, point.name),
                            run_settings(fields), fields))
  return out


def settings_of(config) -> settings.RunSettings:
  """The settings of a config's first run (a one-run config's only one)."""
  return run_settings(run_fields(config, points(config)[0]))


def groups(runs: list[settings.Run], vmap_seeds: bool) -> list[list[settings.Run]]:
  """Runs trained together: with vmap_seeds the seeds of each (training
  type, optimizer, swept values), else each run alone."""
  if not vmap_seeds:
    return [[r] for r in runs]
  by_stem = {}
  for run in runs:
    by_stem.setdefault(run.stem, []).append(run)
  return list(by_stem.values())
