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
import functools
import os
import time

import jax
import numpy as np

from dash_jax import (assembly, batches, checkpoint, compiles, interventions, models,
                      monitor, parallel, provenance, results, signals, train)
from dash_jax import data as data_lib
from dash_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """One run of a group: its name, seed, own config and folder."""
  name: str
  seed: int
  config: object  # ml_collections.ConfigDict with this run's single values
  folder: str


def checkpoint_dir(workdir: str, runs: list[RunSettings]) -> str:
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


def run_group(ds: data_lib.Dataset, runs: list[RunSettings], workdir: str, log=print) -> list[dict]:
  """Train `runs` (one training type and optimizer, any seeds) as one group;
  writes each run's results.json and returns the results in order. SIGTERM
  meanwhile saves at the next checkpoint point and raises signals.Terminated."""
  with signals.saving_loop():
    return _run_group(ds, runs, workdir, log)


def _run_group(ds, runs, workdir, log):
  """The protocol, per experiment j: before (j >= 2) -> train until converged
  -> evaluate -> record -> after -> checkpoint."""
  counter = compiles.CompileCounter()
  prov = provenance.collect(runs[0].config)
  if ds.source is not None:
    prov['dataset'] = ds.source
  g = setup_group(ds, runs)
  ckpts = _GroupCheckpoints(g.config, checkpoint_dir(workdir, runs), len(runs), log)
  states, keys, experiments, first, progress, elapsed = _resume(
      g, ckpts, *initial_states(g), prov, log)
  observers = _observers(g, experiments, log)

  def on_epoch(i, epochs, acc, loss, states):
    observers[i].on_epoch(epochs, acc, loss, _seed_state(g, states, i))

  finished, save_failed = False, None
  try:
    for j in range(first, g.config.num_chunks + 1):
      start = time.perf_counter() - elapsed
      if j >= 2 and progress is None:
        states, keys = intervene(g, g.training_type.before, states, keys, j,
                                 last_steps(experiments))
      for i, obs in enumerate(observers):
        obs.experiment_start(j, _seed_state(g, states, i),
                             resumed_epochs=progress[i].epochs if progress else 0)
      states, keys, stats = _train(
          g, states, keys, j, progress, on_epoch,
          on_checkpoint=lambda s, k, p: _save_midway(ckpts, j, start, s, k, experiments,
                                                     p, prov))
      progress, elapsed = None, 0.0
      test = evaluate(g, states)
      records = _records(g, j, test, stats, time.perf_counter() - start,
                         compile_fields(counter))
      for i, (obs, record) in enumerate(zip(observers, records)):
        obs.experiment_end(record, _seed_state(g, states, i), stats[i])
        experiments[i].append(record)
      states, keys = intervene(g, g.training_type.after, states, keys, j)
      save_failed = _save_after(ckpts, g, j, states, keys, experiments, prov)
      if j < g.config.num_chunks:
        signals.check()
    finished = True
  finally:
    save_failed = _close(ckpts, observers, finished, save_failed)
  return _write_results(runs, experiments, provenance.stamp_end(prov), save_failed,
                        assembly.chunking(len(ds.train_y), g.config.num_chunks, g.chunk_size))


# ------------------------------------------------------------- the setup


@dataclasses.dataclass(frozen=True)
class Group:
  """What a group trains on and with, built once (setup_group). Labels,
  chunk orders, states and keys carry a leading seed axis; all of it lives
  on the launch's mesh."""
  runs: tuple
  config: object  # the first run's: what the group's runs share
  training_type: interventions.TrainingType
  hparams: object  # the training type's own values
  model_spec: object  # models.get(config.model)
  fresh_state: object  # key -> a brand-new TrainState
  options: train.TrainOptions
  data: dict  # train_x, train_y (S, N), mean, std
  buffer_idx: object  # (S, N): each seed's chunk order
  test: tuple  # (test_x, test_y)
  chunk_size: int
  mesh: object
  batchnorm: bool = False  # the model normalises by batch statistics in training

  @property
  def seeds(self) -> list[int]:
    return [r.seed for r in self.runs]

  def per_seed(self, fn, in_axes=0):
    return train.seed_map(fn, len(self.runs), in_axes)


