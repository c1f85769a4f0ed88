"""The experiment loop, once: for one seed or a group trained as one program.

Per experiment j: the training type's 'before' (j >= 2) -> train until
converged -> evaluate -> record -> 'after' -> checkpoint. A group holds runs
(settings.Run) of one training type and optimizer with different seeds;
their state, keys, labels and chunk order carry a leading seed axis
(train.seed_map), each seed keeps its own random stream and convergence
rule, and a plain run is a group of one (it runs the unbatched program: the
plain numbers). The pieces are built from the runs' settings by setup.py.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import numpy as np

from dash_jax import (batches, checkpoint, compiles, observers, parallel, provenance, results,
                      setup, signals, train, training_types)
from dash_jax import data as data_lib
from dash_jax.errors import UserError
from dash_jax.settings import Run


def run_protocol(ds: data_lib.Dataset, runs: list[Run], log=print) -> list[dict]:
  """Train `runs` (one training type and optimizer, any seeds) as one group;
  writes each run's results.json and returns the results in order. SIGTERM
  meanwhile saves at the next checkpoint point and raises signals.Terminated."""
  with signals.saving_loop():
    return _run_group(ds, runs, log)


@dataclasses.dataclass
class Snapshot:
  """Where a group stands: its states and keys, each seed's records, and
  inside an experiment each seed's train.Progress and the time it took."""
  states: object
  keys: object
  experiments: list  # per seed: the records of the experiments done
  progress: list | None = None
  elapsed: float = 0.0


def _run_group(ds, runs, log):
  """The protocol, per experiment j: before (j >= 2) -> train until converged
  -> evaluate -> record -> after -> checkpoint."""
  counter = compiles.CompileCounter()
  prov = provenance.collect(runs[0].settings.model.precision)
  if ds.source is not None:
    prov['dataset'] = ds.source
  g = setup.setup_group(ds, runs)
  ckpts = GroupCheckpoints(g, checkpoint_dir(runs), prov, log)
  snap, first = _resume(g, ckpts, log)
  watchers = _observers(g, snap.experiments, log)
  finished, save_failed = False, None
  try:
    for j in range(first, g.num_chunks + 1):
      snap = _experiment(g, j, snap, watchers, ckpts, counter)
      save_failed = _save_after(ckpts, g, j, snap)
      if j < g.num_chunks:
        signals.check()
    finished = True
  finally:
    save_failed = _close(ckpts, watchers, finished, save_failed)
  return _write_results(runs, snap.experiments, provenance.stamp_end(prov), save_failed,
                        setup.chunking(len(ds.train_y), g.num_chunks, g.chunk_size))


def _experiment(g: setup.Group, j: int, snap: Snapshot, watchers, ckpts, counter) -> Snapshot:
  """Experiment j: before -> train -> evaluate -> record -> after."""
  start = time.perf_counter() - snap.elapsed
  states, keys, progress = snap.states, snap.keys, snap.progress
  if j >= 2 and progress is None:
    states, keys = intervene(g, g.training_type.before, (states, keys), j,
                             last_steps(snap.experiments))
  for i, obs in enumerate(watchers):
    obs.experiment_start(j, _seed_state(g, states, i),
                         resumed_epochs=progress[i].epochs if progress else 0)

  def on_epoch(i, epochs, acc, loss, states):
    watchers[i].on_epoch(epochs, acc, loss, _seed_state(g, states, i))

  def on_checkpoint(states, keys, progress):  # SIGTERM: save now, whatever the interval
    ckpts.save(j, Snapshot(states, keys, snap.experiments, progress,
                           time.perf_counter() - start), force=signals.stop_requested())
    signals.check()

  states, keys, stats = _train(g, (states, keys), j, train.EpochHooks(
      experiment=j, seeds=g.seeds if len(g.runs) > 1 else None, progress=progress,
      on_epoch=on_epoch, on_checkpoint=on_checkpoint))
  test = evaluate(g, states)
  records = _records(g, j, test, stats, time.perf_counter() - start, compile_fields(counter))
  for i, (obs, record) in enumerate(zip(watchers, records)):
    obs.experiment_end(record, _seed_state(g, states, i), stats[i])
    snap.experiments[i].append(record)
  states, keys = intervene(g, g.training_type.after, (states, keys), j)
  return Snapshot(states, keys, snap.experiments)


def checkpoint_dir(runs: list[Run]) -> str:
  """A plain run checkpoints in its own folder; a group in one beside its
  runs' folders, named after its training type, optimizer, swept values and
  seeds."""
  if len(runs) == 1:
    return os.path.join(runs[0].folder, 'checkpoints')
  seeds = '_'.join(str(r.seed) for r in runs)
  workdir = os.path.dirname(runs[0].folder)
  return os.path.join(workdir, f'{runs[0].stem}-seeds{seeds}', 'checkpoints')


