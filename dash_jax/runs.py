"""A launch: expand the grid into runs, guard the workdir, train the runs
(finished ones are read back, unfinished ones resume), then the tables.

Experiments are looked up by `config.experiment`: 'incremental' (the paper's
warm-start protocol, dash_jax/experiment.py) or 'synthetic' (its Section 4
model, dash_jax/synthetic.py).
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Callable, Iterator

from dash_jax import (assembly, compiles, experiment, models, parallel, report, results,
                      summary)
from dash_jax import config as config_lib
from dash_jax import data as data_lib
from dash_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run of the protocol: the single values it was launched with
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


def run_specs(config) -> Iterator[RunSpec]:
  """Every combination of the listed training types, optimizers, swept
  values and seeds (seeds vary fastest)."""
  swept = config_lib.sweeps(config)
  seen = {}
  for tt, opt, values, seed in itertools.product(
      config_lib.parse_list(config.train_type, str, 'train_type'),
      config_lib.parse_list(config.optimizer, str, 'optimizer'),
      itertools.product(*swept.values()),
      config_lib.parse_list(config.seeds, int, 'seeds')):
    spec = RunSpec(tt, opt, seed, tuple(zip(swept, values)))
    if seen.setdefault(spec.name, spec) != spec:
      raise UserError(f'runs {seen[spec.name].sweep} and {spec.sweep} would share the '
                      f'folder {spec.name}; give values that differ in letters or digits')
    yield spec


def run_config(config, spec: RunSpec):
  """The config of one run: the launch's, with its own single values (a
  swept run also lists its swept fields in config.swept)."""
  config = config_lib.single(config, dict(spec.sweep))
  with config.unlocked():
    config.train_type, config.optimizer = spec.train_type, spec.optimizer
    config.seeds = str(spec.seed)
    config.model = models.resolve_name(config)  # sota: resnet18 -> resnet18_sota
    if spec.sweep:
      config[config_lib.SWEPT] = [f for f, _ in spec.sweep]
  return config


def check_workdir(config, workdir, specs, log=print):
  """Refuse a workdir whose runs were made with another config, unless
  config.allow_config_change: then those runs are moved aside and redone."""
  for spec in specs:
    run_dir = os.path.join(workdir, spec.name)
    path = os.path.join(run_dir, results.RUN_CONFIG)
    if not os.path.exists(path):
      continue
    saved = results.read_json(path)
    diff = config_lib.differing_fields(saved, run_config(config, spec).to_dict())
    if not diff:
      continue
    if not config.allow_config_change:
      raise UserError(
          f'{run_dir} was made with a different config ({"; ".join(diff)}); '
          f'use another --workdir, or --config.allow_config_change=True to '
          f'redo such runs (old folders are kept as NAME.replaced-N)')
    backup = _free_name(run_dir + '.replaced')
    os.replace(run_dir, backup)
    log(f'{spec.name}: config changed ({"; ".join(diff)}); old run kept in {backup}')


def _free_name(prefix):
  i = 1
  while os.path.exists(f'{prefix}-{i}'):
    i += 1
  return f'{prefix}-{i}'


def run_incremental(config, workdir: str, log=print) -> dict:
  """Every run of the launch, then the summary table over seeds and the report."""
  config_lib.validate(config)
  specs = list(run_specs(config))
  hosts = parallel.initialize_hosts(config)
  compiles.use_disk_cache(config.compile_cache_dir, config.compile_cache_gb)
  if hosts.is_main:
    check_workdir(config, workdir, specs, log)
  hosts.barrier('workdir checked')
  ds = data_lib.load(config)
  for num_chunks in {run_config(config, s).num_chunks for s in specs}:  # fail early
    assembly.chunk_buffer(len(ds.train_y), num_chunks, 0)  # if too many
  with parallel.use_mesh(parallel.make_mesh(config.devices)):
    all_results = _run_all(config, ds, hosts.share(specs), workdir, log)
  hosts.barrier('runs finished')
  if not hosts.is_main:  # the main process writes the launch's tables
    return all_results
  all_results = {s.name: all_results.get(s.name) or  # other processes' runs from disk
                 results.read_json(os.path.join(workdir, s.name, results.RESULTS))
                 for s in specs}
  table = summary.write(workdir, list(all_results.values()))
  log(table)
  rep = report.write([workdir], workdir)  # every run in the workdir, not only this launch's
  log('report: ' + ', '.join(rep.paths.values()))
  return all_results


def _groups(config, specs) -> list[list[RunSpec]]:
  """Runs trained together: with config.vmap_seeds the seeds of each
  (training type, optimizer, swept values), else each run alone."""
  if not config.vmap_seeds:
    return [[s] for s in specs]
  groups = {}
  for spec in specs:
    groups.setdefault(spec.stem, []).append(spec)
  return list(groups.values())


def _run_all(config, ds, specs, workdir, log) -> dict:
  all_results, todo = {}, []
  for spec in specs:
    path = os.path.join(workdir, spec.name, results.RESULTS)
    if os.path.exists(path):
      log(f'{spec.name} finished earlier; reading {path}')
      all_results[spec.name] = results.read_json(path)
    else:
      todo.append(spec)
  groups = _groups(config, todo)
  for i, group in enumerate(groups, 1):
    names = group[0].name if len(group) == 1 else (
        f'{group[0].stem}, seeds {[s.seed for s in group]} as one program')
    log(f'run {i}/{len(groups)}: {names}')
    runs = [experiment.Run(s.name, s.seed, run_config(config, s),
                           os.path.join(workdir, s.name)) for s in group]
    for run in runs:
      results.write_json(os.path.join(run.folder, results.RUN_CONFIG), run.config.to_dict())
    for run, res in zip(runs, experiment.run_group(ds, runs, workdir, log)):
      all_results[run.name] = res
  return {spec.name: all_results[spec.name] for spec in specs}


def _run_synthetic(config, workdir: str, log=print) -> dict:
  del log
  from dash_jax import synthetic
  return synthetic.run_synthetic(config, workdir)


EXPERIMENTS: dict[str, Callable[..., dict]] = {
    'incremental': run_incremental,
    'synthetic': _run_synthetic,
}


def run(config, workdir: str, log=print) -> dict:
  """Run a launch of `config.experiment` into `workdir`."""
  name = config.get('experiment', 'incremental')
  if name not in EXPERIMENTS:
    raise UserError(f'unknown experiment {name!r}; valid: {", ".join(sorted(EXPERIMENTS))}')
  return EXPERIMENTS[name](config, workdir, log)