def setup_group(ds: data_lib.Dataset, runs) -> Group:
  """The group's data (noisy labels, chunk orders), model, optimizer and
  training options."""
  config = runs[0].config
  mesh = parallel.current_mesh()  # set by the launch; data and state live on all of it
  model = assembly.make_model(config, ds.num_classes)
  tx = assembly.make_optimizer(config)
  step_cfg = assembly.step_config(config, config.train_type, ds.name)
  mean, std = assembly.normalisation(config, ds)
  labels = np.stack([data_lib.noisy_labels(ds.train_y, config.label_noise,
                                           ds.num_classes, r.seed) for r in runs])
  buffers = [assembly.chunk_buffer(labels.shape[1], config.num_chunks, r.seed,
                                   config.chunk_order) for r in runs]
  chunk_size = buffers[0][1]
  batch_size = assembly.effective_batch_size(config, chunk_size)
  options = train.TrainOptions(
      step_cfg, batch_size, config.max_epoch, config.converge_acc,
      mode=assembly.epoch_mode(config), block=assembly.scan_block(config),
      epochs_per_call=1 if config.diagnostics else train.EPOCHS_PER_CALL,
      checkpoint_every=config.checkpoint_every_epochs,
      # A last batch of one example is left out where BatchNorm would see
      # one value per channel (PyTorch raises there).
      drop_single=assembly.one_value_batchnorm(config, ds), last_batch=config.last_batch)
  data = parallel.replicate({
      'train_x': ds.train_x, 'train_y': labels.astype(np.int32),
      'mean': mean.astype(np.float32), 'std': std.astype(np.float32)}, mesh)
  training_type = interventions.get(config.train_type)
  return Group(
      runs=tuple(runs), config=config, training_type=training_type,
      hparams=training_type.hparams(config), model_spec=models.get(config.model),
      fresh_state=functools.partial(train.create_state, model, tx,
                                    input_shape=ds.input_shape,
                                    keep_init=step_cfg.regularizer is not None),
      options=options, data=data,
      buffer_idx=parallel.replicate(np.stack([b for b, _ in buffers]), mesh),
      test=parallel.replicate((ds.test_x, ds.test_y.astype(np.int32)), mesh),
      chunk_size=chunk_size, mesh=mesh, batchnorm=assembly.has_batchnorm(config, ds))


def initial_states(g: Group):
  """(states, keys): each seed's fresh state and its training key."""
  keys, init_keys = train.split_keys(np.stack([jax.random.PRNGKey(s) for s in g.seeds]))
  states = g.per_seed(g.fresh_state)(init_keys)
  return parallel.replicate((states, keys), g.mesh)


def _resume(g: Group, ckpts, states, keys, prov, log):
  """(states, keys, experiments per seed, first experiment, progress or None,
  elapsed): from the newest checkpoint, else the fresh start given."""
  restored = ckpts.restore(states, keys, g.mesh)
  if restored is None:
    return states, keys, [[] for _ in g.runs], 1, None, 0.0
  states, keys, experiments, first, progress, elapsed, saved_prov = restored
  where = g.runs[0].name if len(g.runs) == 1 else f'seeds {g.seeds}'
  log(f'  [{where}] resuming at experiment {first}'
      + (f', epoch {progress[0].epochs + 1}' if progress else ''))
  changed = provenance.environment_differences(saved_prov, prov)
  if changed:
    log(f'  [{where}] resumed in another environment: {"; ".join(changed)}')
  if saved_prov is not None:
    prov['resumed_from'] = saved_prov
  return states, keys, experiments, first, progress, elapsed


def _observers(g: Group, experiments, log) -> list:
  """One monitor.RunObserver a run (only the first shows progress bars)."""
  def data_for(i):
    return dict(g.data, train_y=g.data['train_y'][i]), g.buffer_idx[i]
  observers = [monitor.RunObserver(
      r.config if i == 0 else monitor.without_progress(r.config), r.name, r.folder,
      data_for=functools.partial(data_for, i), chunk_size=g.chunk_size, log=log,
      completed=experiments[i]) for i, r in enumerate(g.runs)]
  for obs in observers:
    obs.not_converged_cause = functools.partial(likely_cause, g)
  return observers


# ----------------------------------------------------- the protocol's steps


def _seed_state(g: Group, states, i):
  """Seed i's state where diagnostics measure it, else None."""
  return train.take_seed(states, i) if g.config.diagnostics else None


def last_steps(experiments) -> np.ndarray:
  """Each seed's steps in its last recorded experiment (0 before any)."""
  return np.asarray([exps[-1]['steps'] if exps else 0 for exps in experiments], np.int32)