def compile_fields(counter) -> dict:
  """XLA compiles since the previous experiment's record (its 'after'
  intervention, this one's 'before', training and evaluation)."""
  done = counter.since_last()
  return {'compiles': done.count, 'compile_s': done.seconds}


# ------------------------------------------------------------ checkpoints


@dataclasses.dataclass(frozen=True)
class Restored:
  """A group's newest readable save: where to go on from."""
  snapshot: Snapshot
  experiment: int  # the first experiment still to train (or to finish)
  provenance: dict | None  # the environment of the save


class GroupCheckpoints:
  """The group's Orbax checkpoints. A group of one saves the unbatched state
  and plain metadata, so plain runs' checkpoints keep one format."""

  def __init__(self, g: setup.Group, directory: str, prov: dict, log):
    self.num_seeds, self.max_epoch, self.mesh = len(g.runs), g.settings.stop.max_epoch, g.mesh
    self.prov, self.log = prov, log
    ex = g.settings.execution
    self.ckpts = checkpoint.RunCheckpoints(directory, keep=ex.keep_checkpoints,
                                           min_interval_s=ex.checkpoint_min_interval_s)

  def _plain(self) -> bool:
    return self.num_seeds == 1

  def restore(self, states, keys) -> Restored | None:
    """The newest readable save (`states`, `keys`: its shapes), or None."""
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
    states, keys = parallel.replicate((states, keys), self.mesh)
    return Restored(Snapshot(states, keys, experiments, progress, meta['elapsed']),
                    meta['experiment'], meta.get('provenance'))

  def save(self, j: int, snap: Snapshot, force: bool = False):
    """Save `snap` as standing at experiment j (inside it while it has progress)."""
    progress = snap.progress
    epoch = max(p.epochs for p in progress) if progress else 0
    progress = [dataclasses.asdict(p) for p in progress] if progress else None
    states, keys, experiments = snap.states, snap.keys, snap.experiments
    if self._plain():
      states, keys = train.take_seed(states, 0), keys[0]
      experiments, progress = experiments[0], progress and progress[0]
    self.ckpts.save(j * (self.max_epoch + 1) + epoch, states, keys, {
        'experiment': j, 'experiments': experiments, 'elapsed': snap.elapsed,
        'progress': progress, 'provenance': self.prov}, force=force)

  def close(self):
    self.ckpts.close()


def initial_states(g: setup.Group):
  """(states, keys): each seed's fresh state and its training key."""
  keys, init_keys = train.split_keys(np.stack([jax.random.PRNGKey(s) for s in g.seeds]))
  states = g.per_seed(g.fresh_state)(init_keys)
  return parallel.replicate((states, keys), g.mesh)


def _resume(g: setup.Group, ckpts: GroupCheckpoints, log) -> tuple[Snapshot, int]:
  """(snapshot, first experiment): from the newest checkpoint, else a fresh start."""
  states, keys = initial_states(g)
  restored = ckpts.restore(states, keys)
  if restored is None:
    return Snapshot(states, keys, [[] for _ in g.runs]), 1
  snap = restored.snapshot
  where = g.runs[0].name if len(g.runs) == 1 else f'seeds {g.seeds}'
  log(f'  [{where}] resuming at experiment {restored.experiment}'
      + (f', epoch {snap.progress[0].epochs + 1}' if snap.progress else ''))
  changed = provenance.environment_differences(restored.provenance, ckpts.prov)
  if changed:
    log(f'  [{where}] resumed in another environment: {"; ".join(changed)}')
  if restored.provenance is not None:
    ckpts.prov['resumed_from'] = restored.provenance
  return snap, restored.experiment


def _observers(g: setup.Group, experiments, log) -> list:
  """One observers.RunObserver a run (only the first shows progress bars)."""
  def data_for(i):
    return dict(g.data, train_y=g.data['train_y'][i]), g.buffer_idx[i]
  watchers = [observers.RunObserver(
      r, data_for=functools.partial(data_for, i), chunk_size=g.chunk_size, log=log,
      completed=experiments[i], bars=i == 0) for i, r in enumerate(g.runs)]
  for obs in watchers:
    obs.not_converged_cause = functools.partial(likely_cause, g)
  return watchers


# ----------------------------------------------------- the protocol's steps


def _seed_state(g: setup.Group, states, i):
  """Seed i's state where diagnostics measure it, else None."""
  return train.take_seed(states, i) if g.settings.outputs.diagnostics else None


def last_steps(experiments) -> np.ndarray:
  """Each seed's steps in its last recorded experiment (0 before any)."""
  return np.asarray([exps[-1]['steps'] if exps else 0 for exps in experiments], np.int32)


