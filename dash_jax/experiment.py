"""The experiment loop, once: for one seed or a group trained as one program.

Per experiment j: the training type's 'before' (j >= 2) -> train until
converged -> evaluate -> record -> 'after' -> checkpoint. A group holds runs
of one training type and optimizer with different seeds; their state,
keys, labels and chunk order carry a leading seed axis (train.seed_map), each
seed keeps its own random stream and convergence rule, and a plain run is a
group of one (it runs the unbatched program: the plain numbers).
"""
from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from dash_jax import (assembly, checkpoint, compiles, interventions, models, monitor,
                      parallel, provenance, results, signals, train)
from dash_jax import data as data_lib
from dash_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a group: its name, its own config and its folder."""
  name: str
  seed: int
  config: object  # ml_collections.ConfigDict with this run's single values
  folder: str


def checkpoint_dir(workdir: str, runs: list[Run]) -> str:
  """A plain run checkpoints in its own folder; a group in one named after
  its training type, optimizer, swept values and seeds."""
  if len(runs) == 1:
    return os.path.join(runs[0].folder, 'checkpoints')
  stem = runs[0].name.rsplit('-seed', 1)[0]  # type-optimizer[-swept values]
  seeds = '_'.join(str(r.seed) for r in runs)
  return os.path.join(workdir, f'{stem}-seeds{seeds}', 'checkpoints')


def compile_fields(counter) -> dict:
  """XLA compiles since the previous experiment's record (its 'after'
  intervention, this one's 'before', training and evaluation)."""
  done = counter.since_last()
  return {'compiles': done.count, 'compile_s': done.seconds}


class _GroupCheckpoints:
  """The group's Orbax checkpoints. A group of one saves the unbatched state
  and plain metadata, so plain runs' checkpoints keep one format."""

  def __init__(self, config, directory, num_seeds, log):
    self.num_seeds, self.max_epoch, self.log = num_seeds, config.max_epoch, log
    self.ckpts = checkpoint.RunCheckpoints(
        directory, keep=config.keep_checkpoints,
        min_interval_s=config.checkpoint_min_interval_s)

  def _plain(self) -> bool:
    return self.num_seeds == 1

  def restore(self, states, keys, mesh):
    """(states, keys, experiments per seed, first experiment, progress per
    seed or None, elapsed, provenance of the save) from the newest readable
    save, or None."""
    if self._plain():
      states, keys = train.take_seed(states, 0), keys[0]
    restored = self.ckpts.restore_latest(states, keys, self.log)
    if restored is None:
      return None
    states, keys, meta = restored
    experiments, progress = meta['experiments'], meta['progress']
    if self._plain():
      states, keys = jax.tree.map(lambda x: x[None], (states, keys))
      experiments, progress = [experiments], progress and [progress]
    progress = progress and [train.Progress(**p) for p in progress]
    states, keys = parallel.replicate((states, keys), mesh)
    return (states, keys, experiments, meta['experiment'], progress, meta['elapsed'],
            meta.get('provenance'))

  def save(self, j, states, keys, experiments, progress=None, elapsed=0.0, prov=None,
           force=False):
    epoch = max(p.epochs for p in progress) if progress else 0
    progress = [dataclasses.asdict(p) for p in progress] if progress else None
    if self._plain():
      states, keys = train.take_seed(states, 0), keys[0]
      experiments, progress = experiments[0], progress and progress[0]
    self.ckpts.save(j * (self.max_epoch + 1) + epoch, states, keys, {
        'experiment': j, 'experiments': experiments, 'elapsed': elapsed,
        'progress': progress, 'provenance': prov}, force=force)

  def close(self):
    self.ckpts.close()


def run_group(ds: data_lib.Dataset, runs: list[Run], workdir: str, log=print) -> list[dict]:
  """Train `runs` (one training type and optimizer, any seeds) as one group;
  writes each run's results.json and returns the results in order. SIGTERM
  meanwhile saves at the next checkpoint point and raises signals.Terminated."""
  with signals.saving_loop():
    return _run_group(ds, runs, workdir, log)