def intervene(g: Group, fn, states, keys, j, steps=None):
  """A training type's (state, ctx) -> state for every seed, from a fresh
  key; (states, keys) unchanged where the type has no such hook or its
  hyper-parameters switch it off. `steps`: each seed's steps in the
  experiment trained last (Context.steps)."""
  if fn is None or not g.training_type.active(g.hparams):
    return states, keys
  keys, k = train.split_keys(keys)
  steps = np.zeros(len(g.runs), np.int32) if steps is None else steps

  def one(state, key, train_y, buffer_idx, steps):
    run_data = dict(g.data, train_y=train_y)
    units = g.model_spec.units(state.params)
    ctx = interventions.Context(
        key=key, experiment=j, hparams=g.hparams, fresh_state=g.fresh_state,
        direction=lambda s, alpha: train.full_data_direction(
            s, run_data, buffer_idx, j, alpha, chunk_size=g.chunk_size,
            mode=g.options.mode),
        head=tuple(g.model_spec.head), head_init=g.model_spec.head_init,
        activity=lambda s: train.buffer_activity(s, run_data, buffer_idx, j, units,
                                                 g.chunk_size, g.options.mode),
        units=units, steps=steps)
    return fn(state, ctx)
  return g.per_seed(one)(states, k, g.data['train_y'], g.buffer_idx, steps), keys


def evaluate(g: Group, states) -> np.ndarray:
  """(S, 2): each seed's test accuracy and mean loss."""
  def one(state):
    return train.evaluate(state, *g.test, g.data['mean'], g.data['std'],
                          batch_size=g.config.test_batch_size)
  return np.asarray(g.per_seed(one)(states))


def _records(g: Group, j, test, stats, wall, compiled) -> list[dict]:
  """Each seed's record of experiment j."""
  return [{'experiment': j, 'num_train': j * g.chunk_size, 'test_acc': float(test[i, 0]),
           'test_loss': float(test[i, 1]), 'train_acc': st.train_acc,
           'train_loss': st.train_loss, 'steps': st.steps, 'epochs': st.epochs,
           # False: stopped by max_epoch short of converge_acc
           'converged': st.last_epoch_acc >= g.config.converge_acc,
           'wall_s': wall, **compiled} for i, st in enumerate(stats)]


def _train(g: Group, states, keys, j, progress, on_epoch, on_checkpoint):
  """train.train_until_converged on experiment j's buffer; a non-finite loss
  names its run first (which of the launch's runs stopped)."""
  try:
    return train.train_until_converged(
        states, keys, train.ExperimentData(g.data, g.buffer_idx, j * g.chunk_size), g.options,
        train.EpochHooks(experiment=j, seeds=g.seeds if len(g.runs) > 1 else None,
                         progress=progress, on_epoch=on_epoch, on_checkpoint=on_checkpoint))
  except train.NonFiniteLoss as e:
    name = g.runs[g.seeds.index(e.seed)].name if e.seed in g.seeds else g.runs[0].name
    cause = likely_cause(g, j)
    raise train.NonFiniteLoss(f'{name}: {e.what}', e.seed,
                              f'{cause} (else {e.fix})' if cause else e.fix) from None


def likely_cause(g: Group, j) -> str:
  """Why experiment j may fail to converge or diverge, where its 'keep'
  epochs end in a small batch for a BatchNorm model ('' otherwise)."""
  if g.options.last_batch != 'keep' or not g.batchnorm:
    return ''
  return batches.likely_cause(j, j * g.chunk_size, g.options.batch_size, g.chunk_size,
                              g.config.num_chunks)


def _save_after(ckpts, g: Group, j, states, keys, experiments, prov):
  """The checkpoint after experiment j. A failed save after the last one is
  returned, not raised: the finished runs' results are written first."""
  try:
    ckpts.save(j + 1, states, keys, experiments, prov=prov, force=signals.stop_requested())
  except checkpoint.SaveFailed as e:
    if j < g.config.num_chunks:
      raise
    return e
  return None


def _close(ckpts, observers, finished: bool, save_failed):
  """Wait for pending saves and close the observers; a save that failed
  once every experiment was done is returned (results are written first)."""
  try:
    ckpts.close()
  except checkpoint.SaveFailed as e:
    if not finished:
      raise
    save_failed = save_failed or e
  finally:
    for obs in observers:
      obs.close()
  return save_failed


def _save_midway(ckpts, j, start, states, keys, experiments, progress, prov):
  """A checkpoint inside experiment j; SIGTERM: save now, whatever the interval."""
  stop = signals.stop_requested()
  ckpts.save(j, states, keys, experiments, progress, time.perf_counter() - start, prov,
             force=stop)
  signals.check()


def _write_results(runs, experiments, prov, save_failed=None, chunks=None) -> list[dict]:
  """Each run's results.json (`chunks`: assembly.chunking's); the results in order. A
  checkpoint save that failed after the last experiment is reported once the
  results are safe."""
  out = []
  for run, exps in zip(runs, experiments):
    res = {'config': run.config.to_dict(), 'experiments': exps,
           'summary': results.summarise(exps), 'provenance': prov,
           **({'chunking': chunks} if chunks else {})}
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