def intervene(g: setup.Group, fn, carry, j, steps=None):
  """A training type's (state, ctx) -> state for every seed, from a fresh
  key; `carry` = (states, keys), returned unchanged where the type has no
  such hook or its hyper-parameters switch it off. `steps`: each seed's
  steps in the experiment trained last (Context.steps)."""
  states, keys = carry
  if fn is None or not g.training_type.active(g.settings.hparams):
    return states, keys
  keys, k = train.split_keys(keys)
  steps = np.zeros(len(g.runs), np.int32) if steps is None else steps

  def one(state, key, train_y, buffer_idx, steps):
    return fn(state, _context(g, j, state, key, (train_y, buffer_idx, steps)))
  return g.per_seed(one)(states, k, g.data['train_y'], g.buffer_idx, steps), keys


def _context(g: setup.Group, j, state, key, seed_values) -> training_types.Context:
  """What a training type's hook may use for one seed; `seed_values` =
  (its labels, its chunk order, its steps in the experiment trained last)."""
  train_y, buffer_idx, steps = seed_values
  run_data = dict(g.data, train_y=train_y)
  units = g.model_spec.units(state.params)
  mode = g.options.mode
  return training_types.Context(
      key=key, experiment=j, hparams=g.settings.hparams, fresh_state=g.fresh_state,
      direction=lambda s, alpha: train.full_data_direction(
          s, run_data, buffer_idx, j, alpha, chunk_size=g.chunk_size, mode=mode),
      head=tuple(g.model_spec.head), head_init=g.model_spec.head_init,
      activity=lambda s: train.buffer_activity(s, run_data, buffer_idx, j, units,
                                               g.chunk_size, mode),
      units=units, steps=steps)


def evaluate(g: setup.Group, states) -> np.ndarray:
  """(S, 2): each seed's test accuracy and mean loss."""
  def one(state):
    return train.evaluate(state, *g.test, g.data['mean'], g.data['std'],
                          batch_size=g.settings.chunks.test_batch_size)
  return np.asarray(g.per_seed(one)(states))


def _records(g: setup.Group, j, test, stats, wall, compiled) -> list[dict]:
  """Each seed's record of experiment j."""
  return [{'experiment': j, 'num_train': j * g.chunk_size, 'test_acc': float(test[i, 0]),
           'test_loss': float(test[i, 1]), 'train_acc': st.train_acc,
           'train_loss': st.train_loss, 'steps': st.steps, 'epochs': st.epochs,
           # False: stopped by max_epoch short of converge_acc
           'converged': st.last_epoch_acc >= g.settings.stop.converge_acc,
           'wall_s': wall, **compiled} for i, st in enumerate(stats)]


def _train(g: setup.Group, carry, j, hooks: train.EpochHooks):
  """train.train_until_converged on experiment j's buffer; a non-finite loss
  names its run first (which of the launch's runs stopped)."""
  states, keys = carry
  try:
    return train.train_until_converged(
        states, keys, train.ExperimentData(g.data, g.buffer_idx, j * g.chunk_size),
        g.options, hooks)
  except train.NonFiniteLoss as e:
    name = g.runs[g.seeds.index(e.seed)].name if e.seed in g.seeds else g.runs[0].name
    cause = likely_cause(g, j)
    raise train.NonFiniteLoss(f'{name}: {e.what}', e.seed,
                              f'{cause} (else {e.fix})' if cause else e.fix) from None


def likely_cause(g: setup.Group, j) -> str:
  """Why experiment j may fail to converge or diverge, where its 'keep'
  epochs end in a small batch for a BatchNorm model ('' otherwise)."""
  if g.options.last_batch != 'keep' or not g.batchnorm:
    return ''
  return batches.likely_cause(j, j * g.chunk_size, g.options.batch_size, g.chunk_size,
                              g.num_chunks)


def _save_after(ckpts: GroupCheckpoints, g: setup.Group, j, snap: Snapshot):
  """The checkpoint after experiment j. A failed save after the last one is
  returned, not raised: the finished runs' results are written first."""
  try:
    ckpts.save(j + 1, snap, force=signals.stop_requested())
  except checkpoint.SaveFailed as e:
    if j < g.num_chunks:
      raise
    return e
  return None


def _close(ckpts, watchers, finished: bool, save_failed):
  """Wait for pending saves and close the observers; a save that failed
  once every experiment was done is returned (results are written first)."""
  try:
    ckpts.close()
  except checkpoint.SaveFailed as e:
    if not finished:
      raise
    save_failed = save_failed or e
  finally:
    for obs in watchers:
      obs.close()
  return save_failed


def _write_results(runs, experiments, prov, save_failed=None, chunks=None) -> list[dict]:
  """Each run's results.json (`chunks`: setup.chunking's); the results in order. A
  checkpoint save that failed after the last experiment is reported once the
  results are safe."""
  out = []
  for run, exps in zip(runs, experiments):
    res = {'config': run.recorded, 'experiments': exps,
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