def _run_group(ds, runs, workdir, log):
  config = runs[0].config
  seeds = [r.seed for r in runs]
  num_seeds = len(runs)
  per_seed = lambda fn, in_axes=0: train.seed_map(fn, num_seeds, in_axes)
  training_type = interventions.get(config.train_type)
  hparams = training_type.hparams(config)
  model = assembly.make_model(config, ds.num_classes)
  tx = assembly.make_optimizer(config)
  step_cfg = assembly.step_config(config, config.train_type, ds.name)
  mode = assembly.epoch_mode(config)
  block = assembly.scan_block(config)
  model_spec = models.get(config.model)

  mesh = parallel.current_mesh()  # set by the launch; data and state live on all of it
  counter = compiles.CompileCounter()
  prov = provenance.collect(config)
  if ds.source is not None:
    prov['dataset'] = ds.source
  mean, std = assembly.normalisation(config, ds)
  labels = np.stack([data_lib.noisy_labels(ds.train_y, config.label_noise,
                                           ds.num_classes, s) for s in seeds])
  buffers = [assembly.chunk_buffer(labels.shape[1], config.num_chunks, s,
                                   config.get('chunk_order', 'random')) for s in seeds]
  chunk_size = buffers[0][1]
  # A batch beyond the whole training set is that set, as a PyTorch
  # DataLoader gives it: one batch an epoch, not one padded to batch_size.
  batch_size = min(config.batch_size, config.num_chunks * chunk_size)
  # A last batch of one example is left out where BatchNorm would see one
  # value per channel (PyTorch raises there): train.train_until_converged.
  drop_single = assembly.one_value_batchnorm(config, ds)
  data = parallel.replicate({
      'train_x': ds.train_x, 'train_y': labels.astype(np.int32),
      'mean': mean.astype(np.float32), 'std': std.astype(np.float32)}, mesh)
  buffer_idx = parallel.replicate(np.stack([b for b, _ in buffers]), mesh)
  test_x, test_y = parallel.replicate((ds.test_x, ds.test_y.astype(np.int32)), mesh)

  def fresh_state(key):
    return train.create_state(model, tx, key, ds.input_shape,
                              keep_init=step_cfg.regularizer is not None)

  def seed_data(i):
    return dict(data, train_y=data['train_y'][i]), buffer_idx[i]

  keys, init_keys = train.split_keys(np.stack([jax.random.PRNGKey(s) for s in seeds]))
  states = per_seed(fresh_state)(init_keys)
  states, keys = parallel.replicate((states, keys), mesh)

  experiments = [[] for _ in runs]
  first, progress, elapsed = 1, None, 0.0
  ckpts = _GroupCheckpoints(config, checkpoint_dir(workdir, runs), num_seeds, log)
  restored = ckpts.restore(states, keys, mesh)
  if restored is not None:
    states, keys, experiments, first, progress, elapsed, saved_prov = restored
    where = runs[0].name if num_seeds == 1 else f'seeds {seeds}'
    log(f'  [{where}] resuming at experiment {first}'
        + (f', epoch {progress[0].epochs + 1}' if progress else ''))
    changed = provenance.environment_differences(saved_prov, prov)
    if changed:
      log(f'  [{where}] resumed in another environment: {"; ".join(changed)}')
    if saved_prov is not None:
      prov['resumed_from'] = saved_prov

  def intervene(fn, states, keys, j):
    """A training type's (state, ctx) -> state, for every seed."""
    def one(state, key, train_y, buffer_idx):
      run_data = dict(data, train_y=train_y)
      ctx = interventions.Context(
          key=key, experiment=j, hparams=hparams, fresh_state=fresh_state,
          direction=lambda s, alpha: train.full_data_direction(
              s, run_data, buffer_idx, j, alpha, chunk_size=chunk_size, mode=mode),
          head=tuple(model_spec.head), head_init=model_spec.head_init)
      return fn(state, ctx)
    return per_seed(one)(states, keys, data['train_y'], buffer_idx)

  def evaluate(state):
    return train.evaluate(state, test_x, test_y, data['mean'], data['std'],
                          batch_size=config.test_batch_size)

  observers = [monitor.RunObserver(
      r.config if i == 0 else monitor.without_progress(r.config), r.name, r.folder,
      data_for=lambda i=i: seed_data(i), chunk_size=chunk_size, log=log,
      completed=experiments[i]) for i, r in enumerate(runs)]
  diagnostics = config.diagnostics

  def on_epoch(i, epochs, acc, loss, states):
    observers[i].on_epoch(epochs, acc, loss,
                          train.take_seed(states, i) if diagnostics else None)

  def on_checkpoint(j, start, states, keys, progress):
    stop = signals.stop_requested()  # SIGTERM: save now, whatever the interval
    ckpts.save(j, states, keys, experiments, progress, time.perf_counter() - start, prov,
               force=stop)
    signals.check()

  finished, save_failed = False, None
  try:
    for j in range(first, config.num_chunks + 1):
      start = time.perf_counter() - elapsed
      n = j * chunk_size
      if j >= 2 and training_type.before is not None and progress is None:
        keys, k = train.split_keys(keys)
        states = intervene(training_type.before, states, k, j)
      for i, obs in enumerate(observers):
        obs.experiment_start(j, train.take_seed(states, i) if diagnostics else None,
                             resumed_epochs=progress[i].epochs if progress else 0)
      try:
        states, keys, stats = train.train_until_converged(
            states, keys, data, buffer_idx, n, step_cfg=step_cfg,
            batch_size=batch_size, max_epoch=config.max_epoch,
            converge_acc=config.converge_acc, mode=mode, experiment=j,
            seeds=seeds if num_seeds > 1 else None, progress=progress,
            checkpoint_every=config.checkpoint_every_epochs, on_epoch=on_epoch,
            epochs_per_call=1 if diagnostics else train.EPOCHS_PER_CALL, block=block,
            on_checkpoint=lambda s, k, p: on_checkpoint(j, start, s, k, p),
            drop_single=drop_single)
      except train.NonFiniteLoss as e:  # which run of the launch: its name first
        name = runs[seeds.index(e.seed)].name if e.seed in seeds else runs[0].name
        raise train.NonFiniteLoss(f'{name}: {e}', e.seed) from None
      progress, elapsed = None, 0.0
      test = np.asarray(per_seed(evaluate)(states))
      wall = time.perf_counter() - start
      compiled = compile_fields(counter)
      for i, obs in enumerate(observers):
        record = {'experiment': j, 'num_train': n, 'test_acc': float(test[i, 0]),
                  'test_loss': float(test[i, 1]), 'train_acc': stats[i].train_acc,
                  'train_loss': stats[i].train_loss, 'steps': stats[i].steps,
                  'epochs': stats[i].epochs,
                  # False: stopped by max_epoch short of converge_acc
                  'converged': stats[i].last_epoch_acc >= config.converge_acc,
                  'wall_s': wall, **compiled}
        obs.experiment_end(record, train.take_seed(states, i) if diagnostics else None,
                           stats[i])
        experiments[i].append(record)
      if training_type.after is not None:
        keys, k = train.split_keys(keys)
        states = intervene(training_type.after, states, k, j)
      try:
        ckpts.save(j + 1, states, keys, experiments, prov=prov, force=signals.stop_requested())
      except checkpoint.SaveFailed as e:
        if j < config.num_chunks:
          raise
        save_failed = e  # every experiment is done: its results are written first, below
      if j < config.num_chunks:
        signals.check()
    finished = True
  finally:
    try:
      ckpts.close()
    except checkpoint.SaveFailed as e:
      if not finished:
        raise
      save_failed = save_failed or e  # the run's results are written first, below
    finally:
      for obs in observers:
        obs.close()

  out = []
  prov = provenance.stamp_end(prov)
  for run, exps in zip(runs, experiments):
    res = {'config': run.config.to_dict(), 'experiments': exps,
           'summary': results.summarise(exps), 'provenance': prov}
    path = os.path.join(run.folder, results.RESULTS)
    try:
      results.write_json(path, res)
    except UserError as e:
      if save_failed is None:
        raise
      raise UserError(f'saving a checkpoint in {save_failed.directory} failed '
                      f'({save_failed.why}) after the run finished, and {e}') from None
    out.append(res)
  if save_failed is not None:
    raise UserError(f'saving a checkpoint in {save_failed.directory} failed ({save_failed.why}) '
                    f'after the run finished; its results are saved ('
                    f'{", ".join(os.path.join(r.folder, results.RESULTS) for r in runs)}); '
                    f'fix that and re-run the same command for the other runs')
  return out
